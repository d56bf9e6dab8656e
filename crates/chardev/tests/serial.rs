//! The host `serial` backend on real ptys: raw mode, line settings through
//! ioctl, modem lines, break, and settings re-applied by the frontend after
//! a change to another serial line.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use net::*;
use qchar_chardev::{
    CharFrontend, ChardevEvent, FrontendHandlers, IoctlReply, Parity, Registry, SerialIoctl,
    SerialParams,
};
use qchar_testkit::{openpty, wait_until};
use support::Recorder;

fn slave_termios(path: &str) -> libc::termios {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(path)
        .unwrap();
    termios(&f)
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}
impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}

fn speed(t: &libc::termios) -> libc::speed_t {
    // SAFETY: reads the speed from a termios we own.
    unsafe { libc::cfgetospeed(t) }
}

#[test]
fn serial_on_a_pty_is_raw_and_moves_data() {
    let (master, slave) = openpty();
    let reg = Registry::new().unwrap();
    reg.add("s", serial(&slave)).unwrap();
    assert_eq!(filename(&reg, "s"), "serial");
    let t = slave_termios(&slave);
    assert_eq!(t.c_lflag & (libc::ICANON | libc::ECHO), 0, "raw mode");
    assert_eq!(speed(&t), libc::B115200, "QEMU's 115200 at open");
    assert_eq!(t.c_cflag & libc::CSIZE, libc::CS8);
    let fe = reg.attach("s").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    let mut m = fd_file(master);
    m.write_all(b"typed\r\n").unwrap();
    wait_until("input", || seen.lock().unwrap().input == b"typed\r\n");
    fe.write_all(b"out\n").unwrap();
    let mut buf = [0u8; 4];
    m.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"out\n", "no output processing (no CR added)");
    reg.shutdown();
}

#[test]
fn ioctls_reach_the_tty() {
    let (_master, slave) = openpty();
    let reg = Registry::new().unwrap();
    reg.add("s", serial(&slave)).unwrap();
    let fe = reg.attach("s").unwrap();
    let p = SerialParams {
        speed: 9600,
        parity: Parity::Even,
        data_bits: 7,
        stop_bits: 2,
    };
    assert_eq!(
        fe.ioctl(SerialIoctl::SetParams(p)).unwrap(),
        IoctlReply::Done
    );
    // From a thread other than the I/O thread, a setting is handed to it
    // (the caller, a vCPU, never waits for the tty): it lands shortly.
    wait_until("9600 on the line", || {
        speed(&slave_termios(&slave)) == libc::B9600
    });
    let t = slave_termios(&slave);
    assert_ne!(t.c_cflag & libc::CSTOPB, 0);
    // Linux ptys force CS8 and clear PARENB whatever is asked
    // (pty_set_termios); speed, stop bits and PARODD stick.
    assert_eq!(t.c_cflag & libc::PARODD, 0);
    let odd = SerialParams {
        parity: Parity::Odd,
        ..p
    };
    fe.ioctl(SerialIoctl::SetParams(odd)).unwrap();
    wait_until("odd parity on the line", || {
        slave_termios(&slave).c_cflag & libc::PARODD != 0
    });
    // A pty has no modem lines: the error is reported, nothing breaks.
    let _ = fe.ioctl(SerialIoctl::GetModem);
    let _ = fe.ioctl(SerialIoctl::SetModem(qchar_chardev::modem::DTR));
    let _ = fe.ioctl(SerialIoctl::SetBreak(true));
    let _ = fe.ioctl(SerialIoctl::SetBreak(false));
    reg.shutdown();
}

#[test]
fn serial_errors_and_non_ttys_as_qemu() {
    let reg = Registry::new().unwrap();
    let e = reg
        .add("s", serial("/nonexistent/tty"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Could not open '/nonexistent/tty': No such file or directory"
    );
    // A non-tty is accepted; ioctls are unsupported there.
    reg.add("n", serial("/dev/null")).unwrap();
    let fe = reg.attach("n").unwrap();
    assert_eq!(
        fe.ioctl(SerialIoctl::SetParams(SerialParams::default()))
            .unwrap(),
        IoctlReply::Unsupported
    );
    reg.shutdown();
}

/// A UART-like frontend: remembers the line settings it programmed and
/// programs them again when the backend changes.
struct Uart {
    params: Arc<Mutex<Option<SerialParams>>>,
    input: Arc<Mutex<Vec<u8>>>,
    changes: Arc<Mutex<usize>>,
}

impl FrontendHandlers for Uart {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, data: &[u8]) {
        self.input.lock().unwrap().extend_from_slice(data);
    }
    fn event(&mut self, _e: ChardevEvent) {}
    fn supports_hotswap(&self) -> bool {
        true
    }
    fn backend_changed(&mut self, fe: &CharFrontend) -> Result<(), String> {
        if let Some(p) = *self.params.lock().unwrap() {
            fe.ioctl(SerialIoctl::SetParams(p))
                .map_err(|e| e.to_string())?;
        }
        *self.changes.lock().unwrap() += 1;
        Ok(())
    }
}

#[test]
fn settings_are_reapplied_on_the_new_serial_line_after_a_change() {
    let (_m1, slave1) = openpty();
    let (m2, slave2) = openpty();
    let reg = Registry::new().unwrap();
    reg.add("s", serial(&slave1)).unwrap();
    // The new line starts at QEMU's defaults: 115200, one stop bit.
    let t = slave_termios(&slave1);
    assert_eq!(speed(&t), libc::B115200);
    let fe = reg.attach("s").unwrap();
    let params = Arc::new(Mutex::new(None));
    let input = Arc::new(Mutex::new(Vec::new()));
    let changes = Arc::new(Mutex::new(0));
    fe.set_handlers(Box::new(Uart {
        params: params.clone(),
        input: input.clone(),
        changes: changes.clone(),
    }));
    let p = SerialParams {
        speed: 19200,
        parity: Parity::Odd,
        data_bits: 6,
        stop_bits: 2,
    };
    *params.lock().unwrap() = Some(p);
    fe.ioctl(SerialIoctl::SetParams(p)).unwrap();
    reg.change("s", serial(&slave2)).unwrap();
    assert_eq!(*changes.lock().unwrap(), 1);
    let t = slave_termios(&slave2);
    assert_eq!(speed(&t), libc::B19200);
    assert_ne!(t.c_cflag & libc::PARODD, 0, "odd parity");
    assert_ne!(t.c_cflag & libc::CSTOPB, 0, "two stop bits");
    // CS bits and PARENB: Linux ptys force CS8 and no PARENB
    // (pty_set_termios), so a pty cannot show them.
    assert_eq!(t.c_cflag & libc::CSIZE, libc::CS8);
    assert_eq!(t.c_lflag & libc::ICANON, 0, "still raw");
    // And data flows on the new line.
    let mut m = fd_file(m2);
    m.write_all(b"new line").unwrap();
    wait_until("input", || *input.lock().unwrap() == b"new line");
    reg.shutdown();
}
