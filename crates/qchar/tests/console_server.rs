//! qchar as a console server for a VM it does not run (`-machine none`,
//! no KVM): a real QEMU 7.2 guest whose serial port is a unix socket
//! server, bridged (`-object x-bridge`) to a user-side socket with a
//! rotating log; QEMU restarted under it. Also `object-add`/`object-del`
//! over QMP and the refusals on the command line.
//!
//! [`ConsoleServer`] starts the qchar side; the multi-client tests can add
//! their clients to its user socket.

mod common;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use qchar_testkit::{connect_unix, require, wait_until, Prereq};
use serde_json::{json, Value};

/// A client of a socket that keeps everything it reads.
struct Reader {
    got: Arc<Mutex<Vec<u8>>>,
    stream: UnixStream,
}

impl Reader {
    fn connect(path: &Path) -> Reader {
        let stream = connect_unix(path);
        let got = Arc::new(Mutex::new(Vec::new()));
        let (mut s, g) = (stream.try_clone().unwrap(), got.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                g.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Reader { got, stream }
    }

    fn data(&self) -> Vec<u8> {
        self.got.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// qchar with `-machine none`: chardev `vm`, a socket client with
/// `reconnect-ms` to the VM's console socket; chardev `user`, a socket
/// server for users, logging to `console.log` with rotation; the bridge
/// `br` between them; QMP on `qchar.qmp`.
struct ConsoleServer {
    proc: Proc,
    qmp: Qmp,
    user: PathBuf,
    log: PathBuf,
}

/// Rotated log files kept: enough for every test's output.
const KEEP: usize = 1000;

impl ConsoleServer {
    fn start(dir: &Path, vm_socket: &Path) -> ConsoleServer {
        let line = format!(
            "-machine none -nodefaults -qmp unix:$D/qchar.qmp,server=on,wait=off \
             -chardev socket,id=vm,path={},reconnect-ms=100 \
             -chardev socket,id=user,path=$D/user.sock,server=on,wait=off,\
             logfile=$D/console.log,x-logsize=4k,x-logkeep={KEEP} \
             -object x-bridge,id=br,chardev-a=vm,chardev-b=user",
            vm_socket.display()
        );
        let proc = Proc::qchar(&argv(&line, dir), dir);
        let qmp = Qmp::connect(&p(dir, "qchar.qmp"));
        ConsoleServer {
            proc,
            qmp,
            user: p(dir, "user.sock"),
            log: p(dir, "console.log"),
        }
    }

    /// `query-chardev`'s filename of `id`.
    fn filename(&mut self, id: &str) -> String {
        let list = self.qmp.cmd("query-chardev", Value::Null);
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == id)
            .map(|c| c["filename"].as_str().unwrap().to_string())
            .unwrap_or_default()
    }

    fn connected(&mut self, id: &str) -> bool {
        !self.filename(id).starts_with("disconnected:")
    }

    /// `x-query-chardev-stats` of `id`.
    fn stats(&mut self, id: &str) -> Value {
        let all = self.qmp.cmd("x-query-chardev-stats", Value::Null);
        all.as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == id)
            .cloned()
            .unwrap()
    }

    /// The log, rotated files joined, oldest first.
    fn log(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for i in (1..=KEEP).rev() {
            if let Ok(b) = std::fs::read(format!("{}.{i}", self.log.display())) {
                all.extend(b);
            }
        }
        all.extend(std::fs::read(&self.log).unwrap_or_default());
        all
    }

    fn rotated_files(&self) -> usize {
        (1..=KEEP)
            .filter(|i| Path::new(&format!("{}.{i}", self.log.display())).exists())
            .count()
    }
}

/// Numbered demo lines in `data`, checked 1, 2, 3... (a partial last line
/// allowed); returns how many.
fn demo_lines(data: &[u8]) -> u64 {
    let (n, echoes) = check_demo_stream(data);
    assert!(echoes.is_empty(), "no input was sent: {echoes:?}");
    n
}

#[test]
fn qemu_console_through_a_bridge_with_a_rotating_log_across_a_restart() {
    if !require(Prereq::Qemu) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let image = demo_image(d);
    let vm_socket = p(d, "serial.sock");
    let mut qemu = QemuGuest::start(d, "qemu1", &image, &vm_socket);
    let mut cs = ConsoleServer::start(d, &vm_socket);
    wait_until("qchar connected to QEMU's serial socket", || {
        qemu.serial_connected()
    });
    let user = Reader::connect(&cs.user);
    wait_until("the user connected", || cs.connected("user"));
    qemu.cont();

    // First boot: every line once, in order, to the user and in the log.
    wait_until("2000 lines at the user", || {
        check_demo_stream(&user.data()).0 >= 2000
    });
    let first_boot = demo_lines(&user.data());
    assert!(first_boot >= 2000);

    // QEMU dies; everything it wrote before reaches the user.
    qemu.kill();
    wait_until("qchar saw the VM go", || !cs.connected("vm"));
    wait_until("all of it passed on", || {
        let s = cs.stats("user");
        s["queued"] == 0 && s["bytes-out"].as_u64() == Some(user.len() as u64)
    });
    let before_restart = user.len();
    let cut = demo_lines(&user.data());
    assert!(cut >= first_boot);

    // A new QEMU on the same socket path: the bridge reconnects by itself;
    // the guest boots only once it has, and every line it prints arrives.
    let mut qemu = QemuGuest::start(d, "qemu2", &image, &vm_socket);
    wait_until("qchar reconnected", || qemu.serial_connected());
    wait_until("qchar sees the VM", || cs.connected("vm"));
    qemu.cont();
    wait_until("2000 lines of the second boot", || {
        check_demo_stream(&user.data()[before_restart..]).0 >= 2000
    });
    qemu.kill();
    wait_until("the second boot passed on", || {
        !cs.connected("vm") && {
            let s = cs.stats("user");
            s["queued"] == 0 && s["bytes-out"].as_u64() == Some(user.len() as u64)
        }
    });
    let all = user.data();
    // The first boot may end mid-line (QEMU was killed): the second starts
    // at its first line regardless.
    let second = demo_lines(&all[before_restart..]);
    assert!(second >= 2000, "second boot: {second} lines");

    // The log: exactly what the user got, across rotations.
    wait_until("the log written out", || cs.log().len() == all.len());
    assert!(cs.log() == all, "the rotated log, joined, is the console");
    assert!(cs.rotated_files() > 5, "the log rotated");
    let stats = cs.stats("user");
    assert_eq!(stats["log-dropped"], 0);
    // qchar never opened KVM.
    assert!(!has_kvm_open(cs.proc.pid()));
    assert_eq!(cs.qmp.cmd("query-status", Value::Null)["status"], "running");
    cs.qmp.cmd("quit", Value::Null);
    assert!(cs.proc.wait().success(), "{}", cs.proc.stderr());
}

/// `-machine none` where `/dev/kvm` does not exist at all: qchar runs, its
/// monitor works (`stop`/`cont` move the run state as QEMU's empty machine
/// does), and a bridge made over QMP carries a console between two sockets.
#[test]
fn machine_none_needs_no_kvm_and_bridges_over_qmp() {
    let dir = tempdir();
    let d = dir.path();
    let Some(mut proc) = qchar_without_kvm(
        d,
        "-machine none -nodefaults -qmp unix:$D/a,server=on,wait=off \
         -chardev socket,id=vm,path=$D/vm.sock,server=on,wait=off \
         -chardev socket,id=user,path=$D/user.sock,server=on,wait=off",
    ) else {
        return;
    };
    let mut q = Qmp::connect(&p(d, "a"));
    assert_eq!(q.cmd("query-status", Value::Null)["status"], "running");
    q.cmd("stop", Value::Null);
    assert_eq!(q.cmd("query-status", Value::Null)["status"], "paused");
    q.cmd("cont", Value::Null);
    assert_eq!(q.cmd("query-status", Value::Null)["status"], "running");
    assert_eq!(q.event_names(), ["STOP", "RESUME"]);
    let add = json!({"qom-type": "x-bridge", "id": "br",
                     "chardev-a": "vm", "chardev-b": "user"});
    assert_eq!(q.cmd("object-add", add.clone()), json!({}));
    // Refusals, in QEMU's words where it has some.
    let error = |q: &mut Qmp, cmd: &str, args: Value| {
        let r = q.execute(json!({"execute": cmd, "arguments": args}));
        r["error"]["desc"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        error(&mut q, "object-add", add),
        "attempt to add duplicate property 'br' to object (type 'container')"
    );
    assert_eq!(
        error(
            &mut q,
            "object-add",
            json!({"qom-type": "x-bridge", "id": "b2", "chardev-a": "vm", "chardev-b": "nope"})
        ),
        "Property 'x-bridge.chardev-b' can't find value 'nope'"
    );
    assert_eq!(
        error(
            &mut q,
            "object-add",
            json!({"qom-type": "iothread", "id": "t"})
        ),
        "invalid object type: iothread"
    );
    assert_eq!(
        error(
            &mut q,
            "object-add",
            json!({"qom-type": "x-bridge", "id": "b3", "chardev-a": "vm"})
        ),
        "Parameter 'chardev-b' is missing"
    );
    assert_eq!(
        error(&mut q, "object-del", json!({"id": "nope"})),
        "object 'nope' not found"
    );
    assert_eq!(
        error(&mut q, "chardev-remove", json!({"id": "vm"})),
        "Chardev 'vm' is busy"
    );
    // The bridge carries bytes both ways.
    let vm = Reader::connect(&p(d, "vm.sock"));
    let user = Reader::connect(&p(d, "user.sock"));
    let connected = |q: &mut Qmp, id: &str| {
        q.cmd("query-chardev", Value::Null)
            .as_array()
            .unwrap()
            .iter()
            .any(|c| {
                c["label"] == id && !c["filename"].as_str().unwrap().starts_with("disconnected")
            })
    };
    wait_until("both connected", || {
        connected(&mut q, "vm") && connected(&mut q, "user")
    });
    use std::io::Write;
    (&vm.stream).write_all(b"login: ").unwrap();
    wait_until("to the user", || user.data() == b"login: ");
    (&user.stream).write_all(b"root\n").unwrap();
    wait_until("to the vm", || vm.data() == b"root\n");
    // object-del frees both chardevs.
    assert_eq!(q.cmd("object-del", json!({"id": "br"})), json!({}));
    q.cmd("chardev-remove", json!({"id": "vm"}));
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success(), "{}", proc.stderr());
}

/// Bad hubs and bridges on the command line: QEMU's texts where it has
/// them, exit status 1, nothing half made.
#[test]
fn bad_hubs_and_bridges_on_the_command_line() {
    let cases: &[(&str, &str)] = &[
        (
            "-chardev null,id=a -chardev hub,id=h,chardevs.0=a,chardevs.1=nope",
            "qchar: -chardev hub,id=h,chardevs.0=a,chardevs.1=nope: hub: chardev can't be found by id 'nope'\n",
        ),
        (
            "-chardev null,id=m,mux=on -chardev hub,id=h,chardevs.0=m",
            "qchar: -chardev hub,id=h,chardevs.0=m: hub: multiplexers and hub devices can't be stacked, check chardev 'm', chardev should not be a hub device or have 'mux=on' enabled\n",
        ),
        (
            "-chardev null,id=a -chardev hub,id=h,chardevs.0=a -chardev hub,id=h2,chardevs.0=h",
            "qchar: -chardev hub,id=h2,chardevs.0=h: hub: multiplexers and hub devices can't be stacked, check chardev 'h', chardev should not be a hub device or have 'mux=on' enabled\n",
        ),
        (
            "-chardev hub,id=h,chardevs.0=h",
            "qchar: -chardev hub,id=h,chardevs.0=h: hub: chardev can't be found by id 'h'\n",
        ),
        (
            "-chardev hub,id=h",
            "qchar: -chardev hub,id=h: hub: 'chardevs' list is not defined\n",
        ),
        (
            "-chardev null,id=a -chardev hub,id=h,chardevs.0=a,chardevs.4=b",
            "qchar: -chardev hub,id=h,chardevs.0=a,chardevs.4=b: Invalid parameter 'chardevs.4'\n",
        ),
        (
            "-chardev null,id=a -object x-bridge,id=br,chardev-a=a,chardev-b=nope",
            "qchar: Property 'x-bridge.chardev-b' can't find value 'nope'\n",
        ),
        (
            "-chardev null,id=a -object x-bridge,id=br,chardev-a=a,chardev-b=a",
            "qchar: x-bridge 'br': chardev-a and chardev-b are both 'a'\n",
        ),
        (
            "-chardev null,id=a -chardev hub,id=h,chardevs.0=a -object x-bridge,id=br,chardev-a=h,chardev-b=a",
            "qchar: x-bridge 'br': 'a' is a member of hub 'h' already; bridging them would make a loop\n",
        ),
        (
            "-chardev null,id=a -chardev null,id=b -object x-bridge,id=br,chardev-a=a,chardev-b=b -serial chardev:a",
            "qchar: -serial chardev:a: Device 'a' is in use\n",
        ),
        (
            "-machine none -drive file=x.img,if=floppy,format=raw",
            "qchar: -drive file=x.img,if=floppy,format=raw: machine type does not support if=floppy,bus=0,unit=0\n",
        ),
        (
            "-machine none -device isa-serial",
            "qchar: -device isa-serial: No 'ISA' bus found for device 'isa-serial'\n",
        ),
        (
            "-chardev null,id=a,logfile=$D/l,x-logkeep=3",
            "qchar: -chardev null,id=a,logfile=$D/l,x-logkeep=3: x-logkeep needs x-logsize\n",
        ),
    ];
    let dir = tempdir();
    // An image that opens: QEMU (and qchar) first say when it does not.
    std::fs::write(dir.path().join("x.img"), [0u8; 512]).unwrap();
    for (line, want) in cases {
        let line = format!("-nodefaults -display none {line}");
        let mut proc = Proc::qchar(&argv(&line, dir.path()), dir.path());
        assert_eq!(proc.wait().code(), Some(1), "{line}");
        let d = dir.path().to_str().unwrap();
        assert_eq!(proc.stderr().replace(d, "$D"), *want, "{line}");
    }
}

/// `-machine none -S`: prelaunch until `cont`; a hub over QMP with a
/// member changed under it keeps every line.
#[test]
fn hub_over_qmp_on_machine_none() {
    let (dir, mut proc, mut q) = qchar_and_qmp(
        "-machine none -S -nodefaults -qmp unix:$D/a,server=on,wait=off \
         -chardev socket,id=src,path=$D/src.sock,server=on,wait=off \
         -chardev file,id=m0,path=$D/m0 -chardev file,id=m1,path=$D/m1",
    );
    let d = dir.path();
    assert_eq!(q.cmd("query-status", Value::Null)["status"], "prelaunch");
    q.cmd("cont", Value::Null);
    assert_eq!(q.cmd("query-status", Value::Null)["status"], "running");
    q.cmd(
        "chardev-add",
        json!({"id": "h", "backend": {"type": "hub", "data": {"chardevs": ["m0", "m1"]}}}),
    );
    let list = q.cmd("query-chardev", Value::Null);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["label"] == "h" && c["filename"] == "hub"));
    let r = q.execute(json!({"execute": "chardev-add", "arguments": {"id": "x",
        "backend": {"type": "hub", "data": {"chardevs": ["m0", 7]}}}}));
    assert_eq!(
        r["error"]["desc"],
        "Invalid parameter type for 'backend.data.chardevs[1]', expected: string"
    );
    // A bridge feeds the hub from a socket; m1 is changed 50 times under it.
    q.cmd(
        "object-add",
        json!({"qom-type": "x-bridge", "id": "br", "chardev-a": "src", "chardev-b": "h"}),
    );
    let mut src = connect_unix(&p(d, "src.sock"));
    use std::io::Write;
    let mut want = Vec::new();
    for i in 0..50 {
        let chunk: Vec<u8> = (0..40)
            .flat_map(|k| format!("line {:06}\n", i * 40 + k).into_bytes())
            .collect();
        src.write_all(&chunk).unwrap();
        want.extend_from_slice(&chunk);
        q.cmd(
            "chardev-change",
            json!({"id": "m1", "backend": {"type": "file",
                   "data": {"out": p(d, &format!("m1.{}", i + 1)).to_str().unwrap()}}}),
        );
    }
    let m1 = || -> Vec<u8> {
        let mut v = std::fs::read(p(d, "m1")).unwrap_or_default();
        for i in 1..=50 {
            v.extend(std::fs::read(p(d, &format!("m1.{i}"))).unwrap_or_default());
        }
        v
    };
    wait_until("m0 has everything", || {
        std::fs::read(p(d, "m0")).unwrap_or_default().len() == want.len()
    });
    wait_until("m1's files have everything", || m1().len() == want.len());
    assert!(std::fs::read(p(d, "m0")).unwrap() == want, "m0");
    assert!(m1() == want, "m1, joined in change order");
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success(), "{}", proc.stderr());
}
