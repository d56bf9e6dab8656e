//! The output rate a browser's terminal page keeps up with.
//!
//! `cargo bench -p qchar-web --bench browser_rate` (needs `chromium` and
//! `chromedriver`). A chardev with a `null` backend gets 64-byte lines
//! from a frontend at a set rate; a headless Chromium shows the chardev in
//! the console's terminal page. For each rate, for a few seconds, the
//! bench counts the bytes xterm.js has processed (its write callback) and
//! the bytes the page was told it skipped (it fell more than the history,
//! 1 MiB, behind). "Keeps up" is: processed within 1% of what was written,
//! nothing skipped.
//!
//! Environment: `QCHAR_BENCH_SECONDS` per rate (default 3),
//! `QCHAR_BENCH_RATES` (MB/s, comma-separated; default
//! `0.5,1,2,4,8,16,32`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::{FrontendHandlers, Registry};
use qchar_testkit::webdriver::ChromeDriver;
use qchar_testkit::{require, Prereq};
use qchar_web::{Consoles, WebConsole, WebOptions};
use serde_json::json;

struct Sink;

impl FrontendHandlers for Sink {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, _data: &[u8]) {}
    fn supports_hotswap(&self) -> bool {
        true
    }
}

fn main() {
    if !require(Prereq::Chromium) {
        return;
    }
    let secs: f64 = std::env::var("QCHAR_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let rates: Vec<f64> = std::env::var("QCHAR_BENCH_RATES")
        .unwrap_or_else(|_| "0.5,1,2,4,8,16,32".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();

    let reg = Registry::new().unwrap();
    reg.add("flood", ChardevBackend::Null(Default::default()))
        .unwrap();
    let fe = reg.attach("flood").unwrap();
    fe.set_handlers(Box::new(Sink));
    let consoles = Consoles::new(&reg);
    let web = WebConsole::start(consoles, &WebOptions::default()).unwrap();
    let base = format!("http://{}", web.local_addr());

    let driver = ChromeDriver::start();
    let b = driver.browser(1024, 640);
    b.goto(&web.url());
    b.goto(&format!("{base}/console/flood?scrollback=1000"));
    b.wait_js(
        "the page's websocket",
        "return window.qchar && window.qchar.open",
    );

    // The writer: lines at `rate` bytes/s (0: stop), paced every 2 ms.
    let rate = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (rate, written, stop) = (rate.clone(), written.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut due = 0f64;
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
                let now = Instant::now();
                due += rate.load(Ordering::Relaxed) as f64 * (now - last).as_secs_f64();
                last = now;
                while due >= 64.0 {
                    let line =
                        format!("flood {n:012} abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH\r\n");
                    debug_assert_eq!(line.len(), 64);
                    fe.write_all(line.as_bytes()).unwrap();
                    written.fetch_add(64, Ordering::Relaxed);
                    n += 1;
                    due -= 64.0;
                }
            }
        })
    };

    let page = |name: &str| b.exec("return window.qchar[arguments[0]]", json!([name]));
    println!("| offered MB/s | page processed MB/s | skipped bytes | keeps up |");
    println!("| --- | --- | --- | --- |");
    for r in rates {
        // Settle: the page has everything so far.
        rate.store(0, Ordering::Relaxed);
        let settle = Instant::now();
        while page("written").as_u64().unwrap_or(0) + page("skipped").as_u64().unwrap_or(0)
            < written.load(Ordering::Relaxed)
            && settle.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let w0 = written.load(Ordering::Relaxed);
        let p0 = page("written").as_u64().unwrap_or(0);
        let s0 = page("skipped").as_u64().unwrap_or(0);
        let t0 = Instant::now();
        rate.store((r * 1e6) as u64, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs_f64(secs));
        let w = written.load(Ordering::Relaxed) - w0;
        let p = page("written").as_u64().unwrap_or(0) - p0;
        let s = page("skipped").as_u64().unwrap_or(0) - s0;
        let dt = t0.elapsed().as_secs_f64();
        let keeps = s == 0 && p as f64 >= w as f64 * 0.99;
        println!(
            "| {r} | {:.2} | {s} | {} |",
            p as f64 / dt / 1e6,
            if keeps { "yes" } else { "no" }
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    drop(b);
    web.stop();
    reg.shutdown();
}
