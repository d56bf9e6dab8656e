//! The 16550A UART of `qchar_machine` on the port-I/O bus, without KVM: a
//! program of port reads and writes at COM1 (offsets 0..16, so unclaimed
//! ports too), input from the chardev side (polite or overrunning), breaks,
//! a sink that runs out of room and gets more, and modem-line changes.
//!
//! Invariants, checked after every step:
//! - no panic; FIFOs within their sizes;
//! - the IRQ line the UART drives equals `irq_asserted()`, and IIR reads
//!   give only valid identifications;
//! - output integrity: what reached the sink, followed by what waits in the
//!   transmit FIFO, is exactly the THR writes the UART accepted (not dropped
//!   on a full FIFO, minus those discarded by an FCR clear), in order;
//! - input integrity: RBR reads return the received bytes (input, breaks as
//!   0, loopback writes) in order, and LSR.DR/THRE match the FIFOs;
//! - flow control: after `can_receive` said 0, draining the FIFO calls the
//!   sink's `accept_input`.
#![no_main]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use libfuzzer_sys::fuzz_target;
use qchar_machine::bus::PioBus;
use qchar_machine::sink::CaptureSink;
use qchar_machine::uart::{
    IrqLine, Uart, FCR, IIR, LCR, LCR_DLAB, LSR, LSR_DR, LSR_THRE, MCR, MCR_LOOP, RBR,
    RX_FIFO_SIZE, THR, TX_FIFO_SIZE,
};
use qchar_machine::{ComPort, SerialPort};

#[derive(Default)]
struct Irq(AtomicBool);

impl IrqLine for Irq {
    fn set_level(&self, level: bool) {
        self.0.store(level, Ordering::SeqCst);
    }
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

struct Harness {
    bus: PioBus,
    uart: Arc<Uart>,
    sink: Arc<CaptureSink>,
    irq: Arc<Irq>,
    base: u16,
    /// Accepted THR bytes: sink output followed by the transmit FIFO.
    tx_model: Vec<u8>,
    /// The receive FIFO's expected contents.
    rx_model: VecDeque<u8>,
    /// `can_receive` returned 0 and the accept_input count then.
    throttled: Option<usize>,
}

impl Harness {
    fn new() -> Harness {
        let sink = Arc::new(CaptureSink::with_capacity(0));
        let irq = Arc::new(Irq::default());
        let port = Arc::new(SerialPort::new(ComPort::COM1, sink.clone(), irq.clone()));
        let uart = port.uart().clone();
        let weak: Weak<Uart> = Arc::downgrade(&uart);
        sink.set_ready_callback(Box::new(move || {
            if let Some(u) = weak.upgrade() {
                u.output_ready();
            }
        }));
        let mut bus = PioBus::new();
        let base = ComPort::COM1.iobase;
        bus.insert(base, 8, port).expect("COM1 on an empty bus");
        Harness {
            bus,
            uart,
            sink,
            irq,
            base,
            tx_model: Vec::new(),
            rx_model: VecDeque::new(),
            throttled: None,
        }
    }

    fn dlab(&self) -> bool {
        self.uart.pio_read(LCR) & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.uart.pio_read(MCR) & MCR_LOOP != 0
    }

    fn write(&mut self, offset: u16, value: u8) {
        let off = u8::try_from(offset).unwrap_or(u8::MAX);
        let (dlab, lo) = (self.dlab(), self.loopback());
        let dropped = self.uart.stats().tx_dropped;
        let rx_before = self.uart.rx_pending();
        self.bus.write_byte(self.base.wrapping_add(offset), value);
        if off == THR && !dlab {
            if lo {
                if rx_before < RX_FIFO_SIZE {
                    self.rx_model.push_back(value);
                }
            } else if self.uart.stats().tx_dropped == dropped {
                self.tx_model.push(value);
            }
        }
        if off == FCR {
            if self.uart.tx_pending() == 0 {
                let sent = self.sink.output().len();
                self.tx_model.truncate(sent);
            }
            if self.uart.rx_pending() == 0 {
                self.rx_model.clear();
            }
        }
    }

    fn read(&mut self, offset: u16) {
        let off = u8::try_from(offset).unwrap_or(u8::MAX);
        let dlab = self.dlab();
        let rx_before = self.rx_model.len();
        let tx_empty = self.uart.tx_pending() == 0;
        let v = self.bus.read_byte(self.base.wrapping_add(offset));
        match off {
            RBR if !dlab => {
                if let Some(want) = self.rx_model.pop_front() {
                    assert_eq!(v, want, "RBR returned the wrong byte");
                }
            }
            IIR => {
                let id = v & 0x0f;
                assert!(
                    matches!(id, 0x00 | 0x01 | 0x02 | 0x04 | 0x06 | 0x0c),
                    "IIR {v:#04x}"
                );
                assert!(matches!(v & 0xf0, 0x00 | 0xc0), "IIR {v:#04x}");
            }
            LSR => {
                assert_eq!(v & LSR_DR != 0, rx_before > 0, "LSR.DR {v:#04x}");
                assert_eq!(v & LSR_THRE != 0, tx_empty, "LSR.THRE {v:#04x}");
            }
            8..=15 => assert_eq!(v, 0xff, "unclaimed port read"),
            _ => {}
        }
    }

    fn receive(&mut self, data: &[u8], polite: bool) {
        let data = if polite {
            let room = self.uart.can_receive();
            if room == 0 {
                self.throttled.get_or_insert(self.sink.accept_input_calls());
            }
            &data[..data.len().min(room)]
        } else {
            data
        };
        for &b in data {
            if self.rx_model.len() < RX_FIFO_SIZE {
                self.rx_model.push_back(b);
            }
        }
        self.uart.receive(data);
    }

    fn check(&mut self) {
        let rx = self.uart.rx_pending();
        let tx = self.uart.tx_pending();
        assert!(rx <= RX_FIFO_SIZE && tx <= TX_FIFO_SIZE, "rx {rx} tx {tx}");
        assert_eq!(rx, self.rx_model.len(), "receive FIFO lost or made bytes");
        let out = self.sink.output();
        assert!(
            self.tx_model.starts_with(&out),
            "the sink got bytes the guest did not send, or out of order"
        );
        assert_eq!(out.len() + tx, self.tx_model.len(), "transmit bytes lost");
        assert_eq!(
            self.irq.0.load(Ordering::SeqCst),
            self.uart.irq_asserted(),
            "IRQ line out of step"
        );
        if let Some(calls) = self.throttled {
            if rx == 0 {
                assert!(
                    self.sink.accept_input_calls() > calls,
                    "FIFO drained after can_receive() == 0 but no accept_input"
                );
                self.throttled = None;
            }
        }
        if let Some(p) = self.uart.line_params() {
            assert!((5..=8).contains(&p.data_bits) && (1..=2).contains(&p.stop_bits));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    let mut input = Bytes(data);
    while let Some(op) = input.byte() {
        let arg = input.byte().unwrap_or(0);
        match op % 10 {
            0..=2 => {
                let value = input.byte().unwrap_or(0);
                h.write(u16::from(arg & 0x0f), value);
            }
            3 | 4 => h.read(u16::from(arg & 0x0f)),
            5 => {
                let bytes = input.take(usize::from(arg % 80)).to_vec();
                h.receive(&bytes, op & 0x10 == 0);
            }
            6 => {
                h.uart.receive_break();
                if h.rx_model.len() < RX_FIFO_SIZE {
                    h.rx_model.push_back(0);
                }
            }
            7 => match arg % 3 {
                0 => h.sink.grant(usize::from(arg >> 2)),
                1 => h.sink.set_capacity(usize::from(arg >> 2)),
                _ => h.sink.set_capacity(usize::MAX),
            },
            8 => {
                let bits = input.byte().unwrap_or(0);
                h.sink.set_modem_status(if arg & 1 == 0 {
                    None
                } else {
                    Some(u32::from(bits) << 1)
                });
            }
            _ => match arg % 3 {
                0 => h.uart.output_ready(),
                1 => {
                    if h.uart.can_receive() == 0 {
                        let calls = h.sink.accept_input_calls();
                        h.throttled.get_or_insert(calls);
                    }
                }
                _ => h
                    .uart
                    .reapply_line_settings()
                    .expect("a capture sink takes every control"),
            },
        }
        h.check();
    }
});
