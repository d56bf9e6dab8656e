//! The shared console's promise that a client that stops reading does not
//! slow the guest: the demo guest's output rate (bytes its console sends
//! out per second) with a stalled client of its multi-client console and
//! without one, in alternating windows of one run (with/without, then
//! without/with, so that drift cancels). The issue asks for the rate with
//! a stalled client to stay within 10% of the rate without; the test
//! `shared_console` checks a looser bound with shorter windows.
//!
//! `cargo bench -p qchar --bench shared_rate` (needs `/dev/kvm`).
//! Environment: `QCHAR_SHARED_PAIRS` (default 31) window pairs,
//! `QCHAR_SHARED_WINDOW_MS` (default 1000) per window. Prints a `RESULT`
//! line for `scripts/bench.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{argv, p, shared, tempdir, Proc, Qmp};
use qchar_testkit::{env_num, require, Prereq};
use serde_json::{json, Value};

/// The console's history: more than a new client's socket buffers hold, so
/// a new client that reads nothing stalls at once.
const HISTORY: u64 = 256 << 10;

fn main() {
    if !require(Prereq::Kvm) {
        return;
    }
    // `cargo test --benches` runs this too: keep that to a token amount.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (pairs, window_ms) = if quick {
        (1, 100)
    } else {
        (
            env_num::<usize>("QCHAR_SHARED_PAIRS", 31),
            env_num("QCHAR_SHARED_WINDOW_MS", 1000),
        )
    };
    let dir = tempdir();
    let d = dir.path();
    let line = format!(
        "-nodefaults -display none -S \
         -chardev socket,id=con,host=127.0.0.1,port=0,server=on,wait=off,x-clients=4,backlog={HISTORY} \
         -serial chardev:con -qmp unix:$D/qmp,server=on,wait=off -fda builtin:demo"
    );
    let mut proc = Proc::qchar(&argv(&line, d), d);
    let mut q = Qmp::connect(&p(d, "qmp"));
    let port = shared::tcp_port(&mut q, "con");
    // One client reads everything, as a user's terminal would.
    let reader = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let drain = std::thread::spawn(move || {
        let mut r = reader;
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    q.cmd("cont", Value::Null);
    while shared::bytes_out(&mut q, "con") <= HISTORY {
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = shared::compare(
        &mut q,
        "con",
        port,
        1,
        pairs,
        Duration::from_millis(window_ms),
    );
    let (mw, mo) = (
        shared::median(c.with.clone()),
        shared::median(c.without.clone()),
    );
    println!("shared console: the demo guest's output, {pairs} pairs of {window_ms} ms windows");
    println!("  with a stalled client:    median {:.1} KB/s", mw / 1e3);
    println!("  without:                  median {:.1} KB/s", mo / 1e3);
    println!(
        "  median of pairwise ratios {:.3}; ratio of medians {:.3}",
        c.ratio,
        mw / mo
    );
    println!(
        "RESULT shared_rate qchar with_b_s={mw:.0} without_b_s={mo:.0} pair_ratio={:.3}",
        c.ratio
    );
    let r = q.execute(json!({"execute": "quit"}));
    assert_eq!(r, json!({"return": {}}));
    proc.wait();
    let _ = drain.join();
}
