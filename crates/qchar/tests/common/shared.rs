//! The shared console's rate check, used by `tests/shared_console.rs` and
//! `benches/shared_rate.rs`: the demo guest's output rate with and without
//! a stalled client of its multi-client console, in alternating windows of
//! the same run.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Qmp;

/// The TCP port of socket server chardev `id` (picked with `port=0`), from
/// its `query-chardev` filename (`disconnected:tcp:127.0.0.1:PORT,server=on`).
pub fn tcp_port(q: &mut Qmp, id: &str) -> u16 {
    let all = q.cmd("query-chardev", Value::Null);
    let f = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == id)
        .unwrap()["filename"]
        .as_str()
        .unwrap()
        .to_string();
    f.split(",server=on")
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A client of the console on `port` that reads nothing, with a receive
/// buffer as small as the kernel allows, so that it stalls as soon as the
/// history it is sent first fills the few kilobytes between it and qchar.
pub fn stalled_client(port: u16) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    s.connect(&addr.into()).unwrap();
    s.into()
}

/// The console's clients, from `x-query-chardev-clients`.
pub fn clients(q: &mut Qmp, id: &str) -> Vec<Value> {
    let all = q.cmd("x-query-chardev-clients", Value::Null);
    all.as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == id)
        .unwrap_or_else(|| panic!("{id} is no multi-client chardev"))["clients"]
        .as_array()
        .unwrap()
        .clone()
}

/// Bytes chardev `id` sent out so far.
pub fn bytes_out(q: &mut Qmp, id: &str) -> u64 {
    let all = q.cmd("x-query-chardev-stats", Value::Null);
    all.as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == id)
        .unwrap()["bytes-out"]
        .as_u64()
        .unwrap()
}

/// The guest's output rate on `id` (bytes/s) over `window`.
pub fn rate(q: &mut Qmp, id: &str, window: Duration) -> f64 {
    let (b0, t0) = (bytes_out(q, id), Instant::now());
    std::thread::sleep(window);
    let (b1, t1) = (bytes_out(q, id), Instant::now());
    (b1 - b0) as f64 / (t1 - t0).as_secs_f64()
}

/// The median of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// What [`compare`] measured.
pub struct Comparison {
    /// Median over the pairs of (rate with) / (rate without).
    pub ratio: f64,
    /// Rates (bytes/s) of the windows with a stalled client.
    pub with: Vec<f64>,
    /// Rates of the windows without.
    pub without: Vec<f64>,
}

/// Windows of `window` alternate with a stalled client of console `id`
/// (TCP port `port`, `readers` other clients) and without, in the order
/// with/without then without/with, `pairs` times. Each stalled client is
/// new and stalled (it has bytes it did not read) before its window opens.
pub fn compare(
    q: &mut Qmp,
    id: &str,
    port: u16,
    readers: usize,
    pairs: usize,
    window: Duration,
) -> Comparison {
    let (mut with, mut without, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let mut pair = [0.0; 2];
        for k in 0..2 {
            let stalled_now = (i + k) % 2 == 0;
            let stalled = stalled_now.then(|| stalled_client(port));
            let start = Instant::now();
            loop {
                let cs = clients(q, id);
                let ready = if stalled_now {
                    cs.len() == readers + 1 && cs[readers]["behind"].as_u64().unwrap_or(0) > 0
                } else {
                    cs.len() == readers
                };
                if ready {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the stalled client never fell behind: {cs:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let r = rate(q, id, window);
            drop(stalled);
            pair[usize::from(!stalled_now)] = r;
        }
        with.push(pair[0]);
        without.push(pair[1]);
        ratios.push(pair[0] / pair[1]);
    }
    Comparison {
        ratio: median(ratios),
        with,
        without,
    }
}
