// Hand-written part: the break and modem-line ioctls (TIOCSBRK, TIOCMGET...), which rustix does not wrap.
//! Terminal settings shared by the backends that sit on a tty (stdio, pty,
//! serial): raw mode, line parameters (termios through rustix), modem lines
//! and break.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::termios::{
    tcgetattr, tcsetattr, ControlModes, LocalModes, OptionalActions, SpecialCodeIndex, Termios,
};

use super::{modem, IoctlReply, Parity, SerialIoctl, SerialParams};
use crate::error::{ChardevError, Result};

/// Reads the termios of `fd`.
pub(crate) fn get_termios(fd: BorrowedFd<'_>) -> io::Result<Termios> {
    Ok(tcgetattr(fd)?)
}

/// Applies a termios to `fd` now.
pub(crate) fn set_termios(fd: BorrowedFd<'_>, t: &Termios) -> io::Result<()> {
    Ok(tcsetattr(fd, OptionalActions::Now, t)?)
}

/// Puts `fd` in raw mode (no echo, no line editing, 8 bits); `signals`
/// keeps Ctrl-C and friends raising signals. Returns the old settings.
pub(crate) fn make_raw(fd: BorrowedFd<'_>, signals: bool) -> io::Result<Termios> {
    let old = get_termios(fd)?;
    let mut t = old.clone();
    t.make_raw();
    if signals {
        t.local_modes |= LocalModes::ISIG;
    }
    t.special_codes[SpecialCodeIndex::VMIN] = 1;
    t.special_codes[SpecialCodeIndex::VTIME] = 0;
    set_termios(fd, &t)?;
    Ok(old)
}

/// The nearest standard speed not above `speed`, as a real UART divisor
/// would round.
fn standard_speed(speed: u32) -> u32 {
    const TABLE: &[u32] = &[
        50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600,
        115200, 230400, 460800, 500000, 576000, 921600, 1000000,
    ];
    TABLE
        .iter()
        .copied()
        .take_while(|&s| s <= speed)
        .last()
        .unwrap_or(50)
}

/// Applies line parameters to a tty, keeping it raw.
pub(crate) fn apply_params(fd: BorrowedFd<'_>, p: &SerialParams) -> io::Result<()> {
    let mut t = get_termios(fd)?;
    t.set_speed(standard_speed(p.speed))?;
    let c = &mut t.control_modes;
    c.remove(
        ControlModes::CSIZE
            | ControlModes::PARENB
            | ControlModes::PARODD
            | ControlModes::CSTOPB
            | ControlModes::CMSPAR,
    );
    c.insert(match p.data_bits {
        5 => ControlModes::CS5,
        6 => ControlModes::CS6,
        7 => ControlModes::CS7,
        _ => ControlModes::CS8,
    });
    c.insert(match p.parity {
        Parity::None => ControlModes::empty(),
        Parity::Even => ControlModes::PARENB,
        Parity::Odd => ControlModes::PARENB | ControlModes::PARODD,
        Parity::Mark => ControlModes::PARENB | ControlModes::PARODD | ControlModes::CMSPAR,
        Parity::Space => ControlModes::PARENB | ControlModes::CMSPAR,
    });
    if p.stop_bits >= 2 {
        c.insert(ControlModes::CSTOPB);
    }
    set_termios(fd, &t)
}

/// Carries out a serial ioctl on a real tty.
pub(crate) fn serial_ioctl(fd: BorrowedFd<'_>, req: SerialIoctl) -> Result<IoctlReply> {
    let raw = fd.as_raw_fd();
    let map = |e: io::Error| ChardevError::io("serial ioctl failed", e);
    match req {
        SerialIoctl::SetParams(p) => apply_params(fd, &p).map(|_| IoctlReply::Done).map_err(map),
        SerialIoctl::SetBreak(on) => {
            let r = if on { libc::TIOCSBRK } else { libc::TIOCCBRK };
            // SAFETY: TIOCSBRK/TIOCCBRK take no argument; `raw` is borrowed open.
            if unsafe { libc::ioctl(raw, r) } != 0 {
                return Err(map(io::Error::last_os_error()));
            }
            Ok(IoctlReply::Done)
        }
        SerialIoctl::GetModem => {
            let mut bits: libc::c_int = 0;
            // SAFETY: TIOCMGET writes one c_int into `bits`, which we own.
            if unsafe { libc::ioctl(raw, libc::TIOCMGET, &mut bits) } != 0 {
                return Err(map(io::Error::last_os_error()));
            }
            Ok(IoctlReply::Modem(bits as u32))
        }
        SerialIoctl::SetModem(bits) => {
            let mut cur: libc::c_int = 0;
            // SAFETY: TIOCMGET writes one c_int into `cur`, which we own.
            if unsafe { libc::ioctl(raw, libc::TIOCMGET, &mut cur) } != 0 {
                return Err(map(io::Error::last_os_error()));
            }
            let out = (modem::DTR | modem::RTS) as libc::c_int;
            cur = (cur & !out) | (bits as libc::c_int & out);
            // SAFETY: TIOCMSET reads one c_int from `cur`, which we own.
            if unsafe { libc::ioctl(raw, libc::TIOCMSET, &cur) } != 0 {
                return Err(map(io::Error::last_os_error()));
            }
            Ok(IoctlReply::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::standard_speed;

    #[test]
    fn speeds_round_down_to_a_standard_one() {
        assert_eq!(standard_speed(9600), 9600);
        assert_eq!(standard_speed(10000), 9600);
        assert_eq!(standard_speed(115199), 57600);
        assert_eq!(standard_speed(5_000_000), 1_000_000);
        assert_eq!(standard_speed(10), 50);
    }
}
