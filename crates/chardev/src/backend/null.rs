//! `null`: output is discarded, there is never input.

use std::io;
use std::task::{Context, Poll};

use super::{Backend, BackendEvent};

/// The `null` backend.
pub(crate) struct NullBackend;

impl Backend for NullBackend {
    fn poll_event(&mut self, _cx: &mut Context<'_>, _buf: &mut [u8]) -> Poll<BackendEvent> {
        Poll::Pending
    }

    fn poll_write(&mut self, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(data.len()))
    }

    fn filename(&self) -> String {
        "null".into()
    }
}
