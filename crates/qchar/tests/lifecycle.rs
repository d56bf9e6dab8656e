//! The built binary as a process: QMP over unix sockets (greeting,
//! `query-chardev` against QEMU 7.2's for the same command lines), `-S` and
//! `cont`, `stop`, `quit`, the guest's own end, signals, `-pidfile`,
//! `-daemonize`, a pty chardev, and life without `/dev/kvm`.

mod common;

use std::path::Path;

use common::{argv, chardevs_masked, p, qchar_and_qmp, tempdir, Proc, Qmp};
use qchar_testkit::{require, wait_until, Prereq, WAIT};
use serde_json::{json, Value};

/// Command lines whose `query-chardev` was recorded from QEMU 7.2 (sorted
/// by label, test directory as `$D`, pty numbers as `N`). Each has its QMP
/// monitor on `$D/a`.
/// `(label, filename, frontend-open)`.
type Entry = (&'static str, &'static str, bool);

fn recorded() -> Vec<(&'static str, Vec<Entry>)> {
    vec![
        (
            "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off \
             -monitor unix:$D/b,server=on,wait=off",
            vec![
                ("compat_monitor0", "unix:$D/a,server=on", true),
                ("compat_monitor1", "disconnected:unix:$D/b,server=on", true),
            ],
        ),
        (
            "-nodefaults -display none -S -chardev socket,id=x,path=$D/a,server=on,wait=off \
             -qmp chardev:x -monitor unix:$D/b,server=on,wait=off \
             -serial mon:unix:$D/c,server=on,wait=off",
            vec![
                ("compat_monitor1", "disconnected:unix:$D/b,server=on", true),
                ("serial0", "mux", true),
                ("serial0-base", "disconnected:unix:$D/c,server=on", true),
                ("x", "unix:$D/a,server=on", true),
            ],
        ),
        (
            "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off -serial null \
             -serial file:$D/f.log -chardev ringbuf,id=r -device isa-serial,chardev=r \
             -chardev pty,id=p -chardev null,id=unused",
            vec![
                ("compat_monitor0", "unix:$D/a,server=on", true),
                ("p", "pty:/dev/pts/N", false),
                ("r", "ringbuf", true),
                ("serial0", "null", true),
                ("serial1", "file", true),
                ("unused", "null", false),
            ],
        ),
        (
            "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off -serial null \
             -serial null -serial null -serial null -serial pty",
            vec![
                ("compat_monitor0", "unix:$D/a,server=on", true),
                ("serial0", "null", true),
                ("serial1", "null", true),
                ("serial2", "null", true),
                ("serial3", "null", true),
                // A fifth -serial gets its chardev but no UART.
                ("serial4", "pty:/dev/pts/N", false),
            ],
        ),
    ]
}

/// Runs `program` with `line`, returns the greeting and the masked
/// `query-chardev`, then quits it.
fn query(program: &str, line: &str) -> (Value, Vec<(String, String, bool)>, String) {
    let dir = tempdir();
    let mut proc = Proc::spawn_program(program, &argv(line, dir.path()), dir.path());
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    let list = q.cmd("query-chardev", Value::Null);
    let masked = chardevs_masked(&list, dir.path());
    q.cmd("quit", Value::Null);
    let st = proc.wait();
    assert!(st.success(), "{program} {line}: {st:?}\n{}", proc.stderr());
    let out = common::mask_pts(&proc.stdout());
    (q.greeting.clone(), masked, out)
}

fn owned(v: &[(&str, &str, bool)]) -> Vec<(String, String, bool)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect()
}

#[test]
fn query_chardev_matches_qemu() {
    for (line, want) in recorded() {
        let (greeting, got, stdout) = query(common::qchar_bin(), line);
        assert_eq!(got, owned(&want), "qchar {line}");
        assert_eq!(
            greeting["QMP"]["version"]["qemu"],
            json!({"micro": 0, "minor": 2, "major": 7})
        );
        assert_eq!(greeting["QMP"]["capabilities"], json!(["oob"]));
        assert!(greeting["QMP"]["version"]["package"]
            .as_str()
            .unwrap()
            .starts_with("qchar "));
        // pty chardevs announce themselves on stdout, as in QEMU.
        for (label, filename, _) in &want {
            if filename.starts_with("pty:") {
                let line = format!("char device redirected to /dev/pts/N (label {label})");
                assert!(stdout.contains(&line), "{line} not in {stdout:?}");
            }
        }
    }
}

#[test]
fn query_chardev_of_live_qemu() {
    if !require(Prereq::Qemu) {
        return;
    }
    for (line, want) in recorded() {
        let (_, from_qemu, qemu_out) = query("qemu-system-x86_64", line);
        assert_eq!(from_qemu, owned(&want), "QEMU changed? {line}");
        let (_, from_qchar, qchar_out) = query(common::qchar_bin(), line);
        assert_eq!(from_qchar, from_qemu, "{line}");
        assert_eq!(qchar_out, qemu_out, "stdout of {line}");
    }
}

/// The defaults differ where qchar lacks what QEMU uses: `vc` consoles
/// become `null`, and there is no parallel port.
#[test]
fn defaults_without_display() {
    let (dir, mut proc, mut q) =
        qchar_and_qmp("-display none -S -qmp unix:$D/a,server=on,wait=off");
    let got = chardevs_masked(&q.cmd("query-chardev", Value::Null), dir.path());
    // QEMU 7.2: parallel0 "vc", serial0 "vc", compat_monitor0 the QMP.
    assert_eq!(
        got,
        owned(&[
            ("compat_monitor0", "unix:$D/a,server=on", true),
            ("serial0", "null", true),
        ])
    );
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

fn console_lines(path: &Path) -> u64 {
    let data = std::fs::read(path).unwrap_or_default();
    common::check_demo_stream(&data).0
}

#[test]
fn prelaunch_cont_stop_quit() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempdir();
    let log = p(dir.path(), "console.log");
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -chardev file,id=con,path=$D/console.log \
             -serial chardev:con -qmp unix:$D/a,server=on,wait=off -fda builtin:demo",
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    assert_eq!(
        q.cmd("query-status", Value::Null),
        json!({"status": "prelaunch", "singlestep": false, "running": false})
    );
    // A vCPU that never ran printed nothing.
    assert_eq!(std::fs::read(&log).unwrap().len(), 0);
    q.cmd("stop", Value::Null);
    assert_eq!(q.cmd("query-status", Value::Null)["status"], "prelaunch");
    assert!(q.events.is_empty(), "stop in prelaunch sends no event");
    q.cmd("cont", Value::Null);
    assert_eq!(q.event_names(), vec!["RESUME"]);
    assert_eq!(
        q.cmd("query-status", Value::Null),
        json!({"status": "running", "singlestep": false, "running": true})
    );
    wait_until("the guest printing", || console_lines(&log) >= 20);
    q.cmd("stop", Value::Null);
    assert_eq!(q.event_names(), vec!["RESUME", "STOP"]);
    assert_eq!(q.cmd("query-status", Value::Null)["status"], "paused");
    q.cmd("cont", Value::Null);
    q.cmd("cont", Value::Null); // running already: no event
    assert_eq!(q.event_names(), vec!["RESUME", "STOP", "RESUME"]);
    let before = console_lines(&log);
    wait_until("more lines after cont", || {
        console_lines(&log) > before + 10
    });
    // quit: SHUTDOWN comes before the reply, then the connection closes.
    let r = q.execute(json!({"execute": "quit"}));
    assert_eq!(r, json!({"return": {}}));
    let shutdown = q.events.last().unwrap();
    assert_eq!(shutdown["event"], "SHUTDOWN");
    assert_eq!(
        shutdown["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    assert!(q.read_to_end().is_empty());
    let st = proc.wait();
    assert!(st.success(), "{st:?}: {}", proc.stderr());
    assert_eq!(proc.stderr(), "");
    // Everything printed reached the file, in order.
    assert!(console_lines(&log) > before + 10);
}

#[test]
fn guest_halt_ends_the_process() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempdir();
    let log = p(dir.path(), "console.log");
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -chardev file,id=con,path=$D/console.log \
             -serial chardev:con -qmp unix:$D/a,server=on,wait=off \
             -drive file=builtin:demo:2000,format=raw,if=floppy",
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    q.cmd("cont", Value::Null);
    let ev = q.wait_event("SHUTDOWN");
    assert_eq!(
        ev["data"],
        json!({"guest": true, "reason": "guest-shutdown"})
    );
    let st = proc.wait();
    assert!(st.success(), "{st:?}: {}", proc.stderr());
    let data = std::fs::read(&log).unwrap();
    assert_eq!(common::check_demo_stream(&data).0, 2000);
    assert!(data.ends_with(b"qchar-demo 0000002000\r\n"));
}

/// A boot sector that enters protected mode and takes an exception with an
/// empty IDT: a triple fault where the host runs it, a KVM emulation
/// failure where it cannot (nested KVM without unrestricted guest).
fn triple_fault_image() -> Vec<u8> {
    let mut img = vec![0u8; 512];
    #[rustfmt::skip]
    let code = [
        0xfa,                               // cli
        0x0f, 0x01, 0x16, 0x48, 0x7c,       // lgdt [0x7c48]
        0x0f, 0x20, 0xc0,                   // mov eax, cr0
        0x66, 0x83, 0xc8, 0x01,             // or eax, 1
        0x0f, 0x22, 0xc0,                   // mov cr0, eax
        0xea, 0x15, 0x7c, 0x08, 0x00,       // jmp 0x08:0x7c15
        0x66, 0xb8, 0x10, 0x00,             // mov ax, 0x10
        0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, // mov ds/es/ss, ax
        0x8e, 0xe0, 0x8e, 0xe8,             // mov fs/gs, ax
        0x0f, 0x01, 0x1d, 0x50, 0x7c, 0x00, 0x00, // lidt [0x7c50]: limit 0
        0xcc,                               // int3
        0xf4,                               // hlt
    ];
    img[..code.len()].copy_from_slice(&code);
    // GDT at 0x7c30: null, flat 32-bit code (0x08), flat data (0x10).
    img[0x38..0x40].copy_from_slice(&[0xff, 0xff, 0, 0, 0, 0x9a, 0xcf, 0]);
    img[0x40..0x48].copy_from_slice(&[0xff, 0xff, 0, 0, 0, 0x92, 0xcf, 0]);
    img[0x48..0x4e].copy_from_slice(&[0x17, 0, 0x30, 0x7c, 0, 0]);
    img[510] = 0x55;
    img[511] = 0xaa;
    img
}

#[test]
fn guest_fault_shuts_down_or_stops_in_internal_error() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempdir();
    std::fs::write(p(dir.path(), "tf.img"), triple_fault_image()).unwrap();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -S -qmp unix:$D/a,server=on,wait=off \
             -drive file=$D/tf.img,format=raw,if=floppy",
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    q.cmd("cont", Value::Null);
    let ev = loop {
        let e = q.read_line().expect("an event");
        if e["event"] == "SHUTDOWN" || e["event"] == "STOP" {
            break e;
        }
    };
    if ev["event"] == "SHUTDOWN" {
        // Triple fault: as QEMU with -no-reboot (qchar never reboots).
        assert_eq!(ev["data"], json!({"guest": true, "reason": "guest-reset"}));
        let st = proc.wait();
        assert!(st.success(), "{st:?}: {}", proc.stderr());
        return;
    }
    // KVM could not run it: as QEMU, the machine stops in internal-error,
    // the monitor keeps working, cont is refused.
    eprintln!("this host reports a KVM internal error instead of a triple fault");
    assert_eq!(
        q.cmd("query-status", Value::Null),
        json!({"status": "internal-error", "singlestep": false, "running": false})
    );
    let r = q.execute(json!({"execute": "cont"}));
    assert_eq!(
        r["error"]["desc"],
        "Resetting the Virtual Machine is required"
    );
    q.cmd("quit", Value::Null);
    let st = proc.wait();
    assert!(st.success());
    assert!(
        proc.stderr().starts_with("qchar: KVM internal error: "),
        "{}",
        proc.stderr()
    );
}

#[test]
fn sigterm_ends_cleanly_with_qemus_message() {
    let (dir, mut proc, mut q) = qchar_and_qmp(
        "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off -pidfile $D/q.pid",
    );
    q.cmd("query-status", Value::Null);
    // SAFETY: kill on a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(proc.pid() as i32, libc::SIGTERM) }, 0);
    let ev = q.wait_event("SHUTDOWN");
    assert_eq!(ev["data"], json!({"guest": false, "reason": "host-signal"}));
    let st = proc.wait();
    assert!(st.success(), "{st:?}");
    let me = std::process::id();
    let name = std::fs::read(format!("/proc/{me}/cmdline")).unwrap();
    let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap()).into_owned();
    assert_eq!(
        proc.stderr(),
        format!("qchar: terminating on signal 15 from pid {me} ({name})\n")
    );
    assert!(!p(dir.path(), "q.pid").exists(), "pid file removed");
}

#[test]
fn pidfile_locked_and_removed() {
    let dir = tempdir();
    let pidfile = p(dir.path(), "q.pid");
    let mut first = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off -pidfile $D/q.pid",
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", first.pid())
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pidfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A second instance with the same pid file is refused as by QEMU.
    let mut second = Proc::qchar(
        &argv("-nodefaults -display none -S -pidfile $D/q.pid", dir.path()),
        dir.path(),
    );
    assert_eq!(second.wait().code(), Some(1));
    assert_eq!(
        second.stderr(),
        "qchar: cannot create PID file: Cannot lock pid file: Resource temporarily unavailable\n"
    );
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", first.pid())
    );
    q.cmd("quit", Value::Null);
    assert!(first.wait().success());
    assert!(!pidfile.exists());
}

#[test]
fn daemonize_detaches_once_ready() {
    let dir = tempdir();
    let pidfile = p(dir.path(), "q.pid");
    let mut parent = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -daemonize -pidfile $D/q.pid \
             -qmp unix:$D/a,server=on,wait=off -chardev ringbuf,id=r",
            dir.path(),
        ),
        dir.path(),
    );
    // The parent exits 0 only once the daemon is set up: the socket is
    // there and the pid file written by then.
    assert!(parent.wait().success(), "{}", parent.stderr());
    assert!(p(dir.path(), "a").exists());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(pid as u32, parent.pid());
    // A new session, not its leader; working directory "/".
    // SAFETY: getsid on a pid reads nothing of ours.
    let sid = unsafe { libc::getsid(pid) };
    // SAFETY: as above, for this process.
    let my_sid = unsafe { libc::getsid(0) };
    assert!(sid > 0 && sid != pid && sid != my_sid);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    let labels: Vec<String> = chardevs_masked(&q.cmd("query-chardev", Value::Null), dir.path())
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(labels, vec!["compat_monitor0", "r"]);
    q.cmd("quit", Value::Null);
    wait_until("the daemon to exit", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    });
    wait_until("the pid file to go", || !pidfile.exists());
}

#[test]
fn daemonize_reports_setup_errors_through_the_parent() {
    let dir = tempdir();
    let mut parent = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -daemonize -chardev file,id=c,path=$D/no/such/dir",
            dir.path(),
        ),
        dir.path(),
    );
    assert_eq!(parent.wait().code(), Some(1));
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        parent.stderr(),
        format!(
            "qchar: -chardev file,id=c,path={d}/no/such/dir: Could not open '{d}/no/such/dir': No such file or directory\n"
        )
    );
}

#[test]
fn pty_chardev_is_announced_and_usable() {
    let (_dir, mut proc, mut q) = qchar_and_qmp(
        "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off -chardev pty,id=p",
    );
    // The line is printed before the monitor answers, but reaches the
    // test through a pipe and a reader thread.
    wait_until("the pty line on stdout", || proc.stdout().ends_with('\n'));
    let out = proc.stdout();
    let path = out
        .strip_prefix("char device redirected to ")
        .and_then(|s| s.strip_suffix(" (label p)\n"))
        .unwrap_or_else(|| panic!("stdout: {out:?}"))
        .to_string();
    let list = q.cmd("query-chardev", Value::Null);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["label"] == "p" && c["filename"] == format!("pty:{path}")));
    // It is a terminal.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: isatty only inspects the descriptor.
    assert_eq!(unsafe { libc::isatty(f.as_raw_fd()) }, 1);
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

#[test]
fn no_kvm_start_fails_like_qemu() {
    let dir = tempdir();
    let Some(mut proc) = common::qchar_without_kvm(dir.path(), "-nodefaults -fda builtin:demo")
    else {
        return;
    };
    assert_eq!(proc.wait().code(), Some(1));
    assert_eq!(
        proc.stderr(),
        "Could not access KVM kernel module: No such file or directory\n\
         qchar: failed to initialize kvm: No such file or directory\n"
    );
}

#[test]
fn no_kvm_with_s_keeps_a_working_monitor() {
    let dir = tempdir();
    let Some(mut proc) = common::qchar_without_kvm(
        dir.path(),
        "-nodefaults -S -chardev file,id=con,path=$D/c.log -serial chardev:con \
         -qmp unix:$D/a,server=on,wait=off -fda builtin:demo",
    ) else {
        return;
    };
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    assert_eq!(q.cmd("query-status", Value::Null)["status"], "prelaunch");
    let r = q.execute(json!({"execute": "cont"}));
    assert_eq!(
        r,
        json!({"error": {"class": "GenericError",
            "desc": "Could not access KVM kernel module (/dev/kvm): No such file or directory"}})
    );
    // Chardev management works: the console moves (the UART exists).
    let out = p(dir.path(), "d.log");
    q.cmd(
        "chardev-change",
        json!({"id": "con", "backend": {"type": "file", "data": {"out": out.to_str().unwrap()}}}),
    );
    q.cmd(
        "chardev-add",
        json!({"id": "extra", "backend": {"type": "null", "data": {}}}),
    );
    let got = chardevs_masked(&q.cmd("query-chardev", Value::Null), dir.path());
    assert_eq!(
        got,
        owned(&[
            ("compat_monitor0", "unix:$D/a,server=on", true),
            ("con", "file", true),
            ("extra", "null", false),
        ])
    );
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

#[test]
fn no_image_without_s_is_refused_with_s_cont_fails() {
    let dir = tempdir();
    let mut proc = Proc::qchar(&argv("-nodefaults", dir.path()), dir.path());
    assert_eq!(proc.wait().code(), Some(1));
    assert!(proc
        .stderr()
        .starts_with("qchar: no boot image: qchar has no BIOS"));

    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -S -qmp unix:$D/a,server=on,wait=off",
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    let r = q.execute(json!({"execute": "cont"}));
    assert!(r["error"]["desc"]
        .as_str()
        .unwrap()
        .starts_with("no boot image"));
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

#[test]
fn hmp_monitor_controls_the_guest() {
    if !require(Prereq::Kvm) {
        return;
    }
    let (_dir, mut proc, mut q) = qchar_and_qmp(
        "-nodefaults -S -chardev file,id=con,path=$D/c.log -serial chardev:con \
             -monitor unix:$D/h,server=on,wait=off -qmp unix:$D/a,server=on,wait=off \
             -fda builtin:demo",
    );
    let r = q.cmd(
        "human-monitor-command",
        json!({"command-line": "info status"}),
    );
    assert_eq!(r, json!("VM status: paused (prelaunch)\r\n"));
    q.cmd("human-monitor-command", json!({"command-line": "cont"}));
    let r = q.cmd(
        "human-monitor-command",
        json!({"command-line": "info status"}),
    );
    assert_eq!(r, json!("VM status: running\r\n"));
    q.cmd("human-monitor-command", json!({"command-line": "quit"}));
    assert!(proc.wait().success());
}

#[test]
fn server_socket_waits_for_its_client_with_qemus_info_line() {
    let dir = tempdir();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -chardev socket,id=w,path=$D/w,server=on \
             -qmp unix:$D/a,server=on,wait=off",
            dir.path(),
        ),
        dir.path(),
    );
    let d = dir.path().to_str().unwrap();
    let info = format!(
        "qchar: -chardev socket,id=w,path={d}/w,server=on: info: QEMU waiting for connection on: \
         disconnected:unix:{d}/w,server=on\n"
    );
    wait_until("the info line", || proc.stderr() == info);
    // Set-up goes on once the client is there.
    assert!(!p(dir.path(), "a").exists());
    let _client = std::os::unix::net::UnixStream::connect(p(dir.path(), "w")).unwrap();
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

#[test]
fn a_signal_while_waiting_for_a_client_ends_the_process() {
    let dir = tempdir();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -chardev socket,id=w,path=$D/w,server=on",
            dir.path(),
        ),
        dir.path(),
    );
    wait_until("the info line", || {
        proc.stderr().contains("waiting for connection")
    });
    // SAFETY: kill on a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(proc.pid() as i32, libc::SIGINT) }, 0);
    assert!(proc.wait().success());
    let me = std::process::id();
    assert!(
        proc.stderr()
            .contains(&format!("qchar: terminating on signal 2 from pid {me} (")),
        "{}",
        proc.stderr()
    );
}

#[test]
fn monitor_unix_socket_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, mut proc, mut q) = qchar_and_qmp(
        "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off \
             -chardev socket,id=c,path=$D/c,server=on,wait=off",
    );
    q.cmd("query-status", Value::Null);
    let mode = |f: &str| {
        std::fs::metadata(p(dir.path(), f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("a"), 0o600, "the QMP socket answers its owner only");
    assert_ne!(
        mode("c"),
        0o600,
        "a plain chardev socket keeps the umask's mode"
    );
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

/// Local addresses (`IP:PORT` as in /proc/net/tcp, hex) of the listening
/// TCP sockets on `port`.
fn tcp_listeners(port: u16) -> Vec<String> {
    let mut v = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // State 0A is LISTEN.
            if f.len() > 3 && f[3] == "0A" && f[1].ends_with(&format!(":{port:04X}")) {
                v.push(f[1].to_string());
            }
        }
    }
    v
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tcp_monitor_without_host_listens_on_loopback_only() {
    let dir = tempdir();
    let (port, other, serial, plain) = (
        free_tcp_port(),
        free_tcp_port(),
        free_tcp_port(),
        free_tcp_port(),
    );
    let mut proc = Proc::qchar(
        &argv(
            &format!(
                "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off \
                 -qmp tcp::{port},server=on,wait=off -monitor tcp:0.0.0.0:{other},server=on,wait=off \
                 -serial mon:tcp::{serial},server=on,wait=off -serial tcp::{plain},server=on,wait=off"
            ),
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    let list = q.cmd("query-chardev", Value::Null);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["filename"].as_str())
        .collect();
    assert!(
        names.contains(&format!("disconnected:tcp:127.0.0.1:{port},server=on").as_str()),
        "{names:?}"
    );
    assert_eq!(
        tcp_listeners(port),
        [format!("0100007F:{port:04X}")],
        "the QMP monitor listens on 127.0.0.1 only"
    );
    assert_eq!(
        tcp_listeners(other),
        [format!("00000000:{other:04X}")],
        "a monitor given a host listens where it was told"
    );
    assert_eq!(
        tcp_listeners(serial),
        [format!("0100007F:{serial:04X}")],
        "a serial line with a monitor on it (mon:) is a monitor"
    );
    assert_eq!(
        tcp_listeners(plain),
        [format!("00000000:{plain:04X}")],
        "a plain serial line keeps QEMU's every address"
    );
    // And it is the monitor, reachable there.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut greeting = [0u8; 7];
    std::io::Read::read_exact(&mut s, &mut greeting).unwrap();
    assert_eq!(&greeting, b"{\"QMP\":");
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

#[test]
fn qmp_pretty_monitor_prints_pretty_json() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off \
             -chardev socket,id=p,path=$D/p,server=on,wait=off -mon chardev=p,mode=control,pretty=on",
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    let s = std::os::unix::net::UnixStream::connect(p(dir.path(), "p")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // Reads one pretty message: it ends with a `}` alone on a line.
    let read_message = || {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n}\r\n") {
            (&s).read_exact(&mut b).expect("a whole message");
            got.push(b[0]);
        }
        String::from_utf8(got).unwrap()
    };
    let greeting = read_message();
    assert!(
        greeting.starts_with("{\r\n    \"QMP\": {\r\n        \"version\": {\r\n"),
        "{greeting}"
    );
    (&s).write_all(b"{\"execute\":\"qmp_capabilities\"}")
        .unwrap();
    assert_eq!(read_message(), "{\r\n    \"return\": {\r\n    }\r\n}\r\n");
    (&s).write_all(b"{\"execute\":\"query-status\"}").unwrap();
    assert_eq!(
        read_message(),
        "{\r\n    \"return\": {\r\n        \"status\": \"prelaunch\",\r\n        \
         \"singlestep\": false,\r\n        \"running\": false\r\n    }\r\n}\r\n"
    );
    // Events too (a chardev added through the compact monitor beside it).
    q.cmd(
        "chardev-add",
        json!({"id": "n", "backend": {"type": "null", "data": {}}}),
    );
    let ev = read_message();
    assert!(
        ev.contains("\r\n    \"event\": \"X_QCHAR_CHARDEV_ADDED\",\r\n"),
        "{ev}"
    );
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

#[test]
fn query_name_gives_the_name_of_dash_name() {
    let (_dir, mut proc, mut q) = qchar_and_qmp(
        "-nodefaults -display none -S -name guest1 -qmp unix:$D/a,server=on,wait=off",
    );
    assert_eq!(q.cmd("query-name", Value::Null), json!({"name": "guest1"}));
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
    let (_dir, mut proc, mut q) =
        qchar_and_qmp("-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off");
    assert_eq!(q.cmd("query-name", Value::Null), json!({}));
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
}

/// The replies of one `query-yank`/`yank` conversation with `program`
/// (qchar or QEMU, same command line); a client of socket chardev `s1` is
/// yanked and must see its connection end.
fn yank_conversation(program: &str) -> Vec<Value> {
    use std::io::Read;
    let dir = tempdir();
    let mut proc = Proc::spawn_program(
        program,
        &argv(
            "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off \
             -chardev socket,id=s1,path=$D/s1,server=on,wait=off -chardev ringbuf,id=r",
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    let mut replies = Vec::new();
    let mut ask = |q: &mut Qmp, cmd: Value| replies.push(q.execute(cmd));
    ask(&mut q, json!({"execute": "query-yank"}));
    let mut client = std::os::unix::net::UnixStream::connect(p(dir.path(), "s1")).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    wait_until("s1 connected", || {
        q.cmd("query-chardev", Value::Null)
            .as_array()
            .unwrap()
            .iter()
            .any(|c| {
                c["label"] == "s1" && !c["filename"].as_str().unwrap().starts_with("disconnected:")
            })
    });
    let chardev = |id: &str| json!({"type": "chardev", "id": id});
    ask(
        &mut q,
        json!({"execute": "yank", "arguments": {"instances": [chardev("s1")]}}),
    );
    let mut b = [0u8; 1];
    assert_eq!(
        client.read(&mut b).unwrap(),
        0,
        "{program}: the yanked connection ends"
    );
    for args in [
        json!({"instances": [chardev("r")]}),
        json!({"instances": [chardev("nope")]}),
        json!({"instances": [chardev("s1"), chardev("r")]}),
        json!({"instances": []}),
        json!({"instances": [{"type": "migration"}]}),
        json!({"instances": [{"type": "block-node", "node-name": "x"}]}),
        json!({"instances": [{"type": "chardev"}]}),
        json!({"instances": [{"type": "bogus"}]}),
        json!({"instances": [chardev("s1"), 1]}),
        json!({"instances": "s1"}),
        json!({"instances": [{"type": "chardev", "id": "s1", "x": 1}]}),
        json!({}),
    ] {
        ask(&mut q, json!({"execute": "yank", "arguments": args}));
    }
    // A change of an unused chardev re-creates it: it registers again, last.
    let unix = |path: &str| {
        json!({"type": "socket", "data": {"addr": {"type": "unix", "data": {"path": path}},
            "server": true, "wait": false}})
    };
    let s1b = p(dir.path(), "s1b");
    for cmd in [
        json!({"execute": "chardev-add", "arguments": {"id": "s2", "backend": unix(p(dir.path(), "s2").to_str().unwrap())}}),
        json!({"execute": "query-yank"}),
        json!({"execute": "chardev-change", "arguments": {"id": "s1", "backend": {"type": "null", "data": {}}}}),
        json!({"execute": "query-yank"}),
        json!({"execute": "chardev-change", "arguments": {"id": "s1", "backend": unix(s1b.to_str().unwrap())}}),
        json!({"execute": "query-yank"}),
        json!({"execute": "chardev-change", "arguments": {"id": "s2", "backend": unix(p(dir.path(), "s2b").to_str().unwrap())}}),
        json!({"execute": "query-yank"}),
        json!({"execute": "chardev-remove", "arguments": {"id": "s1"}}),
        json!({"execute": "query-yank"}),
    ] {
        ask(&mut q, cmd);
    }
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success());
    replies
}

#[test]
fn yank_as_qemu() {
    let ours = yank_conversation(common::qchar_bin());
    let chardevs = |ids: &[&str]| -> Value {
        Value::Array(
            ids.iter()
                .map(|id| json!({"type": "chardev", "id": id}))
                .collect(),
        )
    };
    let not_found = json!({"error": {"class": "DeviceNotFound", "desc": "Instance not found"}});
    assert_eq!(
        ours[0],
        json!({"return": chardevs(&["compat_monitor0", "s1"])})
    );
    assert_eq!(ours[1], json!({"return": {}}));
    assert_eq!(ours[2], not_found);
    assert_eq!(ours[3], not_found);
    assert_eq!(ours[4], not_found, "all or nothing");
    assert_eq!(ours[5], json!({"return": {}}));
    assert_eq!(
        ours[19],
        json!({"return": chardevs(&["compat_monitor0", "s2", "s1"])})
    );
    if !require(Prereq::Qemu) {
        return;
    }
    let theirs = yank_conversation("qemu-system-x86_64");
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "reply {i}");
    }
    assert_eq!(ours.len(), theirs.len());
    eprintln!(
        "yank_as_qemu: {} replies, the same from QEMU 7.2",
        ours.len()
    );
}

/// The binary's QMP reaches the registry's objects: a TLS server chardev
/// added at run time takes credentials and authorization made with
/// `object-add`, `qom-get` reads them back, and an `x-bridge` still goes
/// to the bridges.
#[test]
fn object_add_over_qmp_feeds_tls_chardevs() {
    let (dir, mut proc, mut q) =
        qchar_and_qmp("-machine none -display none -qmp unix:$D/a,server=on,wait=off");
    let pki = qchar_testkit::pki::Pki::new(&dir.path().join("pki"));
    let r = q.execute(json!({"execute": "object-add", "arguments": {
        "qom-type": "tls-creds-x509", "id": "tls0",
        "dir": pki.dir_str("server"), "endpoint": "server"}}));
    assert_eq!(r, json!({"return": {}}));
    let r = q.execute(json!({"execute": "object-add", "arguments": {
        "qom-type": "authz-simple", "id": "auth0",
        "identity": qchar_testkit::pki::CLIENT_DN}}));
    assert_eq!(r, json!({"return": {}}));
    let r = q.cmd(
        "qom-get",
        json!({"path": "/objects/tls0", "property": "endpoint"}),
    );
    assert_eq!(r, json!("server"));
    let r = q.execute(
        json!({"execute": "chardev-add", "arguments": {"id": "con", "backend": {
        "type": "socket", "data": {
            "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}},
            "server": true, "wait": false, "tls-creds": "tls0", "tls-authz": "auth0"}}}}),
    );
    assert_eq!(r, json!({"return": {}}), "{r}");
    let r = q.execute(json!({"execute": "object-add", "arguments": {
        "qom-type": "x-bridge", "id": "br", "chardev-a": "nope", "chardev-b": "con"}}));
    assert_eq!(
        r["error"]["desc"],
        "Property 'x-bridge.chardev-a' can't find value 'nope'"
    );
    let r = q.execute(json!({"execute": "object-del", "arguments": {"id": "br"}}));
    assert_eq!(r["error"]["desc"], "object 'br' not found");
    let r = q.execute(json!({"execute": "quit"}));
    assert_eq!(r, json!({"return": {}}));
    q.read_to_end();
    assert!(proc.wait().success());
}
