//! Boots the demo guests under real KVM with COM1 on an in-memory sink.
//! Every test skips (with a message) where /dev/kvm cannot be opened, and
//! fails there instead under `QCHAR_TEST_REQUIRE_ALL`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use qchar_machine::guest::{self, demo_image, demo_line, IRQ_DEMO_IMAGE};
use qchar_machine::sink::CaptureSink;
use qchar_machine::uart::Uart;
use qchar_machine::{ComPort, ExitReason, Machine, MachineConfig, RunState, SerialPort, VmHandle};
use qchar_testkit::{require, Prereq};

use common::{check_numbered, TIMEOUT};

fn boot(
    image: &[u8],
    config: MachineConfig,
    sink: Arc<CaptureSink>,
) -> (VmHandle, Arc<SerialPort>) {
    let mut m = Machine::new(config).expect("create VM");
    m.load_boot_image(image).expect("load image");
    let port = m.add_serial(ComPort::COM1, sink.clone()).expect("add COM1");
    let weak = Arc::downgrade(port.uart());
    sink.set_ready_callback(Box::new(move || {
        if let Some(u) = weak.upgrade() {
            u.output_ready();
        }
    }));
    (m.start().expect("start"), port)
}

fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .split("\r\n")
        .map(str::to_string)
        .collect()
}

fn wait_for_text(sink: &CaptureSink, text: &str) {
    let found = sink.wait_output(TIMEOUT, |out| String::from_utf8_lossy(out).contains(text));
    assert!(found, "guest never printed {text:?}");
}

fn send(uart: &Uart, data: &[u8]) {
    assert!(uart.can_receive() >= data.len());
    uart.receive(data);
}

#[test]
fn counts_lines_and_halts() {
    if !require(Prereq::Kvm) {
        return;
    }
    let sink = CaptureSink::shared();
    let (vm, port) = boot(
        &demo_image(Some(2000)),
        MachineConfig::default(),
        sink.clone(),
    );
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    assert_eq!(vm.status(), RunState::Shutdown);
    let others = check_numbered(&sink.output(), 2000);
    assert!(others.is_empty(), "unexpected lines {others:?}");
    assert!(sink.output().ends_with(b"\r\n"));
    let stats = port.uart().stats();
    assert_eq!(stats.tx_dropped, 0);
    // The guest programmed 115200 8N1 and DTR/RTS, which reached the sink.
    let controls = sink.take_controls();
    assert!(
        controls.contains(&qchar_machine::uart::SerialControl::SetParams(
            qchar_machine::uart::LineParams {
                speed: 115_200,
                parity: qchar_machine::uart::LineParity::None,
                data_bits: 8,
                stop_bits: 1,
            }
        ))
    );
    assert!(
        controls.contains(&qchar_machine::uart::SerialControl::SetModem(
            qchar_machine::uart::TIOCM_DTR | qchar_machine::uart::TIOCM_RTS
        ))
    );
}

#[test]
fn backpressure_loses_nothing() {
    if !require(Prereq::Kvm) {
        return;
    }
    // The sink takes 7 bytes at a time, then only after the consumer grants
    // more; the polling guest must wait on LSR.THRE and lose nothing.
    let sink = Arc::new(CaptureSink::with_capacity(0));
    let (vm, port) = boot(
        &demo_image(Some(300)),
        MachineConfig::default(),
        sink.clone(),
    );
    let consumer = {
        let sink = sink.clone();
        let vm = vm.clone();
        std::thread::spawn(move || {
            while vm.exit_reason().is_none() {
                sink.grant(7);
                // The slowness is the point: a consumer slower than the
                // guest, so that the UART must push back (no
                // synchronisation hangs on this pause).
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    consumer.join().unwrap();
    check_numbered(&sink.output(), 300);
    let stats = port.uart().stats();
    assert_eq!(
        stats.tx_dropped, 0,
        "the guest never overran the transmitter"
    );
    assert!(stats.tx_blocked > 0, "the sink did push back");
}

#[test]
fn echoes_input_between_lines() {
    if !require(Prereq::Kvm) {
        return;
    }
    let sink = CaptureSink::shared();
    let (vm, port) = boot(&demo_image(None), MachineConfig::default(), sink.clone());
    wait_for_text(&sink, &demo_line(50));
    send(port.uart(), b"hello\\\x01");
    wait_for_text(&sink, "qchar-echo hello\\x5c\\x01\r\n");
    // More than one echo line's worth (16): split over two echo lines.
    send(port.uart(), b"abcdefghijklmnopqrstuvwxyz");
    wait_for_text(&sink, "qchar-echo qrstuvwxyz\r\n");
    let seen = sink.output();
    let n = lines(&seen)
        .iter()
        .filter(|l| l.starts_with(guest::LINE_PREFIX))
        .count() as u64;
    wait_for_text(&sink, &demo_line(n + 10));
    assert_eq!(vm.quit(), ExitReason::Quit);
    assert_eq!(vm.status(), RunState::Shutdown);
    let out = sink.output();
    // Cut at the last complete line and check the whole sequence.
    let end = out.windows(2).rposition(|w| w == b"\r\n").unwrap() + 2;
    let count = lines(&out[..end])
        .iter()
        .filter(|l| l.starts_with(guest::LINE_PREFIX))
        .count() as u64;
    let others = check_numbered(&out[..end], count);
    assert_eq!(
        others,
        vec![
            "qchar-echo hello\\x5c\\x01".to_string(),
            "qchar-echo abcdefghijklmnop".to_string(),
            "qchar-echo qrstuvwxyz".to_string()
        ]
    );
}

#[test]
fn interrupt_driven_guest_echoes_from_its_isr() {
    if !require(Prereq::Kvm) {
        return;
    }
    let sink = CaptureSink::shared();
    let (vm, port) = boot(IRQ_DEMO_IMAGE, MachineConfig::default(), sink.clone());
    wait_for_text(&sink, "qchar-irq ready\r\n");
    // The guest now sleeps in `sti; hlt`; only IRQ 4 can make it print.
    send(port.uart(), b"ping");
    wait_for_text(&sink, "qchar-irq 0001 ping\r\n");
    assert_eq!(
        vm.status(),
        RunState::Running,
        "hlt with interrupts on keeps running"
    );
    send(port.uart(), b"pong");
    wait_for_text(&sink, "qchar-irq 0002 pong\r\n");
    send(port.uart(), &[guest::IRQ_STOP_BYTE]);
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    let text = String::from_utf8(sink.output()).unwrap();
    assert!(text.ends_with("qchar-irq bye\r\n"), "{text:?}");
    assert!(!port.uart().irq_asserted());
}

#[test]
fn pause_and_resume() {
    if !require(Prereq::Kvm) {
        return;
    }
    let sink = CaptureSink::shared();
    let (vm, _port) = boot(&demo_image(None), MachineConfig::default(), sink.clone());
    wait_for_text(&sink, &demo_line(100));
    vm.pause().unwrap();
    assert_eq!(vm.status(), RunState::Paused);
    let frozen = sink.output().len();
    // Paused means no guest code runs: nothing new appears, however long we
    // look (the check cannot pass by luck, only fail by a bug). The pause
    // is what is under test; nothing waits on it for an event.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.output().len(), frozen, "output grew while paused");
    vm.pause().unwrap();
    vm.resume().unwrap();
    let seen = sink.output();
    let n = lines(&seen)
        .iter()
        .filter(|l| l.starts_with(guest::LINE_PREFIX))
        .count() as u64;
    wait_for_text(&sink, &demo_line(n + 100));
    assert_eq!(vm.status(), RunState::Running);
    assert_eq!(vm.quit(), ExitReason::Quit);
    assert!(vm.pause().is_err());
    assert!(vm.resume().is_err());
}

#[test]
fn prelaunch_waits_for_cont() {
    if !require(Prereq::Kvm) {
        return;
    }
    let sink = CaptureSink::shared();
    let config = MachineConfig {
        start_paused: true,
        ..MachineConfig::default()
    };
    let (vm, _port) = boot(&demo_image(Some(10)), config, sink.clone());
    assert_eq!(vm.status(), RunState::Prelaunch);
    assert!(vm.wait_timeout(Duration::from_millis(100)).is_none());
    assert!(sink.output().is_empty());
    vm.resume().unwrap();
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    check_numbered(&sink.output(), 10);
}

#[test]
fn quit_while_halted_with_interrupts_on() {
    if !require(Prereq::Kvm) {
        return;
    }
    let sink = CaptureSink::shared();
    let (vm, _port) = boot(IRQ_DEMO_IMAGE, MachineConfig::default(), sink.clone());
    wait_for_text(&sink, "qchar-irq ready\r\n");
    vm.pause().unwrap();
    assert_eq!(vm.status(), RunState::Paused);
    vm.resume().unwrap();
    assert_eq!(vm.quit(), ExitReason::Quit);
}

#[test]
fn triple_fault_ends_the_run() {
    if !require(Prereq::Kvm) {
        return;
    }
    // An IDT of limit 0, protected mode on, divide by zero: neither #DE
    // nor the #GP and double fault that follow can be delivered, so the CPU
    // shuts down (triple fault).
    let mut image = vec![
        0x0f, 0x01, 0x1e, 0x14, 0x7c, // lidt [0x7c14]
        0x0f, 0x20, 0xc0, // mov eax,cr0
        0x0c, 0x01, // or al,1
        0x0f, 0x22, 0xc0, // mov cr0,eax
        0x31, 0xc0, // xor ax,ax
        0xf6, 0xf0, // div al
        0xeb, 0xfe, 0x90, // jmp $; nop
        0, 0, 0, 0, 0, 0, // IDT descriptor at 0x7c14: limit 0, base 0
    ];
    image.resize(512, 0);
    image[510] = 0x55;
    image[511] = 0xaa;
    let (vm, _port) = boot(&image, MachineConfig::default(), CaptureSink::shared());
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::GuestShutdown));
    assert_eq!(vm.status(), RunState::Shutdown);
}

#[test]
fn boot_registers_and_unclaimed_ports() {
    if !require(Prereq::Kvm) {
        return;
    }
    // mov al, dl; out 0x3f8; in from port 0x1234; out 0x3f8; mov ax, sp;
    // out 0x3f8 (low byte), mov al, ah; out; cli; hlt.
    let mut image = vec![
        0x88, 0xd0, 0xba, 0xf8, 0x03, 0xee, // mov al,dl; mov dx,0x3f8; out dx,al
        0xba, 0x34, 0x12, 0xec, // mov dx,0x1234; in al,dx
        0xba, 0xf8, 0x03, 0xee, // mov dx,0x3f8; out dx,al
        0x89, 0xe0, 0xee, // mov ax,sp; out dx,al
        0x88, 0xe0, 0xee, // mov al,ah; out dx,al
        0x8c, 0xc8, 0xee, // mov ax,cs; out dx,al
        0xfa, 0xf4, // cli; hlt
    ];
    image.resize(512, 0);
    let config = MachineConfig {
        boot_drive: 0x80,
        mem_size: 16 << 20,
        ..MachineConfig::default()
    };
    let sink = CaptureSink::shared();
    let (vm, _port) = boot(&image, config, sink.clone());
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    assert_eq!(sink.output(), vec![0x80, 0xff, 0x00, 0x7c, 0x00]);
}
