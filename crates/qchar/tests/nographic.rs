//! `-nographic` on a real terminal (a pty the test holds the master of):
//! the serial port and the HMP share stdio through a mux, Ctrl-a c switches
//! between them, Ctrl-a x quits, and the terminal settings come back.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use qchar_testkit::{require, wait_until, Prereq, WAIT};

struct Term {
    master: File,
    slave: OwnedFd,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Term {
    fn open() -> Term {
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty writes two descriptors; the other pointers may be
        // null.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty");
        // SAFETY: fresh descriptors from openpty, owned here.
        let (master, slave) = unsafe { (File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut rd = master.try_clone().unwrap();
        let s2 = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rd.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s2.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Term {
            master,
            slave,
            seen,
        }
    }

    fn termios(&self) -> libc::termios {
        // SAFETY: a zeroed termios is a valid buffer for tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: the slave descriptor is open; `t` is a valid buffer.
        let r = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) };
        assert_eq!(r, 0);
        t
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` appears after byte `from` of the output;
    /// returns where it ends.
    fn expect(&self, from: usize, needle: &str) -> usize {
        let start = Instant::now();
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let hay = &seen[from.min(seen.len())..];
                if let Some(i) = hay
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                {
                    return from + i + needle.len();
                }
            }
            if start.elapsed() > WAIT {
                panic!(
                    "{needle:?} never appeared; terminal shows:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn send(&mut self, s: &[u8]) {
        self.master.write_all(s).unwrap();
    }

    /// `qchar -nographic -S -fda builtin:demo` on this terminal.
    fn spawn_qchar(&self) -> Child {
        let fd = || Stdio::from(self.slave.try_clone().unwrap());
        Command::new(common::qchar_bin())
            .args(["-nographic", "-S", "-fda", "builtin:demo"])
            .stdin(fd())
            .stdout(fd())
            .stderr(fd())
            .spawn()
            .unwrap()
    }

    /// Ctrl-a x: QEMU's goodbye after byte `at`, then exit status 0.
    fn quit(&mut self, child: &mut Child, at: usize) {
        self.send(b"\x01x");
        self.expect(at, "QEMU: Terminated");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > WAIT {
                let _ = child.kill();
                panic!("qchar did not exit after Ctrl-a x");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn nographic_mux_on_a_terminal() {
    if !require(Prereq::Kvm) {
        return;
    }
    let mut term = Term::open();
    let before = term.termios();
    let mut child = term.spawn_qchar();

    // The stdio backend has the terminal once it is out of canonical mode.
    wait_until("raw mode on the terminal", || {
        term.termios().c_lflag & libc::ICANON == 0
    });
    // To the monitor: the prompt, then commands.
    term.send(b"\x01c");
    let at = term.expect(0, "(qemu) ");
    term.send(b"info status\r");
    let at = term.expect(at, "VM status: paused (prelaunch)");
    term.send(b"info chardev\r");
    let at = term.expect(at, "serial0-base: filename=stdio");
    term.send(b"cont\r");
    // The guest's output reaches the terminal whatever has the focus.
    let at = term.expect(at, "qchar-demo 0000000100");
    // Back to the serial port: input reaches the guest.
    term.send(b"\x01c");
    term.send(b"hello");
    let at = term.expect(at, "qchar-echo hello\r\n");
    term.quit(&mut child, at);
    // The terminal is as it was.
    let after = term.termios();
    assert_eq!(
        (after.c_iflag, after.c_oflag, after.c_lflag, after.c_cflag),
        (
            before.c_iflag,
            before.c_oflag,
            before.c_lflag,
            before.c_cflag
        )
    );
    assert_eq!(after.c_cc, before.c_cc);
}

/// Keys typed while qchar sets up (here: before it starts, kept by the
/// terminal until qchar puts it in raw mode) are acted on once every
/// frontend of the mux is in place, as in QEMU, whose main loop reads
/// nothing before: the serial port registers last and holds the focus, and
/// this Ctrl-a c moves it to the monitor. Acted on earlier, it moved the
/// focus from the monitor to the serial port, which then took it again when
/// it registered.
#[test]
fn keys_typed_during_set_up_wait_for_it() {
    if !require(Prereq::Kvm) {
        return;
    }
    let mut term = Term::open();
    term.send(b"\x01c");
    let mut child = term.spawn_qchar();
    let at = term.expect(0, "(qemu) ");
    term.send(b"info status\r");
    let at = term.expect(at, "VM status: paused (prelaunch)");
    term.quit(&mut child, at);
}
