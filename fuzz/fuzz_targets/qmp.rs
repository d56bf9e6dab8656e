//! A QMP client's byte stream, fed in arbitrary chunks to a QMP session
//! whose commands run against a real chardev `Registry` (one per process,
//! put back in its initial state after every input).
//!
//! Commands really run: `chardev-add`/`-change`/`-remove`, `ringbuf-*`,
//! `human-monitor-command`, `stop`/`cont`/`quit` (the quit callback does
//! nothing). A sandbox in front of the registry keeps them from touching
//! anything outside a temporary directory: file, pipe, serial and unix
//! socket paths (and log files) are moved into it, inet addresses go to
//! 127.0.0.1 port 0, `stdio` is refused (it would take over the fuzzer's
//! terminal), and so is `mux` (QEMU never removes a mux or its base, so one
//! would outlive the input; the `mux` target fuzzes muxes). Everything else
//! reaches the registry as the client sent it.
//!
//! Invariants:
//! - no panic, no hang (libFuzzer's `-timeout`), bounded memory (`-rss_limit_mb`);
//! - one reply per JSON message (counted by a second parser fed the same
//!   chunks), each a single `\r\n`-terminated line that parses back into an
//!   object with exactly one of `return`/`error`, echoing the request's `id`;
//! - every event line parses back into an object with `event`;
//! - what the client added can be removed again once the session is over.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use qchar_chardev::registry::Registry;
use qchar_chardev::spec::{
    ChardevBackend, ChardevInfo, ChardevReturn, ChardevRingbuf, SocketAddressLegacy,
};
use qchar_chardev::{ChardevError, FrontendHandlers};
use qchar_fuzz::{chunks, Rng};
use qchar_monitor::event::{EventBus, EventSink};
use qchar_monitor::json::{JsonLimits, JsonStreamer, Value};
use qchar_monitor::ops::ChardevOps;
use qchar_monitor::qmp::{QmpEnv, QmpSession, VersionInfo};
use qchar_monitor::vm::NoGuest;

/// Chardevs present before every input: `c0` has a frontend that accepts a
/// backend change, `r0` is a bare ringbuf.
const BASELINE: [&str; 2] = ["c0", "r0"];

struct Sandbox {
    reg: Registry,
    dir: PathBuf,
}

impl Sandbox {
    fn path(&self, p: &str) -> String {
        // A name derived from the client's path, inside the sandbox.
        let h = Rng::from_data(p.as_bytes()).next_u64();
        self.dir
            .join(format!("p{h:016x}"))
            .to_string_lossy()
            .into_owned()
    }

    fn addr(&self, a: &mut SocketAddressLegacy) {
        match a {
            SocketAddressLegacy::Inet(i) => {
                i.host = "127.0.0.1".into();
                i.port = "0".into();
                i.to = None;
            }
            SocketAddressLegacy::Unix(u) => {
                u.path = self.path(&u.path);
                u.abstract_ = None;
            }
            SocketAddressLegacy::Vsock(_) | SocketAddressLegacy::Fd(_) => {}
        }
    }

    fn confine(&self, mut b: ChardevBackend) -> Result<ChardevBackend, ChardevError> {
        if let Some(log) = &b.common().logfile {
            let p = self.path(log);
            b.common_mut().logfile = Some(p);
        }
        match &mut b {
            ChardevBackend::File(f) => {
                f.out = self.path(&f.out);
                f.input = f.input.as_deref().map(|p| self.path(p));
            }
            ChardevBackend::Serial(h) | ChardevBackend::Parallel(h) | ChardevBackend::Pipe(h) => {
                h.device = self.path(&h.device)
            }
            ChardevBackend::Socket(s) => self.addr(&mut s.addr),
            ChardevBackend::Udp(u) => {
                self.addr(&mut u.remote);
                if let Some(l) = &mut u.local {
                    self.addr(l);
                }
            }
            ChardevBackend::Stdio(_) => {
                return Err(ChardevError::Invalid(
                    "stdio: not in the fuzz sandbox".into(),
                ))
            }
            ChardevBackend::Mux(_) => {
                // As in QEMU 7.2, a mux (and the chardev under it) can never
                // be removed: it would outlive the input.
                return Err(ChardevError::Invalid("mux: not in the fuzz sandbox".into()));
            }
            ChardevBackend::Pty(_)
            | ChardevBackend::Null(_)
            | ChardevBackend::Hub(_)
            | ChardevBackend::Ringbuf(_)
            | ChardevBackend::Memory(_) => {}
        }
        Ok(b)
    }
}

impl ChardevOps for Sandbox {
    fn add(&self, id: &str, backend: ChardevBackend) -> Result<ChardevReturn, ChardevError> {
        self.reg.add(id, self.confine(backend)?)
    }
    fn change(&self, id: &str, backend: ChardevBackend) -> Result<ChardevReturn, ChardevError> {
        self.reg.change(id, self.confine(backend)?)
    }
    fn remove(&self, id: &str) -> Result<(), ChardevError> {
        self.reg.remove(id)
    }
    fn query(&self) -> Vec<ChardevInfo> {
        self.reg.query()
    }
    fn send_break(&self, id: &str) -> Result<(), ChardevError> {
        self.reg.send_break(id)
    }
    fn yank_instances(&self) -> Vec<String> {
        self.reg.yank_instances()
    }
    fn yank(&self, ids: &[String]) -> Result<(), ChardevError> {
        self.reg.yank(ids)
    }
    fn ringbuf_write(&self, id: &str, data: &[u8]) -> Result<(), ChardevError> {
        self.reg.ringbuf_write(id, data)
    }
    fn ringbuf_read(&self, id: &str, max: usize) -> Result<Vec<u8>, ChardevError> {
        self.reg.ringbuf_read(id, max)
    }
    fn add_opts(&self, opts: &str) -> Result<ChardevReturn, String> {
        let o = qchar_chardev::opts::parse_chardev(opts).map_err(|e| e.to_string())?;
        let b = self.confine(o.backend).map_err(|e| e.to_string())?;
        self.reg.add(&o.id, b).map_err(|e| e.to_string())
    }
    fn parse_backend(&self, id: &str, opts: &str) -> Result<ChardevBackend, String> {
        // The result goes through `change`, which confines it.
        ChardevOps::parse_backend(&self.reg, id, opts)
    }
    fn fdsets(&self) -> Arc<qchar_chardev::fdset::FdSets> {
        // No descriptor reaches the fuzzer's monitor (no SCM_RIGHTS): the
        // sets stay empty, and `/dev/fdset/N` paths are confined like any.
        self.reg.fdsets().clone()
    }
}

/// `c0`'s frontend: takes and drops input, accepts backend changes.
struct Sponge;

impl FrontendHandlers for Sponge {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, _data: &[u8]) {}
    fn supports_hotswap(&self) -> bool {
        true
    }
}

struct Events(Mutex<Vec<Vec<u8>>>);

impl EventSink for Events {
    fn send_event(&self, line: &[u8], _event: &Value) {
        let mut v = self.0.lock().unwrap();
        // Bounded whatever an input makes happen.
        if v.len() < 4096 {
            v.push(line.to_vec());
        }
    }
}

struct World {
    sandbox: Arc<Sandbox>,
    bus: EventBus,
    events: Arc<Events>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = qchar_fuzz::sandbox_dir();
        let reg = Registry::new().expect("registry");
        let bus = EventBus::new();
        qchar_monitor::qmp::monitor::forward_registry_events(&reg, bus.clone());
        let events = Arc::new(Events(Mutex::new(Vec::new())));
        let sink: Arc<dyn EventSink> = events.clone();
        bus.register(Arc::downgrade(&sink));
        let sandbox = Arc::new(Sandbox { reg, dir });
        restore(&sandbox);
        World {
            sandbox,
            bus,
            events,
        }
    })
}

fn ringbuf() -> ChardevBackend {
    ChardevBackend::Ringbuf(ChardevRingbuf::default())
}

/// Puts the registry back: only the baseline chardevs, as first made.
fn restore(sb: &Sandbox) {
    let reg = &sb.reg;
    for _pass in 0..8 {
        let extra: Vec<String> = reg
            .ids()
            .into_iter()
            .filter(|id| !BASELINE.contains(&id.as_str()))
            .collect();
        if extra.is_empty() {
            break;
        }
        // Newest first: a mux goes before the chardev under it.
        for id in extra.iter().rev() {
            let _ = reg.remove(id);
        }
    }
    let left: Vec<String> = reg
        .ids()
        .into_iter()
        .filter(|id| !BASELINE.contains(&id.as_str()))
        .collect();
    assert!(left.is_empty(), "chardevs that cannot be removed: {left:?}");
    if !reg.contains("c0") {
        reg.add("c0", ringbuf()).expect("c0");
        let fe = reg.attach("c0").expect("attach c0");
        fe.set_handlers(Box::new(Sponge));
        fe.set_open(true);
        std::mem::forget(fe);
    } else if reg.backend_spec("c0") != Some(ringbuf()) {
        reg.change("c0", ringbuf()).expect("c0 back to a ringbuf");
    }
    if reg.contains("r0") && reg.backend_spec("r0") != Some(ringbuf()) {
        reg.remove("r0").expect("r0 is not in use");
    }
    if !reg.contains("r0") {
        reg.add("r0", ringbuf()).expect("r0");
    }
    for id in BASELINE {
        let _ = reg.ringbuf_read(id, usize::MAX);
    }
    if let Ok(rd) = std::fs::read_dir(&sb.dir) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Parses a line the monitor sent into its object (`None` if it carries a
/// client's inf/nan, which QEMU prints as C does, not as JSON).
fn parse_line(line: &[u8]) -> Option<qchar_monitor::json::Dict> {
    assert!(line.ends_with(b"\r\n"), "line without CRLF: {line:?}");
    let body = &line[..line.len() - 2];
    assert!(
        !body.contains(&b'\n') && !body.contains(&b'\r'),
        "line break inside a line: {:?}",
        String::from_utf8_lossy(line)
    );
    let mut msgs = JsonStreamer::default().feed(line);
    assert_eq!(msgs.len(), 1, "{:?}", String::from_utf8_lossy(line));
    match msgs.pop().unwrap() {
        Ok(Value::Dict(d)) => Some(d),
        Ok(v) => panic!("line is not an object: {v:?}"),
        Err(_) if line.windows(3).any(|w| w == b"inf" || w == b"nan") => None,
        Err(e) => panic!(
            "line {:?} does not parse: {e}",
            String::from_utf8_lossy(line)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    // `quit` ends the session: nothing after it is handled (as QEMU, which
    // exits), so the messages after it get no reply.
    let quit = Arc::new(AtomicBool::new(false));
    let quit_seen = quit.clone();
    let env = QmpEnv {
        chardevs: w.sandbox.clone(),
        vm: Arc::new(NoGuest::new(w.bus.clone(), true, move || {
            quit_seen.store(true, Ordering::SeqCst)
        })),
        version: VersionInfo::default(),
        events: w.bus.clone(),
        web: None,
    };
    let mut rng = Rng::from_data(data);
    let limits = if rng.next_u64().is_multiple_of(4) {
        JsonLimits {
            max_size: rng.range(1, 1024),
            max_tokens: rng.range(1, 128),
            max_nesting: rng.range(1, 32) as i64,
        }
    } else {
        JsonLimits::default()
    };
    let mut session = QmpSession::with_limits(rng.next_u64().is_multiple_of(2), limits);
    let greeting = session.greeting(&env);
    assert!(parse_line(&greeting).is_some_and(|d| d.contains("QMP")));

    let mut counter = JsonStreamer::new(limits);
    let mut requests = Vec::new();
    let mut replies: Vec<Vec<u8>> = Vec::new();
    for c in chunks(data, &mut rng, 256) {
        counter.feed_with(c, |m| requests.push(m));
        session.feed(&env, c, &mut |_, line| replies.push(line));
    }
    if quit.load(Ordering::SeqCst) {
        assert!(replies.len() <= requests.len(), "one reply per message");
    } else {
        assert_eq!(requests.len(), replies.len(), "one reply per message");
    }

    for (req, line) in requests.iter().zip(&replies) {
        let Some(rsp) = parse_line(line) else {
            continue;
        };
        assert!(
            rsp.contains("return") != rsp.contains("error"),
            "reply {:?}",
            String::from_utf8_lossy(line)
        );
        if let Ok(Value::Dict(req)) = req {
            if let Some(id) = req.get("id") {
                let echoed = rsp.get("id").map(Value::to_json);
                assert_eq!(echoed, Some(id.to_json()), "id not echoed");
            }
        }
    }
    let events = std::mem::take(&mut *w.events.0.lock().unwrap());
    for e in &events {
        if let Some(d) = parse_line(e) {
            assert!(d.contains("event"));
        }
    }
    drop(env);
    restore(&w.sandbox);
});
