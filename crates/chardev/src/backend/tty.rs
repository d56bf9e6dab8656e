//! Terminal settings shared by the backends that sit on a tty (stdio, pty,
//! serial): raw mode, line parameters, modem lines and break.

use std::io;
use std::os::fd::RawFd;

use super::{modem, IoctlReply, Parity, SerialIoctl, SerialParams};
use crate::error::{ChardevError, Result};

/// Reads the termios of `fd`.
pub(crate) fn get_termios(fd: RawFd) -> io::Result<libc::termios> {
    // SAFETY: tcgetattr writes a termios into the zeroed struct we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(t)
    }
}

/// Applies a termios to `fd` now.
pub(crate) fn set_termios(fd: RawFd, t: &libc::termios) -> io::Result<()> {
    // SAFETY: tcsetattr only reads the termios we pass by reference.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts `fd` in raw mode (no echo, no line editing, 8 bits); `signals`
/// keeps Ctrl-C and friends raising signals. Returns the old settings.
pub(crate) fn make_raw(fd: RawFd, signals: bool) -> io::Result<libc::termios> {
    let old = get_termios(fd)?;
    let mut t = old;
    // SAFETY: cfmakeraw only edits the termios we own.
    unsafe { libc::cfmakeraw(&mut t) };
    if signals {
        t.c_lflag |= libc::ISIG;
    }
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    set_termios(fd, &t)?;
    Ok(old)
}

fn speed_constant(speed: u32) -> libc::speed_t {
    const TABLE: &[(u32, libc::speed_t)] = &[
        (50, libc::B50),
        (75, libc::B75),
        (110, libc::B110),
        (134, libc::B134),
        (150, libc::B150),
        (200, libc::B200),
        (300, libc::B300),
        (600, libc::B600),
        (1200, libc::B1200),
        (1800, libc::B1800),
        (2400, libc::B2400),
        (4800, libc::B4800),
        (9600, libc::B9600),
        (19200, libc::B19200),
        (38400, libc::B38400),
        (57600, libc::B57600),
        (115200, libc::B115200),
        (230400, libc::B230400),
        (460800, libc::B460800),
        (500000, libc::B500000),
        (576000, libc::B576000),
        (921600, libc::B921600),
        (1000000, libc::B1000000),
    ];
    // The nearest standard speed not above the request, as a real UART
    // divisor would round.
    let mut best = libc::B50;
    for &(s, c) in TABLE {
        if s <= speed {
            best = c;
        }
    }
    best
}

/// Applies line parameters to a tty, keeping it raw.
pub(crate) fn apply_params(fd: RawFd, p: &SerialParams) -> io::Result<()> {
    let mut t = get_termios(fd)?;
    let spd = speed_constant(p.speed);
    // SAFETY: the cfset* calls only edit the termios we own.
    unsafe {
        libc::cfsetispeed(&mut t, spd);
        libc::cfsetospeed(&mut t, spd);
    }
    t.c_cflag &= !(libc::CSIZE | libc::PARENB | libc::PARODD | libc::CSTOPB | libc::CMSPAR);
    t.c_cflag |= match p.data_bits {
        5 => libc::CS5,
        6 => libc::CS6,
        7 => libc::CS7,
        _ => libc::CS8,
    };
    match p.parity {
        Parity::None => {}
        Parity::Even => t.c_cflag |= libc::PARENB,
        Parity::Odd => t.c_cflag |= libc::PARENB | libc::PARODD,
        Parity::Mark => t.c_cflag |= libc::PARENB | libc::PARODD | libc::CMSPAR,
        Parity::Space => t.c_cflag |= libc::PARENB | libc::CMSPAR,
    }
    if p.stop_bits >= 2 {
        t.c_cflag |= libc::CSTOPB;
    }
    set_termios(fd, &t)
}

/// Carries out a serial ioctl on a real tty.
pub(crate) fn serial_ioctl(fd: RawFd, req: SerialIoctl) -> Result<IoctlReply> {
    let map = |e: io::Error| ChardevError::io("serial ioctl failed", e);
    match req {
        SerialIoctl::SetParams(p) => apply_params(fd, &p).map(|_| IoctlReply::Done).map_err(map),
        SerialIoctl::SetBreak(on) => {
            let r = if on { libc::TIOCSBRK } else { libc::TIOCCBRK };
            // SAFETY: TIOCSBRK/TIOCCBRK take no argument.
            if unsafe { libc::ioctl(fd, r) } != 0 {
                return Err(map(io::Error::last_os_error()));
            }
            Ok(IoctlReply::Done)
        }
        SerialIoctl::GetModem => {
            let mut bits: libc::c_int = 0;
            // SAFETY: TIOCMGET writes one c_int into `bits`, which we own.
            if unsafe { libc::ioctl(fd, libc::TIOCMGET, &mut bits) } != 0 {
                return Err(map(io::Error::last_os_error()));
            }
            Ok(IoctlReply::Modem(bits as u32))
        }
        SerialIoctl::SetModem(bits) => {
            let mut cur: libc::c_int = 0;
            // SAFETY: TIOCMGET writes one c_int into `cur`, which we own.
            if unsafe { libc::ioctl(fd, libc::TIOCMGET, &mut cur) } != 0 {
                return Err(map(io::Error::last_os_error()));
            }
            let out = (modem::DTR | modem::RTS) as libc::c_int;
            cur = (cur & !out) | (bits as libc::c_int & out);
            // SAFETY: TIOCMSET reads one c_int from `cur`, which we own.
            if unsafe { libc::ioctl(fd, libc::TIOCMSET, &cur) } != 0 {
                return Err(map(io::Error::last_os_error()));
            }
            Ok(IoctlReply::Done)
        }
    }
}
