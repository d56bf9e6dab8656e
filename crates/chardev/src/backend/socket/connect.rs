//! The client side: connecting in the background and again after a pause
//! when `reconnect` is set.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::address::Target;
use crate::error::Result;

/// A client that reconnects: connects off the I/O thread, and after a
/// failure or a lost connection waits `every` before trying again.
pub(super) struct Connector {
    target: Target,
    every: Duration,
    connecting: Option<JoinHandle<Result<OwnedFd>>>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A failed connect was logged since the last success.
    failure_logged: bool,
}

impl Connector {
    pub(super) fn new(target: Target, every: Duration) -> Connector {
        Connector {
            target,
            every,
            connecting: None,
            timer: None,
            failure_logged: false,
        }
    }

    /// Starts a connect in the background.
    pub(super) fn start(&mut self) {
        let t = self.target.clone();
        self.connecting = Some(tokio::task::spawn_blocking(move || t.connect()));
    }

    /// Tries again after the pause.
    pub(super) fn retry_later(&mut self) {
        self.timer = Some(Box::pin(tokio::time::sleep(self.every)));
    }

    /// A connection was made and is in use: the next failure is logged
    /// again.
    pub(super) fn connected(&mut self) {
        self.failure_logged = false;
    }

    /// Drives the background connect and the pause. `Ready(Some(fd))`: a
    /// connected socket; `Ready(None)`: something moved (a failure, the
    /// pause ended); poll again.
    pub(super) fn poll_connect(&mut self, cx: &mut Context<'_>, id: &str) -> Poll<Option<OwnedFd>> {
        if let Some(j) = self.connecting.as_mut() {
            let r = match Pin::new(j).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            self.connecting = None;
            match r {
                Ok(Ok(fd)) => return Poll::Ready(Some(fd)),
                Ok(Err(e)) => {
                    if !self.failure_logged {
                        self.failure_logged = true;
                        log::error!("Unable to connect character device {id}: {e}");
                    } else {
                        log::debug!("Unable to connect character device {id}: {e}");
                    }
                    self.retry_later();
                }
                Err(_) => self.retry_later(),
            }
            return Poll::Ready(None);
        }
        if let Some(t) = self.timer.as_mut() {
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.timer = None;
            self.start();
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}
