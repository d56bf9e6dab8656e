//! Descriptor passing as libvirt and LXD use it, against QEMU 7.2: QMP and
//! HMP `getfd`/`closefd` with descriptors sent over the monitor socket
//! (SCM_RIGHTS), `add-fd`/`remove-fd`/`query-fdsets`, socket chardevs on a
//! passed descriptor (`fd=N` on the command line, `{"type": "fd"}` over
//! QMP), monitors on a passed socket, and the libvirt command line. Each
//! conversation runs against qchar and, where installed, QEMU with the same
//! descriptors; the replies must be the same bytes once descriptor numbers,
//! the test directory and the version are masked. What qchar holds is
//! checked in `/proc/PID/fd`: received descriptors that are not used are
//! closed, none leaks.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use common::{argv, normalise, p, tempdir, Proc, RawQmp};
use qchar_testkit::{fd_target, proc_fds, require, wait_until, Prereq, WAIT};
use serde_json::json;

const QEMU: &str = "qemu-system-x86_64";

/// A pipe: read and write ends.
fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe().unwrap()
}

/// How many of process `pid`'s descriptors are the open file `fd` is.
fn held(pid: u32, fd: BorrowedFd<'_>) -> usize {
    let t = fd_target(fd);
    proc_fds(pid).iter().filter(|(_, x)| *x == t).count()
}

/// One side of a comparison: `program` started on `line` (`$D` its
/// directory) with `fds` passed, its replies collected masked.
struct Side {
    dir: tempfile::TempDir,
    proc: Proc,
    out: Vec<String>,
}

impl Side {
    fn start(program: &str, line: &str, fds: &[(BorrowedFd<'_>, RawFd)]) -> Side {
        let dir = tempdir();
        let proc = Proc::spawn_with_fds(program, &argv(line, dir.path()), dir.path(), fds);
        Side {
            dir,
            proc,
            out: Vec::new(),
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Sends `cmd` on `q` with `fds` and records the masked reply.
    fn ask(&mut self, q: &mut RawQmp, cmd: serde_json::Value, fds: &[BorrowedFd<'_>]) -> String {
        let r = q.exec(&cmd, fds);
        self.out.push(normalise(&r, self.dir.path()));
        r
    }

    /// Records a fact about the process (masked like a reply).
    fn note(&mut self, what: impl Into<String>) {
        self.out.push(what.into());
    }

    fn finish(mut self, q: &mut RawQmp) -> Vec<String> {
        q.exec(&json!({"execute": "quit"}), &[]);
        assert!(self.proc.wait().success(), "{}", self.proc.stderr());
        self.out
    }
}

fn cmd(name: &str, args: serde_json::Value) -> serde_json::Value {
    if args.is_null() {
        json!({ "execute": name })
    } else {
        json!({ "execute": name, "arguments": args })
    }
}

/// Compares qchar's conversation with QEMU's, reply by reply.
fn same_as_qemu(ours: &[String], conversation: impl Fn(&str) -> Vec<String>) {
    if !require(Prereq::Qemu) {
        return;
    }
    let theirs = conversation(QEMU);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "step {i}");
    }
    assert_eq!(ours.len(), theirs.len());
}

/// QEMU's §2 conversation: names, replacements, errors, descriptors that
/// wait for a later `getfd`, per-monitor lists, `human-monitor-command`.
fn getfd_conversation(program: &str) -> Vec<String> {
    let mut s = Side::start(
        program,
        "-nodefaults -display none -machine none -S \
         -qmp unix:$D/a,server=on,wait=off -qmp unix:$D/b,server=on,wait=off",
        &[],
    );
    let pid = s.pid();
    // Before negotiation: refused, but the descriptor waits.
    let mut a = RawQmp::connect_raw(&p(s.d(), "a"));
    let (r0, _w0) = pipe();
    s.ask(&mut a, cmd("query-status", json!(null)), &[r0.as_fd()]);
    s.ask(&mut a, cmd("qmp_capabilities", json!(null)), &[]);
    s.ask(&mut a, cmd("getfd", json!({"fdname": "early"})), &[]);
    s.note(format!("early held {}", held(pid, r0.as_fd())));
    s.ask(&mut a, cmd("closefd", json!({"fdname": "early"})), &[]);
    s.note(format!(
        "early held after closefd {}",
        held(pid, r0.as_fd())
    ));

    let (p1, _w1) = pipe();
    let (p2, _w2) = pipe();
    s.ask(&mut a, cmd("getfd", json!({"fdname": "a"})), &[p1.as_fd()]);
    s.note(format!("p1 held {}", held(pid, p1.as_fd())));
    s.ask(&mut a, cmd("getfd", json!({"fdname": "a"})), &[p2.as_fd()]);
    s.note(format!(
        "replaced: p1 {} p2 {}",
        held(pid, p1.as_fd()),
        held(pid, p2.as_fd())
    ));
    s.ask(&mut a, cmd("getfd", json!({"fdname": "b"})), &[]);
    let (p3, _w3) = pipe();
    s.ask(
        &mut a,
        cmd("getfd", json!({"fdname": "1abc"})),
        &[p3.as_fd()],
    );
    s.note(format!("digit name: p3 {}", held(pid, p3.as_fd())));
    let (p4, _w4) = pipe();
    s.ask(&mut a, cmd("getfd", json!({"fdname": ""})), &[p4.as_fd()]);
    s.ask(&mut a, cmd("closefd", json!({"fdname": ""})), &[]);
    s.ask(&mut a, cmd("closefd", json!({"fdname": "a"})), &[]);
    s.note(format!("closed: p2 {}", held(pid, p2.as_fd())));
    s.ask(&mut a, cmd("closefd", json!({"fdname": "a"})), &[]);
    s.ask(&mut a, cmd("closefd", json!({"fdname": "zzz"})), &[]);
    // Several in one message: the first is kept.
    let many: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| pipe()).collect();
    let fds: Vec<BorrowedFd<'_>> = many.iter().map(|(r, _)| r.as_fd()).collect();
    s.ask(&mut a, cmd("getfd", json!({"fdname": "multi"})), &fds);
    let kept: Vec<usize> = many.iter().map(|(r, _)| held(pid, r.as_fd())).collect();
    s.note(format!("three sent, held {kept:?}"));
    s.ask(&mut a, cmd("closefd", json!({"fdname": "multi"})), &[]);
    // A descriptor sent with a command that does not use it waits.
    let (p5, _w5) = pipe();
    s.ask(&mut a, cmd("query-status", json!(null)), &[p5.as_fd()]);
    s.note(format!("pending p5 {}", held(pid, p5.as_fd())));
    s.ask(&mut a, cmd("getfd", json!({"fdname": "late"})), &[]);
    s.ask(&mut a, cmd("closefd", json!({"fdname": "late"})), &[]);
    s.note(format!("p5 after closefd {}", held(pid, p5.as_fd())));
    let (p6, _w6) = pipe();
    let (p7, _w7) = pipe();
    s.ask(&mut a, cmd("query-status", json!(null)), &[p6.as_fd()]);
    s.ask(&mut a, cmd("query-status", json!(null)), &[p7.as_fd()]);
    s.note(format!(
        "newer replaces: p6 {} p7 {}",
        held(pid, p6.as_fd()),
        held(pid, p7.as_fd())
    ));
    s.ask(&mut a, cmd("getfd", json!({"fdname": "x7"})), &[]);
    s.ask(&mut a, cmd("closefd", json!({"fdname": "x7"})), &[]);
    // Names outlive the client; they are the monitor's own.
    let (p8, _w8) = pipe();
    s.ask(
        &mut a,
        cmd("getfd", json!({"fdname": "keep"})),
        &[p8.as_fd()],
    );
    drop(a);
    let mut a = RawQmp::connect(&p(s.d(), "a"));
    s.ask(&mut a, cmd("closefd", json!({"fdname": "keep"})), &[]);
    let mut b = RawQmp::connect(&p(s.d(), "b"));
    s.ask(
        &mut b,
        cmd("getfd", json!({"fdname": "other"})),
        &[p8.as_fd()],
    );
    s.ask(&mut a, cmd("closefd", json!({"fdname": "other"})), &[]);
    s.ask(&mut b, cmd("closefd", json!({"fdname": "other"})), &[]);
    // human-monitor-command runs on a monitor of its own.
    let (p9, _w9) = pipe();
    let hmc = |line: &str| cmd("human-monitor-command", json!({ "command-line": line }));
    s.ask(&mut a, hmc("getfd hx"), &[p9.as_fd()]);
    s.ask(&mut a, hmc("closefd hx"), &[]);
    s.note(format!("p9 waits {}", held(pid, p9.as_fd())));
    s.ask(&mut a, cmd("getfd", json!({"fdname": "h9"})), &[]);
    s.ask(&mut a, cmd("closefd", json!({"fdname": "h9"})), &[]);
    s.ask(&mut a, cmd("getfd", json!({})), &[]);
    s.ask(&mut a, cmd("getfd", json!({"fdname": 5})), &[]);
    s.ask(&mut a, cmd("closefd", json!({})), &[]);
    // Receipt turns the shared description blocking, as QEMU's does.
    let (r10, w10) = pipe();
    rustix::fs::fcntl_setfl(&r10, rustix::fs::OFlags::NONBLOCK).unwrap();
    s.ask(
        &mut a,
        cmd("getfd", json!({"fdname": "nb"})),
        &[r10.as_fd()],
    );
    let fl = rustix::fs::fcntl_getfl(&r10).unwrap();
    s.note(format!(
        "sender's O_NONBLOCK after getfd: {}",
        fl.contains(rustix::fs::OFlags::NONBLOCK)
    ));
    s.ask(&mut a, cmd("closefd", json!({"fdname": "nb"})), &[]);
    drop(w10);
    // Twenty in one message: one arrives and is kept.
    let twenty: Vec<(OwnedFd, OwnedFd)> = (0..20).map(|_| pipe()).collect();
    let fds: Vec<BorrowedFd<'_>> = twenty.iter().map(|(r, _)| r.as_fd()).collect();
    s.ask(&mut a, cmd("getfd", json!({"fdname": "many"})), &fds);
    let kept: usize = twenty.iter().map(|(r, _)| held(pid, r.as_fd())).sum();
    s.note(format!("twenty sent, {kept} held"));
    s.ask(&mut a, cmd("closefd", json!({"fdname": "many"})), &[]);
    s.finish(&mut a)
}

#[test]
fn getfd_and_closefd_as_qemu() {
    let ours = getfd_conversation(common::qchar_bin());
    let ok = "{\"return\": {}}\r\n";
    let err =
        |d: &str| format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{d}\"}}}}\r\n");
    let no_fd = err("No file descriptor supplied via SCM_RIGHTS");
    let want: Vec<String> = vec![
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n".into(),
        ok.into(),
        ok.into(),
        "early held 1".into(),
        ok.into(),
        "early held after closefd 0".into(),
        ok.into(),
        "p1 held 1".into(),
        ok.into(),
        "replaced: p1 0 p2 1".into(),
        no_fd.clone(),
        err("Parameter 'fdname' expects a name not starting with a digit"),
        "digit name: p3 0".into(),
        ok.into(),
        ok.into(),
        ok.into(),
        "closed: p2 0".into(),
        err("File descriptor named 'a' not found"),
        err("File descriptor named 'zzz' not found"),
        ok.into(),
        "three sent, held [1, 0, 0]".into(),
        ok.into(),
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n".into(),
        "pending p5 1".into(),
        ok.into(),
        ok.into(),
        "p5 after closefd 0".into(),
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n".into(),
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n".into(),
        "newer replaces: p6 0 p7 1".into(),
        ok.into(),
        ok.into(),
        ok.into(),
        ok.into(),
        ok.into(),
        err("File descriptor named 'other' not found"),
        ok.into(),
        "{\"return\": \"Error: No file descriptor supplied via SCM_RIGHTS\\r\\n\"}\r\n".into(),
        "{\"return\": \"Error: File descriptor named 'hx' not found\\r\\n\"}\r\n".into(),
        "p9 waits 1".into(),
        ok.into(),
        ok.into(),
        err("Parameter 'fdname' is missing"),
        err("Invalid parameter type for 'fdname', expected: string"),
        err("Parameter 'fdname' is missing"),
        ok.into(),
        "sender's O_NONBLOCK after getfd: false".into(),
        ok.into(),
        ok.into(),
        "twenty sent, 1 held".into(),
        ok.into(),
    ];
    assert_eq!(ours, want);
    same_as_qemu(&ours, getfd_conversation);
}

/// QEMU's §4 conversation: `add-fd` ids and members, `query-fdsets`'
/// order, `remove-fd`, and what a reconnect of the only client frees,
/// running (`prelaunch` false) or in prelaunch.
fn fdsets_conversation(program: &str, prelaunch: bool) -> Vec<String> {
    let base = if prelaunch {
        "-nodefaults -display none -machine none -S"
    } else {
        common::RUNNING_BASE
    };
    let mut s = Side::start(
        program,
        &format!("{base} -qmp unix:$D/a,server=on,wait=off"),
        &[],
    );
    let pid = s.pid();
    let mut q = RawQmp::connect(&p(s.d(), "a"));
    if !prelaunch {
        common::wait_running(&mut q);
    }
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..8).map(|_| pipe()).collect();
    let r = |i: usize| pipes[i].0.as_fd();
    let add = |args: serde_json::Value| cmd("add-fd", args);
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    s.ask(&mut q, add(json!({})), &[r(0)]);
    s.ask(&mut q, add(json!({})), &[r(1)]);
    s.ask(
        &mut q,
        add(json!({"fdset-id": 5, "opaque": "five-a"})),
        &[r(2)],
    );
    s.ask(
        &mut q,
        add(json!({"fdset-id": 5, "opaque": "five-b"})),
        &[r(3)],
    );
    s.ask(&mut q, add(json!({"fdset-id": 3, "opaque": ""})), &[r(4)]);
    s.ask(&mut q, add(json!({})), &[r(5)]);
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    s.ask(&mut q, add(json!({"fdset-id": -1})), &[r(6)]);
    s.note(format!("negative id: {}", held(pid, r(6))));
    s.ask(&mut q, add(json!({"fdset-id": 7})), &[]);
    s.ask(&mut q, add(json!({"fdset-id": "x"})), &[r(6)]);
    s.note(format!("type error, waits: {}", held(pid, r(6))));
    s.ask(&mut q, add(json!({"fdset-id": i64::MAX})), &[r(6)]);
    s.ask(&mut q, add(json!({})), &[r(7)]);
    for args in [
        json!({"fdset-id": 99}),
        json!({"fdset-id": 5, "fd": 999}),
        json!({"fdset-id": 99, "fd": 999}),
        json!({"fdset-id": -1}),
    ] {
        s.ask(&mut q, cmd("remove-fd", args), &[]);
    }
    let sets = q.exec(&cmd("query-fdsets", json!(null)), &[]);
    let v: serde_json::Value = serde_json::from_str(&sets).unwrap();
    let five = v["return"]
        .as_array()
        .unwrap()
        .iter()
        .find(|set| set["fdset-id"] == 5)
        .unwrap();
    let five_b = five["fds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["opaque"] == "five-b")
        .unwrap()["fd"]
        .as_i64()
        .unwrap();
    s.ask(
        &mut q,
        cmd("remove-fd", json!({"fdset-id": 5, "fd": five_b})),
        &[],
    );
    s.note(format!("five-b held: {}", held(pid, r(3))));
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    s.ask(
        &mut q,
        cmd("remove-fd", json!({"fdset-id": 5, "fd": five_b})),
        &[],
    );
    s.ask(&mut q, cmd("remove-fd", json!({"fdset-id": 0})), &[]);
    s.note(format!("set 0's member held: {}", held(pid, r(0))));
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    s.ask(&mut q, cmd("remove-fd", json!({"fdset-id": 0})), &[]);
    s.ask(&mut q, add(json!({})), &[r(0)]);
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    // The only client leaves and comes back.
    drop(q);
    let mut q = RawQmp::connect(&p(s.d(), "a"));
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    let held_all: Vec<usize> = (0..8).map(|i| held(pid, r(i))).collect();
    s.note(format!("after the reconnect, held {held_all:?}"));
    s.finish(&mut q)
}

#[test]
fn fdsets_over_qmp_as_qemu_while_running() {
    let ours = fdsets_conversation(common::qchar_bin(), false);
    // Spot checks without QEMU: QEMU's order of sets and members, and
    // everything freed by the reconnect.
    assert_eq!(ours[1], "{\"return\": {\"fd\": N, \"fdset-id\": 0}}\r\n");
    assert_eq!(ours[6], "{\"return\": {\"fd\": N, \"fdset-id\": 2}}\r\n");
    assert_eq!(
        ours[7],
        "{\"return\": [{\"fds\": [{\"fd\": N, \"opaque\": \"five-a\"}, {\"fd\": N, \"opaque\": \"five-b\"}], \"fdset-id\": 5}, {\"fds\": [{\"fd\": N, \"opaque\": \"\"}], \"fdset-id\": 3}, {\"fds\": [{\"fd\": N}], \"fdset-id\": 2}, {\"fds\": [{\"fd\": N}], \"fdset-id\": 1}, {\"fds\": [{\"fd\": N}], \"fdset-id\": 0}]}\r\n"
    );
    let n = ours.len();
    assert_eq!(ours[n - 2], "{\"return\": []}\r\n");
    assert_eq!(
        ours[n - 1],
        "after the reconnect, held [0, 0, 0, 0, 0, 0, 0, 0]"
    );
    same_as_qemu(&ours, |prog| fdsets_conversation(prog, false));
}

#[test]
fn fdsets_over_qmp_as_qemu_in_prelaunch() {
    let ours = fdsets_conversation(common::qchar_bin(), true);
    // In prelaunch nothing is closed, not even at a reconnect.
    let n = ours.len();
    assert_eq!(
        ours[n - 1],
        "after the reconnect, held [2, 1, 1, 1, 1, 1, 1, 1]"
    );
    same_as_qemu(&ours, |prog| fdsets_conversation(prog, true));
}

/// `query-chardev`'s entries sorted by label (QEMU lists them in hash
/// order), masked.
fn chardevs(reply: &str, dir: &Path) -> String {
    let v: serde_json::Value = serde_json::from_str(reply).unwrap();
    let mut list: Vec<String> = v["return"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|c| normalise(&c.to_string(), dir))
        .collect();
    list.sort();
    list.join("\n")
}

/// A unix socket bound to `path`, listening.
fn listening(path: &Path) -> UnixListener {
    UnixListener::bind(path).unwrap()
}

/// QEMU's §7 and §8 over QMP: socket chardevs on descriptors named by
/// `getfd`, their checks in order, their names, what is consumed, their
/// `query-chardev` filenames, HMP's `chardev-add` on a name, `wait`.
fn fd_address_conversation(program: &str) -> Vec<String> {
    let mut s = Side::start(
        program,
        "-nodefaults -display none -machine none -S -qmp unix:$D/a,server=on,wait=off \
         -chardev ringbuf,id=rb",
        &[],
    );
    let pid = s.pid();
    let d = s.d().to_path_buf();
    let mut q = RawQmp::connect(&p(&d, "a"));
    let sock = |name: &str, extra: serde_json::Value| {
        let mut data = json!({"addr": {"type": "fd", "data": {"str": name}}});
        for (k, v) in extra.as_object().unwrap() {
            data[k] = v.clone();
        }
        json!({"type": "socket", "data": data})
    };
    let add = |id: &str, backend: serde_json::Value| {
        cmd("chardev-add", json!({"id": id, "backend": backend}))
    };
    let server = json!({"server": true, "wait": false});
    let getfd = |name: &str| cmd("getfd", json!({ "fdname": name }));
    let closefd = |name: &str| cmd("closefd", json!({ "fdname": name }));
    let query = cmd("query-chardev", json!(null));

    let l1 = listening(&p(&d, "l1.sock"));
    s.ask(&mut q, getfd("l1"), &[l1.as_fd()]);
    s.ask(&mut q, add("s1", sock("l1", server.clone())), &[]);
    s.note(format!("l1 held {}", held(pid, l1.as_fd())));
    s.ask(&mut q, closefd("l1"), &[]);
    let r = q.exec(&query, &[]);
    s.note(chardevs(&r, &d));
    let client = UnixStream::connect(p(&d, "l1.sock")).unwrap();
    // (The monitor's own filename starts `unix:` too: wait for s1's.)
    let taken = format!("\"unix:{},server=on\"", p(&d, "l1.sock").display());
    wait_until("s1's client to be taken", || {
        q.exec(&query, &[]).contains(&taken)
    });
    let r = q.exec(&query, &[]);
    s.note(chardevs(&r, &d));
    drop(client);
    wait_until("s1's client gone", || {
        q.exec(&query, &[]).contains("\"disconnected:unix:")
    });
    s.ask(&mut q, add("s2", sock("11", server.clone())), &[]);
    s.ask(&mut q, add("s3", sock("nope", server.clone())), &[]);
    s.ask(&mut q, add("s3", sock("", server.clone())), &[]);
    let (pp, _pw) = pipe();
    s.ask(&mut q, getfd("pp"), &[pp.as_fd()]);
    s.ask(&mut q, add("s4", sock("pp", server.clone())), &[]);
    s.note(format!("pipe held {}", held(pid, pp.as_fd())));
    s.ask(&mut q, closefd("pp"), &[]);
    s.ask(&mut q, getfd("pp2"), &[pp.as_fd()]);
    s.ask(
        &mut q,
        add("s4", sock("pp2", json!({"server": false}))),
        &[],
    );
    let (c1, _c1peer) = UnixStream::pair().unwrap();
    s.ask(&mut q, getfd("conn"), &[c1.as_fd()]);
    s.ask(&mut q, add("s5", sock("conn", server.clone())), &[]);
    let (c2, c2peer) = UnixStream::pair().unwrap();
    s.ask(&mut q, getfd("conn"), &[c2.as_fd()]);
    s.ask(
        &mut q,
        add("s5", sock("conn", json!({"server": false}))),
        &[],
    );
    let unbound = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    s.ask(&mut q, getfd("unb"), &[unbound.as_fd()]);
    s.ask(&mut q, add("s6", sock("unb", server.clone())), &[]);
    let l7 = listening(&p(&d, "l7.sock"));
    s.ask(&mut q, getfd("l7"), &[l7.as_fd()]);
    s.ask(
        &mut q,
        add("s7", sock("l7", json!({"server": false, "reconnect": 1}))),
        &[],
    );
    s.ask(
        &mut q,
        add("s7", sock("l7", json!({"server": false, "wait": true}))),
        &[],
    );
    s.ask(
        &mut q,
        add(
            "s7",
            sock("l7", json!({"server": true, "wait": false, "telnet": true})),
        ),
        &[],
    );
    let l8 = listening(&p(&d, "l8.sock"));
    s.ask(&mut q, getfd("l8"), &[l8.as_fd()]);
    s.ask(&mut q, add("s1", sock("l8", server.clone())), &[]);
    s.ask(&mut q, closefd("l8"), &[]);
    let r = q.exec(&query, &[]);
    s.note(chardevs(&r, &d));
    // The temporary monitor of human-monitor-command has no names.
    let l10 = listening(&p(&d, "l10.sock"));
    s.ask(&mut q, getfd("l10"), &[l10.as_fd()]);
    let hmc = |line: &str| cmd("human-monitor-command", json!({ "command-line": line }));
    s.ask(
        &mut q,
        hmc("chardev-add socket,id=h1,fd=l10,server=on,wait=off"),
        &[],
    );
    s.ask(
        &mut q,
        hmc("chardev-add socket,id=h2,fd=11,server=on,wait=off"),
        &[],
    );
    // wait=true: the reply comes when the client has connected.
    let l11 = listening(&p(&d, "l11.sock"));
    s.ask(&mut q, getfd("l11"), &[l11.as_fd()]);
    q.send(
        &add("s11", sock("l11", json!({"server": true, "wait": true}))).to_string(),
        &[],
    );
    let c11 = UnixStream::connect(p(&d, "l11.sock")).unwrap();
    let r = q.reply();
    s.note(normalise(&r, &d));
    // A server on a passed socket removes its socket file when it goes.
    s.ask(&mut q, cmd("chardev-remove", json!({"id": "s1"})), &[]);
    s.note(format!("l1.sock there: {}", p(&d, "l1.sock").exists()));
    drop((c2peer, c11));
    let out = s.finish(&mut q);
    let gone: Vec<bool> = ["l7.sock", "l11.sock"]
        .iter()
        .map(|f| p(&d, f).exists())
        .collect();
    assert_eq!(
        gone,
        [false, false],
        "{program}: socket files left after quit"
    );
    out
}

#[test]
fn socket_chardevs_on_passed_descriptors_over_qmp_as_qemu() {
    let ours = fd_address_conversation(common::qchar_bin());
    let ok = "{\"return\": {}}\r\n";
    let err =
        |d: &str| format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{d}\"}}}}\r\n");
    assert_eq!(ours[0], ok);
    assert_eq!(ours[1], ok);
    assert_eq!(ours[2], "l1 held 1");
    assert_eq!(
        ours[3],
        err("File descriptor named 'l1' not found"),
        "consumed"
    );
    assert!(
        ours[4].contains(r#""filename":"disconnected:unix:$D/l1.sock,server=on","frontend-open":false,"label":"s1""#),
        "{}",
        ours[4]
    );
    assert!(
        ours[5].contains(r#""filename":"unix:$D/l1.sock,server=on""#),
        "{}",
        ours[5]
    );
    assert_eq!(
        ours[6],
        err("Failed to add chardev 's2': File descriptor named '11' has not been found")
    );
    assert_eq!(
        ours[8], ok,
        "an empty name with a server listens on nothing"
    );
    assert_eq!(
        ours[10],
        err("Failed to add chardev 's4': File descriptor 'pp' is not a socket")
    );
    assert_eq!(ours[11], "pipe held 0");
    assert_eq!(ours[12], err("File descriptor named 'pp' not found"));
    assert_eq!(
        ours[16],
        err("Failed to add chardev 's5': Failed to listen on fd socket: Invalid argument")
    );
    assert_eq!(
        ours[22],
        err(
            "Failed to add chardev 's7': 'reconnect' option is incompatible with 'fd' address type"
        )
    );
    assert_eq!(ours[26], err("Chardev with id 's1' already exists"));
    assert_eq!(ours[27], ok, "a duplicate id does not consume the name");
    let q = &ours[28];
    for want in [
        r#""filename":"disconnected:fd:,server=on","frontend-open":false,"label":"s3""#,
        r#""filename":"unix:","frontend-open":false,"label":"s5""#,
        r#""filename":"disconnected:unix:$D/l7.sock,server=on","frontend-open":false,"label":"s7""#,
    ] {
        assert!(q.contains(want), "{want} in {q}");
    }
    assert_eq!(
        ours[30],
        "{\"return\": \"Error: File descriptor named 'l10' has not been found\\r\\n\"}\r\n"
    );
    assert_eq!(ours[33], ok, "wait=true answered once the client came");
    assert_eq!(ours.last().unwrap(), "l1.sock there: false");
    same_as_qemu(&ours, fd_address_conversation);
}

/// A file opened as libvirt opens what it passes (`O_WRONLY|O_CREAT|
/// O_APPEND`), holding `content`.
fn libvirt_file(path: &Path, content: &[u8]) -> File {
    std::fs::write(path, content).unwrap();
    std::fs::OpenOptions::new().append(true).open(path).unwrap()
}

/// The libvirt command line of the notes (§9): QMP monitor on a listening
/// socket libvirt bound (`fd=3`), a serial file and its log on fdsets, a
/// second serial on another passed listening socket, and what the
/// monitor shows of them; descriptors passed over that monitor too.
fn libvirt_conversation(program: &str) -> Vec<String> {
    let dir = tempdir();
    let d = dir.path();
    let mon = listening(&p(d, "mon.sock"));
    let ser1 = listening(&p(d, "ser1.sock"));
    let src = libvirt_file(&p(d, "serial0.src"), b"EXISTING-SRC\n");
    let log = libvirt_file(&p(d, "serial0.log"), b"EXISTING-LOG\n");
    // libvirt connects as soon as it has passed the socket: the kernel
    // queues the connection until the monitor takes it.
    let early = UnixStream::connect(p(d, "mon.sock")).unwrap();
    let line = "-nodefaults -display none -machine none -S \
        -chardev socket,id=charmonitor,fd=3,server=on,wait=off \
        -mon chardev=charmonitor,id=monitor,mode=control \
        -add-fd set=0,fd=5,opaque=serial0-source -add-fd set=1,fd=6,opaque=serial0-log \
        -chardev file,id=charserial0,path=/dev/fdset/0,append=on,logfile=/dev/fdset/1,logappend=on \
        -mon chardev=charserial0,mode=readline \
        -chardev socket,id=charserial1,fd=4,server=on,wait=off";
    let mut proc = Proc::spawn_with_fds(
        program,
        &argv(line, d),
        d,
        &[
            (mon.as_fd(), 3),
            (ser1.as_fd(), 4),
            (src.as_fd(), 5),
            (log.as_fd(), 6),
        ],
    );
    let mut out = Vec::new();
    let mut q = RawQmp::on(early);
    let greeting: serde_json::Value = serde_json::from_str(&q.greeting).unwrap();
    out.push(format!(
        "greeting capabilities {}",
        greeting["QMP"]["capabilities"]
    ));
    let ask = |q: &mut RawQmp, c: serde_json::Value, out: &mut Vec<String>| {
        let r = q.exec(&c, &[]);
        out.push(normalise(&r, d));
        r
    };
    ask(&mut q, cmd("qmp_capabilities", json!(null)), &mut out);
    ask(&mut q, cmd("query-status", json!(null)), &mut out);
    let r = q.exec(&cmd("query-chardev", json!(null)), &[]);
    out.push(chardevs(&r, d));
    ask(&mut q, cmd("query-fdsets", json!(null)), &mut out);
    // The numbers given on the command line: 3 and 4 are the sockets,
    // 5 and 6 no longer the files (the sets hold duplicates).
    let fds = proc_fds(proc.pid());
    let at = |n: i32| fds.iter().find(|(k, _)| *k == n).map(|(_, t)| t.clone());
    out.push(format!(
        "3 mon {} 4 ser1 {} 5 src {} 6 log {}",
        at(3) == Some(fd_target(mon.as_fd())),
        at(4) == Some(fd_target(ser1.as_fd())),
        at(5) == Some(fd_target(src.as_fd())),
        at(6) == Some(fd_target(log.as_fd())),
    ));
    let (pr, _pw) = pipe();
    let r = q.exec(
        &cmd("getfd", json!({"fdname": "via-fd-monitor"})),
        &[pr.as_fd()],
    );
    out.push(r);
    out.push(format!("received held {}", held(proc.pid(), pr.as_fd())));
    ask(
        &mut q,
        cmd("closefd", json!({"fdname": "via-fd-monitor"})),
        &mut out,
    );
    let client = UnixStream::connect(p(d, "ser1.sock")).unwrap();
    wait_until("charserial1's client taken", || {
        q.exec(&cmd("query-chardev", json!(null)), &[])
            .contains(&format!("\"unix:{}", p(d, "ser1.sock").display()))
    });
    let r = q.exec(&cmd("query-chardev", json!(null)), &[]);
    out.push(chardevs(&r, d));
    drop(client);
    wait_until("charserial1's client gone", || {
        q.exec(&cmd("query-chardev", json!(null)), &[])
            .contains("\"disconnected:unix:")
    });
    q.exec(&cmd("quit", json!(null)), &[]);
    assert!(proc.wait().success(), "{program}: {}", proc.stderr());
    for f in ["serial0.src", "serial0.log"] {
        let text = String::from_utf8_lossy(&std::fs::read(p(d, f)).unwrap()).into_owned();
        out.push(format!("{f}: {:?}", common::mask_monitor_version(&text)));
    }
    out.push(format!(
        "after quit: mon.sock {} ser1.sock {}",
        p(d, "mon.sock").exists(),
        p(d, "ser1.sock").exists()
    ));
    out
}

#[test]
fn libvirt_command_line_as_qemu() {
    let ours = libvirt_conversation(common::qchar_bin());
    let want_start = [
        "greeting capabilities [\"oob\"]",
        "{\"return\": {}}\r\n",
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n",
        "{\"filename\":\"disconnected:unix:$D/ser1.sock,server=on\",\"frontend-open\":false,\"label\":\"charserial1\"}\n\
         {\"filename\":\"file\",\"frontend-open\":true,\"label\":\"charserial0\"}\n\
         {\"filename\":\"unix:$D/mon.sock,server=on\",\"frontend-open\":true,\"label\":\"charmonitor\"}",
        "{\"return\": [{\"fds\": [{\"fd\": N, \"opaque\": \"serial0-log\"}], \"fdset-id\": 1}, {\"fds\": [{\"fd\": N, \"opaque\": \"serial0-source\"}], \"fdset-id\": 0}]}\r\n",
        "3 mon true 4 ser1 true 5 src false 6 log false",
        "{\"return\": {}}\r\n",
        "received held 1",
        "{\"return\": {}}\r\n",
    ];
    assert_eq!(ours[..want_start.len()], want_start);
    let banner = "QEMU 7.2.x monitor - type 'help' for more information\\r\\n(qemu) ";
    let n = ours.len();
    assert_eq!(
        ours[n - 3],
        format!("serial0.src: \"EXISTING-SRC\\n{banner}\"")
    );
    assert_eq!(
        ours[n - 2],
        format!("serial0.log: \"EXISTING-LOG\\n{banner}\"")
    );
    assert_eq!(ours[n - 1], "after quit: mon.sock false ser1.sock false");
    same_as_qemu(&ours, libvirt_conversation);
}

/// Monitors on listening sockets the parent passed, in the two other
/// forms a management stack may write them: `-qmp chardev:ID` (QMP) and
/// `-mon chardev=ID,mode=readline` (HMP). Each greets as on a path,
/// receives descriptors with SCM_RIGHTS, and takes its next client after
/// the first leaves; the socket files go with qchar.
fn fd_monitors_conversation(program: &str) -> Vec<String> {
    let dir = tempdir();
    let d = dir.path();
    let qmp_l = listening(&p(d, "qmp.sock"));
    let hmp_l = listening(&p(d, "hmp.sock"));
    let line = "-nodefaults -display none -machine none -S \
        -chardev socket,id=charqmp,fd=3,server=on,wait=off -qmp chardev:charqmp \
        -chardev socket,id=charhmp,fd=4,server=on,wait=off -mon chardev=charhmp,mode=readline";
    let mut proc = Proc::spawn_with_fds(
        program,
        &argv(line, d),
        d,
        &[(qmp_l.as_fd(), 3), (hmp_l.as_fd(), 4)],
    );
    let pid = proc.pid();
    let mut out = Vec::new();
    let mut q = RawQmp::connect(&p(d, "qmp.sock"));
    let greeting: serde_json::Value = serde_json::from_str(&q.greeting).unwrap();
    out.push(format!(
        "greeting capabilities {}",
        greeting["QMP"]["capabilities"]
    ));
    let (pr, _pw) = pipe();
    out.push(q.exec(&cmd("getfd", json!({"fdname": "q"})), &[pr.as_fd()]));
    out.push(format!("held after QMP getfd {}", held(pid, pr.as_fd())));
    out.push(q.exec(&cmd("closefd", json!({"fdname": "q"})), &[]));
    out.push(format!("held after QMP closefd {}", held(pid, pr.as_fd())));
    // HMP on the other passed socket.
    let until = |h: &UnixStream, end: &[u8]| {
        let mut got = Vec::new();
        while !got.ends_with(end) {
            let mut b = [0u8; 4096];
            let n = (&*h).read(&mut b).unwrap();
            assert!(n > 0, "HMP closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        let text = common::mask_monitor_version(&String::from_utf8_lossy(&got));
        // What follows the line editor's echo.
        text.rsplit_once("\x1b[K")
            .map_or(text.clone(), |(_, t)| t.to_string())
    };
    for round in 0..2 {
        let h = qchar_testkit::connect_unix(&p(d, "hmp.sock"));
        h.set_read_timeout(Some(WAIT)).unwrap();
        out.push(format!("hmp client {round}: {}", until(&h, b"(qemu) ")));
        for (text, fds) in [
            ("getfd h", vec![pr.as_fd()]),
            ("closefd h", vec![]),
            ("closefd h", vec![]),
        ] {
            qchar_testkit::send_with_fds(h.as_fd(), format!("{text}\n").as_bytes(), &fds);
            out.push(until(&h, b"\r\n(qemu) "));
        }
        out.push(format!("held after HMP closefd {}", held(pid, pr.as_fd())));
    }
    // The QMP client leaves; the next one is served.
    drop(q);
    let mut q = RawQmp::connect(&p(d, "qmp.sock"));
    let r = q.exec(&cmd("query-chardev", json!(null)), &[]);
    out.push(chardevs(&r, d));
    q.exec(&cmd("quit", json!(null)), &[]);
    assert!(proc.wait().success(), "{program}: {}", proc.stderr());
    out.push(format!(
        "after quit: qmp.sock {} hmp.sock {}",
        p(d, "qmp.sock").exists(),
        p(d, "hmp.sock").exists()
    ));
    out
}

#[test]
fn qmp_and_hmp_monitors_on_passed_sockets_as_qemu() {
    let ours = fd_monitors_conversation(common::qchar_bin());
    let ok = "{\"return\": {}}\r\n";
    let banner = "QEMU 7.2.x monitor - type 'help' for more information\r\n(qemu) ";
    let mut want: Vec<String> = vec![
        "greeting capabilities [\"oob\"]".into(),
        ok.into(),
        "held after QMP getfd 1".into(),
        ok.into(),
        "held after QMP closefd 0".into(),
    ];
    for round in 0..2 {
        want.extend([
            format!("hmp client {round}: {banner}"),
            "\r\n(qemu) ".into(),
            "\r\n(qemu) ".into(),
            "\r\nError: File descriptor named 'h' not found\r\n(qemu) ".into(),
            "held after HMP closefd 0".into(),
        ]);
    }
    want.extend([
        "{\"filename\":\"disconnected:unix:$D/hmp.sock,server=on\",\"frontend-open\":true,\"label\":\"charhmp\"}\n\
         {\"filename\":\"unix:$D/qmp.sock,server=on\",\"frontend-open\":true,\"label\":\"charqmp\"}"
            .into(),
        "after quit: qmp.sock false hmp.sock false".into(),
    ]);
    assert_eq!(ours, want);
    same_as_qemu(&ours, fd_monitors_conversation);
}

/// SCM_RIGHTS on a TCP monitor: the descriptor never arrives (the kernel
/// drops the control message), so `getfd`/`add-fd` answer as QEMU's do.
fn tcp_monitor_conversation(program: &str) -> Vec<String> {
    let mut s = Side::start(
        program,
        "-nodefaults -display none -machine none -S -qmp unix:$D/a,server=on,wait=off \
         -chardev socket,id=t,host=127.0.0.1,port=0,server=on,wait=off -mon chardev=t,mode=control",
        &[],
    );
    let pid = s.pid();
    let mut a = RawQmp::connect(&p(s.d(), "a"));
    let r = a.exec(&cmd("query-chardev", json!(null)), &[]);
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    let name = v["return"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "t")
        .unwrap()["filename"]
        .as_str()
        .unwrap()
        .to_string();
    let port: u16 = name
        .trim_start_matches("disconnected:tcp:127.0.0.1:")
        .trim_end_matches(",server=on")
        .parse()
        .unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = std::io::BufReader::new(tcp.try_clone().unwrap());
    let line = |r: &mut std::io::BufReader<std::net::TcpStream>| {
        let mut l = String::new();
        std::io::BufRead::read_line(r, &mut l).unwrap();
        l
    };
    line(&mut r);
    let (pr, _pw) = pipe();
    for (text, fds) in [
        (r#"{"execute":"qmp_capabilities"}"#, vec![]),
        (
            r#"{"execute":"getfd","arguments":{"fdname":"t"}}"#,
            vec![pr.as_fd()],
        ),
        (r#"{"execute":"add-fd","arguments":{}}"#, vec![pr.as_fd()]),
        (r#"{"execute":"query-status"}"#, vec![]),
    ] {
        qchar_testkit::send_with_fds(tcp.as_fd(), format!("{text}\n").as_bytes(), &fds);
        s.note(line(&mut r));
    }
    s.note(format!("pipe held {}", held(pid, pr.as_fd())));
    s.finish(&mut a)
}

#[test]
fn scm_rights_on_a_tcp_monitor_as_qemu() {
    let ours = tcp_monitor_conversation(common::qchar_bin());
    let none = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No file descriptor supplied via SCM_RIGHTS\"}}\r\n";
    assert_eq!(ours[1], none);
    assert_eq!(ours[2], none);
    assert_eq!(ours[4], "pipe held 0");
    same_as_qemu(&ours, tcp_monitor_conversation);
}

/// HMP `getfd`/`closefd` on a unix-socket HMP monitor, byte for byte
/// (echo included), and HMP `chardev-add` on a name (§3).
fn hmp_conversation(program: &str) -> Vec<String> {
    let mut s = Side::start(
        program,
        "-nodefaults -display none -machine none -S -qmp unix:$D/a,server=on,wait=off \
         -chardev socket,id=h,path=$D/h,server=on,wait=off -mon chardev=h,mode=readline",
        &[],
    );
    let pid = s.pid();
    let d = s.d().to_path_buf();
    let mut a = RawQmp::connect(&p(&d, "a"));
    let h = qchar_testkit::connect_unix(&p(&d, "h"));
    h.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let until = |h: &UnixStream, got: &mut Vec<u8>, end: &[u8]| {
        while !got.ends_with(end) {
            let mut b = [0u8; 4096];
            let n = (&*h).read(&mut b).unwrap();
            assert!(n > 0, "HMP closed: {:?}", String::from_utf8_lossy(got));
            got.extend_from_slice(&b[..n]);
        }
        let text = common::mask_monitor_version(&String::from_utf8_lossy(got));
        got.clear();
        text
    };
    s.note(until(&h, &mut got, b"(qemu) "));
    let (pr, _pw) = pipe();
    let hl = listening(&p(&d, "hl.sock"));
    for (text, fds) in [
        ("getfd hf", vec![pr.as_fd()]),
        ("getfd hf2", vec![]),
        ("getfd 9x", vec![pr.as_fd()]),
        ("closefd hf", vec![]),
        ("closefd hf", vec![]),
        ("getfd", vec![]),
        ("closefd", vec![]),
        ("getfd a b", vec![pr.as_fd()]),
        ("closefd a", vec![]),
        ("add-fd", vec![]),
        ("getfd hl", vec![hl.as_fd()]),
        ("chardev-add socket,id=hs,fd=hl,server=on,wait=off", vec![]),
        ("closefd hl", vec![]),
        ("chardev-add socket,id=hn,fd=7,server=on,wait=off", vec![]),
    ] {
        qchar_testkit::send_with_fds(h.as_fd(), format!("{text}\n").as_bytes(), &fds);
        s.note(until(&h, &mut got, b"\r\n(qemu) "));
    }
    // `getfd a b` failed on its arguments: its descriptor waited until the
    // next one that came (the listener's) replaced it.
    s.note(format!("pipe held {}", held(pid, pr.as_fd())));
    s.note(format!("listener held {}", held(pid, hl.as_fd())));
    s.finish(&mut a)
}

#[test]
fn hmp_getfd_and_closefd_as_qemu() {
    let ours = hmp_conversation(common::qchar_bin());
    let tail = |s: &str| s.rsplit_once("\x1b[K").map_or(s, |(_, t)| t).to_string();
    assert_eq!(
        ours[0],
        "QEMU 7.2.x monitor - type 'help' for more information\r\n(qemu) "
    );
    assert_eq!(tail(&ours[1]), "\r\n(qemu) ");
    assert_eq!(
        tail(&ours[2]),
        "\r\nError: No file descriptor supplied via SCM_RIGHTS\r\n(qemu) "
    );
    assert_eq!(
        tail(&ours[3]),
        "\r\nError: Parameter 'fdname' expects a name not starting with a digit\r\n(qemu) "
    );
    assert_eq!(
        tail(&ours[5]),
        "\r\nError: File descriptor named 'hf' not found\r\n(qemu) "
    );
    assert_eq!(
        tail(&ours[6]),
        "\r\ngetfd: string expected\r\nTry \"help getfd\" for more information\r\n(qemu) "
    );
    assert_eq!(tail(&ours[10]), "\r\nunknown command: 'add-fd'\r\n(qemu) ");
    assert_eq!(tail(&ours[12]), "\r\n(qemu) ", "chardev-add on a name");
    assert_eq!(
        tail(&ours[13]),
        "\r\nError: File descriptor named 'hl' not found\r\n(qemu) "
    );
    assert_eq!(
        tail(&ours[14]),
        "\r\nError: File descriptor named '7' has not been found\r\n(qemu) "
    );
    assert_eq!(ours[15], "pipe held 0");
    assert_eq!(ours[16], "listener held 1");
    same_as_qemu(&ours, hmp_conversation);
}

/// QEMU counts HMP connections with QMP ones for the fdset cleanup rule
/// (§1.4): a set survives a QMP reconnect while an HMP client stays.
fn refcount_conversation(program: &str) -> Vec<String> {
    let base = common::RUNNING_BASE;
    let mut s = Side::start(
        program,
        &format!(
            "{base} -qmp unix:$D/a,server=on,wait=off \
             -chardev socket,id=h,path=$D/h,server=on,wait=off -mon chardev=h,mode=readline"
        ),
        &[],
    );
    let d = s.d().to_path_buf();
    let mut q = RawQmp::connect(&p(&d, "a"));
    common::wait_running(&mut q);
    let (pr, _pw) = pipe();
    s.ask(&mut q, cmd("add-fd", json!({"fdset-id": 3})), &[pr.as_fd()]);
    let mut h = qchar_testkit::connect_unix(&p(&d, "h"));
    h.set_read_timeout(Some(WAIT)).unwrap();
    // The banner, then the prompt after an empty line: QEMU prints the
    // banner before it counts the connection, so only an answered line
    // shows the count has been taken.
    let mut banner = Vec::new();
    let prompts = |b: &[u8]| b.windows(7).filter(|w| w == b"(qemu) ").count();
    while prompts(&banner) < 1 {
        let mut b = [0u8; 256];
        let n = h.read(&mut b).unwrap();
        assert!(n > 0);
        banner.extend_from_slice(&b[..n]);
    }
    h.write_all(b"\r").unwrap();
    while prompts(&banner) < 2 {
        let mut b = [0u8; 256];
        let n = h.read(&mut b).unwrap();
        assert!(n > 0);
        banner.extend_from_slice(&b[..n]);
    }
    drop(q);
    let mut q = RawQmp::connect(&p(&d, "a"));
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    drop(h);
    // The HMP client's leave is seen when qchar reads its end: wait for it
    // through a client count only the test can see, the HMP socket being
    // free for the next client.
    let h2 = qchar_testkit::connect_unix(&p(&d, "h"));
    h2.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 64];
    assert!(
        (&h2).read(&mut b).unwrap() > 0,
        "the next HMP client's banner"
    );
    drop(h2);
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    drop(q);
    // Both gone now (the second HMP client left too): the set is freed once
    // the process has seen both leave (which of the two it sees last is
    // its own business), its member closed; a reconnect then finds no set.
    let pid = s.pid();
    wait_until("the set's member closed", || held(pid, pr.as_fd()) == 0);
    let mut q = RawQmp::connect(&p(&d, "a"));
    s.ask(&mut q, cmd("query-fdsets", json!(null)), &[]);
    s.finish(&mut q)
}

#[test]
fn hmp_clients_count_for_the_cleanup_rule_as_in_qemu() {
    let ours = refcount_conversation(common::qchar_bin());
    let set3 = "{\"return\": [{\"fds\": [{\"fd\": N}], \"fdset-id\": 3}]}\r\n";
    assert_eq!(ours[1], set3, "QMP reconnected, HMP still there");
    assert_eq!(ours[2], set3, "HMP gone, QMP there");
    assert_eq!(ours[3], "{\"return\": []}\r\n", "both had gone");
    same_as_qemu(&ours, refcount_conversation);
}

/// Thousands of descriptors passed, named, put in sets, turned into
/// chardevs, refused: qchar ends with the descriptors it started with.
#[test]
fn passing_descriptors_leaks_none() {
    let dir = tempdir();
    let d = dir.path();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -machine none -S -qmp unix:$D/a,server=on,wait=off",
            d,
        ),
        d,
    );
    let mut q = RawQmp::connect(&p(d, "a"));
    let ok = "{\"return\": {}}\r\n";
    let round = |q: &mut RawQmp, i: usize| {
        let (pr, _pw) = pipe();
        let many: Vec<(OwnedFd, OwnedFd)> = (0..4).map(|_| pipe()).collect();
        let fds: Vec<BorrowedFd<'_>> = many.iter().map(|(r, _)| r.as_fd()).collect();
        // Named, replaced, closed; several in one message; one left waiting
        // and replaced; a bad name; a set member and its removal.
        assert_eq!(
            q.exec(&cmd("getfd", json!({"fdname": "x"})), &[pr.as_fd()]),
            ok
        );
        assert_eq!(q.exec(&cmd("getfd", json!({"fdname": "x"})), &fds), ok);
        assert_eq!(q.exec(&cmd("closefd", json!({"fdname": "x"})), &[]), ok);
        q.exec(&cmd("query-status", json!(null)), &[pr.as_fd()]);
        q.exec(&cmd("query-name", json!(null)), &fds);
        q.exec(&cmd("getfd", json!({"fdname": "9"})), &[pr.as_fd()]);
        if i % 10 == 0 {
            // In prelaunch a removed member stays (QEMU's rule): sparingly.
            let r = q.exec(&cmd("add-fd", json!({"fdset-id": 7})), &[pr.as_fd()]);
            assert!(r.contains("\"fdset-id\": 7"), "{r}");
            assert_eq!(q.exec(&cmd("remove-fd", json!({"fdset-id": 7})), &[]), ok);
        }
        // A socket chardev on a passed listener, and one on a pipe.
        let path = p(d, &format!("l{}", i % 2));
        let l = listening(&path);
        assert_eq!(
            q.exec(&cmd("getfd", json!({"fdname": "l"})), &[l.as_fd()]),
            ok
        );
        let add = |id: &str, name: &str| {
            cmd(
                "chardev-add",
                json!({"id": id, "backend": {"type": "socket", "data": {
                    "addr": {"type": "fd", "data": {"str": name}}, "server": true, "wait": false}}}),
            )
        };
        assert_eq!(q.exec(&add("s", "l"), &[]), ok);
        assert_eq!(q.exec(&cmd("chardev-remove", json!({"id": "s"})), &[]), ok);
        assert_eq!(
            q.exec(&cmd("getfd", json!({"fdname": "p"})), &[pr.as_fd()]),
            ok
        );
        let r = q.exec(&add("s", "p"), &[]);
        assert!(r.contains("is not a socket"), "{r}");
        drop(l);
    };
    for i in 0..20 {
        round(&mut q, i);
    }
    let before = proc_fds(proc.pid()).len();
    for i in 0..1000 {
        round(&mut q, i);
    }
    // Sets of a VM in prelaunch keep their removed members: 2 at the
    // baseline, 102 now.
    let sets = q.exec(&cmd("query-fdsets", json!(null)), &[]);
    assert_eq!(sets.matches("\"fd\":").count(), 102, "{sets}");
    assert_eq!(
        proc_fds(proc.pid()).len(),
        before + 100,
        "descriptors leaked"
    );
    q.exec(&cmd("quit", json!(null)), &[]);
    assert!(proc.wait().success());
}

/// A descriptor passed to a child, as which number.
type Passed<'a> = (BorrowedFd<'a>, RawFd);

/// Runs `program` on `line` with `fds`, expecting it to exit; its status
/// and stderr with its name as `PROG`.
fn refused(program: &str, line: &str, fds: &[(BorrowedFd<'_>, RawFd)]) -> (i32, String) {
    let dir = tempdir();
    let name = Path::new(program).file_name().unwrap().to_str().unwrap();
    let mut proc = Proc::spawn_with_fds(program, &argv(line, dir.path()), dir.path(), fds);
    let st = proc.wait();
    (
        st.code().unwrap_or(-1),
        proc.stderr().replace(&format!("{name}: "), "PROG: "),
    )
}

#[test]
fn socket_fd_on_the_command_line_fails_as_qemu() {
    let dir = tempdir();
    let (conn, _peer) = UnixStream::pair().unwrap();
    let (pr, _pw) = pipe();
    let l = listening(&p(dir.path(), "l.sock"));
    let base = "-nodefaults -display none -machine none ";
    let cases: Vec<(String, Vec<Passed<'_>>, String)> = [
        (
            "socket,id=s,fd=3,server=on,wait=off",
            conn.as_fd(),
            "Failed to listen on fd socket: Invalid argument",
        ),
        (
            "socket,id=s,fd=5,server=on,wait=off",
            pr.as_fd(),
            "File descriptor '5' is not a socket",
        ),
        (
            "socket,id=s,fd=5,server=off",
            pr.as_fd(),
            "File descriptor '5' is not a socket",
        ),
        (
            "socket,id=s,fd=200,server=on,wait=off",
            pr.as_fd(),
            "File descriptor '200' is not a socket",
        ),
        (
            "socket,id=s,fd=abc,server=on,wait=off",
            pr.as_fd(),
            "Unable to parse FD number abc",
        ),
        (
            "socket,id=s,fd=-3,server=on,wait=off",
            pr.as_fd(),
            "File descriptor '-3' is not a socket",
        ),
        (
            "socket,id=s,fd=,server=off",
            pr.as_fd(),
            "Unable to parse FD number ",
        ),
        (
            "socket,id=s,fd=8,path=/tmp/x,server=on,wait=off",
            l.as_fd(),
            "None or one of 'path', 'fd' or 'host' option required.",
        ),
        (
            "socket,id=s,fd=8,reconnect=1",
            l.as_fd(),
            "'reconnect' option is incompatible with 'fd' address type",
        ),
    ]
    .into_iter()
    .map(|(opt, fd, msg)| {
        let n = opt
            .split("fd=")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|r| r.parse::<RawFd>().ok())
            .filter(|n| (3..100).contains(n))
            .unwrap_or(9);
        (
            format!("-chardev {opt}"),
            vec![(fd, n)],
            format!("PROG: -chardev {opt}: {msg}\n"),
        )
    })
    .collect();
    for (opt, fds, want) in &cases {
        let line = format!("{base}{opt}");
        assert_eq!(
            refused(common::qchar_bin(), &line, fds),
            (1, want.clone()),
            "{opt}"
        );
        if require(Prereq::Qemu) {
            assert_eq!(refused(QEMU, &line, fds), (1, want.clone()), "QEMU: {opt}");
        }
    }
    let want = (
        1,
        "PROG: -qmp fd:3: 'fd:3' is not a valid char driver\nPROG: -qmp fd:3: parse error: fd:3\n"
            .to_string(),
    );
    assert_eq!(
        refused(common::qchar_bin(), &format!("{base}-qmp fd:3"), &[]),
        want
    );
    if require(Prereq::Qemu) {
        assert_eq!(refused(QEMU, &format!("{base}-qmp fd:3"), &[]), want);
    }
}

/// Socket chardevs on descriptors from the command line: clients on a
/// connected socket and on a listening one, a server on nothing (`fd=`),
/// and a server that waits for its client (`wait` is on by default there),
/// as `query-chardev` and stderr show them.
fn cmdline_sockets_conversation(program: &str) -> Vec<String> {
    let dir = tempdir();
    let d = dir.path();
    let (conn, _peer) = UnixStream::pair().unwrap();
    let lsn = listening(&p(d, "lsn.sock"));
    let wait = listening(&p(d, "wait.sock"));
    let line = "-nodefaults -display none -machine none -S -qmp unix:$D/qmp,server=on,wait=off \
        -chardev socket,id=client,fd=11,server=off -chardev socket,id=lclient,fd=14,server=off \
        -chardev socket,id=empty,fd=,server=on,wait=off -chardev socket,id=w,fd=7,server=on";
    let mut proc = Proc::spawn_with_fds(
        program,
        &argv(line, d),
        d,
        &[(conn.as_fd(), 11), (lsn.as_fd(), 14), (wait.as_fd(), 7)],
    );
    // The server waits for its client before the monitor is there.
    let client = qchar_testkit::connect_unix(&p(d, "wait.sock"));
    let mut q = RawQmp::connect(&p(d, "qmp"));
    let r = q.exec(&cmd("query-chardev", json!(null)), &[]);
    let mut out = vec![chardevs(&r, d)];
    q.exec(&cmd("quit", json!(null)), &[]);
    assert!(proc.wait().success());
    let name = Path::new(program).file_name().unwrap().to_str().unwrap();
    out.push(
        proc.stderr()
            .replace(&format!("{name}: "), "PROG: ")
            .replace(d.to_str().unwrap(), "$D"),
    );
    drop(client);
    out
}

#[test]
fn socket_fd_on_the_command_line_as_qemu() {
    let ours = cmdline_sockets_conversation(common::qchar_bin());
    for want in [
        r#"{"filename":"unix:","frontend-open":false,"label":"client"}"#,
        r#"{"filename":"unix:$D/lsn.sock","frontend-open":false,"label":"lclient"}"#,
        r#"{"filename":"disconnected:fd:,server=on","frontend-open":false,"label":"empty"}"#,
        r#"{"filename":"unix:$D/wait.sock,server=on","frontend-open":false,"label":"w"}"#,
    ] {
        assert!(ours[0].contains(want), "{want} in {}", ours[0]);
    }
    assert_eq!(
        ours[1],
        "PROG: -chardev socket,id=w,fd=7,server=on: info: QEMU waiting for connection on: \
         disconnected:unix:$D/wait.sock,server=on\n"
    );
    same_as_qemu(&ours, cmdline_sockets_conversation);
}
