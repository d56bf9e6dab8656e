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
