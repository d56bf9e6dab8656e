//! QMP benchmarks (`cargo bench -p qchar-monitor`): bulk JSON parsing rate,
//! in-process command throughput, and round-trip latency over a unix socket.
//! Numbers are printed; nothing is asserted.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qchar_chardev::registry::Registry;
use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use qchar_monitor::event::EventBus;
use qchar_monitor::json::JsonStreamer;
use qchar_monitor::qmp::{QmpEnv, QmpMonitor, QmpOptions, QmpSession, VersionInfo};
use qchar_monitor::vm::NoGuest;

fn env(reg: &Registry) -> Arc<QmpEnv> {
    let events = EventBus::new();
    Arc::new(QmpEnv {
        chardevs: Arc::new(reg.clone()),
        vm: Arc::new(NoGuest::new(events.clone(), true, || {})),
        version: VersionInfo::default(),
        events,
        web: None,
    })
}

fn parse_rate() {
    let payload = "x".repeat(1000);
    let one = format!(
        "{{\"execute\": \"ringbuf-write\", \"arguments\": {{\"device\": \"r0\", \"data\": \"{payload}\", \"format\": \"utf8\"}}, \"id\": 12345}}\n"
    );
    let small = "{\"execute\":\"query-status\",\"id\":[1,2,{\"a\":true}]}\n";
    for (name, unit) in [
        ("1 KiB string commands", one.as_str()),
        ("small commands", small),
    ] {
        let input = unit.repeat((16 << 20) / unit.len());
        let mut p = JsonStreamer::default();
        let start = Instant::now();
        let mut msgs = 0usize;
        for chunk in input.as_bytes().chunks(64 << 10) {
            p.feed_with(chunk, |m| {
                assert!(m.is_ok());
                msgs += 1;
            });
        }
        let t = start.elapsed().as_secs_f64();
        println!(
            "json parse, {name}: {:.1} MB/s, {:.0} messages/s",
            input.len() as f64 / t / 1e6,
            msgs as f64 / t
        );
    }
}

fn session_throughput(reg: &Registry) {
    let env = env(reg);
    let mut s = QmpSession::new(true);
    s.feed(&env, b"{\"execute\":\"qmp_capabilities\"}", &mut |_, _| {});
    let input = b"{\"execute\":\"query-status\",\"id\":1}".repeat(100_000);
    let start = Instant::now();
    let mut bytes = 0;
    s.feed(&env, &input, &mut |_, l| bytes += l.len());
    let t = start.elapsed().as_secs_f64();
    println!(
        "session, query-status in process: {:.0} commands/s ({bytes} reply bytes)",
        100_000.0 / t
    );
}

fn round_trip(reg: &Registry) {
    let dir = std::env::temp_dir().join(format!("qchar-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("qmp.sock");
    let spec = ChardevBackend::Socket(ChardevSocket::new(
        SocketAddressLegacy::unix(path.to_string_lossy()),
        true,
    ));
    reg.add("bench", spec)
        .expect("add the monitor's socket chardev");
    let mon = QmpMonitor::attach(reg, "bench", env(reg), QmpOptions::default()).expect("attach");
    let s = UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    w.write_all(b"{\"execute\":\"qmp_capabilities\"}").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    let n = 20_000;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        w.write_all(b"{\"execute\":\"query-status\"}").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let total: Duration = lat.iter().sum();
    println!(
        "round trip over unix socket, query-status: mean {:.1} us, p50 {:.1} us, p99 {:.1} us",
        total.as_secs_f64() * 1e6 / n as f64,
        lat[n / 2].as_secs_f64() * 1e6,
        lat[n * 99 / 100].as_secs_f64() * 1e6
    );
    mon.detach();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let reg = Registry::new().expect("registry");
    parse_rate();
    session_throughput(&reg);
    round_trip(&reg);
    reg.shutdown();
}
