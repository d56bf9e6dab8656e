//! A 16550A UART as found on PC COM ports, written from the 16550A data
//! sheet.
//!
//! Why not `vm-superio`'s `Serial`: that model keeps LSR.THRE permanently set
//! and drops output it cannot write, has no break reporting and does not tell
//! anyone about line-control or modem-control writes. qchar needs all three:
//! output with backpressure (a full chardev holds the guest instead of losing
//! bytes), LCR/divisor/MCR changes forwarded to the chardev as serial ioctls,
//! and break events shown in LSR.BI. It keeps `vm-superio`'s 64-byte RX FIFO
//! bound.
//!
//! FIFOs: the receive FIFO holds [`RX_FIFO_SIZE`] bytes whether or not FCR
//! enabled FIFO mode (a guest reading RBR byte by byte while LSR.DR is set
//! sees no difference, and the chardev is throttled less often). The
//! transmit side follows FCR: [`TX_FIFO_SIZE`] bytes in FIFO mode, a single
//! holding register otherwise. LSR.THRE and LSR.TEMT are set only when the
//! sink has taken every byte.
//!
//! The model does no I/O of its own. Everything leaves through the
//! [`SerialSink`] it is given (in qchar: the chardev's `CharFrontend`) and the
//! [`IrqLine`] it raises. It is driven from two sides:
//! - the guest, through [`Uart::pio_read`] / [`Uart::pio_write`] (the vCPU
//!   thread's port-I/O exits),
//! - the chardev, through [`Uart::can_receive`], [`Uart::receive`],
//!   [`Uart::receive_break`], [`Uart::output_ready`] and
//!   [`Uart::reapply_line_settings`] (the chardev I/O thread).
//!
//! Locking: the register state sits behind one mutex that is never held while
//! the sink is called, so a chardev that calls back into the UART from inside
//! `write` or `ioctl` cannot deadlock against it. The IRQ line is set while the
//! mutex is held, so level changes reach the interrupt controller in the order
//! the state changed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

/// Bytes the receive FIFO holds (vm-superio's bound; a real 16550A has 16).
pub const RX_FIFO_SIZE: usize = 64;
/// Bytes the transmit FIFO holds while FIFOs are enabled (as a 16550A).
pub const TX_FIFO_SIZE: usize = 16;
/// Input clock divided by 16: the baud rate for divisor 1.
pub const BASE_BAUD: u32 = 115_200;
/// Number of I/O ports a UART decodes.
pub const UART_PORTS: u16 = 8;

// Register offsets from the base port. Several share an offset and are told
// apart by direction or by LCR.DLAB.
/// Receiver buffer (read, DLAB=0).
pub const RBR: u8 = 0;
/// Transmitter holding register (write, DLAB=0).
pub const THR: u8 = 0;
/// Divisor latch, low byte (DLAB=1).
pub const DLL: u8 = 0;
/// Interrupt enable register (DLAB=0).
pub const IER: u8 = 1;
/// Divisor latch, high byte (DLAB=1).
pub const DLM: u8 = 1;
/// Interrupt identification register (read).
pub const IIR: u8 = 2;
/// FIFO control register (write).
pub const FCR: u8 = 2;
/// Line control register.
pub const LCR: u8 = 3;
/// Modem control register.
pub const MCR: u8 = 4;
/// Line status register.
pub const LSR: u8 = 5;
/// Modem status register.
pub const MSR: u8 = 6;
/// Scratch register.
pub const SCR: u8 = 7;

/// IER: interrupt when received data is available (or the FIFO timed out).
pub const IER_ERBFI: u8 = 0x01;
/// IER: interrupt when the transmitter holding register is empty.
pub const IER_ETBEI: u8 = 0x02;
/// IER: interrupt on receiver line status (overrun, parity, framing, break).
pub const IER_ELSI: u8 = 0x04;
/// IER: interrupt on modem status change.
pub const IER_EDSSI: u8 = 0x08;
/// IER bits a 16550A implements.
pub const IER_MASK: u8 = 0x0f;

/// IIR: no interrupt pending (bit 0 set).
pub const IIR_NO_INT: u8 = 0x01;
/// IIR: modem status interrupt.
pub const IIR_MSI: u8 = 0x00;
/// IIR: transmitter holding register empty interrupt.
pub const IIR_THRI: u8 = 0x02;
/// IIR: received data available interrupt.
pub const IIR_RDI: u8 = 0x04;
/// IIR: receiver line status interrupt.
pub const IIR_RLSI: u8 = 0x06;
/// IIR: character timeout (data waiting below the trigger level).
pub const IIR_CTI: u8 = 0x0c;
/// IIR: both bits saying FIFOs are enabled (identifies a 16550A).
pub const IIR_FIFO_ENABLED: u8 = 0xc0;

/// FCR: enable both FIFOs.
pub const FCR_FIFO_ENABLE: u8 = 0x01;
/// FCR: clear the receive FIFO.
pub const FCR_CLEAR_RX: u8 = 0x02;
/// FCR: clear the transmit FIFO.
pub const FCR_CLEAR_TX: u8 = 0x04;
/// FCR: receive trigger level field (bits 7:6 -> 1, 4, 8, 14 bytes).
pub const FCR_TRIGGER_MASK: u8 = 0xc0;

/// LCR: word length field (bits 1:0 -> 5..8 data bits).
pub const LCR_WLS_MASK: u8 = 0x03;
/// LCR: two stop bits (1.5 with 5-bit words).
pub const LCR_STB: u8 = 0x04;
/// LCR: parity enable.
pub const LCR_PEN: u8 = 0x08;
/// LCR: even parity select.
pub const LCR_EPS: u8 = 0x10;
/// LCR: stick parity (with EPS: space, without: mark).
pub const LCR_STICK: u8 = 0x20;
/// LCR: transmit a break (hold the line at space).
pub const LCR_BREAK: u8 = 0x40;
/// LCR: divisor latch access bit.
pub const LCR_DLAB: u8 = 0x80;

/// MCR: data terminal ready output.
pub const MCR_DTR: u8 = 0x01;
/// MCR: request to send output.
pub const MCR_RTS: u8 = 0x02;
/// MCR: auxiliary output 1 (loops back to RI).
pub const MCR_OUT1: u8 = 0x04;
/// MCR: auxiliary output 2 (gates the IRQ on real PCs; loops back to DCD).
pub const MCR_OUT2: u8 = 0x08;
/// MCR: local loopback mode.
pub const MCR_LOOP: u8 = 0x10;
/// MCR bits a 16550A implements.
pub const MCR_MASK: u8 = 0x1f;

/// LSR: data ready (receive FIFO not empty).
pub const LSR_DR: u8 = 0x01;
/// LSR: overrun error (a byte arrived with the receive FIFO full).
pub const LSR_OE: u8 = 0x02;
/// LSR: parity error.
pub const LSR_PE: u8 = 0x04;
/// LSR: framing error.
pub const LSR_FE: u8 = 0x08;
/// LSR: break interrupt (the line was held at space for a whole character).
pub const LSR_BI: u8 = 0x10;
/// LSR: transmitter holding register (or transmit FIFO) empty.
pub const LSR_THRE: u8 = 0x20;
/// LSR: transmitter empty (holding register and shift register).
pub const LSR_TEMT: u8 = 0x40;
/// LSR: error in receive FIFO (FIFO mode).
pub const LSR_FIFO_ERR: u8 = 0x80;
/// LSR: the error bits a read of LSR clears.
pub const LSR_ERRORS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

/// MSR: clear-to-send changed since MSR was last read.
pub const MSR_DCTS: u8 = 0x01;
/// MSR: data-set-ready changed since MSR was last read.
pub const MSR_DDSR: u8 = 0x02;
/// MSR: ring indicator went from on to off.
pub const MSR_TERI: u8 = 0x04;
/// MSR: data-carrier-detect changed since MSR was last read.
pub const MSR_DDCD: u8 = 0x08;
/// MSR: clear to send.
pub const MSR_CTS: u8 = 0x10;
/// MSR: data set ready.
pub const MSR_DSR: u8 = 0x20;
/// MSR: ring indicator.
pub const MSR_RI: u8 = 0x40;
/// MSR: data carrier detect.
pub const MSR_DCD: u8 = 0x80;
/// MSR: the four delta bits.
pub const MSR_DELTAS: u8 = 0x0f;

/// Modem lines assumed when the backend cannot tell (no tty behind it): the
/// other end is present and ready.
const MSR_DEFAULT_STATUS: u8 = MSR_CTS | MSR_DSR | MSR_DCD;
/// Divisor after reset (9600 baud); a real 16550A leaves it undefined.
const RESET_DIVISOR: u16 = 12;

/// Errors of the UART module.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UartError {
    /// The sink (chardev) refused a control request.
    #[error("serial backend refused {request}: {reason}")]
    Backend {
        /// What was asked.
        request: String,
        /// What the backend said.
        reason: String,
    },
    /// A port access outside the UART's eight registers.
    #[error("UART register offset {0} out of range")]
    BadOffset(u64),
}

/// Parity setting of the line (LCR bits 3..5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineParity {
    /// No parity bit.
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
    /// Parity bit always 1.
    Mark,
    /// Parity bit always 0.
    Space,
}

/// Line parameters the guest programmed, in the form a serial ioctl wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineParams {
    /// Bits per second (`BASE_BAUD / divisor`).
    pub speed: u32,
    /// Parity.
    pub parity: LineParity,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Stop bits, 1 or 2 (2 also stands for 1.5 with 5-bit words).
    pub stop_bits: u8,
}

impl LineParams {
    /// Decodes LCR and the divisor; `None` for divisor 0, which gives no clock.
    pub fn from_registers(lcr: u8, divisor: u16) -> Option<LineParams> {
        if divisor == 0 {
            return None;
        }
        let parity = if lcr & LCR_PEN == 0 {
            LineParity::None
        } else {
            match (lcr & LCR_STICK != 0, lcr & LCR_EPS != 0) {
                (false, false) => LineParity::Odd,
                (false, true) => LineParity::Even,
                (true, false) => LineParity::Mark,
                (true, true) => LineParity::Space,
            }
        };
        Some(LineParams {
            speed: BASE_BAUD / u32::from(divisor),
            parity,
            data_bits: (lcr & LCR_WLS_MASK) + 5,
            stop_bits: if lcr & LCR_STB != 0 { 2 } else { 1 },
        })
    }
}

/// Modem-control output: data terminal ready (Linux `TIOCM_DTR`).
pub const TIOCM_DTR: u32 = 0x002;
/// Modem-control output: request to send (Linux `TIOCM_RTS`).
pub const TIOCM_RTS: u32 = 0x004;
/// Modem-status input: clear to send (Linux `TIOCM_CTS`).
pub const TIOCM_CTS: u32 = 0x020;
/// Modem-status input: carrier detect (Linux `TIOCM_CAR`).
pub const TIOCM_CAR: u32 = 0x040;
/// Modem-status input: ring indicator (Linux `TIOCM_RNG`).
pub const TIOCM_RNG: u32 = 0x080;
/// Modem-status input: data set ready (Linux `TIOCM_DSR`).
pub const TIOCM_DSR: u32 = 0x100;

/// A serial control request the UART sends to its sink (QEMU's
/// `CHR_IOCTL_SERIAL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialControl {
    /// Speed, parity, data and stop bits changed.
    SetParams(LineParams),
    /// Start (true) or end (false) sending a break.
    SetBreak(bool),
    /// Set the modem-control outputs (`TIOCM_DTR | TIOCM_RTS` bits).
    SetModem(u32),
    /// Read the modem-status inputs (`TIOCM_CTS`, `TIOCM_DSR`, ... bits).
    GetModem,
}

/// The sink's answer to a [`SerialControl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlReply {
    /// Applied.
    Done,
    /// Modem-status bits, the answer to [`SerialControl::GetModem`].
    Modem(u32),
    /// The backend has no serial line (a file, a socket...): ignored.
    Unsupported,
}

/// Where a UART's output and control requests go. In qchar this is the
/// chardev `CharFrontend`; tests use [`crate::sink::CaptureSink`].
pub trait SerialSink: Send + Sync {
    /// Offers output; returns how many leading bytes were taken (0 when the
    /// sink is full). Must not block. When it returned short the sink later
    /// calls [`Uart::output_ready`].
    fn write(&self, data: &[u8]) -> usize;
    /// Applies a serial control request.
    fn control(&self, request: SerialControl) -> Result<ControlReply, UartError>;
    /// Tells the sink that the UART has room for input again after
    /// [`Uart::can_receive`] returned 0.
    fn accept_input(&self);
}

/// An interrupt request line the UART drives (level semantics; the interrupt
/// controller decides about edges).
pub trait IrqLine: Send + Sync {
    /// Drives the line high (`true`) or low.
    fn set_level(&self, level: bool);
}

/// An IRQ line that goes nowhere (a UART used without interrupt controller).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _level: bool) {}
}

/// What went through the UART, and what a guest or a sink did that a real
/// UART would not survive gracefully; for tests, debugging and
/// `x-query-chardev-stats` (see [`UartStats::counters`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UartStats {
    /// Bytes the sink accepted.
    pub tx_bytes: u64,
    /// THR writes while the transmit FIFO was full (byte dropped, as on
    /// hardware).
    pub tx_dropped: u64,
    /// Times a sink write returned short (backpressure episodes).
    pub tx_blocked: u64,
    /// FCR writes that cleared the transmit FIFO (asked, or by switching
    /// FIFO mode).
    pub tx_fifo_clears: u64,
    /// Bytes those clears discarded.
    pub tx_cleared: u64,
    /// Bytes the sink delivered into the receive FIFO.
    pub rx_received: u64,
    /// Bytes the guest read from RBR.
    pub rx_bytes: u64,
    /// Input bytes dropped because the receive FIFO was full (LSR.OE).
    pub rx_overruns: u64,
    /// FCR writes that cleared the receive FIFO.
    pub rx_fifo_clears: u64,
    /// Bytes those clears discarded.
    pub rx_cleared: u64,
    /// Break conditions received.
    pub breaks: u64,
    /// Control requests the sink refused.
    pub control_errors: u64,
    /// Accesses the UART could not decode (offsets beyond 7).
    pub bad_accesses: u64,
}

impl UartStats {
    /// Every counter with its name as `x-query-chardev-stats` prints it.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("tx-bytes", self.tx_bytes),
            ("tx-dropped", self.tx_dropped),
            ("tx-blocked", self.tx_blocked),
            ("tx-fifo-clears", self.tx_fifo_clears),
            ("tx-cleared-bytes", self.tx_cleared),
            ("rx-bytes", self.rx_received),
            ("rx-read-bytes", self.rx_bytes),
            ("rx-overruns", self.rx_overruns),
            ("rx-fifo-clears", self.rx_fifo_clears),
            ("rx-cleared-bytes", self.rx_cleared),
            ("breaks", self.breaks),
            ("control-errors", self.control_errors),
            ("bad-accesses", self.bad_accesses),
        ]
    }
}

/// Everything behind the UART's mutex.
#[derive(Debug)]
struct Regs {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: u16,
    fifo_enabled: bool,
    rx_trigger: usize,
    /// Latched LSR error bits (OE, PE, FE, BI) and FIFO error.
    lsr_errors: u8,
    /// Modem-status inputs (upper nibble) and deltas (lower nibble).
    msr: u8,
    rx: VecDeque<u8>,
    /// Bytes written by the guest not yet taken by the sink.
    tx: VecDeque<u8>,
    /// Bumped by every clear of `tx`: a flush that copied bytes out of
    /// `tx` owns their removal only if no clear ran meanwhile.
    tx_epoch: u64,
    /// THRE interrupt condition (set when the transmitter empties or ETBEI is
    /// enabled with it empty; cleared by an IIR read reporting it or a THR
    /// write).
    thr_ipending: bool,
    /// `can_receive` returned 0: the sink waits for `accept_input`.
    rx_throttled: bool,
    irq_level: bool,
    /// Last values sent to the sink, so only changes go out and a new backend
    /// can be given the same.
    sent_params: Option<LineParams>,
    sent_break: Option<bool>,
    sent_modem: Option<u32>,
    stats: UartStats,
}

impl Regs {
    fn new() -> Regs {
        Regs {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            divisor: RESET_DIVISOR,
            fifo_enabled: false,
            rx_trigger: 1,
            lsr_errors: 0,
            msr: MSR_DEFAULT_STATUS,
            rx: VecDeque::with_capacity(RX_FIFO_SIZE),
            tx: VecDeque::with_capacity(TX_FIFO_SIZE),
            tx_epoch: 0,
            thr_ipending: false,
            rx_throttled: false,
            irq_level: false,
            sent_params: None,
            sent_break: None,
            sent_modem: None,
            stats: UartStats::default(),
        }
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn tx_capacity(&self) -> usize {
        if self.fifo_enabled {
            TX_FIFO_SIZE
        } else {
            1
        }
    }

    fn lsr(&self) -> u8 {
        let mut lsr = self.lsr_errors;
        if !self.rx.is_empty() {
            lsr |= LSR_DR;
        }
        if self.tx.is_empty() {
            lsr |= LSR_THRE | LSR_TEMT;
        }
        lsr
    }

    /// The modem-status register as the guest sees it.
    fn msr_value(&self) -> u8 {
        if self.loopback() {
            // Outputs feed the inputs: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
            let mut status = 0;
            if self.mcr & MCR_RTS != 0 {
                status |= MSR_CTS;
            }
            if self.mcr & MCR_DTR != 0 {
                status |= MSR_DSR;
            }
            if self.mcr & MCR_OUT1 != 0 {
                status |= MSR_RI;
            }
            if self.mcr & MCR_OUT2 != 0 {
                status |= MSR_DCD;
            }
            status | (self.msr & MSR_DELTAS)
        } else {
            self.msr
        }
    }

    /// Replaces the modem-status inputs, latching the delta bits.
    fn set_modem_status(&mut self, status: u8) {
        let old = self.msr & !MSR_DELTAS;
        let changed = old ^ status;
        let mut deltas = self.msr & MSR_DELTAS;
        if changed & MSR_CTS != 0 {
            deltas |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            deltas |= MSR_DDSR;
        }
        if changed & MSR_DCD != 0 {
            deltas |= MSR_DDCD;
        }
        if old & MSR_RI != 0 && status & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        self.msr = status | deltas;
    }

    /// The highest-priority pending, enabled interrupt (IIR bits 3:0).
    fn pending_interrupt(&self) -> u8 {
        if self.ier & IER_ELSI != 0 && self.lsr_errors & LSR_ERRORS != 0 {
            IIR_RLSI
        } else if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            if self.fifo_enabled && self.rx.len() < self.rx_trigger {
                IIR_CTI
            } else {
                IIR_RDI
            }
        } else if self.ier & IER_ETBEI != 0 && self.thr_ipending {
            IIR_THRI
        } else if self.ier & IER_EDSSI != 0 && self.msr & MSR_DELTAS != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        }
    }

    fn line_params(&self) -> Option<LineParams> {
        LineParams::from_registers(self.lcr, self.divisor)
    }

    /// Queues a SetParams if the programmed parameters changed. Only done
    /// with DLAB clear: a guest sets DLAB, writes DLL and DLM, then clears
    /// DLAB, and the half-written divisor in between is not worth sending.
    fn note_params(&mut self, fx: &mut Effects) {
        if self.dlab() {
            return;
        }
        if let Some(params) = self.line_params() {
            if self.sent_params != Some(params) {
                self.sent_params = Some(params);
                fx.controls.push(SerialControl::SetParams(params));
            }
        }
    }

    /// The break the line carries: LCR.BREAK, except in loopback where the
    /// transmitter is cut off from the line.
    fn note_break(&mut self, fx: &mut Effects) {
        let on = self.lcr & LCR_BREAK != 0 && !self.loopback();
        if self.sent_break.unwrap_or(false) != on {
            self.sent_break = Some(on);
            fx.controls.push(SerialControl::SetBreak(on));
        }
    }

    /// Queues a SetModem if DTR/RTS as seen on the line changed (loopback
    /// forces the outputs inactive).
    fn note_modem(&mut self, fx: &mut Effects) {
        let mut bits = 0;
        if !self.loopback() {
            if self.mcr & MCR_DTR != 0 {
                bits |= TIOCM_DTR;
            }
            if self.mcr & MCR_RTS != 0 {
                bits |= TIOCM_RTS;
            }
        }
        if self.sent_modem != Some(bits) {
            self.sent_modem = Some(bits);
            fx.controls.push(SerialControl::SetModem(bits));
        }
    }

    fn clear_rx(&mut self, fx: &mut Effects) {
        self.stats.rx_cleared += self.rx.len() as u64;
        self.rx.clear();
        self.lsr_errors &= !LSR_FIFO_ERR;
        if self.rx_throttled {
            self.rx_throttled = false;
            fx.accept_input = true;
        }
    }

    fn clear_tx(&mut self) {
        // A flush in flight no longer owns the bytes it copied.
        self.tx_epoch = self.tx_epoch.wrapping_add(1);
        self.stats.tx_cleared += self.tx.len() as u64;
        if !self.tx.is_empty() {
            self.tx.clear();
            self.thr_ipending = true;
        }
    }

    fn read(&mut self, offset: u8, fx: &mut Effects) -> u8 {
        match offset {
            DLL if self.dlab() => self.divisor.to_le_bytes()[0],
            DLM if self.dlab() => self.divisor.to_le_bytes()[1],
            RBR => {
                let byte = self.rx.pop_front();
                if byte.is_some() {
                    self.stats.rx_bytes += 1;
                }
                if self.rx.is_empty() {
                    self.lsr_errors &= !LSR_FIFO_ERR;
                    if self.rx_throttled {
                        self.rx_throttled = false;
                        fx.accept_input = true;
                    }
                }
                byte.unwrap_or(0)
            }
            IER => self.ier,
            IIR => {
                let id = self.pending_interrupt();
                if id == IIR_THRI {
                    // Reading IIR while it reports THRE acknowledges it.
                    self.thr_ipending = false;
                }
                let fifo = if self.fifo_enabled {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                id | fifo
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let lsr = self.lsr();
                self.lsr_errors = 0;
                lsr
            }
            MSR => {
                let msr = self.msr_value();
                self.msr &= !MSR_DELTAS;
                msr
            }
            SCR => self.scr,
            _ => {
                self.stats.bad_accesses += 1;
                0xff
            }
        }
    }

    fn write(&mut self, offset: u8, value: u8, fx: &mut Effects) {
        match offset {
            DLL if self.dlab() => {
                self.divisor = (self.divisor & 0xff00) | u16::from(value);
            }
            DLM if self.dlab() => {
                self.divisor = (self.divisor & 0x00ff) | (u16::from(value) << 8);
            }
            THR => {
                self.thr_ipending = false;
                if self.loopback() {
                    if self.rx.len() < RX_FIFO_SIZE {
                        self.rx.push_back(value);
                    } else {
                        self.lsr_errors |= LSR_OE;
                        self.stats.rx_overruns += 1;
                    }
                    // The byte left the transmitter at once.
                    self.thr_ipending = true;
                } else if self.tx.len() < self.tx_capacity() {
                    self.tx.push_back(value);
                    fx.flush = true;
                } else {
                    // Overwriting a full holding register loses the byte on
                    // real hardware as well.
                    self.stats.tx_dropped += 1;
                    log::debug!("uart: THR write with transmit FIFO full, byte dropped");
                }
            }
            IER => {
                let old = self.ier;
                self.ier = value & IER_MASK;
                if old & IER_ETBEI == 0 && self.ier & IER_ETBEI != 0 && self.tx.is_empty() {
                    self.thr_ipending = true;
                }
            }
            FCR => {
                let enable = value & FCR_FIFO_ENABLE != 0;
                let switch = enable != self.fifo_enabled;
                if switch || (enable && value & FCR_CLEAR_RX != 0) {
                    self.stats.rx_fifo_clears += 1;
                }
                if switch || (enable && value & FCR_CLEAR_TX != 0) {
                    self.stats.tx_fifo_clears += 1;
                }
                if switch {
                    // Switching FIFO mode resets both FIFOs.
                    self.clear_rx(fx);
                    self.clear_tx();
                    self.fifo_enabled = enable;
                }
                if enable {
                    if value & FCR_CLEAR_RX != 0 {
                        self.clear_rx(fx);
                    }
                    if value & FCR_CLEAR_TX != 0 {
                        self.clear_tx();
                    }
                    self.rx_trigger = match value & FCR_TRIGGER_MASK {
                        0x00 => 1,
                        0x40 => 4,
                        0x80 => 8,
                        _ => 14,
                    };
                }
            }
            LCR => {
                self.lcr = value;
                self.note_params(fx);
                self.note_break(fx);
            }
            MCR => {
                self.mcr = value & MCR_MASK;
                self.note_modem(fx);
                self.note_break(fx);
            }
            LSR | MSR => {
                // Read-only on a 16550A (factory test registers): ignored.
            }
            SCR => self.scr = value,
            _ => self.stats.bad_accesses += 1,
        }
    }
}

/// Work to do after the register mutex is released.
#[derive(Debug, Default)]
struct Effects {
    controls: Vec<SerialControl>,
    flush: bool,
    accept_input: bool,
}

/// A 16550A UART. Shared (`Arc`) between the vCPU thread and the chardev I/O
/// thread; every method takes `&self`.
pub struct Uart {
    regs: Mutex<Regs>,
    sink: Arc<dyn SerialSink>,
    irq: Arc<dyn IrqLine>,
    /// A thread is pushing the transmit FIFO into the sink.
    flushing: AtomicBool,
    /// Another flush was asked for while one was running.
    flush_again: AtomicBool,
}

impl std::fmt::Debug for Uart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uart")
            .field("regs", &self.regs)
            .finish_non_exhaustive()
    }
}

impl Uart {
    /// A UART in its reset state, sending to `sink` and interrupting on `irq`.
    pub fn new(sink: Arc<dyn SerialSink>, irq: Arc<dyn IrqLine>) -> Uart {
        Uart {
            regs: Mutex::new(Regs::new()),
            sink,
            irq,
            flushing: AtomicBool::new(false),
            flush_again: AtomicBool::new(false),
        }
    }

    /// The sink this UART talks to.
    pub fn sink(&self) -> &Arc<dyn SerialSink> {
        &self.sink
    }

    fn lock(&self) -> MutexGuard<'_, Regs> {
        // A panic elsewhere while holding the lock leaves consistent plain
        // data; keep serving the guest.
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Recomputes the interrupt output and tells the IRQ line about changes.
    fn update_irq(&self, regs: &mut Regs) {
        let level = regs.pending_interrupt() != IIR_NO_INT;
        if level != regs.irq_level {
            regs.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn apply(&self, fx: Effects) {
        for request in fx.controls {
            if let Err(e) = self.sink.control(request) {
                self.lock().stats.control_errors += 1;
                log::warn!("uart: {e}");
            }
        }
        if fx.accept_input {
            self.sink.accept_input();
        }
        if fx.flush {
            self.flush();
        }
    }

    /// Guest read of register `offset` (0..=7 from the base port).
    pub fn pio_read(&self, offset: u8) -> u8 {
        if offset == MSR {
            self.refresh_modem_status();
        }
        let mut fx = Effects::default();
        let value = {
            let mut regs = self.lock();
            let value = regs.read(offset, &mut fx);
            self.update_irq(&mut regs);
            value
        };
        self.apply(fx);
        value
    }

    /// Guest write of `value` to register `offset` (0..=7 from the base port).
    pub fn pio_write(&self, offset: u8, value: u8) {
        let mut fx = Effects::default();
        {
            let mut regs = self.lock();
            regs.write(offset, value, &mut fx);
            self.update_irq(&mut regs);
        }
        self.apply(fx);
    }

    /// Asks the sink for the modem-status inputs (a host tty's CTS/DSR/...)
    /// so MSR shows them; backends without modem lines leave the defaults.
    fn refresh_modem_status(&self) {
        if self.lock().loopback() {
            return;
        }
        let status = match self.sink.control(SerialControl::GetModem) {
            Ok(ControlReply::Modem(bits)) => {
                let mut status = 0;
                if bits & TIOCM_CTS != 0 {
                    status |= MSR_CTS;
                }
                if bits & TIOCM_DSR != 0 {
                    status |= MSR_DSR;
                }
                if bits & TIOCM_RNG != 0 {
                    status |= MSR_RI;
                }
                if bits & TIOCM_CAR != 0 {
                    status |= MSR_DCD;
                }
                status
            }
            _ => MSR_DEFAULT_STATUS,
        };
        let mut regs = self.lock();
        regs.set_modem_status(status);
        self.update_irq(&mut regs);
    }

    /// Pushes the transmit FIFO into the sink. Only one thread pushes at a
    /// time (so bytes keep their order); a caller that finds a push running
    /// leaves a note for it to go round again.
    fn flush(&self) {
        self.flush_again.store(true, Ordering::SeqCst);
        while self.flush_again.load(Ordering::SeqCst) {
            if self.flushing.swap(true, Ordering::SeqCst) {
                // The running flusher sees `flush_again` before it stops.
                return;
            }
            while self.flush_again.swap(false, Ordering::SeqCst) {
                self.flush_once();
            }
            self.flushing.store(false, Ordering::SeqCst);
        }
    }

    /// One attempt: offer what is queued, drop what the sink took.
    ///
    /// The sink is called without the register lock, so the guest may
    /// append to the FIFO meanwhile (at the back: harmless) or clear it
    /// (FCR, on the vCPU thread). After a clear the bytes copied here are no
    /// longer in the FIFO: those the sink took left anyway, as a byte in the
    /// transmit shift register does, the others were discarded by the
    /// clear, and what the FIFO holds now is newer and was not offered.
    fn flush_once(&self) {
        let mut buf = [0u8; TX_FIFO_SIZE];
        let (len, epoch) = {
            let regs = self.lock();
            let len = regs.tx.len().min(TX_FIFO_SIZE);
            for (dst, src) in buf.iter_mut().zip(regs.tx.iter()) {
                *dst = *src;
            }
            (len, regs.tx_epoch)
        };
        if len == 0 {
            return;
        }
        let taken = self.sink.write(&buf[..len]).min(len);
        let mut regs = self.lock();
        if regs.tx_epoch == epoch {
            // No clear ran: only this flusher removes from the front, so the
            // first `taken` bytes are the ones just written.
            let n = taken.min(regs.tx.len());
            regs.tx.drain(..n);
        }
        regs.stats.tx_bytes += taken as u64;
        if taken < len {
            regs.stats.tx_blocked += 1;
        }
        if taken > 0 && regs.tx.is_empty() {
            regs.thr_ipending = true;
        }
        self.update_irq(&mut regs);
    }

    /// The sink has room again (chardev `write_ready`): retry held output.
    pub fn output_ready(&self) {
        self.flush();
    }

    /// Free space in the receive FIFO: how many bytes [`Uart::receive`] takes
    /// now (chardev `can_read`). Returning 0 obliges the UART to call the
    /// sink's `accept_input` once the guest drained the FIFO.
    pub fn can_receive(&self) -> usize {
        let mut regs = self.lock();
        let room = RX_FIFO_SIZE - regs.rx.len();
        if room == 0 {
            regs.rx_throttled = true;
        }
        room
    }

    /// Input from the outside (chardev `read`). Bytes beyond the FIFO's room
    /// are dropped and flagged as an overrun (a sink that honours
    /// [`Uart::can_receive`] never causes this).
    pub fn receive(&self, data: &[u8]) {
        let mut regs = self.lock();
        for &byte in data {
            if regs.rx.len() < RX_FIFO_SIZE {
                regs.rx.push_back(byte);
                regs.stats.rx_received += 1;
            } else {
                regs.lsr_errors |= LSR_OE;
                regs.stats.rx_overruns += 1;
            }
        }
        self.update_irq(&mut regs);
    }

    /// A break arrived on the line: LSR.BI plus the all-zero character a
    /// 16550A loads into its FIFO.
    pub fn receive_break(&self) {
        let mut regs = self.lock();
        regs.stats.breaks += 1;
        regs.lsr_errors |= LSR_BI;
        if regs.fifo_enabled {
            regs.lsr_errors |= LSR_FIFO_ERR;
        }
        if regs.rx.len() < RX_FIFO_SIZE {
            regs.rx.push_back(0);
        } else {
            regs.lsr_errors |= LSR_OE;
            regs.stats.rx_overruns += 1;
        }
        self.update_irq(&mut regs);
    }

    /// Sends the line settings the guest programmed (speed/format, break,
    /// DTR/RTS) again, to a sink whose backend was just replaced. Settings
    /// the guest never programmed are not invented.
    pub fn reapply_line_settings(&self) -> Result<(), UartError> {
        let (params, brk, modem) = {
            let regs = self.lock();
            (regs.sent_params, regs.sent_break, regs.sent_modem)
        };
        let mut requests = Vec::with_capacity(3);
        if let Some(p) = params {
            requests.push(SerialControl::SetParams(p));
        }
        if let Some(b) = brk {
            requests.push(SerialControl::SetBreak(b));
        }
        if let Some(m) = modem {
            requests.push(SerialControl::SetModem(m));
        }
        for request in requests {
            self.sink.control(request)?;
        }
        Ok(())
    }

    /// The line parameters currently programmed (None with divisor 0).
    pub fn line_params(&self) -> Option<LineParams> {
        self.lock().line_params()
    }

    /// Counters, for tests and debugging.
    pub fn stats(&self) -> UartStats {
        self.lock().stats
    }

    /// Bytes written by the guest that the sink has not taken yet.
    pub fn tx_pending(&self) -> usize {
        self.lock().tx.len()
    }

    /// Bytes waiting in the receive FIFO for the guest.
    pub fn rx_pending(&self) -> usize {
        self.lock().rx.len()
    }

    /// Whether the interrupt output is asserted.
    pub fn irq_asserted(&self) -> bool {
        self.lock().irq_level
    }

    /// Counts an access the UART could not decode (wrong size or offset),
    /// for the bus to report.
    pub fn note_bad_access(&self) {
        self.lock().stats.bad_accesses += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::CaptureSink;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct TestIrq {
        level: AtomicBool,
        raises: AtomicUsize,
    }

    impl IrqLine for TestIrq {
        fn set_level(&self, level: bool) {
            if level && !self.level.load(Ordering::SeqCst) {
                self.raises.fetch_add(1, Ordering::SeqCst);
            }
            self.level.store(level, Ordering::SeqCst);
        }
    }

    fn uart_with(capacity: usize) -> (Uart, Arc<CaptureSink>, Arc<TestIrq>) {
        let sink = Arc::new(CaptureSink::with_capacity(capacity));
        let irq = Arc::new(TestIrq::default());
        let uart = Uart::new(sink.clone(), irq.clone());
        (uart, sink, irq)
    }

    fn uart() -> (Uart, Arc<CaptureSink>, Arc<TestIrq>) {
        uart_with(usize::MAX)
    }

    /// Programs 115200 8N1 the way a driver does.
    fn program_115200_8n1(u: &Uart) {
        u.pio_write(LCR, LCR_DLAB);
        u.pio_write(DLL, 1);
        u.pio_write(DLM, 0);
        u.pio_write(LCR, 0x03);
    }

    #[test]
    fn reset_state() {
        let (u, _, irq) = uart();
        assert_eq!(u.pio_read(LSR), LSR_THRE | LSR_TEMT);
        assert_eq!(u.pio_read(IIR), IIR_NO_INT);
        assert_eq!(u.pio_read(IER), 0);
        assert_eq!(u.pio_read(LCR), 0);
        assert_eq!(u.pio_read(MCR), 0);
        assert_eq!(u.pio_read(MSR) & !MSR_DELTAS, MSR_CTS | MSR_DSR | MSR_DCD);
        assert!(!irq.level.load(Ordering::SeqCst));
    }

    #[test]
    fn scratch_and_divisor_latch() {
        let (u, _, _) = uart();
        u.pio_write(SCR, 0x5a);
        assert_eq!(u.pio_read(SCR), 0x5a);
        u.pio_write(LCR, LCR_DLAB);
        u.pio_write(DLL, 0x34);
        u.pio_write(DLM, 0x12);
        assert_eq!(u.pio_read(DLL), 0x34);
        assert_eq!(u.pio_read(DLM), 0x12);
        u.pio_write(LCR, 0x03);
        // With DLAB clear offset 1 is IER again, untouched by the DLM write.
        assert_eq!(u.pio_read(IER), 0);
    }

    #[test]
    fn transmit_goes_to_sink() {
        let (u, sink, _) = uart();
        program_115200_8n1(&u);
        for b in b"hello" {
            assert_ne!(u.pio_read(LSR) & LSR_THRE, 0);
            u.pio_write(THR, *b);
        }
        assert_eq!(sink.take_output(), b"hello");
        assert_eq!(u.stats().tx_bytes, 5);
    }

    #[test]
    fn line_parameters_become_ioctls() {
        let (u, sink, _) = uart();
        program_115200_8n1(&u);
        assert_eq!(
            sink.take_controls(),
            vec![SerialControl::SetParams(LineParams {
                speed: 115_200,
                parity: LineParity::None,
                data_bits: 8,
                stop_bits: 1
            })]
        );
        // 9600 7E2: divisor 12, WLS=2, STB, PEN, EPS.
        u.pio_write(LCR, LCR_DLAB | 0x02 | LCR_STB | LCR_PEN | LCR_EPS);
        u.pio_write(DLL, 12);
        // Nothing is sent while DLAB is set.
        assert!(sink.take_controls().is_empty());
        u.pio_write(LCR, 0x02 | LCR_STB | LCR_PEN | LCR_EPS);
        assert_eq!(
            sink.take_controls(),
            vec![SerialControl::SetParams(LineParams {
                speed: 9600,
                parity: LineParity::Even,
                data_bits: 7,
                stop_bits: 2
            })]
        );
        // Rewriting the same LCR sends nothing.
        u.pio_write(LCR, 0x02 | LCR_STB | LCR_PEN | LCR_EPS);
        assert!(sink.take_controls().is_empty());
        // Odd, mark and space parity.
        u.pio_write(LCR, 0x03 | LCR_PEN);
        u.pio_write(LCR, 0x03 | LCR_PEN | LCR_STICK);
        u.pio_write(LCR, 0x03 | LCR_PEN | LCR_STICK | LCR_EPS);
        let parities: Vec<LineParity> = sink
            .take_controls()
            .into_iter()
            .map(|c| match c {
                SerialControl::SetParams(p) => p.parity,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            parities,
            vec![LineParity::Odd, LineParity::Mark, LineParity::Space]
        );
    }

    #[test]
    fn divisor_zero_sends_nothing() {
        let (u, sink, _) = uart();
        u.pio_write(LCR, LCR_DLAB);
        u.pio_write(DLL, 0);
        u.pio_write(DLM, 0);
        u.pio_write(LCR, 0x03);
        assert!(sink.take_controls().is_empty());
        assert_eq!(u.line_params(), None);
    }

    #[test]
    fn break_bit_becomes_ioctl() {
        let (u, sink, _) = uart();
        u.pio_write(LCR, 0x03 | LCR_BREAK);
        u.pio_write(LCR, 0x03);
        let c = sink.take_controls();
        assert!(c.contains(&SerialControl::SetBreak(true)));
        assert_eq!(c.last(), Some(&SerialControl::SetBreak(false)));
    }

    #[test]
    fn modem_control_becomes_ioctl() {
        let (u, sink, _) = uart();
        u.pio_write(MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
        assert_eq!(
            sink.take_controls(),
            vec![SerialControl::SetModem(TIOCM_DTR | TIOCM_RTS)]
        );
        // OUT2 alone changes nothing on the line.
        u.pio_write(MCR, MCR_DTR | MCR_RTS);
        assert!(sink.take_controls().is_empty());
        u.pio_write(MCR, MCR_RTS);
        assert_eq!(
            sink.take_controls(),
            vec![SerialControl::SetModem(TIOCM_RTS)]
        );
        // Loopback cuts the outputs off the line.
        u.pio_write(MCR, MCR_RTS | MCR_LOOP);
        assert_eq!(sink.take_controls(), vec![SerialControl::SetModem(0)]);
    }

    #[test]
    fn modem_status_from_backend() {
        let (u, sink, _) = uart();
        sink.set_modem_status(Some(TIOCM_CTS | TIOCM_CAR));
        let msr = u.pio_read(MSR);
        assert_eq!(msr & !MSR_DELTAS, MSR_CTS | MSR_DCD);
        assert_eq!(msr & MSR_DELTAS, MSR_DDSR);
        assert_eq!(u.pio_read(MSR) & MSR_DELTAS, 0);
    }

    #[test]
    fn receive_fifo_is_bounded_at_64() {
        let (u, sink, _) = uart();
        assert_eq!(u.can_receive(), RX_FIFO_SIZE);
        let data: Vec<u8> = (0..100u8).collect();
        u.receive(&data[..RX_FIFO_SIZE]);
        assert_eq!(u.can_receive(), 0);
        assert_ne!(u.pio_read(LSR) & LSR_DR, 0);
        // Too much: dropped and flagged.
        u.receive(&data[RX_FIFO_SIZE..RX_FIFO_SIZE + 1]);
        assert_eq!(u.stats().rx_overruns, 1);
        assert_ne!(u.pio_read(LSR) & LSR_OE, 0);
        assert_eq!(u.pio_read(LSR) & LSR_OE, 0, "LSR read clears OE");
        let mut got = Vec::new();
        while u.pio_read(LSR) & LSR_DR != 0 {
            got.push(u.pio_read(RBR));
            if got.len() < RX_FIFO_SIZE {
                assert_eq!(
                    sink.accept_input_calls(),
                    0,
                    "no accept_input before drained"
                );
            }
        }
        assert_eq!(got, &data[..RX_FIFO_SIZE]);
        assert_eq!(sink.accept_input_calls(), 1);
        assert_eq!(u.can_receive(), RX_FIFO_SIZE);
    }

    #[test]
    fn backpressure_holds_thre_until_output_ready() {
        let (u, sink, _) = uart_with(4);
        program_115200_8n1(&u);
        u.pio_write(FCR, FCR_FIFO_ENABLE);
        // The sink takes 4 bytes, the 16-byte FIFO holds the rest.
        for b in 0..10u8 {
            u.pio_write(THR, b);
        }
        assert_eq!(u.pio_read(LSR) & (LSR_THRE | LSR_TEMT), 0);
        assert_eq!(u.tx_pending(), 6);
        assert_eq!(sink.take_output(), vec![0, 1, 2, 3]);
        // Freed space is not used until the sink says so.
        assert_eq!(u.tx_pending(), 6);
        sink.set_capacity(usize::MAX);
        u.output_ready();
        assert_eq!(u.pio_read(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
        assert_eq!(sink.take_output(), vec![4, 5, 6, 7, 8, 9]);
        assert_eq!(u.stats().tx_dropped, 0);
    }

    #[test]
    fn full_transmit_fifo_drops_like_hardware() {
        let (u, sink, _) = uart_with(0);
        // FIFOs off: a single holding register.
        u.pio_write(THR, b'a');
        u.pio_write(THR, b'b');
        assert_eq!(u.stats().tx_dropped, 1);
        sink.set_capacity(usize::MAX);
        u.output_ready();
        assert_eq!(sink.take_output(), b"a");
        // FIFO mode: 16 bytes.
        sink.set_capacity(0);
        u.pio_write(FCR, FCR_FIFO_ENABLE);
        for b in 0..20u8 {
            u.pio_write(THR, b);
        }
        assert_eq!(u.tx_pending(), TX_FIFO_SIZE);
        assert_eq!(u.stats().tx_dropped, 1 + 4);
        // FCR can throw held output away.
        let clears = u.stats().tx_fifo_clears;
        u.pio_write(FCR, FCR_FIFO_ENABLE | FCR_CLEAR_TX);
        assert_eq!(u.tx_pending(), 0);
        assert_ne!(u.pio_read(LSR) & LSR_THRE, 0);
        assert_eq!(u.stats().tx_fifo_clears, clears + 1);
        assert_eq!(u.stats().tx_cleared, TX_FIFO_SIZE as u64);
    }

    #[test]
    fn thre_interrupt_after_backpressure() {
        let (u, sink, irq) = uart_with(0);
        u.pio_write(FCR, FCR_FIFO_ENABLE);
        u.pio_write(IER, IER_ETBEI);
        // Enabling ETBEI with the transmitter empty interrupts at once.
        assert!(irq.level.load(Ordering::SeqCst));
        assert_eq!(u.pio_read(IIR), IIR_THRI | IIR_FIFO_ENABLED);
        // Reading IIR acknowledged it.
        assert!(!irq.level.load(Ordering::SeqCst));
        u.pio_write(THR, b'x');
        assert!(!irq.level.load(Ordering::SeqCst));
        assert_eq!(u.pio_read(IIR), IIR_NO_INT | IIR_FIFO_ENABLED);
        sink.set_capacity(usize::MAX);
        u.output_ready();
        assert!(irq.level.load(Ordering::SeqCst));
        assert_eq!(u.pio_read(IIR) & 0x0f, IIR_THRI);
        assert_eq!(sink.take_output(), b"x");
    }

    #[test]
    fn receive_interrupts_and_priority() {
        let (u, _, irq) = uart();
        u.pio_write(IER, IER_ERBFI | IER_ELSI | IER_ETBEI);
        // THRE pending from enabling; acknowledge it.
        assert_eq!(u.pio_read(IIR), IIR_THRI);
        assert!(!irq.level.load(Ordering::SeqCst));
        u.receive(b"ab");
        assert!(irq.level.load(Ordering::SeqCst));
        assert_eq!(u.pio_read(IIR), IIR_RDI);
        // A break outranks data.
        u.receive_break();
        assert_eq!(u.pio_read(IIR), IIR_RLSI);
        let lsr = u.pio_read(LSR);
        assert_eq!(lsr & (LSR_BI | LSR_DR), LSR_BI | LSR_DR);
        assert_eq!(u.pio_read(IIR), IIR_RDI);
        assert_eq!(u.pio_read(RBR), b'a');
        assert_eq!(u.pio_read(RBR), b'b');
        // The break's zero character.
        assert_eq!(u.pio_read(RBR), 0);
        assert_eq!(u.pio_read(IIR), IIR_NO_INT);
        assert!(!irq.level.load(Ordering::SeqCst));
        assert_eq!(u.stats().breaks, 1);
    }

    #[test]
    fn fifo_trigger_level_and_timeout_id() {
        let (u, _, _) = uart();
        u.pio_write(FCR, FCR_FIFO_ENABLE | 0x80); // trigger at 8
        u.pio_write(IER, IER_ERBFI);
        u.receive(b"abc");
        assert_eq!(u.pio_read(IIR), IIR_CTI | IIR_FIFO_ENABLED);
        u.receive(b"defgh");
        assert_eq!(u.pio_read(IIR), IIR_RDI | IIR_FIFO_ENABLED);
        u.pio_write(FCR, FCR_FIFO_ENABLE | FCR_CLEAR_RX);
        assert_eq!(u.rx_pending(), 0);
        let st = u.stats();
        assert_eq!((st.rx_received, st.rx_cleared), (8, 8));
        // Enabling the FIFOs (the first FCR write) cleared both once.
        assert_eq!((st.rx_fifo_clears, st.tx_fifo_clears), (2, 1));
        assert_eq!(u.pio_read(IIR), IIR_NO_INT | IIR_FIFO_ENABLED);
    }

    #[test]
    fn loopback() {
        let (u, sink, _) = uart();
        u.pio_write(MCR, MCR_LOOP | MCR_RTS | MCR_OUT2);
        u.pio_write(THR, 0x42);
        assert!(sink.take_output().is_empty());
        assert_eq!(u.pio_read(RBR), 0x42);
        assert_eq!(u.pio_read(MSR) & !MSR_DELTAS, MSR_CTS | MSR_DCD);
    }

    #[test]
    fn reapply_sends_programmed_settings_only() {
        let (u, sink, _) = uart();
        u.reapply_line_settings().unwrap();
        assert!(
            sink.take_controls().is_empty(),
            "nothing programmed, nothing sent"
        );
        program_115200_8n1(&u);
        u.pio_write(MCR, MCR_DTR);
        sink.take_controls();
        u.reapply_line_settings().unwrap();
        assert_eq!(
            sink.take_controls(),
            vec![
                SerialControl::SetParams(LineParams {
                    speed: 115_200,
                    parity: LineParity::None,
                    data_bits: 8,
                    stop_bits: 1
                }),
                SerialControl::SetModem(TIOCM_DTR),
            ]
        );
    }

    #[test]
    fn odd_accesses_do_not_panic() {
        let (u, _, _) = uart();
        for off in 0..=255u8 {
            let _ = u.pio_read(off);
            u.pio_write(off, 0xff);
            u.pio_write(off, 0x00);
        }
        assert!(u.stats().bad_accesses > 0);
        // RBR with nothing received reads 0.
        u.pio_write(LCR, 0);
        u.pio_write(MCR, 0);
        assert_eq!(u.pio_read(RBR), 0);
    }
}
