//! qchar's machine: a one-vCPU x86 KVM guest with QEMU-compatible 16550A
//! serial ports whose chardev backends can change while the guest runs.
//!
//! Module map:
//! - [`vm`]: the KVM VM ([`Machine`] to build one, [`VmHandle`] to pause,
//!   resume, quit and query a running one), real-mode boot at 0000:7c00.
//! - [`runstate`]: the run state QMP `query-status` reports, and the
//!   pause/resume hand-shake with the vCPU thread.
//! - [`bus`]: the port-I/O bus (8-bit ISA semantics, unclaimed ports read
//!   0xff).
//! - [`uart`]: the 16550A model: registers, FIFOs, interrupts, output
//!   backpressure, line settings forwarded as serial ioctls.
//! - [`serial`]: COM port placement and the glue to a chardev frontend.
//! - [`sink`]: an in-memory serial sink for tests.
//! - [`guest`]: the embedded demo guests and their output format.
//!
//! How a binary uses it (needs `/dev/kvm`, hence `no_run`):
//!
//! ```no_run
//! use qchar_chardev::{spec::{ChardevBackend, ChardevRingbuf}, Registry};
//! use qchar_machine::{guest, ComPort, ExitReason, Machine, MachineConfig, RunState};
//!
//! let reg = Registry::new()?;
//! reg.add("serial0", ChardevBackend::Ringbuf(ChardevRingbuf::default()))?;
//! let mut machine = Machine::new(MachineConfig::default())?; // -m 128M, boot drive 0
//! machine.load_boot_image(guest::DEMO_IMAGE)?;
//! // -serial chardev:serial0 (or -device isa-serial with ComPort::new(iobase, irq))
//! machine.add_serial_chardev(ComPort::COM1, reg.attach("serial0")?)?;
//! let vm = machine.start()?; // a VmHandle: clone it into the monitor
//! vm.pause()?; // QMP stop
//! assert_eq!(vm.status(), RunState::Paused); // query-status: "paused"
//! vm.resume()?; // QMP cont
//! assert_eq!(vm.quit(), ExitReason::Quit); // QMP quit
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod bus;
pub mod guest;
pub mod runstate;
pub mod serial;
pub mod sink;
pub mod uart;
pub mod vm;

pub use runstate::{ExitReason, RunState};
pub use serial::{ComPort, SerialPort};
pub use vm::{Machine, MachineConfig, VmError, VmHandle};
