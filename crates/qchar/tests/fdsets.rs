//! Descriptor sets as libvirt uses them: `-add-fd`, `/dev/fdset/N` in
//! chardev paths (file, log file, pipe, serial), QMP `remove-fd` and
//! `query-fdsets`, and when QEMU 7.2 closes set members. Each conversation
//! runs against qchar and, where installed, against QEMU 7.2 with the same
//! descriptors; replies must be the same bytes once descriptor numbers and
//! the test directory are masked. qchar's expected answers are also written
//! out here, so the tests check qchar without QEMU too.

mod common;

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::Path;

use common::{argv, normalise, p, tempdir, Proc, RawQmp, RUNNING_BASE};
use qchar_testkit::{proc_fds, require, wait_until, Prereq};
use serde_json::json;

const QEMU: &str = "qemu-system-x86_64";

/// Opens `name` in `dir` for appending (created with `content`), as
/// libvirt opens the files it passes.
fn passed_file(dir: &Path, name: &str, content: &[u8]) -> File {
    std::fs::write(p(dir, name), content).unwrap();
    OpenOptions::new().append(true).open(p(dir, name)).unwrap()
}

/// Descriptors passed to a child: each descriptor as which number.
type Passed<'a> = [(BorrowedFd<'a>, RawFd)];

/// A command line tail, what it is passed, and the message it must fail with.
type Case<'a> = (&'static str, &'a Passed<'a>, &'static str);

/// Runs `program line` (`$D` the directory) with `fds` passed, expecting
/// it to exit; returns the status and stderr with the program's name as
/// `PROG`.
fn refusal(program: &str, line: &str, fds: &Passed<'_>) -> (i32, String) {
    let dir = tempdir();
    let name = Path::new(program).file_name().unwrap().to_str().unwrap();
    let mut proc = Proc::spawn_with_fds(program, &argv(line, dir.path()), dir.path(), fds);
    let st = proc.wait();
    let err = proc
        .stderr()
        .replace(&format!("{name}: "), "PROG: ")
        .replace(dir.path().to_str().unwrap(), "$D");
    (st.code().unwrap_or(-1), err)
}

#[test]
fn add_fd_option_is_checked_as_qemu_checks_it() {
    let dir = tempdir();
    let f = passed_file(dir.path(), "f", b"");
    let fd3 = [(f.as_fd(), 3)];
    let cases: &[Case<'_>] = &[
        (
            "-add-fd fd=200,set=1",
            &[],
            "fd is not valid or already in use",
        ),
        (
            "-add-fd fd=3",
            &fd3,
            "set option is required and must be non-negative",
        ),
        (
            "-add-fd set=1",
            &[],
            "fd option is required and must be non-negative",
        ),
        (
            "-add-fd fd=3,set=-1",
            &fd3,
            "set option is required and must be non-negative",
        ),
        (
            "-add-fd fd=0,set=1",
            &[],
            "fd cannot be a standard I/O stream",
        ),
        (
            "-add-fd fd=2,set=1",
            &[],
            "fd cannot be a standard I/O stream",
        ),
        (
            "-add-fd fd=-5,set=1",
            &[],
            "fd option is required and must be non-negative",
        ),
        (
            "-add-fd fd=abc,set=1",
            &[],
            "Parameter 'fd' expects a number",
        ),
        (
            "-add-fd fd=3,set=abc",
            &fd3,
            "Parameter 'set' expects a number",
        ),
        (
            "-add-fd fd=3,set=1,foo=bar",
            &fd3,
            "Invalid parameter 'foo'",
        ),
    ];
    let base = "-nodefaults -display none -machine none ";
    for &(opt, fds, msg) in cases {
        let want = (1, format!("PROG: {opt}: {msg}\n"));
        assert_eq!(
            refusal(common::qchar_bin(), &format!("{base}{opt}"), fds),
            want,
            "{opt}"
        );
    }
    // The checks run once every option is read, in order, before any
    // chardev; only then are the numbers given closed.
    let line = format!(
        "{base}-chardev file,id=x,path=/nonexistent-dir/x -add-fd fd=3,set=1 -add-fd fd=200,set=2"
    );
    let want = (
        1,
        "PROG: -add-fd fd=200,set=2: fd is not valid or already in use\n".to_string(),
    );
    assert_eq!(refusal(common::qchar_bin(), &line, &fd3), want);
    if !require(Prereq::Qemu) {
        return;
    }
    for &(opt, fds, _) in cases {
        let line = format!("{base}{opt}");
        assert_eq!(
            refusal(QEMU, &line, fds),
            refusal(common::qchar_bin(), &line, fds),
            "{opt}"
        );
    }
    assert_eq!(refusal(QEMU, &line, &fd3), want);
}

#[test]
fn dev_fdset_paths_fail_with_qemus_texts() {
    let dir = tempdir();
    let ro = {
        std::fs::write(p(dir.path(), "ro"), b"").unwrap();
        File::open(p(dir.path(), "ro")).unwrap()
    };
    let fd15 = [(ro.as_fd(), 15)];
    let cases: &[Case<'_>] = &[
        (
            "-chardev file,id=f,path=/dev/fdset/5",
            &[],
            "Could not open '/dev/fdset/5': No such file or directory",
        ),
        (
            "-add-fd fd=15,set=5 -chardev file,id=f,path=/dev/fdset/5",
            &fd15,
            "Could not open '/dev/fdset/5': Permission denied",
        ),
        (
            "-chardev file,id=f,path=/dev/fdset/x",
            &[],
            "Could not open '/dev/fdset/x': Invalid argument",
        ),
        (
            "-chardev null,id=f,logfile=/dev/fdset/5",
            &[],
            "Could not dup FD for /dev/fdset/5 flags 241: No such file or directory",
        ),
        (
            "-add-fd fd=15,set=5 -chardev null,id=f,logfile=/dev/fdset/5,logappend=on",
            &fd15,
            "Could not dup FD for /dev/fdset/5 flags 441: Permission denied",
        ),
        (
            "-chardev null,id=f,logfile=/dev/fdset/x",
            &[],
            "Could not parse fdset /dev/fdset/x",
        ),
        (
            "-chardev null,id=f,logfile=/nonexistent-dir/log",
            &[],
            "Could not create '/nonexistent-dir/log': No such file or directory",
        ),
        (
            "-chardev pipe,id=f,path=/dev/fdset/5",
            &[],
            "Could not open '/dev/fdset/5': No such file or directory",
        ),
        (
            "-add-fd fd=15,set=5 -chardev pipe,id=f,path=/dev/fdset/5",
            &fd15,
            "Could not open '/dev/fdset/5': Permission denied",
        ),
        (
            "-chardev serial,id=f,path=/dev/fdset/5",
            &[],
            "Could not open '/dev/fdset/5': No such file or directory",
        ),
    ];
    let base = "-nodefaults -display none -machine none ";
    for &(opt, fds, msg) in cases {
        let chardev = &opt[opt.find("-chardev").unwrap()..];
        let want = (1, format!("PROG: {chardev}: {msg}\n"));
        let line = format!("{base}{opt}");
        assert_eq!(refusal(common::qchar_bin(), &line, fds), want, "{opt}");
        if require(Prereq::Qemu) {
            assert_eq!(refusal(QEMU, &line, fds), want, "QEMU: {opt}");
        }
    }
}

/// Files passed as sets 115 to 119 (see [`refcount_conversation`]).
struct SetFiles {
    files: Vec<File>,
}

impl SetFiles {
    fn new(dir: &Path) -> SetFiles {
        let mut files: Vec<File> = ["s115", "s116", "s117", "s118"]
            .iter()
            .map(|n| passed_file(dir, n, b"OLD\n"))
            .collect();
        std::fs::write(p(dir, "s119"), b"").unwrap();
        files.push(File::open(p(dir, "s119")).unwrap());
        SetFiles { files }
    }

    fn pass(&self) -> Vec<(BorrowedFd<'_>, RawFd)> {
        self.files
            .iter()
            .zip(3..)
            .map(|(f, n)| (f.as_fd(), n))
            .collect()
    }

    const ADD_FD: &'static str = "-add-fd fd=3,set=115,opaque=rc1 -add-fd fd=4,set=116 \
        -add-fd fd=5,set=117,opaque=log -add-fd fd=6,set=118,opaque=wronly \
        -add-fd fd=7,set=119,opaque=rdonly";
}

/// Descriptors of process `pid` open on file `name` of `dir`.
fn held(pid: u32, dir: &Path, name: &str) -> usize {
    let target = p(dir, name).to_string_lossy().into_owned();
    proc_fds(pid).iter().filter(|(_, t)| *t == target).count()
}

/// The replies of `program` to chardevs on descriptor sets: several users
/// of a set, `remove-fd` while they live, a log file user, errors, and a
/// monitor reconnect. `prelaunch`: with `-S`. Also returns, per step, how
/// many descriptors the process held on the file of set 115 and 116.
/// Where QEMU 7.2 runs: its replies and descriptor counts for the same
/// conversation are `ours` and `counts`.
fn same_as_qemu(ours: &[String], counts: &[usize], prelaunch: bool) {
    if !require(Prereq::Qemu) {
        return;
    }
    let (theirs, their_counts) = refcount_conversation(QEMU, prelaunch);
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "reply {i}");
    }
    assert_eq!(counts, their_counts);
}

fn refcount_conversation(program: &str, prelaunch: bool) -> (Vec<String>, Vec<usize>) {
    let base = if prelaunch {
        "-nodefaults -display none -machine none -S"
    } else {
        RUNNING_BASE
    };
    let dir = tempdir();
    let d = dir.path();
    let files = SetFiles::new(d);
    let line = format!(
        "{base} {} -qmp unix:$D/qmp,server=on,wait=off",
        SetFiles::ADD_FD
    );
    let proc = Proc::spawn_with_fds(program, &argv(&line, d), d, &files.pass());
    let mut q = RawQmp::connect(&p(d, "qmp"));
    if !prelaunch {
        common::wait_running(&mut q);
    }
    let mut out = Vec::new();
    let mut counts = Vec::new();
    let pid = proc.pid();
    let file = |id: &str, set: u32| {
        json!({"execute": "chardev-add", "arguments": {"id": id, "backend":
            {"type": "file", "data": {"out": format!("/dev/fdset/{set}"), "append": true}}}})
    };
    let remove = |id: &str| json!({"execute": "chardev-remove", "arguments": {"id": id}});
    let remove_fd = |set: i64| json!({"execute": "remove-fd", "arguments": {"fdset-id": set}});
    let query = json!({"execute": "query-fdsets"});
    let mut ask = |q: &mut RawQmp, c: serde_json::Value| out.push(normalise(&q.exec(&c, &[]), d));
    ask(&mut q, query.clone());
    // Two users of set 115, then remove-fd while they live.
    ask(&mut q, file("rc1a", 115));
    ask(&mut q, file("rc1b", 115));
    counts.push(held(pid, d, "s115"));
    ask(&mut q, remove_fd(115));
    counts.push(held(pid, d, "s115"));
    ask(&mut q, query.clone());
    ask(&mut q, file("rc1c", 115));
    ask(&mut q, remove("rc1a"));
    ask(&mut q, query.clone());
    ask(&mut q, remove("rc1b"));
    counts.push(held(pid, d, "s115"));
    ask(&mut q, query.clone());
    // A user that goes without remove-fd: the set stays (a monitor is
    // connected).
    ask(&mut q, file("rc2a", 116));
    ask(&mut q, remove("rc2a"));
    counts.push(held(pid, d, "s116"));
    ask(&mut q, query.clone());
    // Errors.
    for (id, backend) in [
        (
            "bad1",
            json!({"type": "file", "data": {"out": "/dev/fdset/777"}}),
        ),
        (
            "bad2",
            json!({"type": "file", "data": {"out": "/dev/fdset/abc"}}),
        ),
        (
            "bad3",
            json!({"type": "file", "data": {"out": "/dev/fdset/ 5"}}),
        ),
        (
            "bad4",
            json!({"type": "file", "data": {"out": "/dev/fdset/-1"}}),
        ),
        (
            "bad5",
            json!({"type": "file", "data": {"out": "/dev/fdset/4294967296"}}),
        ),
        (
            "bad6",
            json!({"type": "null", "data": {"logfile": "/dev/fdset/777"}}),
        ),
        (
            "bad7",
            json!({"type": "pipe", "data": {"device": "/dev/fdset/777"}}),
        ),
        (
            "bad8",
            json!({"type": "serial", "data": {"device": "/dev/fdset/777"}}),
        ),
        (
            "mode1",
            json!({"type": "file", "data": {"out": "/dev/fdset/119"}}),
        ),
        (
            "mode2",
            json!({"type": "pipe", "data": {"device": "/dev/fdset/118"}}),
        ),
        (
            "mode3",
            json!({"type": "serial", "data": {"device": "/dev/fdset/118"}}),
        ),
        (
            "mode4",
            json!({"type": "null", "data": {"logfile": "/dev/fdset/119", "logappend": true}}),
        ),
        (
            "mode5",
            json!({"type": "file", "data": {"out": "/dev/fdset/118", "in": "/dev/fdset/118"}}),
        ),
    ] {
        ask(
            &mut q,
            json!({"execute": "chardev-add", "arguments": {"id": id, "backend": backend}}),
        );
    }
    for args in [
        json!({"fdset-id": 99}),
        json!({"fdset-id": 118, "fd": 999}),
        json!({"fdset-id": 99, "fd": 999}),
        json!({"fdset-id": -1}),
        json!({}),
        json!({"fdset-id": "x"}),
    ] {
        ask(&mut q, json!({"execute": "remove-fd", "arguments": args}));
    }
    // A file chardev with `in` from a set with no read-only member: the
    // output's duplicate is closed again.
    counts.push(held(pid, d, "s118"));
    ask(&mut q, file("keep118", 118));
    ask(&mut q, query.clone());
    // The monitor's only client leaves and comes back.
    drop(q);
    let mut q = RawQmp::connect(&p(d, "qmp"));
    let mut ask = |q: &mut RawQmp, c: serde_json::Value| out.push(normalise(&q.exec(&c, &[]), d));
    ask(&mut q, query.clone());
    counts.push(held(pid, d, "s116"));
    counts.push(held(pid, d, "s118"));
    ask(&mut q, remove("keep118"));
    ask(&mut q, query.clone());
    counts.push(held(pid, d, "s118"));
    ask(&mut q, json!({"execute": "quit"}));
    let mut proc = proc;
    assert!(proc.wait().success(), "{program}: {}", proc.stderr());
    (out, counts)
}

#[test]
fn set_members_close_as_in_qemu_while_running() {
    let (ours, counts) = refcount_conversation(common::qchar_bin(), false);
    let s = |t: &str| t.to_string() + "\r\n";
    let sets = |inner: &str| s(&format!("{{\"return\": [{inner}]}}"));
    let all = r#"{"fds": [{"fd": N, "opaque": "rdonly"}], "fdset-id": 119}, {"fds": [{"fd": N, "opaque": "wronly"}], "fdset-id": 118}, {"fds": [{"fd": N, "opaque": "log"}], "fdset-id": 117}, {"fds": [{"fd": N}], "fdset-id": 116}"#;
    assert_eq!(
        ours[0],
        sets(&format!(
            r#"{all}, {{"fds": [{{"fd": N, "opaque": "rc1"}}], "fdset-id": 115}}"#
        ))
    );
    assert_eq!(ours[3], s(r#"{"return": {}}"#));
    // Removed with users left: listed empty, and no new user.
    assert_eq!(
        ours[4],
        sets(&format!(r#"{all}, {{"fds": [], "fdset-id": 115}}"#))
    );
    assert_eq!(
        ours[5],
        s(
            r#"{"error": {"class": "GenericError", "desc": "Failed to add chardev 'rc1c': Could not open '/dev/fdset/115': Permission denied"}}"#
        )
    );
    assert_eq!(ours[9], sets(all), "the last user gone, set 115 is");
    assert_eq!(
        ours[12],
        sets(all),
        "set 116 stays while a monitor is connected"
    );
    let err = |id: &str, text: &str| {
        s(&format!(
            r#"{{"error": {{"class": "GenericError", "desc": "Failed to add chardev '{id}': {text}"}}}}"#
        ))
    };
    let want_errors = [
        err(
            "bad1",
            "Could not open '/dev/fdset/777': No such file or directory",
        ),
        err("bad2", "Could not open '/dev/fdset/abc': Invalid argument"),
        err(
            "bad3",
            "Could not open '/dev/fdset/ 5': No such file or directory",
        ),
        err("bad4", "Could not open '/dev/fdset/-1': Invalid argument"),
        err(
            "bad5",
            "Could not open '/dev/fdset/4294967296': Invalid argument",
        ),
        err(
            "bad6",
            "Could not dup FD for /dev/fdset/777 flags 241: No such file or directory",
        ),
        err(
            "bad7",
            "Could not open '/dev/fdset/777': No such file or directory",
        ),
        err(
            "bad8",
            "Could not open '/dev/fdset/777': No such file or directory",
        ),
        err(
            "mode1",
            "Could not open '/dev/fdset/119': Permission denied",
        ),
        err(
            "mode2",
            "Could not open '/dev/fdset/118': Permission denied",
        ),
        err(
            "mode3",
            "Could not open '/dev/fdset/118': Permission denied",
        ),
        err(
            "mode4",
            "Could not dup FD for /dev/fdset/119 flags 441: Permission denied",
        ),
        err(
            "mode5",
            "Could not open '/dev/fdset/118': Permission denied",
        ),
        s(
            r#"{"error": {"class": "GenericError", "desc": "File descriptor named 'fdset-id:99' not found"}}"#,
        ),
        s(
            r#"{"error": {"class": "GenericError", "desc": "File descriptor named 'fdset-id:118, fd:N' not found"}}"#,
        ),
        s(
            r#"{"error": {"class": "GenericError", "desc": "File descriptor named 'fdset-id:99, fd:N' not found"}}"#,
        ),
        s(
            r#"{"error": {"class": "GenericError", "desc": "File descriptor named 'fdset-id:-1' not found"}}"#,
        ),
        s(r#"{"error": {"class": "GenericError", "desc": "Parameter 'fdset-id' is missing"}}"#),
        s(
            r#"{"error": {"class": "GenericError", "desc": "Invalid parameter type for 'fdset-id', expected: integer"}}"#,
        ),
    ];
    assert_eq!(ours[13..13 + want_errors.len()], want_errors);
    // After the last client left, only the set with a user is there.
    let n = 13 + want_errors.len();
    assert_eq!(
        ours[n + 2],
        sets(r#"{"fds": [{"fd": N, "opaque": "wronly"}], "fdset-id": 118}"#)
    );
    // Its user gone while a client is connected, set 118 stays.
    assert_eq!(ours[n + 4], ours[n + 2]);
    // Held on set 115's file: member + 2 duplicates, then the 2 after
    // remove-fd, then none; on 116's nothing but its member after its user
    // went; on 118's its member, then its member and a user; after the
    // reconnect 116 is closed; 118 keeps its member once its user goes.
    assert_eq!(counts, [3, 2, 0, 1, 1, 0, 2, 1]);
    same_as_qemu(&ours, &counts, false);
}

#[test]
fn nothing_closes_in_prelaunch_as_in_qemu() {
    let (ours, counts) = refcount_conversation(common::qchar_bin(), true);
    let s = |t: &str| t.to_string() + "\r\n";
    let all = r#"{"fds": [{"fd": N, "opaque": "rdonly"}], "fdset-id": 119}, {"fds": [{"fd": N, "opaque": "wronly"}], "fdset-id": 118}, {"fds": [{"fd": N, "opaque": "log"}], "fdset-id": 117}, {"fds": [{"fd": N}], "fdset-id": 116}, {"fds": [{"fd": N, "opaque": "rc1"}], "fdset-id": 115}"#;
    let sets = s(&format!("{{\"return\": [{all}]}}"));
    // remove-fd closes nothing: the member is still listed and serves a new
    // user; no disconnect frees anything.
    assert_eq!(ours[4], sets);
    assert_eq!(ours[5], s(r#"{"return": {}}"#));
    assert_eq!(ours[9], sets);
    assert!(ours
        .iter()
        .filter(|l| l.starts_with("{\"return\": ["))
        .all(|l| *l == sets));
    assert_eq!(counts, [3, 3, 2, 1, 1, 1, 2, 1]);
    same_as_qemu(&ours, &counts, true);
}

/// Set 117's replies and descriptor counts when its only user is a
/// chardev's log file that goes after `remove-fd`.
fn log_file_conversation(program: &str) -> (Vec<String>, Vec<usize>) {
    let base = RUNNING_BASE;
    let dir = tempdir();
    let d = dir.path();
    let files = SetFiles::new(d);
    let line = format!(
        "{base} {} -qmp unix:$D/qmp,server=on,wait=off",
        SetFiles::ADD_FD
    );
    let mut proc = Proc::spawn_with_fds(program, &argv(&line, d), d, &files.pass());
    let mut q = RawQmp::connect(&p(d, "qmp"));
    common::wait_running(&mut q);
    let mut out = Vec::new();
    let mut counts = Vec::new();
    for c in [
        json!({"execute": "chardev-add", "arguments": {"id": "lg", "backend": {"type": "null",
            "data": {"logfile": "/dev/fdset/117", "logappend": true}}}}),
        json!({"execute": "remove-fd", "arguments": {"fdset-id": 117}}),
        json!({"execute": "chardev-remove", "arguments": {"id": "lg"}}),
        json!({"execute": "query-fdsets"}),
    ] {
        out.push(normalise(&q.exec(&c, &[]), d));
        if c["execute"] == "chardev-remove" {
            // qchar's log writer closes the file once it has written what
            // it was given, a moment after the reply (QEMU: at once).
            let pid = proc.pid();
            wait_until("the log file's duplicate closed", || {
                held(pid, d, "s117") == 0
            });
        }
        counts.push(held(proc.pid(), d, "s117"));
    }
    q.exec(&json!({"execute": "quit"}), &[]);
    assert!(proc.wait().success());
    (out, counts)
}

#[test]
fn a_log_files_set_is_freed_when_it_goes() {
    let (ours, counts) = log_file_conversation(common::qchar_bin());
    let rest = r#"{"fds": [{"fd": N, "opaque": "rdonly"}], "fdset-id": 119}, {"fds": [{"fd": N, "opaque": "wronly"}], "fdset-id": 118}, "#;
    let tail = r#"{"fds": [{"fd": N}], "fdset-id": 116}, {"fds": [{"fd": N, "opaque": "rc1"}], "fdset-id": 115}]}"#;
    assert_eq!(ours[3], format!("{{\"return\": [{rest}{tail}\r\n"));
    // Member closed at remove-fd, the log file's duplicate with its chardev.
    assert_eq!(counts, [2, 1, 0, 0]);
    if !require(Prereq::Qemu) {
        return;
    }
    // QEMU 7.2 closes a log file's duplicate without telling the set, so
    // the set is listed empty for good (README, "Where qchar goes further").
    let (theirs, their_counts) = log_file_conversation(QEMU);
    assert_eq!(ours[..3], theirs[..3]);
    assert_eq!(
        theirs[3],
        format!("{{\"return\": [{rest}{{\"fds\": [], \"fdset-id\": 117}}, {tail}\r\n")
    );
    assert_eq!(counts, their_counts);
}
