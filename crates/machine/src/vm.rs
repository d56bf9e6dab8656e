// Hand-written part: the vCPU kick (pthread_self/pthread_kill and a volatile store into kvm_run) and reads of kvm_run's exit union, which kvm-ioctls leaves to its user.
//! The KVM virtual machine: guest memory, the in-kernel interrupt
//! controllers (8259 PICs and IOAPIC), one vCPU started in real mode at
//! 0000:7c00 as a PC BIOS hands over to a boot sector, and the thread that
//! runs it.
//!
//! Life cycle: [`Machine::new`] creates the VM, [`Machine::load_boot_image`]
//! and [`Machine::add_serial`] furnish it, [`Machine::start`] spawns the vCPU
//! thread and returns a [`VmHandle`] (cloneable, for the monitor) to pause,
//! resume, quit and query it.
//!
//! How the vCPU thread is made to stop: a requester sets the wanted state in
//! [`RunControl`], then sends the vCPU thread a signal ([`kick_signal`]). The
//! handler sets `kvm_run.immediate_exit`, so `KVM_RUN` returns `EINTR` even if
//! the signal landed just before the thread entered it. The thread then
//! passes [`RunControl::gate`], where the request takes effect.
//!
//! How `cli; hlt` is seen: with the in-kernel irqchip, KVM handles HLT itself
//! and the vCPU just sleeps in the kernel. A watchdog thread therefore kicks
//! the vCPU when it has not come out of `KVM_RUN` for [`IDLE_KICK_INTERVAL`];
//! the vCPU thread then reads its MP state and flags, and ends the run if it
//! is halted with interrupts disabled (nothing could ever wake it).

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_HALTED};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::signal::register_signal_handler;

use crate::bus::{BusError, PioBus, PioDevice};
use crate::runstate::{ExitReason, Gate, RunControl, RunState};
use crate::serial::{ComPort, SerialPort};
use crate::uart::{IrqLine, SerialSink};

/// Guest memory when none is asked for (QEMU's `-m` default).
pub const DEFAULT_MEM_SIZE: u64 = 128 << 20;
/// Smallest guest memory accepted: the real-mode first megabyte.
pub const MIN_MEM_SIZE: u64 = 1 << 20;
/// Largest guest memory accepted (one slot below the 32-bit MMIO hole).
pub const MAX_MEM_SIZE: u64 = 3 << 30;
/// Where the boot image goes and where the vCPU starts (0000:7c00).
pub const BOOT_ADDR: u64 = 0x7c00;
/// Initial SP (SS=0): just below the boot sector, as BIOSes leave it.
pub const BOOT_STACK: u64 = 0x7c00;
/// End of conventional memory: the boot image must fit below it.
pub const BOOT_IMAGE_LIMIT: u64 = 0x9_fc00;
/// How long the vCPU may stay inside `KVM_RUN` without an exit before the
/// watchdog kicks it to check for `cli; hlt`.
pub const IDLE_KICK_INTERVAL: Duration = Duration::from_millis(100);
/// Highest IRQ line of the PICs.
pub const MAX_ISA_IRQ: u32 = 15;

/// Address KVM uses for the real-mode TSS on Intel hosts (three pages just
/// below the BIOS area, as other VMMs place it).
const TSS_ADDR: usize = 0xfffb_d000;
/// Local APIC register offsets in `kvm_lapic_state.regs`.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
/// LVT delivery modes.
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;
/// RFLAGS: the always-one bit, and the interrupt flag.
const RFLAGS_RESERVED: u64 = 0x2;
const RFLAGS_IF: u64 = 0x200;

/// Errors of the VM module.
#[derive(Debug, Error)]
pub enum VmError {
    /// `/dev/kvm` cannot be opened (no KVM on this host, or no permission).
    #[error("KVM is not available: {0}")]
    KvmUnavailable(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("KVM {op} failed: {source}")]
    Kvm {
        /// The operation.
        op: &'static str,
        /// The error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest memory size out of range.
    #[error("guest memory size {0} bytes is out of range (1 MiB .. 3 GiB)")]
    MemorySize(u64),
    /// Mapping guest memory failed.
    #[error("cannot map {size} bytes of guest memory: {source}")]
    MemoryMap {
        /// Bytes asked for.
        size: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The boot image is empty or does not fit.
    #[error("boot image: {0}")]
    BootImage(String),
    /// A serial port's IRQ is not an ISA IRQ.
    #[error("IRQ {0} is out of range (0..=15)")]
    BadIrq(u32),
    /// A device's ports collide with another's.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The vCPU thread could not be created.
    #[error("cannot start the vCPU thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The request needs a machine that has not ended.
    #[error("the machine has shut down")]
    ShutDown,
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { op, source }
}

/// Settings of a machine (QEMU `-m`, `-S`, boot drive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// Guest RAM in bytes, rounded up to 4 KiB.
    pub mem_size: u64,
    /// DL at boot: the BIOS drive number (0x00 first floppy, 0x80 first disk).
    pub boot_drive: u8,
    /// Start in `prelaunch` and wait for [`VmHandle::resume`] (QEMU `-S`).
    pub start_paused: bool,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            mem_size: DEFAULT_MEM_SIZE,
            boot_drive: 0x00,
            start_paused: false,
        }
    }
}

/// Whether this host can run a machine (`/dev/kvm` opens).
pub fn kvm_available() -> bool {
    Kvm::new().is_ok()
}

/// The VM file descriptor together with the memory it maps. Field order
/// matters: the VM (and with it the memory slot) goes before the memory.
struct VmCore {
    fd: VmFd,
    memory: GuestMemoryMmap,
}

/// One ISA IRQ pin of the in-kernel PIC/IOAPIC, possibly shared by several
/// devices (COM1 and COM3 both use IRQ 4): the pin is the OR of its
/// sources' levels, so one device lowering its output does not hide
/// another's request.
struct SharedIrq {
    core: Arc<VmCore>,
    irq: u32,
    /// Bit `n` set: source `n` asserts the line.
    sources: Mutex<u64>,
}

impl SharedIrq {
    fn set(&self, source: u32, level: bool) {
        let mut levels = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let before = *levels != 0;
        if level {
            *levels |= 1 << source;
        } else {
            *levels &= !(1 << source);
        }
        let after = *levels != 0;
        if before != after {
            // Still under the lock, so pin changes reach KVM in order.
            if let Err(e) = self.core.fd.set_irq_line(self.irq, after) {
                log::warn!("KVM_IRQ_LINE {} -> {after}: {e}", self.irq);
            }
        }
    }
}

/// One device's connection to a [`SharedIrq`].
struct KvmIrqLine {
    pin: Arc<SharedIrq>,
    source: u32,
}

impl IrqLine for KvmIrqLine {
    fn set_level(&self, level: bool) {
        self.pin.set(self.source, level);
    }
}

/// Most devices that may share one IRQ pin.
const MAX_IRQ_SOURCES: u32 = 64;

/// A machine being put together: VM, memory and vCPU exist, nothing runs.
pub struct Machine {
    config: MachineConfig,
    vcpu: VcpuFd,
    /// Size of the vCPU's kvm_run mapping.
    run_size: usize,
    core: Arc<VmCore>,
    bus: PioBus,
    serials: Vec<Arc<SerialPort>>,
    image_loaded: bool,
    /// IRQ pins handed out so far, with their number of sources.
    irqs: Vec<(Arc<SharedIrq>, u32)>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("config", &self.config)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// Creates the VM: memory, in-kernel irqchip, one vCPU in real mode at
    /// 0000:7c00 with DL = boot drive. Fails with
    /// [`VmError::KvmUnavailable`] where `/dev/kvm` cannot be opened.
    pub fn new(config: MachineConfig) -> Result<Machine, VmError> {
        if !(MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&config.mem_size) {
            return Err(VmError::MemorySize(config.mem_size));
        }
        let mem_size = (config.mem_size + 0xfff) & !0xfff;
        let kvm = Kvm::new().map_err(VmError::KvmUnavailable)?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        let map_err = |e: &dyn std::fmt::Display| VmError::MemoryMap {
            size: mem_size,
            source: std::io::Error::other(e.to_string()),
        };
        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), mem_size as usize)])
            .map_err(|e| map_err(&e))?;
        let host = memory
            .get_host_address(GuestAddress(0))
            .map_err(|e| map_err(&e))?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: mem_size,
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping of `mem_size` bytes owned by
        // `memory`, which is kept (in `VmCore`) until after the VM fd closes.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        let run_size = kvm
            .get_vcpu_mmap_size()
            .map_err(kvm_err("KVM_GET_VCPU_MMAP_SIZE"))?;
        vm.set_tss_address(TSS_ADDR)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;

        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;

        // Let the 8259's INTR reach the CPU: LINT0 as ExtINT, LINT1 as NMI
        // (what a BIOS programs for virtual-wire mode).
        let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
        set_lvt_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
        set_lvt_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
        vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))?;

        let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        for seg in [
            &mut sregs.cs,
            &mut sregs.ds,
            &mut sregs.es,
            &mut sregs.fs,
            &mut sregs.gs,
            &mut sregs.ss,
        ] {
            seg.base = 0;
            seg.selector = 0;
        }
        vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
        let mut regs = vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        regs.rip = BOOT_ADDR;
        regs.rsp = BOOT_STACK;
        regs.rflags = RFLAGS_RESERVED;
        regs.rdx = u64::from(config.boot_drive);
        vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;

        Ok(Machine {
            config,
            vcpu,
            run_size,
            core: Arc::new(VmCore { fd: vm, memory }),
            bus: PioBus::new(),
            serials: Vec::new(),
            image_loaded: false,
            irqs: Vec::new(),
        })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> MachineConfig {
        self.config
    }

    /// Loads a raw boot image at 0000:7c00. The whole image is loaded (a boot
    /// sector plus, optionally, the sectors after it, contiguous in memory:
    /// there are no BIOS disk services to load them later), up to the end of
    /// conventional memory (0x9fc00). A sector without the 0x55AA signature
    /// is loaded all the same, with a warning.
    pub fn load_boot_image(&mut self, image: &[u8]) -> Result<(), VmError> {
        if image.is_empty() {
            return Err(VmError::BootImage("the image is empty".into()));
        }
        if image.len() as u64 > BOOT_IMAGE_LIMIT - BOOT_ADDR {
            return Err(VmError::BootImage(format!(
                "{} bytes do not fit between 0x7c00 and 0x9fc00",
                image.len()
            )));
        }
        if image.len() < 512 || image[510..512] != [0x55, 0xaa] {
            log::warn!("boot image has no 0x55AA boot signature; booting it anyway");
        }
        self.core
            .memory
            .write_slice(image, GuestAddress(BOOT_ADDR))
            .map_err(|e| {
                VmError::BootImage(format!(
                    "{} bytes at {BOOT_ADDR:#x} do not fit in guest memory: {e}",
                    image.len()
                ))
            })?;
        self.image_loaded = true;
        Ok(())
    }

    /// Puts a device on the port-I/O bus.
    pub fn add_pio_device(
        &mut self,
        base: u16,
        len: u16,
        device: Arc<dyn PioDevice>,
    ) -> Result<(), VmError> {
        self.bus.insert(base, len, device)?;
        Ok(())
    }

    /// A new device's connection to ISA IRQ `irq` of the in-kernel
    /// interrupt controllers. Several devices may share an IRQ: the pin is
    /// asserted while any of them asserts it.
    pub fn irq_line(&mut self, irq: u32) -> Result<Arc<dyn IrqLine>, VmError> {
        if irq > MAX_ISA_IRQ {
            return Err(VmError::BadIrq(irq));
        }
        let slot = match self.irqs.iter().position(|(pin, _)| pin.irq == irq) {
            Some(i) => i,
            None => {
                self.irqs.push((
                    Arc::new(SharedIrq {
                        core: self.core.clone(),
                        irq,
                        sources: Mutex::new(0),
                    }),
                    0,
                ));
                self.irqs.len() - 1
            }
        };
        let (pin, count) = &mut self.irqs[slot];
        if *count >= MAX_IRQ_SOURCES {
            return Err(VmError::BadIrq(irq));
        }
        let source = *count;
        *count += 1;
        Ok(Arc::new(KvmIrqLine {
            pin: pin.clone(),
            source,
        }))
    }

    /// Adds a 16550A at `port` whose output and control requests go to
    /// `sink` (a [`crate::serial::ChardevSink`] for a chardev, or a test sink).
    /// Input reaches it through the returned port's `Uart`.
    pub fn add_serial(
        &mut self,
        port: ComPort,
        sink: Arc<dyn SerialSink>,
    ) -> Result<Arc<SerialPort>, VmError> {
        let irq = self.irq_line(port.irq)?;
        let serial = Arc::new(SerialPort::new(port, sink, irq));
        self.bus
            .insert(port.iobase, crate::uart::UART_PORTS, serial.clone())?;
        self.serials.push(serial.clone());
        Ok(serial)
    }

    /// Adds a 16550A at `port` attached to a chardev frontend (QEMU
    /// `-serial chardev:ID` or `-device isa-serial,chardev=ID,...`): registers
    /// the UART's handlers on `fe` and marks the frontend open.
    pub fn add_serial_chardev(
        &mut self,
        port: ComPort,
        fe: qchar_chardev::CharFrontend,
    ) -> Result<Arc<SerialPort>, VmError> {
        let sink = Arc::new(crate::serial::ChardevSink::new(fe.clone()));
        let serial = self.add_serial(port, sink)?;
        serial.attach_frontend(&fe);
        Ok(serial)
    }

    /// The serial ports added so far.
    pub fn serial_ports(&self) -> &[Arc<SerialPort>] {
        &self.serials
    }

    /// Spawns the vCPU thread (and its idle watchdog). The machine runs at
    /// once, or waits in `prelaunch` if configured so.
    pub fn start(self) -> Result<VmHandle, VmError> {
        if !self.image_loaded {
            log::warn!("starting a machine without a boot image");
        }
        install_kick_handler();
        let control = Arc::new(RunControl::new(self.config.start_paused));
        let shared = Arc::new(VcpuShared::default());
        let core = self.core.clone();
        let mut runner = VcpuRunner {
            vcpu: self.vcpu,
            run_size: self.run_size,
            bus: self.bus,
            control: control.clone(),
            shared: shared.clone(),
            _core: core,
        };
        let vcpu_thread = std::thread::Builder::new()
            .name("qchar-vcpu0".into())
            .spawn(move || runner.run())
            .map_err(VmError::Thread)?;
        let watchdog = {
            let control = control.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("qchar-vcpu-watch".into())
                .spawn(move || watchdog(&control, &shared))
                .map_err(VmError::Thread)?
        };
        Ok(VmHandle {
            inner: Arc::new(HandleInner {
                control,
                shared,
                threads: Mutex::new(vec![vcpu_thread, watchdog]),
                serials: self.serials,
            }),
        })
    }
}

/// Sets an LVT entry's delivery mode and unmasks it.
fn set_lvt_mode(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut bytes = [0u8; 4];
    for (b, r) in bytes.iter_mut().zip(&regs[offset..offset + 4]) {
        *b = *r as u8;
    }
    let mut value = u32::from_le_bytes(bytes);
    // Bits 10:8 delivery mode, bit 16 mask.
    value = (value & !0x0001_0700) | (mode << 8);
    for (r, b) in regs[offset..offset + 4].iter_mut().zip(value.to_le_bytes()) {
        *r = b as std::os::raw::c_char;
    }
}

/// What the vCPU thread and the kickers share.
#[derive(Default)]
struct VcpuShared {
    /// Exits from KVM_RUN so far (the watchdog's progress measure).
    exits: AtomicU64,
    /// The vCPU thread is inside (or about to enter) KVM_RUN.
    in_guest: AtomicBool,
    /// The vCPU thread's pthread id while it runs; `None` once it ended, so a
    /// kick never targets a finished thread.
    thread: Mutex<Option<libc::pthread_t>>,
}

impl VcpuShared {
    fn kick(&self) {
        let guard = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tid) = *guard {
            // SAFETY: `tid` belongs to the vCPU thread, which clears it under
            // this mutex before it returns, so the thread is alive here; the
            // signal has a handler installed (`install_kick_handler`).
            let rc = unsafe { libc::pthread_kill(tid, kick_signal()) };
            if rc != 0 {
                log::warn!("kicking the vCPU thread failed: errno {rc}");
            }
        }
    }
}

/// The signal used to kick a vCPU thread out of `KVM_RUN` (SIGRTMIN + 4;
/// qchar uses it for nothing else).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

thread_local! {
    /// This thread's `kvm_run.immediate_exit`, for the kick handler.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
}

extern "C" fn on_kick(_signal: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A const-initialised thread-local without destructor is a plain TLS
    // read: async-signal-safe.
    let flag = IMMEDIATE_EXIT.with(|c| c.get());
    if !flag.is_null() {
        // SAFETY: the pointer is set by the vCPU thread to its own live
        // kvm_run mapping and cleared before that mapping goes away; this
        // handler runs on that same thread (pthread_kill targets it).
        unsafe { ptr::write_volatile(flag, 1) };
    }
}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // No SA_RESTART, so KVM_RUN returns EINTR; the handler only does an
        // async-signal-safe volatile store.
        if let Err(e) = register_signal_handler(kick_signal(), on_kick) {
            log::error!("cannot install the vCPU kick handler: {e}");
        }
    });
}

/// Kicks the vCPU when it has made no exit for a while, so a guest asleep in
/// `cli; hlt` inside the kernel is noticed.
fn watchdog(control: &RunControl, shared: &VcpuShared) {
    let mut last = u64::MAX;
    while control.wait_exit(Some(IDLE_KICK_INTERVAL)).is_none() {
        let exits = shared.exits.load(Ordering::SeqCst);
        if shared.in_guest.load(Ordering::SeqCst) && exits == last {
            shared.kick();
        }
        last = exits;
    }
}

/// What the vCPU thread owns.
struct VcpuRunner {
    vcpu: VcpuFd,
    run_size: usize,
    bus: PioBus,
    control: Arc<RunControl>,
    shared: Arc<VcpuShared>,
    /// Keeps VM and memory alive while the vCPU runs.
    _core: Arc<VmCore>,
}

/// One exit, decoded without holding the borrow of the vCPU.
enum Step {
    Io,
    Continue,
    Interrupted,
    InternalError,
    End(ExitReason),
}

impl VcpuRunner {
    fn run(&mut self) {
        {
            let mut t = self.shared.thread.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: pthread_self has no preconditions.
            *t = Some(unsafe { libc::pthread_self() });
        }
        let flag: *mut u8 = &mut self.vcpu.get_kvm_run().immediate_exit;
        IMMEDIATE_EXIT.with(|c| c.set(flag));

        let reason = self.run_loop(flag);

        IMMEDIATE_EXIT.with(|c| c.set(ptr::null_mut()));
        *self.shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.shared.in_guest.store(false, Ordering::SeqCst);
        log::debug!("vCPU ended: {reason:?}");
        self.control.finish(reason);
    }

    fn run_loop(&mut self, flag: *mut u8) -> ExitReason {
        loop {
            self.shared.in_guest.store(false, Ordering::SeqCst);
            if self.control.gate() == Gate::Quit {
                return ExitReason::Quit;
            }
            self.shared.in_guest.store(true, Ordering::SeqCst);
            let step = match self.vcpu.run() {
                Ok(VcpuExit::IoIn(..)) | Ok(VcpuExit::IoOut(..)) => Step::Io,
                Ok(VcpuExit::MmioRead(_, data)) => {
                    // Nothing is mapped outside RAM: a floating bus.
                    data.fill(0xff);
                    Step::Continue
                }
                Ok(VcpuExit::MmioWrite(..)) => Step::Continue,
                Ok(VcpuExit::Hlt) => Step::End(ExitReason::Halted),
                Ok(VcpuExit::Shutdown) => Step::End(ExitReason::GuestShutdown),
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    log::info!("guest system event {kind}");
                    Step::End(ExitReason::GuestShutdown)
                }
                Ok(VcpuExit::Intr) | Ok(VcpuExit::IrqWindowOpen) => Step::Continue,
                Ok(VcpuExit::FailEntry(reason, cpu)) => Step::End(ExitReason::Error(format!(
                    "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {reason:#x} on cpu {cpu}"
                ))),
                Ok(VcpuExit::InternalError) => Step::InternalError,
                Ok(other) => Step::End(ExitReason::Error(format!("unexpected KVM exit {other:?}"))),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    Step::Interrupted
                }
                Err(e) => Step::End(ExitReason::Error(format!("KVM_RUN: {e}"))),
            };
            self.shared.exits.fetch_add(1, Ordering::SeqCst);
            match step {
                Step::Io => self.handle_io(),
                Step::Continue => {}
                Step::Interrupted => {
                    // SAFETY: `flag` points into this vCPU's kvm_run mapping,
                    // alive for the whole loop; volatile because the signal
                    // handler writes it too.
                    unsafe { ptr::write_volatile(flag, 0) };
                    if self.halted_for_good() {
                        return ExitReason::Halted;
                    }
                }
                Step::InternalError => return ExitReason::Error(self.internal_error()),
                Step::End(reason) => return reason,
            }
        }
    }

    /// Describes a KVM_EXIT_INTERNAL_ERROR (its suberror says what KVM could
    /// not do, e.g. 1 = instruction emulation failed).
    fn internal_error(&mut self) -> String {
        let run = self.vcpu.get_kvm_run();
        // SAFETY: only called right after KVM_RUN returned
        // KVM_EXIT_INTERNAL_ERROR, which makes `internal` the valid member.
        let suberror = unsafe { run.__bindgen_anon_1.internal.suberror };
        let rip = self.vcpu.get_regs().map(|r| r.rip).unwrap_or(u64::MAX);
        format!("KVM_EXIT_INTERNAL_ERROR suberror {suberror} at rip {rip:#x}")
    }

    /// HLT with IF clear: nothing but an NMI (which this machine never
    /// sends) could wake the vCPU.
    fn halted_for_good(&self) -> bool {
        let halted = matches!(self.vcpu.get_mp_state(), Ok(s) if s.mp_state == KVM_MP_STATE_HALTED);
        halted && matches!(self.vcpu.get_regs(), Ok(r) if r.rflags & RFLAGS_IF == 0)
    }

    /// Port I/O: decodes kvm_run.io itself, because string I/O needs the
    /// access size and repeat count that `VcpuExit` folds together.
    fn handle_io(&mut self) {
        let run_size = self.run_size;
        let run = self.vcpu.get_kvm_run();
        // SAFETY: this is only called right after KVM_RUN returned
        // KVM_EXIT_IO, which makes `io` the valid member of the union.
        let io = unsafe { run.__bindgen_anon_1.io };
        let size = usize::from(io.size);
        let len = size * io.count as usize;
        let offset = io.data_offset as usize;
        // The data area lies inside the kvm_run mapping (one page or more);
        // refuse anything else rather than trusting it blindly.
        if offset < std::mem::size_of::<kvm_bindings::kvm_run>()
            || offset + len > run_size
            || len == 0
        {
            log::warn!("ignoring malformed I/O exit (offset {offset}, len {len})");
            return;
        }
        let base = (run as *mut kvm_bindings::kvm_run).cast::<u8>();
        // SAFETY: KVM places `count * size` data bytes at `data_offset` inside
        // the vCPU's kvm_run mapping (checked against the struct end and the
        // mapping size above); nothing else references them
        // until the next KVM_RUN.
        let data = unsafe { std::slice::from_raw_parts_mut(base.add(offset), len) };
        if u32::from(io.direction) == kvm_bindings::KVM_EXIT_IO_IN {
            self.bus.read(io.port, size, data);
        } else {
            self.bus.write(io.port, size, data);
        }
    }
}

struct HandleInner {
    control: Arc<RunControl>,
    shared: Arc<VcpuShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    serials: Vec<Arc<SerialPort>>,
}

/// A started machine. Cheap to clone; every clone controls the same VM.
/// Dropping the last clone of a machine that still runs does not stop it:
/// call [`VmHandle::quit`].
#[derive(Clone)]
pub struct VmHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for VmHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmHandle")
            .field("status", &self.status())
            .finish()
    }
}

/// How long a pause waits between kicks for the vCPU to confirm.
const PAUSE_RETRY: Duration = Duration::from_millis(50);

impl VmHandle {
    /// The run state (QMP `query-status`).
    pub fn status(&self) -> RunState {
        self.inner.control.state()
    }

    /// Stops the vCPU (QMP `stop`); returns once it executes no more guest
    /// code. Devices keep taking input meanwhile; the guest sees it after
    /// [`VmHandle::resume`]. A machine still in `prelaunch` stays there.
    pub fn pause(&self) -> Result<(), VmError> {
        if !self.inner.control.request_pause() {
            return Err(VmError::ShutDown);
        }
        loop {
            self.inner.shared.kick();
            if self.inner.control.wait_parked(PAUSE_RETRY) {
                return Ok(());
            }
            if self.status().is_final() {
                return Err(VmError::ShutDown);
            }
        }
    }

    /// Lets the vCPU run again (QMP `cont`), also out of `prelaunch`.
    pub fn resume(&self) -> Result<(), VmError> {
        if self.inner.control.request_run() {
            Ok(())
        } else {
            Err(VmError::ShutDown)
        }
    }

    /// Ends the run (QMP `quit`) and waits for the vCPU thread to finish.
    /// Returns why the run ended (which is not `Quit` if the guest got there
    /// first).
    pub fn quit(&self) -> ExitReason {
        self.inner.control.request_quit();
        loop {
            self.inner.shared.kick();
            if let Some(reason) = self.inner.control.wait_exit(Some(PAUSE_RETRY)) {
                self.join();
                return reason;
            }
        }
    }

    /// Waits for the run to end.
    pub fn wait(&self) -> ExitReason {
        let reason = self
            .inner
            .control
            .wait_exit(None)
            .unwrap_or_else(|| ExitReason::Error("run ended without a reason".into()));
        self.join();
        reason
    }

    /// Waits at most `timeout` for the run to end.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitReason> {
        let reason = self.inner.control.wait_exit(Some(timeout))?;
        self.join();
        Some(reason)
    }

    /// Why the run ended, if it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.inner.control.exit_reason()
    }

    /// The machine's serial ports, in the order they were added.
    pub fn serial_ports(&self) -> &[Arc<SerialPort>] {
        &self.inner.serials
    }

    fn join(&self) {
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            if t.join().is_err() {
                log::error!("a vCPU thread panicked");
            }
        }
    }
}
