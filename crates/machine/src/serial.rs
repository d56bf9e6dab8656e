//! ISA serial ports: where a UART sits (COM1..COM4 or an explicit
//! `iobase`/`irq`, as `-device isa-serial`), and the glue between a UART and
//! a chardev frontend.
//!
//! - [`ChardevSink`] lets a UART write to and configure a chardev
//!   (`CharFrontend::write`/`ioctl`/`accept_input`).
//! - [`UartHandlers`] is what the chardev calls (`can_read`, `read`, break
//!   events, `write_ready`, `backend_changed`): it forwards to the UART and
//!   holds it only weakly, so a chardev never keeps a dead machine's UART.

use std::sync::{Arc, Weak};

use qchar_chardev::{
    CharFrontend, ChardevEvent, FrontendHandlers, FrontendStats, IoctlReply, Parity, SerialIoctl,
    SerialParams,
};

use crate::bus::PioDevice;
use crate::uart::{
    ControlReply, IrqLine, LineParity, SerialControl, SerialSink, Uart, UartError, UART_PORTS,
};

/// Where an ISA serial port decodes and interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComPort {
    /// First of its eight I/O ports.
    pub iobase: u16,
    /// ISA IRQ line (0..=15).
    pub irq: u32,
}

impl ComPort {
    /// First PC serial port: 0x3f8, IRQ 4.
    pub const COM1: ComPort = ComPort {
        iobase: 0x3f8,
        irq: 4,
    };
    /// Second: 0x2f8, IRQ 3.
    pub const COM2: ComPort = ComPort {
        iobase: 0x2f8,
        irq: 3,
    };
    /// Third: 0x3e8, IRQ 4.
    pub const COM3: ComPort = ComPort {
        iobase: 0x3e8,
        irq: 4,
    };
    /// Fourth: 0x2e8, IRQ 3.
    pub const COM4: ComPort = ComPort {
        iobase: 0x2e8,
        irq: 3,
    };

    /// A port at an explicit place (`-device isa-serial,iobase=..,irq=..`).
    pub fn new(iobase: u16, irq: u32) -> ComPort {
        ComPort { iobase, irq }
    }

    /// COM`index+1` (what the `index`-th `-serial` option gets), `None`
    /// beyond COM4.
    pub fn standard(index: usize) -> Option<ComPort> {
        [ComPort::COM1, ComPort::COM2, ComPort::COM3, ComPort::COM4]
            .get(index)
            .copied()
    }
}

/// A UART placed on the bus at a [`ComPort`].
#[derive(Debug)]
pub struct SerialPort {
    port: ComPort,
    uart: Arc<Uart>,
}

impl SerialPort {
    /// A reset UART at `port`, writing to `sink`, interrupting on `irq`.
    pub fn new(port: ComPort, sink: Arc<dyn SerialSink>, irq: Arc<dyn IrqLine>) -> SerialPort {
        SerialPort {
            port,
            uart: Arc::new(Uart::new(sink, irq)),
        }
    }

    /// Where it sits.
    pub fn port(&self) -> ComPort {
        self.port
    }

    /// The UART: feed input, read counters, hand it to handlers.
    pub fn uart(&self) -> &Arc<Uart> {
        &self.uart
    }

    /// Registers this UART's handlers on `fe`, and its counters as the
    /// frontend's stats (`x-query-chardev-stats`), and marks the frontend
    /// open.
    pub fn attach_frontend(&self, fe: &CharFrontend) {
        fe.set_handlers(Box::new(UartHandlers::new(&self.uart)));
        let uart = Arc::downgrade(&self.uart);
        fe.set_stats_hook(move || uart.upgrade().map(|u| uart_stats(&u)));
        fe.set_open(true);
    }
}

impl PioDevice for SerialPort {
    fn pio_read(&self, offset: u16) -> u8 {
        match u8::try_from(offset) {
            Ok(off) if u16::from(off) < UART_PORTS => self.uart.pio_read(off),
            _ => {
                self.uart.note_bad_access();
                0xff
            }
        }
    }

    fn pio_write(&self, offset: u16, value: u8) {
        match u8::try_from(offset) {
            Ok(off) if u16::from(off) < UART_PORTS => self.uart.pio_write(off, value),
            _ => self.uart.note_bad_access(),
        }
    }
}

/// A UART's counters as frontend stats.
pub fn uart_stats(uart: &Uart) -> FrontendStats {
    FrontendStats {
        kind: "uart".into(),
        counters: uart
            .stats()
            .counters()
            .into_iter()
            .map(|(name, v)| (name.to_string(), v))
            .collect(),
    }
}

/// A [`SerialSink`] that is a chardev frontend.
#[derive(Debug, Clone)]
pub struct ChardevSink {
    fe: CharFrontend,
}

impl ChardevSink {
    /// Wraps `fe`.
    pub fn new(fe: CharFrontend) -> ChardevSink {
        ChardevSink { fe }
    }

    /// The frontend.
    pub fn frontend(&self) -> &CharFrontend {
        &self.fe
    }
}

/// The UART's request as the chardev spells it.
pub fn to_ioctl(request: SerialControl) -> SerialIoctl {
    match request {
        SerialControl::SetParams(p) => SerialIoctl::SetParams(SerialParams {
            speed: p.speed,
            parity: match p.parity {
                LineParity::None => Parity::None,
                LineParity::Odd => Parity::Odd,
                LineParity::Even => Parity::Even,
                LineParity::Mark => Parity::Mark,
                LineParity::Space => Parity::Space,
            },
            data_bits: p.data_bits,
            stop_bits: p.stop_bits,
        }),
        SerialControl::SetBreak(on) => SerialIoctl::SetBreak(on),
        SerialControl::SetModem(bits) => SerialIoctl::SetModem(bits),
        SerialControl::GetModem => SerialIoctl::GetModem,
    }
}

impl SerialSink for ChardevSink {
    fn write(&self, data: &[u8]) -> usize {
        self.fe.write(data)
    }

    fn control(&self, request: SerialControl) -> Result<ControlReply, UartError> {
        match self.fe.ioctl(to_ioctl(request)) {
            Ok(IoctlReply::Done) => Ok(ControlReply::Done),
            Ok(IoctlReply::Modem(bits)) => Ok(ControlReply::Modem(bits)),
            Ok(IoctlReply::Unsupported) => Ok(ControlReply::Unsupported),
            Err(e) => Err(UartError::Backend {
                request: format!("{request:?}"),
                reason: e.to_string(),
            }),
        }
    }

    fn accept_input(&self) {
        self.fe.accept_input();
    }
}

/// The chardev callbacks of a UART.
#[derive(Debug)]
pub struct UartHandlers {
    uart: Weak<Uart>,
}

impl UartHandlers {
    /// Handlers forwarding to `uart`.
    pub fn new(uart: &Arc<Uart>) -> UartHandlers {
        UartHandlers {
            uart: Arc::downgrade(uart),
        }
    }
}

impl FrontendHandlers for UartHandlers {
    fn can_read(&mut self) -> usize {
        self.uart.upgrade().map_or(0, |u| u.can_receive())
    }

    fn read(&mut self, data: &[u8]) {
        if let Some(u) = self.uart.upgrade() {
            u.receive(data);
        }
    }

    fn event(&mut self, event: ChardevEvent) {
        if event == ChardevEvent::Break {
            if let Some(u) = self.uart.upgrade() {
                u.receive_break();
            }
        }
    }

    fn supports_hotswap(&self) -> bool {
        true
    }

    fn backend_changed(&mut self, fe: &CharFrontend) -> Result<(), String> {
        // The UART's sink is a clone of the same frontend, which now talks
        // to the new backend. A setting the new backend cannot take does not
        // refuse it (the guest keeps running either way): it is logged.
        if let Some(u) = self.uart.upgrade() {
            if let Err(e) = u.reapply_line_settings() {
                log::warn!("chardev '{}': re-applying serial settings: {e}", fe.id());
            }
        }
        Ok(())
    }

    fn write_ready(&mut self) {
        if let Some(u) = self.uart.upgrade() {
            u.output_ready();
        }
    }
}
