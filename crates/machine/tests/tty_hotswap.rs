//! A host tty (a pty) as the `serial` chardev backend: the line settings
//! the guest programmed reach the tty, and reach a second tty the chardev is
//! switched to (the UART's `backend_changed`).
//! Skips (with a message) where /dev/kvm cannot be opened; fails there
//! under `QCHAR_TEST_REQUIRE_ALL`.

mod common;

use std::fs::File;
use std::io::Read;
use std::time::Instant;

use qchar_chardev::spec::{ChardevBackend, ChardevHostdev};
use qchar_chardev::Registry;
use qchar_machine::guest::{demo_image, demo_line};
use qchar_machine::ExitReason;
use qchar_testkit::{require, Prereq};

use common::{boot_on, TIMEOUT};

/// A pty pair; the `serial` backend opens the slave path like a host tty.
struct Pty {
    master: File,
    slave: File,
    path: String,
}

impl Pty {
    fn open() -> Pty {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors into the ints we own; the
        // name, termios and winsize arguments may be NULL.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just returned by openpty and are
        // owned by nothing else.
        let (master, slave) = unsafe {
            use std::os::fd::FromRawFd;
            (File::from_raw_fd(master), File::from_raw_fd(slave))
        };
        let path = std::fs::read_link(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            slave.as_raw_fd()
        }))
        .unwrap()
        .to_string_lossy()
        .into_owned();
        Pty {
            master,
            slave,
            path,
        }
    }

    fn termios(&self) -> libc::termios {
        use std::os::fd::AsRawFd;
        // SAFETY: tcgetattr fills the zeroed termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.slave.as_raw_fd(), &mut t), 0);
            t
        }
    }

    fn speed(&self) -> libc::speed_t {
        let t = self.termios();
        // SAFETY: cfgetospeed only reads the termios.
        unsafe { libc::cfgetospeed(&t) }
    }

    fn set_speed(&self, speed: libc::speed_t) {
        use std::os::fd::AsRawFd;
        let mut t = self.termios();
        // SAFETY: cfsetospeed edits our termios; tcsetattr reads it.
        unsafe {
            libc::cfsetospeed(&mut t, speed);
            libc::cfsetispeed(&mut t, speed);
            assert_eq!(
                libc::tcsetattr(self.slave.as_raw_fd(), libc::TCSANOW, &t),
                0
            );
        }
    }

    fn spec(&self) -> ChardevBackend {
        ChardevBackend::Serial(ChardevHostdev {
            device: self.path.clone(),
            ..Default::default()
        })
    }
}

#[test]
fn hotswap_reapplies_line_settings_to_a_host_tty() {
    if !require(Prereq::Kvm) {
        return;
    }
    let (a, b) = (Pty::open(), Pty::open());
    a.set_speed(libc::B9600);
    b.set_speed(libc::B9600);
    let reg = Registry::new().unwrap();
    reg.add("ser0", a.spec()).unwrap();
    let vm = boot_on(&reg, "ser0", &demo_image(Some(3)));
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    // The guest's 115200 8N1 reached the tty.
    assert_eq!(a.speed(), libc::B115200);
    assert_eq!(a.termios().c_cflag & libc::CSIZE, libc::CS8);
    assert_eq!(b.speed(), libc::B9600);
    // A new tty gets the same settings from the UART's backend_changed.
    reg.change("ser0", b.spec())
        .expect("hotswap to the second tty");
    assert_eq!(b.speed(), libc::B115200);
    assert_eq!(
        b.termios().c_cflag & (libc::CSIZE | libc::PARENB),
        libc::CS8
    );
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut master = &a.master;
    while !String::from_utf8_lossy(&got).contains(&demo_line(3)) {
        assert!(Instant::now() < deadline, "no output on the first tty");
        let mut buf = [0u8; 256];
        let n = master.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    reg.shutdown();
}
