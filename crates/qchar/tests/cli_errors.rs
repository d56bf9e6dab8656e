//! Refused command lines: the built binary's exit status and exact stderr,
//! which is QEMU 7.2's text after the program name. The expected texts were
//! recorded from `qemu-system-x86_64` 7.2; where it is installed the same
//! command lines also run through it, live.

mod common;

use common::{qemu_available, tempdir, Proc};

/// `(arguments, stderr after the program-name prefix)`.
fn cases() -> Vec<(Vec<&'static str>, &'static str)> {
    let n = ["-nodefaults", "-display", "none", "-S"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        n.iter().copied().chain(extra.iter().copied()).collect()
    };
    vec![
        (vec!["-foo"], "-foo: invalid option\n"),
        (vec!["--foo"], "--foo: invalid option\n"),
        (vec!["-chardev=null,id=x"], "-chardev=null,id=x: invalid option\n"),
        (vec!["-chardev"], "-chardev: requires an argument\n"),
        (
            with(&["-chardev", "bogus,id=x"]),
            "-chardev bogus,id=x: 'bogus' is not a valid char driver name\n",
        ),
        (
            with(&["-chardev", "null"]),
            "-chardev null: chardev: no id specified\n",
        ),
        (
            with(&["-chardev", "file,id=c,path=/nonexistent-qchar-dir/x"]),
            "-chardev file,id=c,path=/nonexistent-qchar-dir/x: Could not open '/nonexistent-qchar-dir/x': No such file or directory\n",
        ),
        (
            with(&["-serial", "bogus"]),
            "-serial bogus: 'bogus' is not a valid char driver\n\
             PROG: -serial bogus: could not connect serial device to character backend 'bogus'\n",
        ),
        (
            with(&["-serial", "chardev:nope"]),
            "-serial chardev:nope: could not connect serial device to character backend 'chardev:nope'\n",
        ),
        (
            with(&["-serial", "file:/nonexistent-qchar-dir/x"]),
            "-serial file:/nonexistent-qchar-dir/x: Could not open '/nonexistent-qchar-dir/x': No such file or directory\n\
             PROG: -serial file:/nonexistent-qchar-dir/x: could not connect serial device to character backend 'file:/nonexistent-qchar-dir/x'\n",
        ),
        (
            with(&["-monitor", "bogus"]),
            "-monitor bogus: 'bogus' is not a valid char driver\nPROG: -monitor bogus: parse error: bogus\n",
        ),
        (
            with(&["-monitor", "file:/nonexistent-qchar-dir/x"]),
            "-monitor file:/nonexistent-qchar-dir/x: Could not open '/nonexistent-qchar-dir/x': No such file or directory\n",
        ),
        (
            with(&["-mon", "chardev=nope"]),
            "-mon chardev=nope: chardev \"nope\" not found\n",
        ),
        (
            with(&["-chardev", "null,id=c", "-mon", "chardev=c,mode=bogus"]),
            "-mon chardev=c,mode=bogus: Parameter 'mode' does not accept value 'bogus'\n",
        ),
        (
            with(&["-chardev", "null,id=c", "-mon", "chardev=c", "-mon", "chardev=c"]),
            "-mon chardev=c: Device 'c' is in use\n",
        ),
        // Found by differential fuzzing (crates/difffuzz).
        (
            with(&["-chardev", "null,id=c", "-mon", "chardev=c,pretty=on"]),
            "-mon chardev=c,pretty=on: 'pretty' is not compatible with HMP monitors\n",
        ),
        (
            with(&["-mon", "nope,pretty=on"]),
            "-mon nope,pretty=on: chardev \"nope\" not found\n",
        ),
        (
            with(&["-chardev", "bogus,id=a", "-chardev", "null,id=a"]),
            "-chardev null,id=a: Duplicate ID 'a' for chardev\n",
        ),
        (
            with(&["-monitor", "mon:nu"]),
            "-monitor mon:nu: 'nu' is not a valid char driver\nPROG: -monitor mon:nu: parse error: mon:nu\n",
        ),
        (
            with(&["-qmp", "bogus:x"]),
            "-qmp bogus:x: 'bogus:x' is not a valid char driver\nPROG: -qmp bogus:x: parse error: bogus:x\n",
        ),
        (
            with(&["-chardev", "bogus,id=a", "-monitor", "chardev:"]),
            "-monitor chardev:: Parameter 'id' expects an identifier\n",
        ),
        (with(&["-device", "foo"]), "-device foo: 'foo' is not a valid device model name\n"),
        (
            with(&["-device", "isa-serial,chardev=nonexist"]),
            "-device isa-serial,chardev=nonexist: Property 'serial.chardev' can't find value 'nonexist'\n",
        ),
        (
            with(&[
                "-chardev",
                "null,id=c",
                "-device",
                "isa-serial,chardev=c",
                "-device",
                "isa-serial,chardev=c",
            ]),
            "-device isa-serial,chardev=c: Property 'serial.chardev' can't take value 'c': Device 'c' is in use\n",
        ),
        (
            with(&[
                "-device",
                "isa-serial",
                "-device",
                "isa-serial",
                "-device",
                "isa-serial",
                "-device",
                "isa-serial",
                "-device",
                "isa-serial",
            ]),
            "-device isa-serial: Max. supported number of ISA serial ports is 4.\n",
        ),
        (
            with(&["-device", "isa-serial,index=7"]),
            "-device isa-serial,index=7: Max. supported number of ISA serial ports is 4.\n",
        ),
        (
            with(&["-device", "isa-serial,bogus=1"]),
            "-device isa-serial,bogus=1: Property 'isa-serial.bogus' not found\n",
        ),
        (
            vec!["-m", "foo"],
            "-m foo: Parameter 'size' expects a non-negative number below 2^64\n\
             Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
             and exabytes, respectively.\n",
        ),
        (
            vec!["-name", "foo,bogus=1"],
            "-name foo,bogus=1: Invalid parameter 'bogus'\n",
        ),
        (vec!["-accel", "foo"], "-accel foo: invalid accelerator foo\n"),
        (
            vec!["-display", "foo"],
            "-display foo: Parameter 'type' does not accept value 'foo'\n",
        ),
        (
            vec!["-machine", "foo"],
            "unsupported machine type\nUse -machine help to list supported machines\n",
        ),
        (
            vec!["-daemonize", "-nographic"],
            "-nographic cannot be used with -daemonize\n",
        ),
        (
            with(&["-daemonize", "-serial", "stdio"]),
            "-serial stdio: cannot use stdio with -daemonize\n\
             PROG: -serial stdio: could not connect serial device to character backend 'stdio'\n",
        ),
        (
            with(&["-daemonize", "-chardev", "stdio,id=x"]),
            "-chardev stdio,id=x: cannot use stdio with -daemonize\n",
        ),
        (
            with(&["-pidfile", "/nonexistent-qchar-dir/x"]),
            "cannot create PID file: Could not create '/nonexistent-qchar-dir/x': No such file or directory\n",
        ),
        (
            with(&["-fda", "/nonexistent-qchar-dir/x"]),
            "-fda /nonexistent-qchar-dir/x: Could not open '/nonexistent-qchar-dir/x': No such file or directory\n",
        ),
        (
            with(&["-drive", "file=/nonexistent-qchar-dir/x,format=raw,if=floppy,bogus=1"]),
            "-drive file=/nonexistent-qchar-dir/x,format=raw,if=floppy,bogus=1: Could not open '/nonexistent-qchar-dir/x': No such file or directory\n",
        ),
        (
            with(&["-drive", "file=/dev/null,format=raw,if=floppy,bogus=1"]),
            "-drive file=/dev/null,format=raw,if=floppy,bogus=1: Block format 'raw' does not support the option 'bogus'\n",
        ),
        (
            with(&["-drive", "file=/dev/null,format=raw,if=bogus"]),
            "-drive file=/dev/null,format=raw,if=bogus: unsupported bus type 'bogus'\n",
        ),
    ]
}

fn expected(prog: &str, text: &str) -> String {
    format!("{prog}: {}", text.replace("PROG", prog))
}

fn run(program: &str, args: &[&str]) -> (i32, String) {
    let dir = tempdir();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut p = Proc::spawn_program(program, &args, dir.path());
    let st = p.wait();
    (st.code().unwrap_or(-1), p.stderr())
}

#[test]
fn refusals_print_qemu_texts_and_exit_1() {
    for (args, text) in cases() {
        let (code, err) = run(common::qchar_bin(), &args);
        assert_eq!(err, expected("qchar", text), "qchar {args:?}");
        assert_eq!(code, 1, "qchar {args:?}");
    }
}

#[test]
fn qemu_prints_the_same() {
    if !qemu_available() {
        eprintln!("skipping qemu_prints_the_same: qemu-system-x86_64 is not installed");
        return;
    }
    for (args, text) in cases() {
        let (code, err) = run("qemu-system-x86_64", &args);
        // Lines QEMU adds that are not errors (host CPU feature warnings).
        let err: String = err
            .lines()
            .filter(|l| !l.contains("host doesn't support requested feature"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(err, expected("qemu-system-x86_64", text), "qemu {args:?}");
        assert_eq!(code, 1, "qemu {args:?}");
    }
}

#[test]
fn program_name_is_argv0_base_name() {
    // As QEMU: a link named qemu-system-x86_64 speaks with that name, so
    // scripts matching QEMU's whole lines keep working.
    let dir = tempdir();
    let link = dir.path().join("qemu-system-x86_64");
    std::os::unix::fs::symlink(common::qchar_bin(), &link).unwrap();
    let (code, err) = run(link.to_str().unwrap(), &["-foo"]);
    assert_eq!(code, 1);
    assert_eq!(err, "qemu-system-x86_64: -foo: invalid option\n");
}

#[test]
fn help_version_and_image_writer() {
    let dir = tempdir();
    let mut p = Proc::qchar(&["-version".to_string()], dir.path());
    assert!(p.wait().success());
    assert!(p
        .stdout()
        .starts_with("QEMU emulator version 7.2.0 (qchar "));
    let mut p = Proc::qchar(&["--help".to_string()], dir.path());
    assert!(p.wait().success());
    assert!(p.stdout().contains("-chardev"));
    let img = dir.path().join("demo.img");
    let mut p = Proc::qchar(
        &[
            "--write-builtin-image".into(),
            "demo:42".into(),
            img.to_str().unwrap().into(),
        ],
        dir.path(),
    );
    assert!(p.wait().success(), "{}", p.stderr());
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(bytes.len(), 512);
    assert_eq!(qchar_machine::guest::demo_line_limit(&bytes), Some(42));
    let mut p = Proc::qchar(
        &[
            "--write-builtin-image".into(),
            "nope".into(),
            "x.img".into(),
        ],
        dir.path(),
    );
    assert_eq!(p.wait().code(), Some(1));
    assert!(p.stderr().contains("unknown built-in image 'nope'"));
}
