//! Opens that may wait on something outside the process, run off the I/O
//! thread when a monitor (which runs on it) asks for them: a connect to a
//! peer that may never answer, a `wait=on` server waiting for its client,
//! a FIFO waiting for its other end, a host name to resolve. QEMU blocks its
//! main loop for all of these; here every other chardev, monitor and guest
//! goes on, and the command's answer comes when the open ends.
//!
//! The request is checked on the caller's thread first (everything that
//! fails at once fails there, in QEMU's order), the open runs on a thread of
//! its own, and the result is installed back on the I/O thread, where the
//! caller's `done` gets it.

use std::net::IpAddr;
use std::sync::Weak;

use crate::chardev::Installed;
use crate::error::{ChardevError, Result};
use crate::fdset::FDSET_PREFIX;
use crate::registry::Registry;
use crate::spec::{ChardevBackend, InetSocketAddress, SocketAddressLegacy};

/// Where the answer to a request that may finish later goes. Called once,
/// on the caller's thread when the answer is known at once, else on the
/// registry's I/O thread.
pub type Done<T> = Box<dyn FnOnce(Result<T>) + Send + 'static>;

/// Whether opening `spec` may wait on a peer or on name resolution (see
/// the module documentation). Paths are looked at: a FIFO or a device may
/// block an open for writing, a regular file (or one to be created) not.
pub(crate) fn may_block(spec: &ChardevBackend) -> bool {
    // A mux or a hub is opened by the registry (it attaches to its base or
    // members), at once.
    if matches!(spec, ChardevBackend::Mux(_) | ChardevBackend::Hub(_)) {
        return false;
    }
    if spec.common().logfile.as_deref().is_some_and(path_may_block) {
        return true;
    }
    match spec {
        ChardevBackend::File(f) => {
            path_may_block(&f.out) || f.input.as_deref().is_some_and(path_may_block)
        }
        ChardevBackend::Socket(s) => {
            let server = s.server.unwrap_or(true);
            let waits = server && s.wait.unwrap_or(false);
            let connects = !server && s.reconnect.is_none() && s.reconnect_ms.is_none();
            match &s.addr {
                SocketAddressLegacy::Inet(i) => waits || connects || needs_lookup(i),
                SocketAddressLegacy::Unix(_) => waits || connects,
                // A passed socket is used as it is; a server may still wait.
                SocketAddressLegacy::Fd(_) => waits,
                SocketAddressLegacy::Vsock(_) => false,
            }
        }
        ChardevBackend::Udp(u) => std::iter::once(&u.remote)
            .chain(u.local.as_ref())
            .any(|a| matches!(a, SocketAddressLegacy::Inet(i) if needs_lookup(i))),
        _ => false,
    }
}

/// Whether resolving `i` may ask a name service: a host or a port that is
/// not written as a number.
fn needs_lookup(i: &InetSocketAddress) -> bool {
    let host_literal = i.host.is_empty() || i.host.parse::<IpAddr>().is_ok();
    let port_literal = i.port.is_empty() || i.port.parse::<u16>().is_ok();
    !(host_literal && port_literal)
}

/// Whether opening `path` may wait (see [`may_block`]).
fn path_may_block(path: &str) -> bool {
    !path.starts_with(FDSET_PREFIX) && std::fs::metadata(path).is_ok_and(|m| !m.is_file())
}

/// Opens `spec` on a thread of its own, then runs `then` with the result on
/// the I/O thread of `reg` (if the registry is still there; otherwise the
/// backend is dropped and `then` is dropped uncalled).
pub(crate) fn open_elsewhere(
    reg: &Registry,
    id: String,
    spec: ChardevBackend,
    then: impl FnOnce(Result<Installed>) + Send + 'static,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<Installed>>();
    let io = reg.io();
    let handle = io.handle().clone();
    let ctx = reg.open_ctx();
    let logger = reg.logger().clone();
    let spawned = std::thread::Builder::new()
        .name("qchar-open".into())
        .spawn(move || {
            let r = crate::registry::open_backend(&handle, &ctx, &logger, &id, &spec);
            // The registry may be gone: the backend is then dropped here.
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        then(Err(ChardevError::io(
            "cannot start a thread to open the backend",
            e,
        )));
        return;
    }
    io.handle().spawn(async move {
        if let Ok(r) = rx.await {
            then(r);
        }
    });
}

/// A handle on the registry that does not keep it alive: the I/O thread's
/// tasks hold one, so that dropping the last [`crate::Registry`] still stops
/// everything.
pub(crate) type WeakRegistry = Weak<crate::registry::Inner>;
