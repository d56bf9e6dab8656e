//! 10,000 chardevs in one process, through the library: the time to add
//! them (`Registry::add` of null backends, so the figure is the core's cost
//! and not a backend's buffer), the time of one `query`, and the resident
//! memory each costs (`VmRSS` growth of this process divided by the count).
//!
//! `cargo bench -p qchar-chardev --bench many`. Environment:
//! `QCHAR_BENCH_MANY` (default 10000). Prints a `RESULT` line for
//! `scripts/bench.sh`; the same figures over QMP, against QEMU, come from
//! `cargo bench -p qchar --bench vs_qemu`.

use std::time::{Duration, Instant};

use qchar_chardev::spec::{ChardevBackend, ChardevCommon};
use qchar_chardev::Registry;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = if quick {
        100
    } else {
        std::env::var("QCHAR_BENCH_MANY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000)
    };
    let reg = Registry::new().unwrap();
    // Warm up the I/O thread and the allocator with one chardev.
    reg.add("warm", ChardevBackend::Null(ChardevCommon::default()))
        .unwrap();
    let _ = reg.query();
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib();
    let t = Instant::now();
    for i in 0..n {
        reg.add(
            &format!("c{i}"),
            ChardevBackend::Null(ChardevCommon::default()),
        )
        .unwrap();
    }
    let add = t.elapsed();
    reg.sync().unwrap();
    let t = Instant::now();
    let all = reg.query();
    let query = t.elapsed();
    assert_eq!(all.len(), n + 1);
    drop(all);
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kib();
    let per = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!(
        "{n} null chardevs through Registry::add in {:.3} s ({:.0}/s); one query {:.2} ms; RSS {per:.0} bytes per chardev",
        add.as_secs_f64(),
        n as f64 / add.as_secs_f64(),
        query.as_secs_f64() * 1e3
    );
    println!(
        "RESULT many_lib qchar added={n} add_s={:.4} query_ms={:.3} bytes_per_chardev={per:.0}",
        add.as_secs_f64(),
        query.as_secs_f64() * 1e3
    );
    reg.shutdown();
}
