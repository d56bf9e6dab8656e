//! Running one input on both sides and collecting, step by step, what each
//! sent back (normalised). QMP, HMP and readline inputs go to two
//! long-lived processes started with the same command line ([`Live`]);
//! each input has fresh connections, and what it added is removed
//! afterwards (the processes are restarted when that cannot be done).
//! Command-line inputs start both programs anew ([`run_cli`]).
//!
//! After every step an observer connection records `query-chardev`,
//! `info chardev` and `query-status`, so differences of state show up as
//! well as differences of replies.

use std::time::Duration;

use serde_json::Value;

use crate::gen::{Class, Input};
use crate::norm::{
    chardev_list, contains, drop_extension_events, sort_unordered, sorted_lines, SideCtx,
};
use crate::target::{connect_unix, Conn, Patience, Proc, Programs, ReadEnd, Side};
use crate::HarnessError;

/// What one side sent back for each step, normalised.
pub type Transcript = Vec<Vec<u8>>;

/// Longest wait for a reply before a side counts as hung.
pub const REPLY_LIMIT: Duration = Duration::from_secs(10);

/// The shared part of every command line.
pub const BASE_ARGS: &[&str] = &["-nodefaults", "-display", "none", "-accel", "kvm", "-S"];

/// The long-lived processes' command line (`$D` substituted per side):
/// two QMP monitors (the input's and the observer's), a readline monitor,
/// a ringbuf `r0` and a null `n0`.
pub fn live_args() -> Vec<String> {
    let mut a: Vec<String> = BASE_ARGS.iter().map(|s| s.to_string()).collect();
    a.extend(["-machine".into(), "none".into()]);
    for (id, mode) in [("qin", "control"), ("qobs", "control"), ("hmp", "readline")] {
        a.push("-chardev".into());
        a.push(format!(
            "socket,id={id},path=$D/{id}.sock,server=on,wait=off"
        ));
        a.push("-mon".into());
        a.push(format!("chardev={id},mode={mode}"));
    }
    a.extend([
        "-chardev".into(),
        "ringbuf,id=r0,size=1024".into(),
        "-chardev".into(),
        "null,id=n0".into(),
    ]);
    a
}

/// Baseline chardev labels of [`live_args`].
pub const BASELINE: &[&str] = &["qin", "qobs", "hmp", "r0", "n0"];

/// One side's long-lived process.
struct LiveSide {
    side: Side,
    proc: Proc,
    obs: Conn,
    ctx: SideCtx,
    baseline_state: Vec<u8>,
    /// What its directory held once started (its monitors' sockets, its
    /// null device): anything else an input left there is removed.
    baseline_files: Vec<std::ffi::OsString>,
    sync: u64,
}

/// The two long-lived processes.
pub struct Live {
    progs: Programs,
    sides: Vec<LiveSide>,
    /// Restarts so far.
    pub restarts: u64,
}

fn side_ctx(progs: &Programs, side: Side) -> SideCtx {
    SideCtx {
        dir: progs.dir(side).to_string_lossy().into_owned(),
        ports: (0..4).map(|i| progs.port(side, i)).collect(),
        micro: None,
        package: None,
    }
}

/// Reads the greeting, learns the version, negotiates.
fn greet(conn: &mut Conn, ctx: &mut SideCtx) -> Result<(), HarnessError> {
    let (lines, end) = conn.lines_until(b"\"QMP\"", REPLY_LIMIT);
    if end != ReadEnd::Found {
        return Err(HarnessError::Protocol(format!("no greeting: {lines:?}")));
    }
    let v: Value = serde_json::from_slice(lines.last().map(Vec::as_slice).unwrap_or(b""))
        .map_err(|e| HarnessError::Protocol(format!("greeting: {e}")))?;
    ctx.micro = v["QMP"]["version"]["qemu"]["micro"].as_i64();
    ctx.package = v["QMP"]["version"]["package"].as_str().map(String::from);
    Ok(())
}

/// Sends `cmd` (with `"id": "__h-N"`) and returns its reply line, events
/// skipped.
fn obs_cmd(conn: &mut Conn, seq: &mut u64, cmd: &str) -> Result<Vec<u8>, HarnessError> {
    *seq += 1;
    let id = format!("__h-{seq}");
    let text = cmd.replacen('{', &format!("{{\"id\": \"{id}\", "), 1);
    if !conn.send(text.as_bytes()) || !conn.send(b"\n") {
        return Err(HarnessError::Protocol("observer: send failed".into()));
    }
    let (lines, end) = conn.lines_until(format!("\"id\": \"{id}\"").as_bytes(), REPLY_LIMIT);
    if end != ReadEnd::Found {
        return Err(HarnessError::Protocol(format!(
            "observer: no reply to {cmd} ({end:?})"
        )));
    }
    let l = lines.last().cloned().unwrap_or_default();
    Ok(strip_id(&l, &id))
}

/// A reply line without its `"id": "..."` member.
fn strip_id(line: &[u8], id: &str) -> Vec<u8> {
    let a = crate::norm::replace(line, format!(", \"id\": \"{id}\"").as_bytes(), b"");
    crate::norm::replace(&a, format!("\"id\": \"{id}\", ").as_bytes(), b"")
}

/// The observer's record: chardevs (sorted), `info chardev` (sorted),
/// run state.
fn observe(conn: &mut Conn, seq: &mut u64, ctx: &SideCtx) -> Result<Vec<u8>, HarnessError> {
    let q = obs_cmd(conn, seq, "{\"execute\": \"query-chardev\"}")?;
    let h = obs_cmd(
        conn,
        seq,
        "{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"info chardev\"}}",
    )?;
    let hv: Value = serde_json::from_slice(&h).unwrap_or(Value::Null);
    let htext = hv["return"].as_str().unwrap_or("?").as_bytes().to_vec();
    let s = obs_cmd(conn, seq, "{\"execute\": \"query-status\"}")?;
    let mut out = b"state: ".to_vec();
    out.extend_from_slice(&ctx.normalize(&chardev_list(&q)));
    out.extend_from_slice(b"\ninfo chardev: ");
    out.extend_from_slice(&ctx.normalize(&sorted_lines(&htext)));
    out.extend_from_slice(b"\nstatus: ");
    out.extend_from_slice(&s);
    Ok(out)
}

impl LiveSide {
    fn start(progs: &Programs, side: Side) -> Result<LiveSide, HarnessError> {
        progs.reset_dir(side)?;
        let mut ctx = side_ctx(progs, side);
        let args: Vec<String> = live_args()
            .iter()
            .map(|a| String::from_utf8_lossy(&ctx.subst(a.as_bytes())).into_owned())
            .collect();
        let dir = progs.dir(side);
        let mut proc = Proc::start(&progs.program(side), &args, &dir)?;
        let stream = {
            let p = &mut proc;
            let pid = p.pid();
            connect_unix(&dir.join("qobs.sock"), REPLY_LIMIT, Some(pid), || {
                p.try_status().is_none()
            })
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                return Err(HarnessError::Protocol(format!(
                    "{} did not start: {e}; stderr: {}",
                    side.name(),
                    String::from_utf8_lossy(&proc.stderr())
                )))
            }
        };
        // Which side failed to answer, in the harness's error.
        let named = |e: HarnessError| HarnessError::Protocol(format!("{}: {e}", side.name()));
        let mut obs = Conn::with_peer(stream, proc.pid());
        greet(&mut obs, &mut ctx).map_err(named)?;
        let mut seq = 0;
        let r =
            obs_cmd(&mut obs, &mut seq, "{\"execute\": \"qmp_capabilities\"}").map_err(named)?;
        if !contains(&r, b"\"return\"") {
            return Err(HarnessError::Protocol(format!(
                "observer negotiation: {r:?}"
            )));
        }
        let mut s = LiveSide {
            side,
            proc,
            obs,
            ctx,
            baseline_state: Vec::new(),
            baseline_files: Vec::new(),
            sync: seq,
        };
        s.baseline_state = observe(&mut s.obs, &mut s.sync, &s.ctx).map_err(named)?;
        s.baseline_files = dir_entries(&s.ctx.dir);
        Ok(s)
    }

    /// Runs a QMP-class input: a fresh connection to `qin`, each step
    /// followed by a sync command, the observer after each step.
    fn run_qmp(&mut self, input: &Input) -> Result<Transcript, HarnessError> {
        let dir = self.ctx.dir.clone();
        let stream = connect_unix(
            std::path::Path::new(&format!("{dir}/qin.sock")),
            REPLY_LIMIT,
            Some(self.proc.pid()),
            || true,
        )?;
        let mut conn = Conn::with_peer(stream, self.proc.pid());
        let (greeting, end) = conn.lines_until(b"\"QMP\"", REPLY_LIMIT);
        if end != ReadEnd::Found {
            return Err(HarnessError::Protocol(
                "input connection: no greeting".into(),
            ));
        }
        let mut out = Vec::new();
        let mut closed = false;
        for (i, step) in input.steps.iter().enumerate() {
            let mut t = Vec::new();
            if i == 0 {
                t.extend_from_slice(b"greeting: ");
                t.extend_from_slice(&self.ctx.normalize(&greeting.concat()));
            }
            if closed {
                t.extend_from_slice(b"<closed>\n");
            } else {
                let msg = self.ctx.subst(step);
                let complete = serde_json::from_slice::<Value>(&msg).is_ok();
                conn.send(&msg);
                // A step that is not one whole JSON value may leave the
                // parser inside a token: 0xff resets it (one error reply).
                if !complete {
                    conn.send(b"\xff");
                }
                let marker = format!("__sync-{i}");
                conn.send(
                    format!("{{\"execute\": \"x-difffuzz-sync\", \"id\": \"{marker}\"}}\n")
                        .as_bytes(),
                );
                let (lines, end) = conn.lines_until(marker.as_bytes(), REPLY_LIMIT);
                for l in drop_extension_events(lines) {
                    t.extend_from_slice(&sort_unordered(&self.ctx.normalize(&l)));
                }
                match end {
                    ReadEnd::Found => {}
                    ReadEnd::Closed => {
                        t.extend_from_slice(b"<closed>\n");
                        closed = true;
                    }
                    ReadEnd::Quiet => {
                        t.extend_from_slice(b"<no reply>\n");
                        closed = true;
                    }
                }
            }
            t.extend_from_slice(&self.observe_or_note());
            out.push(t);
        }
        Ok(out)
    }

    /// Runs a readline input: a fresh connection to `hmp`, the banner,
    /// then each burst of keys and all that comes back until it is quiet.
    fn run_readline(&mut self, input: &Input, idle: Duration) -> Result<Transcript, HarnessError> {
        let dir = self.ctx.dir.clone();
        let stream = connect_unix(
            std::path::Path::new(&format!("{dir}/hmp.sock")),
            REPLY_LIMIT,
            Some(self.proc.pid()),
            || true,
        )?;
        let mut conn = Conn::with_peer(stream, self.proc.pid());
        let (banner, _) = conn.bytes_until_idle(REPLY_LIMIT, idle, REPLY_LIMIT);
        let mut out = Vec::new();
        let mut closed = false;
        for (i, step) in input.steps.iter().enumerate() {
            let mut t = Vec::new();
            if i == 0 {
                t.extend_from_slice(b"banner: ");
                t.extend_from_slice(&self.ctx.normalize(&banner));
                t.push(b'\n');
            }
            if closed {
                t.extend_from_slice(b"<closed>\n");
            } else {
                conn.send(&self.ctx.subst(step));
                let (bytes, end) = conn.bytes_until_idle(idle * 3, idle, REPLY_LIMIT);
                t.extend_from_slice(b"echo: ");
                t.extend_from_slice(&sort_unordered(&self.ctx.normalize(&bytes)));
                t.push(b'\n');
                if end == ReadEnd::Closed {
                    t.extend_from_slice(b"<closed>\n");
                    closed = true;
                }
            }
            t.extend_from_slice(&self.observe_or_note());
            out.push(t);
        }
        Ok(out)
    }

    fn observe_or_note(&mut self) -> Vec<u8> {
        match observe(&mut self.obs, &mut self.sync, &self.ctx) {
            Ok(s) => s,
            // A process that is going (quit) may not have ended yet.
            Err(_) => match self.proc.wait_for(Duration::from_secs(2)) {
                Some(_) => b"state: <process ended>".to_vec(),
                None => b"state: <observer lost>".to_vec(),
            },
        }
    }

    /// Deletes the objects an input added (QEMU creates types qchar
    /// refuses), then deletes an id no input uses: QEMU makes its
    /// `/objects` container on any `object-del` and keeps it, so both
    /// sides have it from here on whatever the input did.
    fn clean_objects(&mut self) -> bool {
        let Ok(l) = obs_cmd(
            &mut self.obs,
            &mut self.sync,
            "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/objects\"}}",
        ) else {
            return false;
        };
        let v: Value = serde_json::from_slice(&l).unwrap_or(Value::Null);
        let ids: Vec<String> = v["return"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("child<")))
                    .filter_map(|e| e["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for id in ids.iter().map(String::as_str).chain(["difffuzz-none"]) {
            let cmd = serde_json::json!({"execute": "object-del", "arguments": {"id": id}});
            let Ok(r) = obs_cmd(&mut self.obs, &mut self.sync, &cmd.to_string()) else {
                return false;
            };
            // An object QEMU will not delete (in use) needs a restart.
            if id != "difffuzz-none" && !r.starts_with(b"{\"return\"") {
                return false;
            }
        }
        true
    }

    /// Removes what an input added and drains `r0`; `false` if the side
    /// must be restarted (ended, left prelaunch, baseline changed).
    fn clean(&mut self) -> bool {
        if self.proc.try_status().is_some() {
            return false;
        }
        for _ in 0..4 {
            let Ok(q) = obs_cmd(
                &mut self.obs,
                &mut self.sync,
                "{\"execute\": \"query-chardev\"}",
            ) else {
                return false;
            };
            let v: Value = serde_json::from_slice(&q).unwrap_or(Value::Null);
            let extra: Vec<String> = v["return"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e["label"].as_str())
                        .filter(|l| !BASELINE.contains(l))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            if extra.is_empty() {
                break;
            }
            for l in extra {
                let cmd = serde_json::json!({"execute": "chardev-remove", "arguments": {"id": l}});
                if obs_cmd(&mut self.obs, &mut self.sync, &cmd.to_string()).is_err() {
                    return false;
                }
            }
        }
        if !self.clean_objects() {
            return false;
        }
        // Files an input made (a log, a file chardev's output): the two
        // sides may differ there on purpose (an intended difference, such
        // as a log QEMU creates before refusing), and the next input must
        // not find them.
        for name in dir_entries(&self.ctx.dir) {
            if !self.baseline_files.contains(&name) {
                let p = std::path::Path::new(&self.ctx.dir).join(&name);
                let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
            }
        }
        let drain =
            "{\"execute\": \"ringbuf-read\", \"arguments\": {\"device\": \"r0\", \"size\": 65536}}";
        if obs_cmd(&mut self.obs, &mut self.sync, drain).is_err() {
            return false;
        }
        // A connection the input closed may take the program a moment to
        // notice (its chardev's filename says so).
        let start = std::time::Instant::now();
        loop {
            match observe(&mut self.obs, &mut self.sync, &self.ctx) {
                Ok(s) if s == self.baseline_state => return true,
                Ok(_) if start.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => {
                    if std::env::var_os("DIFFFUZZ_DEBUG").is_some() {
                        eprintln!(
                            "difffuzz: {} not back to its baseline: {:?}",
                            self.side.name(),
                            other.map(|s| String::from_utf8_lossy(&s).into_owned())
                        );
                    }
                    return false;
                }
            }
        }
    }
}

/// The names in directory `dir` (none if it cannot be read).
fn dir_entries(dir: &str) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default()
}

impl Live {
    /// Starts both sides.
    pub fn start(progs: &Programs) -> Result<Live, HarnessError> {
        let mut sides = Vec::new();
        for s in Side::BOTH {
            sides.push(LiveSide::start(progs, s)?);
        }
        Ok(Live {
            progs: progs.clone(),
            sides,
            restarts: 0,
        })
    }

    /// Starts one side only (a replay against recorded bytes).
    pub fn start_one(progs: &Programs, side: Side) -> Result<Live, HarnessError> {
        Ok(Live {
            progs: progs.clone(),
            sides: vec![LiveSide::start(progs, side)?],
            restarts: 0,
        })
    }

    /// Runs `input` on the one side of a [`Live::start_one`].
    pub fn run_one(&mut self, input: &Input, idle: Duration) -> Result<Transcript, HarnessError> {
        let s = self
            .sides
            .first_mut()
            .ok_or_else(|| HarnessError::Protocol("no side".into()))?;
        match input.class {
            Class::Readline => s.run_readline(input, idle),
            _ => s.run_qmp(input),
        }
    }

    /// Kills and starts both sides again.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        for s in &mut self.sides {
            s.proc.kill();
        }
        self.sides.clear();
        for s in Side::BOTH {
            let mut tries = 0;
            let side = loop {
                match LiveSide::start(&self.progs, s) {
                    Ok(side) => break side,
                    Err(e) if tries >= 3 => return Err(e),
                    Err(_) => tries += 1,
                }
            };
            self.sides.push(side);
        }
        self.restarts += 1;
        Ok(())
    }

    /// The sides' version facts (for reproducer files).
    pub fn ctx(&self, side: Side) -> &SideCtx {
        &self.sides[side.idx()].ctx
    }

    /// Runs `input` on both sides at once; then cleans up (restarting both
    /// when a side cannot be put back). `idle` is the readline quiet time.
    pub fn run(&mut self, input: &Input, idle: Duration) -> Result<[Transcript; 2], HarnessError> {
        let results: Vec<Result<Transcript, HarnessError>> = std::thread::scope(|sc| {
            let hs: Vec<_> = self
                .sides
                .iter_mut()
                .map(|s| {
                    sc.spawn(move || match input.class {
                        Class::Readline => s.run_readline(input, idle),
                        _ => s.run_qmp(input),
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(HarnessError::Protocol("panic".into())))
                })
                .collect()
        });
        let clean: Vec<bool> = std::thread::scope(|sc| {
            let hs: Vec<_> = self
                .sides
                .iter_mut()
                .map(|s| sc.spawn(move || s.clean()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(false)).collect()
        });
        let mut it = results.into_iter();
        let q = it
            .next()
            .unwrap_or_else(|| Err(HarnessError::Protocol("no side".into())));
        let c = it
            .next()
            .unwrap_or_else(|| Err(HarnessError::Protocol("no side".into())));
        if std::env::var_os("DIFFFUZZ_DEBUG").is_some()
            && (clean.iter().any(|ok| !ok) || q.is_err() || c.is_err())
        {
            eprintln!(
                "difffuzz: restart: clean {clean:?} qemu {:?} qchar {:?}",
                q.as_ref().err(),
                c.as_ref().err()
            );
        }
        if clean.iter().any(|ok| !ok) || q.is_err() || c.is_err() {
            self.restart()?;
        }
        Ok([q?, c?])
    }
}

/// The command line of a command-line input (`$D`, `$PORTi` not yet
/// substituted): the options, then the harness's own QMP socket.
pub fn cli_args(input: &Input, machine: &str) -> Vec<String> {
    let mut a: Vec<String> = BASE_ARGS.iter().map(|s| s.to_string()).collect();
    a.extend(["-machine".into(), machine.into()]);
    for s in &input.steps {
        let mut parts = s.splitn(2, |&b| b == 0);
        let opt = parts.next().unwrap_or(b"");
        let val = parts.next().unwrap_or(b"");
        a.push(String::from_utf8_lossy(opt).into_owned());
        a.push(String::from_utf8_lossy(val).into_owned());
    }
    a.push("-qmp".into());
    a.push("unix:$D/harness.sock,server=on,wait=off".into());
    a
}

/// Runs a command-line input on one side: the exit status and stderr if
/// it ends by itself, else its state through the harness's QMP socket,
/// then `quit` and the exit status and stderr. Servers that wait for a
/// client (`wait=on`) get one.
fn run_cli_side(
    progs: &Programs,
    side: Side,
    input: &Input,
    machine: &str,
) -> Result<Vec<u8>, HarnessError> {
    progs.reset_cli_dir(side)?;
    let mut ctx = side_ctx(progs, side);
    ctx.dir = progs.cli_dir(side).to_string_lossy().into_owned();
    let args: Vec<String> = cli_args(input, machine)
        .iter()
        .map(|a| String::from_utf8_lossy(&ctx.subst(a.as_bytes())).into_owned())
        .collect();
    let dir = progs.cli_dir(side);
    let mut proc = Proc::start(&progs.program(side), &args, &dir)?;
    let sock = dir.join("harness.sock");
    let mut patience = Patience::new(Some(proc.pid()), REPLY_LIMIT);
    let mut clients = Vec::new();
    let mut served = 0usize;
    let mut out = Vec::new();
    let conn = loop {
        if let Some(st) = proc.try_status() {
            out.extend_from_slice(format!("exit {:?}\n", st.code()).as_bytes());
            break None;
        }
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&sock) {
            break Some(s);
        }
        // A server waiting for its client: connect one, as a user would.
        let err = proc.stderr();
        let text = String::from_utf8_lossy(&err).into_owned();
        let waits: Vec<&str> = text
            .match_indices("waiting for connection on: disconnected:")
            .map(|(i, _)| &text[i..])
            .collect();
        if waits.len() > served {
            let w = waits[served];
            let addr = w["waiting for connection on: disconnected:".len()..]
                .lines()
                .next()
                .unwrap_or("");
            clients.push(connect_waiting(addr));
            served += 1;
        }
        if patience.give_up() {
            out.extend_from_slice(b"no monitor (hang)\n");
            proc.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    if let Some(stream) = conn {
        let mut c = Conn::with_peer(stream, proc.pid());
        let state = (|| -> Result<Vec<u8>, HarnessError> {
            greet(&mut c, &mut ctx)?;
            let mut seq = 0;
            obs_cmd(&mut c, &mut seq, "{\"execute\": \"qmp_capabilities\"}")?;
            observe(&mut c, &mut seq, &ctx)
        })();
        match state {
            Ok(st) => {
                out.extend_from_slice(&st);
                out.push(b'\n');
                c.send(b"{\"execute\": \"quit\"}\n");
                let _ = c.lines_until(b"\"return\"", REPLY_LIMIT);
                match proc.wait_for(REPLY_LIMIT) {
                    Some(st) => out
                        .extend_from_slice(format!("exit {:?} after quit\n", st.code()).as_bytes()),
                    None => {
                        out.extend_from_slice(b"did not exit after quit\n");
                        proc.kill();
                    }
                }
            }
            // It ended while the monitor was being set up (an error in a
            // later step of its start): only the exit counts.
            Err(e) => match proc.wait_for(REPLY_LIMIT) {
                Some(st) => out.extend_from_slice(format!("exit {:?}\n", st.code()).as_bytes()),
                None => return Err(e),
            },
        }
    }
    drop(clients);
    out.extend_from_slice(b"stderr:\n");
    let err: Vec<u8> = proc
        .stderr()
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !contains(l, b"host doesn't support requested feature"))
        .flatten()
        .copied()
        .collect();
    out.extend_from_slice(&ctx.normalize(&err));
    Ok(out)
}

/// A client for a server that waits (`unix:PATH,server=on`,
/// `tcp:HOST:PORT,server=on`, `telnet:`, `websocket:`).
fn connect_waiting(addr: &str) -> Option<Box<dyn std::any::Any>> {
    let a = addr.split(",server").next().unwrap_or("");
    if let Some(p) = a.strip_prefix("unix:") {
        return std::os::unix::net::UnixStream::connect(p)
            .ok()
            .map(|s| Box::new(s) as _);
    }
    for pre in ["tcp:", "telnet:", "websocket:", "tn3270:"] {
        if let Some(hp) = a.strip_prefix(pre) {
            let (h, p) = hp.rsplit_once(':')?;
            let h = h.trim_start_matches('[').trim_end_matches(']');
            let h = if h.is_empty() || h == "0.0.0.0" {
                "127.0.0.1"
            } else {
                h
            };
            let port: u16 = p.parse().ok()?;
            return std::net::TcpStream::connect((h, port))
                .ok()
                .map(|s| Box::new(s) as _);
        }
    }
    None
}

/// Runs a command-line input on one side.
pub fn run_cli_one(
    progs: &Programs,
    side: Side,
    input: &Input,
    machine: &str,
) -> Result<Transcript, HarnessError> {
    Ok(vec![run_cli_side(progs, side, input, machine)?])
}

/// Runs a command-line input on both sides at once (`machine`: `none` or
/// `pc`). One step: the whole command line.
pub fn run_cli(
    progs: &Programs,
    input: &Input,
    machine: &str,
) -> Result<[Transcript; 2], HarnessError> {
    let r: Vec<Result<Vec<u8>, HarnessError>> = std::thread::scope(|sc| {
        let hs: Vec<_> = Side::BOTH
            .iter()
            .map(|&s| sc.spawn(move || run_cli_side(progs, s, input, machine)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(HarnessError::Protocol("panic".into())))
            })
            .collect()
    });
    let mut it = r.into_iter();
    let q = it
        .next()
        .unwrap_or_else(|| Err(HarnessError::Protocol("no side".into())))?;
    let c = it
        .next()
        .unwrap_or_else(|| Err(HarnessError::Protocol("no side".into())))?;
    Ok([vec![q], vec![c]])
}
