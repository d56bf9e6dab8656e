//! Descriptors passed to the process, as socket chardevs use them
//! (`-chardev socket,fd=N`, QMP `{"type": "fd", "data": {"str": NAME}}`),
//! and descriptors received on a unix-socket connection (SCM_RIGHTS, what a
//! monitor's `getfd`/`add-fd` take).
//!
//! Where a socket's `fd` string is looked up follows QEMU 7.2: while a
//! monitor command runs (QMP `chardev-add`/`chardev-change`, HMP
//! `chardev-add`), it is only a name among that monitor's `getfd` names
//! (taken out of the list when found, whatever happens next); anywhere
//! else (the command line, a library caller) it is a descriptor number.
//! The monitor makes its names known for the length of a command with
//! [`with_monitor`], as QEMU's "current monitor".

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use rustix::fs::OFlags;
use rustix::io::FdFlags;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use crate::error::{ChardevError, Result};

/// Most descriptors taken from one message, as QEMU's socket chardev
/// (`TCP_MAX_FDS`); the kernel drops any beyond them.
pub const MAX_FDS_PER_MESSAGE: usize = 16;

/// A monitor's `getfd` names as a socket chardev sees them.
pub trait NamedFds: Send + Sync {
    /// Takes the descriptor named `name` out of the list.
    fn take(&self, name: &str) -> Option<OwnedFd>;
}

thread_local! {
    /// The monitor whose command runs on this thread (QEMU's `monitor_cur`).
    static CURRENT: RefCell<Option<Arc<dyn NamedFds>>> = const { RefCell::new(None) };
}

/// Runs `f` as a command of the monitor whose names are `names`: socket
/// `fd` strings opened meanwhile on this thread are names in that list.
/// Nests (the innermost monitor counts, as `human-monitor-command`'s).
pub fn with_monitor<R>(names: Arc<dyn NamedFds>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<dyn NamedFds>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.borrow_mut().replace(names));
    let _restore = Restore(prev);
    f()
}

/// The names of the monitor whose command runs on this thread, if one does.
pub(crate) fn current_monitor() -> Option<Arc<dyn NamedFds>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Which descriptor numbers a socket's `fd=N` may take (outside monitor
/// commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FdNumbers {
    /// Any open descriptor: the caller hands it over (a library user).
    #[default]
    Any,
    /// Only descriptors inherited across exec (close-on-exec clear, as no
    /// descriptor the process opened itself is); one taken is made
    /// close-on-exec, so it cannot be taken twice. The qchar binary's
    /// policy: a number that names one of its own descriptors, or one a
    /// chardev already holds, is refused instead of being closed twice.
    Inherited,
}

/// The descriptor a socket address of type `fd` names (QEMU's
/// `socket_get_fd`), as an owned descriptor; errors in QEMU's words. A
/// descriptor obtained here and then refused is closed.
pub(crate) fn socket_fd(
    s: &str,
    names: Option<&Arc<dyn NamedFds>>,
    numbers: FdNumbers,
) -> Result<OwnedFd> {
    let fd = match names {
        Some(names) => names.take(s).ok_or_else(|| {
            ChardevError::Invalid(format!("File descriptor named '{s}' has not been found"))
        })?,
        None => {
            let n = parse_int(s)
                .ok_or_else(|| ChardevError::Invalid(format!("Unable to parse FD number {s}")))?;
            take_number(n, numbers).ok_or_else(|| not_a_socket(s))?
        }
    };
    let is_socket = rustix::fs::fstat(&fd)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_socket());
    if !is_socket {
        // Closed here, as QEMU closes it.
        return Err(not_a_socket(s));
    }
    Ok(fd)
}

fn not_a_socket(s: &str) -> ChardevError {
    ChardevError::Invalid(format!("File descriptor '{s}' is not a socket"))
}

/// QEMU's `qemu_strtoi` in base 10: optional leading white space and sign,
/// digits to the end, within `int`.
fn parse_int(s: &str) -> Option<i32> {
    crate::fdset::strtol_decimal(s).and_then(|v| i32::try_from(v).ok())
}

/// Takes descriptor number `n` if `numbers` allows it and it is open.
fn take_number(n: RawFd, numbers: FdNumbers) -> Option<OwnedFd> {
    if n < 0 {
        return None;
    }
    // SAFETY: F_GETFD reads the flags of whatever `n` names, or fails with
    // EBADF; it touches no memory of ours.
    let flags = unsafe { libc::fcntl(n, libc::F_GETFD) };
    if flags == -1 {
        return None;
    }
    if numbers == FdNumbers::Inherited && flags & libc::FD_CLOEXEC != 0 {
        return None;
    }
    // SAFETY: `n` is open (F_GETFD succeeded). Under `Inherited` it is an
    // inherited descriptor nothing in this process owns (every descriptor
    // the process opens is close-on-exec, and one taken here is made so
    // below); under `Any` the caller hands it over by naming it.
    let fd = unsafe { OwnedFd::from_raw_fd(n) };
    if numbers == FdNumbers::Inherited {
        let _ = rustix::io::fcntl_setfd(&fd, FdFlags::CLOEXEC);
    }
    Some(fd)
}

/// Reads what is there on a unix stream socket like `recv`, and the
/// descriptors that came with it: the first is returned, the others are
/// closed now (QEMU closes them when a command takes the first). As in
/// QEMU, every descriptor received leaves with O_NONBLOCK cleared on its
/// open file description; all are close-on-exec.
pub(crate) fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        match rustix::net::recvmsg(
            fd,
            &mut [io::IoSliceMut::new(buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?.bytes,
        }
    };
    let mut first = None;
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for received in fds {
                if let Ok(fl) = rustix::fs::fcntl_getfl(&received) {
                    let _ = rustix::fs::fcntl_setfl(&received, fl - OFlags::NONBLOCK);
                }
                if first.is_none() {
                    first = Some(received);
                }
            }
        }
    }
    Ok((n, first))
}

/// The unix socket path a socket is bound to, if it has one.
pub(crate) fn bound_path(fd: BorrowedFd<'_>) -> Option<String> {
    let a = socket2::SockRef::from(&fd).local_addr().ok()?;
    let p = a.as_pathname()?;
    Some(p.to_string_lossy().into_owned())
}

/// Whether `fd` is a unix-domain socket.
pub(crate) fn is_unix_socket(fd: impl AsFd) -> bool {
    socket2::SockRef::from(&fd.as_fd())
        .domain()
        .is_ok_and(|d| d == socket2::Domain::UNIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn numbers_parse_as_qemu_strtoi() {
        assert_eq!(parse_int("5"), Some(5));
        assert_eq!(parse_int(" +5"), Some(5));
        assert_eq!(parse_int("-3"), Some(-3));
        for bad in ["", "abc", "5x", "0x5", "2147483648"] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn received_descriptors_beyond_the_first_close_and_all_turn_blocking() {
        let (a, b) = UnixStream::pair().unwrap();
        let (p1, p2) = UnixStream::pair().unwrap();
        p1.set_nonblocking(true).unwrap();
        let extra = std::fs::File::open("/dev/null").unwrap();
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        let fds = [p1.as_fd(), extra.as_fd()];
        assert!(cmsg.push(SendAncillaryMessage::ScmRights(&fds)));
        sendmsg(&a, &[io::IoSlice::new(b"x")], &mut cmsg, SendFlags::empty()).unwrap();
        let mut buf = [0u8; 8];
        let (n, got) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(n, 1);
        let got = got.unwrap();
        // The sender's descriptor shares the description: blocking now too.
        let fl = rustix::fs::fcntl_getfl(&p1).unwrap();
        assert!(!fl.contains(OFlags::NONBLOCK));
        assert!(rustix::io::fcntl_getfd(&got)
            .unwrap()
            .contains(FdFlags::CLOEXEC));
        drop(p2);
        assert!(is_unix_socket(&got));
    }
}
