//! The port-I/O bus: which device answers which x86 I/O port.
//!
//! Modelled as an 8-bit ISA bus: an access of 2 or 4 bytes is split into
//! byte accesses to consecutive ports, and string I/O (`rep insb/outsb`)
//! repeats the access on the same port, so devices only ever see single-byte
//! reads and writes. Ports no device claims read as 0xff (a floating bus) and
//! ignore writes.

use std::sync::Arc;

use thiserror::Error;

/// A device on the bus, decoding `len` ports from its base.
pub trait PioDevice: Send + Sync {
    /// A byte read at `offset` from the device's base port.
    fn pio_read(&self, offset: u16) -> u8;
    /// A byte write at `offset` from the device's base port.
    fn pio_write(&self, offset: u16, value: u8);
}

/// Errors of the bus module.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BusError {
    /// The range overlaps a device already on the bus.
    #[error("I/O ports {base:#x}..{end:#x} overlap a device already on the bus")]
    Overlap {
        /// First port asked for.
        base: u16,
        /// One past the last port asked for.
        end: u32,
    },
    /// A range of no ports, or one that runs past port 0xffff.
    #[error("invalid I/O port range {base:#x} (+{len})")]
    BadRange {
        /// First port asked for.
        base: u16,
        /// Number of ports.
        len: u16,
    },
}

struct Slot {
    base: u16,
    len: u16,
    device: Arc<dyn PioDevice>,
}

/// Counters of bus traffic no device claimed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BusStats {
    /// Byte reads of unclaimed ports.
    pub unclaimed_reads: u64,
    /// Byte writes to unclaimed ports.
    pub unclaimed_writes: u64,
}

/// The set of devices on the port-I/O bus. Built before the machine starts,
/// read-only afterwards.
#[derive(Default)]
pub struct PioBus {
    slots: Vec<Slot>,
    stats: BusStats,
}

impl std::fmt::Debug for PioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<String> = self
            .slots
            .iter()
            .map(|s| format!("{:#x}+{}", s.base, s.len))
            .collect();
        f.debug_struct("PioBus").field("ranges", &ranges).finish()
    }
}

impl PioBus {
    /// An empty bus.
    pub fn new() -> PioBus {
        PioBus::default()
    }

    /// Puts `device` at ports `base..base+len`.
    pub fn insert(
        &mut self,
        base: u16,
        len: u16,
        device: Arc<dyn PioDevice>,
    ) -> Result<(), BusError> {
        let end = u32::from(base) + u32::from(len);
        if len == 0 || end > 0x1_0000 {
            return Err(BusError::BadRange { base, len });
        }
        let overlaps = self.slots.iter().any(|s| {
            let s_end = u32::from(s.base) + u32::from(s.len);
            u32::from(base) < s_end && u32::from(s.base) < end
        });
        if overlaps {
            return Err(BusError::Overlap { base, end });
        }
        self.slots.push(Slot { base, len, device });
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(&Slot, u16)> {
        self.slots
            .iter()
            .find(|s| port >= s.base && u32::from(port) < u32::from(s.base) + u32::from(s.len))
            .map(|s| (s, port - s.base))
    }

    /// One byte read.
    pub fn read_byte(&mut self, port: u16) -> u8 {
        match self.find(port) {
            Some((slot, offset)) => slot.device.pio_read(offset),
            None => {
                self.stats.unclaimed_reads += 1;
                0xff
            }
        }
    }

    /// One byte write.
    pub fn write_byte(&mut self, port: u16, value: u8) {
        match self.find(port) {
            Some((slot, offset)) => slot.device.pio_write(offset, value),
            None => self.stats.unclaimed_writes += 1,
        }
    }

    /// An `in` of `size` bytes at `port`, repeated `data.len() / size` times
    /// (string I/O), filling `data`.
    pub fn read(&mut self, port: u16, size: usize, data: &mut [u8]) {
        let size = size.max(1);
        for chunk in data.chunks_mut(size) {
            for (i, byte) in chunk.iter_mut().enumerate() {
                // Port arithmetic wraps at 64 KiB as on the CPU.
                *byte = self.read_byte(port.wrapping_add(i as u16));
            }
        }
    }

    /// An `out` of `size` bytes at `port`, repeated `data.len() / size` times.
    pub fn write(&mut self, port: u16, size: usize, data: &[u8]) {
        let size = size.max(1);
        for chunk in data.chunks(size) {
            for (i, byte) in chunk.iter().enumerate() {
                self.write_byte(port.wrapping_add(i as u16), *byte);
            }
        }
    }

    /// Unclaimed-traffic counters.
    pub fn stats(&self) -> BusStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u16, u8)>>);

    impl PioDevice for Recorder {
        fn pio_read(&self, offset: u16) -> u8 {
            offset as u8
        }
        fn pio_write(&self, offset: u16, value: u8) {
            self.0.lock().unwrap().push((offset, value));
        }
    }

    #[test]
    fn dispatch_split_and_unclaimed() {
        let mut bus = PioBus::new();
        let dev = Arc::new(Recorder::default());
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        assert!(matches!(
            bus.insert(0x3fc, 8, dev.clone()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0xfffc, 8, dev.clone()),
            Err(BusError::BadRange { .. })
        ));
        let mut word = [0u8; 2];
        bus.read(0x3f9, 2, &mut word);
        assert_eq!(word, [1, 2]);
        // rep insb: same port three times.
        let mut rep = [0u8; 3];
        bus.read(0x3fa, 1, &mut rep);
        assert_eq!(rep, [2, 2, 2]);
        bus.write(0x3f8, 4, &[9, 8, 7, 6]);
        assert_eq!(*dev.0.lock().unwrap(), vec![(0, 9), (1, 8), (2, 7), (3, 6)]);
        // Straddling the end: the last byte is unclaimed.
        let mut dword = [0u8; 4];
        bus.read(0x3fd, 4, &mut dword);
        assert_eq!(dword, [5, 6, 7, 0xff]);
        assert_eq!(bus.read_byte(0x80), 0xff);
        bus.write_byte(0x80, 1);
        assert_eq!(
            bus.stats(),
            BusStats {
                unclaimed_reads: 2,
                unclaimed_writes: 1
            }
        );
    }
}
