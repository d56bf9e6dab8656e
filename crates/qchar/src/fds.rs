// Hand-written part: fcntl(F_GETFD) and close(2) on bare descriptor numbers the parent passed, which no safe wrapper takes.
//! `-add-fd`: descriptors the parent process passed (libvirt's way of
//! handing over files qchar may not open itself), checked and duplicated
//! into descriptor sets as QEMU 7.2 does before it creates any chardev.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use crate::cli::{AddFdReq, Diag};

/// A duplicate to put into a set.
pub struct SetMember {
    /// The duplicate (close-on-exec).
    pub fd: OwnedFd,
    /// The set.
    pub set: i64,
    /// `opaque=`.
    pub opaque: Option<String>,
}

/// Checks every `-add-fd` in order (QEMU's checks and texts), duplicates
/// each descriptor, then closes the numbers given: the sets hold only the
/// duplicates, as in QEMU.
pub fn take(reqs: &[AddFdReq]) -> Result<Vec<SetMember>, Diag> {
    let mut out = Vec::with_capacity(reqs.len());
    for r in reqs {
        let at = |text: &str| Diag::at(Some(&r.loc), text);
        let fd = r.fd.unwrap_or(-1);
        if fd < 0 {
            return Err(at("fd option is required and must be non-negative"));
        }
        if fd <= 2 {
            return Err(at("fd cannot be a standard I/O stream"));
        }
        // Descriptors inherited across exec have close-on-exec clear; every
        // one qchar opens itself has it set.
        // SAFETY: F_GETFD reads the flags of whatever `fd` names, or fails
        // with EBADF; it touches no memory of ours.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags == -1 || flags & libc::FD_CLOEXEC != 0 {
            return Err(at("fd is not valid or already in use"));
        }
        let set = r.set.unwrap_or(-1);
        if set < 0 {
            return Err(at("set option is required and must be non-negative"));
        }
        // SAFETY: `fd` is open (F_GETFD succeeded) and stays open until the
        // loop below, after this borrow has ended.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let dup = rustix::io::fcntl_dupfd_cloexec(borrowed, 0).map_err(|e| {
            at(&format!(
                "error duplicating fd: {}",
                qchar_chardev::error::os_message(&e.into())
            ))
        })?;
        out.push(SetMember {
            fd: dup,
            set,
            opaque: r.opaque.clone(),
        });
    }
    let mut given: Vec<i32> = reqs.iter().filter_map(|r| r.fd).collect();
    given.sort_unstable();
    given.dedup();
    for fd in given {
        // SAFETY: every number here passed the checks above: open, inherited
        // (close-on-exec clear, so no object of this process owns it), and
        // closed once, now that its duplicates exist.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(out)
}
