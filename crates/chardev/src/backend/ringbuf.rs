//! `ringbuf` (alias `memory`): output is kept in a fixed-size ring, oldest
//! bytes overwritten, and read back by `ringbuf-read`.

use std::io;
use std::task::{Context, Poll};

use super::{Backend, BackendEvent};
use crate::error::{ChardevError, Result};

/// QEMU's default ring size.
pub const DEFAULT_RINGBUF_SIZE: usize = 65536;

/// A power-of-two byte ring that overwrites its oldest bytes when full.
#[derive(Debug)]
pub struct RingBuf {
    buf: Box<[u8]>,
    /// Total bytes ever written (the write position, unwrapped).
    prod: u64,
    /// Total bytes ever consumed (the read position, unwrapped).
    cons: u64,
}

/// Checks a requested size the way QEMU does: positive and a power of two.
pub(crate) fn check_size(size: Option<i64>) -> Result<usize> {
    match size {
        None => Ok(DEFAULT_RINGBUF_SIZE),
        Some(s) if s > 0 && (s as u64).is_power_of_two() && s <= (1 << 30) => Ok(s as usize),
        Some(_) => Err(ChardevError::RingbufSize),
    }
}

impl RingBuf {
    /// A ring of `size` bytes; `size` must be a power of two.
    pub fn new(size: usize) -> Result<RingBuf> {
        if !size.is_power_of_two() {
            return Err(ChardevError::RingbufSize);
        }
        Ok(RingBuf {
            buf: vec![0; size].into_boxed_slice(),
            prod: 0,
            cons: 0,
        })
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes waiting to be read.
    pub fn len(&self) -> usize {
        (self.prod - self.cons) as usize
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.prod == self.cons
    }

    /// Appends `data`; when full, the oldest bytes are overwritten.
    pub fn write(&mut self, data: &[u8]) {
        let mask = self.buf.len() as u64 - 1;
        for &b in data {
            self.buf[(self.prod & mask) as usize] = b;
            self.prod += 1;
            if self.prod - self.cons > self.buf.len() as u64 {
                self.cons = self.prod - self.buf.len() as u64;
            }
        }
    }

    /// Removes and returns up to `max` of the oldest bytes.
    pub fn read(&mut self, max: usize) -> Vec<u8> {
        let n = self.len().min(max);
        let mask = self.buf.len() as u64 - 1;
        let out = (0..n as u64)
            .map(|i| self.buf[((self.cons + i) & mask) as usize])
            .collect();
        self.cons += n as u64;
        out
    }
}

/// The `ringbuf` backend.
pub(crate) struct RingbufBackend {
    ring: RingBuf,
    /// `ringbuf`, or `memory` (its old name, which QEMU reports as such).
    name: &'static str,
}

impl RingbufBackend {
    /// A ring of the requested size (QEMU's default when absent).
    pub(crate) fn new(size: Option<i64>) -> Result<RingbufBackend> {
        Ok(RingbufBackend {
            ring: RingBuf::new(check_size(size)?)?,
            name: "ringbuf",
        })
    }

    /// The same opened as `memory`.
    pub(crate) fn memory(size: Option<i64>) -> Result<RingbufBackend> {
        Ok(RingbufBackend {
            name: "memory",
            ..RingbufBackend::new(size)?
        })
    }
}

impl Backend for RingbufBackend {
    fn poll_event(&mut self, _cx: &mut Context<'_>, _buf: &mut [u8]) -> Poll<BackendEvent> {
        Poll::Pending
    }

    fn poll_write(&mut self, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.ring.write(data);
        Poll::Ready(Ok(data.len()))
    }

    fn filename(&self) -> String {
        self.name.into()
    }

    fn as_ringbuf(&mut self) -> Option<&mut RingBuf> {
        Some(&mut self.ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrites_oldest_bytes_when_full() {
        let mut r = RingBuf::new(4).unwrap();
        r.write(b"abcdef");
        assert_eq!(r.len(), 4);
        assert_eq!(r.read(10), b"cdef");
        assert!(r.is_empty());
    }

    #[test]
    fn partial_reads_keep_order() {
        let mut r = RingBuf::new(8).unwrap();
        r.write(b"hello");
        assert_eq!(r.read(2), b"he");
        r.write(b"world");
        assert_eq!(r.read(100), b"lloworld");
    }

    #[test]
    fn size_must_be_a_power_of_two() {
        for bad in [0, -1, 3, 100, 65535] {
            let e = check_size(Some(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                "size of ringbuf chardev must be power of two"
            );
        }
        assert_eq!(check_size(Some(1024)).unwrap(), 1024);
        assert_eq!(check_size(None).unwrap(), DEFAULT_RINGBUF_SIZE);
        assert!(RingBuf::new(6).is_err());
    }
}
