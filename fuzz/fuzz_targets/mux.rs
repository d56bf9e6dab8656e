//! A peer's keystrokes into a mux (`mux=on`) with two frontends, over a
//! real unix socket and the registry's I/O thread: the Ctrl-a escapes as
//! the mux decodes them, end to end.
//!
//! Invariants, after every input (compared with an independent model of
//! QEMU's escapes: Ctrl-a Ctrl-a is one Ctrl-a, `c` moves the focus, `b`
//! sends a break to the focused frontend, `x` asks to quit, `h`/`?`/`t`
//! and unknown keys only touch the output):
//! - each frontend got exactly the bytes and events (break, focus in and
//!   out) the model says, in the model's order, and nothing else;
//! - the registry reported one quit request per Ctrl-a x;
//! - no panic, no hang (libFuzzer's `-timeout`): a missing byte or event
//!   fails the input after a bounded wait.
//!
//! One mux lives for the whole process; an input that ends inside an
//! escape is closed with a key that does nothing (`z`), so every input
//! starts from plain input, with the focus where the last one left it.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use qchar_chardev::opts::ChardevOptions;
use qchar_chardev::registry::{Registry, RegistryEvent};
use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use qchar_chardev::{ChardevEvent, FrontendHandlers};

const ESCAPE: u8 = 0x01;

/// What a frontend sees, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Byte(u8),
    Event(ChardevEvent),
}

type Log = Arc<Mutex<Vec<Seen>>>;

struct Recorder(Log);

impl FrontendHandlers for Recorder {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, data: &[u8]) {
        lock(&self.0).extend(data.iter().map(|&b| Seen::Byte(b)));
    }
    fn event(&mut self, e: ChardevEvent) {
        lock(&self.0).push(Seen::Event(e));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct World {
    _reg: Registry,
    client: Mutex<UnixStream>,
    logs: [Log; 2],
    quits: Arc<AtomicUsize>,
    /// Focus and quit count as the model has them after the last input.
    model: Mutex<(usize, usize)>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = qchar_fuzz::sandbox_dir();
        let path = dir.join(format!("mux-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let reg = Registry::new().expect("registry");
        let quits = Arc::new(AtomicUsize::new(0));
        let q = quits.clone();
        reg.subscribe(move |ev| {
            if let RegistryEvent::QuitRequested(_) = ev {
                q.fetch_add(1, Ordering::SeqCst);
            }
        });
        let spec = ChardevBackend::Socket(ChardevSocket::new(
            SocketAddressLegacy::unix(path.to_string_lossy()),
            true,
        ));
        reg.add_options(&ChardevOptions {
            id: "m".into(),
            backend: spec,
            mux: true,
        })
        .expect("mux chardev");
        let logs: [Log; 2] = [Log::default(), Log::default()];
        for log in &logs {
            let fe = reg.attach("m").expect("mux frontend");
            fe.set_handlers(Box::new(Recorder(log.clone())));
            // The handle stays attached for the process's life.
            std::mem::forget(fe);
        }
        let client = UnixStream::connect(&path).expect("connect to the mux");
        // The mux's own output (help, notices, echo of nothing) is read
        // and dropped so that it never holds the base up.
        let mut out = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(out.read(&mut buf), Ok(n) if n > 0) {}
        });
        // Settle: the last frontend to register takes the focus (MUX_IN),
        // then the connection's OPENED reaches both, last.
        let has = |l: &Log, e: ChardevEvent| lock(l).contains(&Seen::Event(e));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(has(&logs[1], ChardevEvent::MuxIn)
            && logs.iter().all(|l| has(l, ChardevEvent::Opened)))
        {
            assert!(
                Instant::now() < deadline,
                "mux start-up incomplete: {logs:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        for log in &logs {
            lock(log).clear();
        }
        // Learn where the focus is: Ctrl-a c moves it to the other one,
        // which hears MUX_OUT first, then the new one MUX_IN.
        (&client).write_all(&[ESCAPE, b'c']).unwrap();
        let focus = loop {
            let gained = logs.iter().position(|l| has(l, ChardevEvent::MuxIn));
            if let Some(i) = gained {
                assert!(has(&logs[1 - i], ChardevEvent::MuxOut), "{logs:?}");
                break i;
            }
            assert!(Instant::now() < deadline, "no focus change at start-up");
            std::thread::sleep(Duration::from_millis(1));
        };
        for log in &logs {
            lock(log).clear();
        }
        World {
            _reg: reg,
            client: Mutex::new(client),
            logs,
            quits,
            model: Mutex::new((focus, 0)),
        }
    })
}

/// What each frontend must see for `input`, the focus after it, the quit
/// requests it makes, and whether it ends inside an escape.
fn model(input: &[u8], mut focus: usize) -> ([Vec<Seen>; 2], usize, usize, bool) {
    let mut want: [Vec<Seen>; 2] = [Vec::new(), Vec::new()];
    let mut quits = 0;
    let mut esc = false;
    for &b in input {
        if !esc {
            if b == ESCAPE {
                esc = true;
            } else {
                want[focus].push(Seen::Byte(b));
            }
            continue;
        }
        esc = false;
        match b {
            ESCAPE => want[focus].push(Seen::Byte(ESCAPE)),
            b'x' => quits += 1,
            b'b' => want[focus].push(Seen::Event(ChardevEvent::Break)),
            b'c' => {
                want[focus].push(Seen::Event(ChardevEvent::MuxOut));
                focus = 1 - focus;
                want[focus].push(Seen::Event(ChardevEvent::MuxIn));
            }
            _ => {}
        }
    }
    (want, focus, quits, esc)
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let mut m = lock(&w.model);
    let (focus, quits_before) = *m;
    let (want, focus_after, quits, open_escape) = model(data, focus);
    let mut bytes = data.to_vec();
    if open_escape {
        bytes.push(b'z');
    }
    lock(&w.client).write_all(&bytes).expect("write to the mux");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<Vec<Seen>> = w.logs.iter().map(|l| lock(l).clone()).collect();
        let q = w.quits.load(Ordering::SeqCst) - quits_before;
        for (i, g) in got.iter().enumerate() {
            assert!(
                want[i].starts_with(g),
                "frontend {i} saw {g:?}, the model says {:?}",
                want[i]
            );
        }
        assert!(q <= quits, "{q} quit requests, the model says {quits}");
        if got[0] == want[0] && got[1] == want[1] && q == quits {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mux did not deliver: got {got:?}, want {want:?}, quits {q} of {quits}"
        );
        std::thread::sleep(Duration::from_micros(50));
    }
    for l in &w.logs {
        lock(l).clear();
    }
    *m = (focus_after, quits_before + quits);
});
