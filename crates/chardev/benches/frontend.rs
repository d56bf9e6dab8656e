//! Frontend write throughput into a file and a ringbuf, next to a plain
//! `write(2)` loop on a file measured in the same run, and the latency of
//! `change`. Run with `cargo bench -p qchar-chardev --bench frontend`.

use std::io::Write;
use std::time::{Duration, Instant};

use qchar_chardev::spec::{ChardevBackend, ChardevFile, ChardevRingbuf};
use qchar_chardev::{CharFrontend, ChardevEvent, FrontendHandlers, Registry};

const TOTAL: usize = 64 << 20;

struct Hotswap;
impl FrontendHandlers for Hotswap {
    fn can_read(&mut self) -> usize {
        0
    }
    fn read(&mut self, _: &[u8]) {}
    fn event(&mut self, _: ChardevEvent) {}
    fn supports_hotswap(&self) -> bool {
        true
    }
    fn backend_changed(&mut self, _: &CharFrontend) -> Result<(), String> {
        Ok(())
    }
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn file_spec(p: &std::path::Path) -> ChardevBackend {
    ChardevBackend::File(ChardevFile {
        out: p.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

fn through_chardev(reg: &Registry, id: &str, chunk: usize) -> Duration {
    let fe = reg.attach(id).unwrap();
    let buf = vec![b'x'; chunk];
    let t = Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        fe.write_all(&buf).unwrap();
        sent += chunk;
    }
    while reg.stats(id).unwrap().queued > 0 {
        std::thread::yield_now();
    }
    let d = t.elapsed();
    fe.detach();
    d
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    println!("frontend write throughput, {} MiB per row", TOTAL >> 20);
    println!(
        "{:<28} {:>10} {:>14} {:>8}",
        "case", "chardev MB/s", "write(2) MB/s", "ratio"
    );
    for chunk in [1usize, 16, 256, 4096] {
        let path = dir.path().join(format!("f{chunk}"));
        let id = format!("f{chunk}");
        reg.add(&id, file_spec(&path)).unwrap();
        let total = if chunk == 1 { TOTAL / 16 } else { TOTAL };
        let d = {
            let fe = reg.attach(&id).unwrap();
            let buf = vec![b'x'; chunk];
            let t = Instant::now();
            let mut sent = 0;
            while sent < total {
                fe.write_all(&buf).unwrap();
                sent += chunk;
            }
            while reg.stats(&id).unwrap().queued > 0 {
                std::thread::yield_now();
            }
            let d = t.elapsed();
            fe.detach();
            d
        };
        // Peer: the same bytes in the same chunks straight into a file.
        let raw_path = dir.path().join(format!("raw{chunk}"));
        let mut f = std::fs::File::create(&raw_path).unwrap();
        let buf = vec![b'x'; chunk];
        let t = Instant::now();
        let mut sent = 0;
        while sent < total {
            f.write_all(&buf).unwrap();
            sent += chunk;
        }
        let raw = t.elapsed();
        let (a, b) = (mbps(total, d), mbps(total, raw));
        println!(
            "{:<28} {:>10.1} {:>14.1} {:>7.2}x",
            format!("file, {chunk}-byte writes"),
            a,
            b,
            a / b
        );
    }
    for chunk in [16usize, 4096] {
        let id = format!("r{chunk}");
        reg.add(
            &id,
            ChardevBackend::Ringbuf(ChardevRingbuf {
                size: Some(1 << 20),
                ..Default::default()
            }),
        )
        .unwrap();
        let d = through_chardev(&reg, &id, chunk);
        println!(
            "{:<28} {:>10.1}",
            format!("ringbuf, {chunk}-byte writes"),
            mbps(TOTAL, d)
        );
    }

    // change latency, file to file, with a hotswap-capable frontend attached.
    reg.add("sw", file_spec(&dir.path().join("sw0"))).unwrap();
    let fe = reg.attach("sw").unwrap();
    fe.set_handlers(Box::new(Hotswap));
    let mut lat = Vec::new();
    for i in 0..2000 {
        let spec = file_spec(&dir.path().join(format!("sw{}", i % 8)));
        let t = Instant::now();
        reg.change("sw", spec).unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    println!(
        "change latency file->file over {} changes: median {:.1} us, p99 {:.1} us",
        lat.len(),
        p(0.5),
        p(0.99)
    );
    reg.shutdown();
}
