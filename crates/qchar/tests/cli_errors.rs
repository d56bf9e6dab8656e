//! Refused command lines: the built binary's exit status and exact stderr,
//! which is QEMU 7.2's text after the program name. The expected texts were
//! recorded from `qemu-system-x86_64` 7.2; where it is installed the same
//! command lines also run through it, live.

mod common;

use common::{tempdir, Proc};
use qchar_testkit::{require, Prereq};

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
    .into_iter()
    .chain(option_string_cases())
    .chain(object_cases())
    .collect()
}

/// `-object` for TLS credentials and authorization: errors found while
/// reading the option carry its location, errors of the creation (objects
/// are made after the whole command line is read) carry none.
fn object_cases() -> Vec<(Vec<&'static str>, &'static str)> {
    let n = ["-nodefaults", "-display", "none", "-S"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        n.iter().copied().chain(extra.iter().copied()).collect()
    };
    vec![
        (
            with(&["-object", "bogus,id=x"]),
            "-object bogus,id=x: Parameter 'qom-type' does not accept value 'bogus'\n",
        ),
        (
            with(&["-object", "id=x"]),
            "-object id=x: Parameter 'qom-type' is missing\n",
        ),
        (
            with(&["-object", "tls-creds-x509,dir=/x"]),
            "-object tls-creds-x509,dir=/x: Parameter 'id' is missing\n",
        ),
        (
            with(&["-object", "authz-simple,id=1a,identity=x"]),
            "-object authz-simple,id=1a,identity=x: Parameter 'id' expects an identifier\n\
             Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n",
        ),
        (
            with(&["-object", "tls-creds-x509,id=t,verify-peer=maybe,endpoint=bogus"]),
            "-object tls-creds-x509,id=t,verify-peer=maybe,endpoint=bogus: Parameter 'verify-peer' expects 'on' or 'off'\n",
        ),
        (
            with(&["-object", "tls-creds-x509,id=t,endpoint=bogus"]),
            "-object tls-creds-x509,id=t,endpoint=bogus: Parameter 'endpoint' does not accept value 'bogus'\n",
        ),
        (
            with(&["-object", "tls-creds-x509,id=t,foo=1"]),
            "-object tls-creds-x509,id=t,foo=1: Invalid parameter 'foo'\n",
        ),
        (
            with(&["-object", "authz-simple,id=a"]),
            "-object authz-simple,id=a: Parameter 'identity' is missing\n",
        ),
        (
            with(&[
                "-object",
                "tls-creds-x509,id=t,dir=/x",
                "-object",
                "tls-creds-psk,id=t,dir=/y",
            ]),
            "-object tls-creds-psk,id=t,dir=/y: Duplicate ID 't' for object\n",
        ),
        (
            with(&["-object", "{\"qom-type\":\"authz-simple\",\"id\":\"a\"}"]),
            "-object {\"qom-type\":\"authz-simple\",\"id\":\"a\"}: Parameter 'identity' is missing\n",
        ),
        (
            with(&[
                "-object",
                "{\"qom-type\":\"authz-list\",\"id\":\"a\",\"rules\":[{\"match\":\"x\"}]}",
            ]),
            "-object {\"qom-type\":\"authz-list\",\"id\":\"a\",\"rules\":[{\"match\":\"x\"}]}: Parameter 'rules[0].policy' is missing\n",
        ),
        (
            with(&["-object", "{\"qom-type\":\"authz-simple\",\"id\":\"a\""]),
            "-object {\"qom-type\":\"authz-simple\",\"id\":\"a\": JSON parse error, premature EOI\n",
        ),
        // Errors of the creation: no location.
        (
            with(&["-object", "authz-pam,id=x,service=a"]),
            "invalid object type: authz-pam\n",
        ),
        (
            with(&["-object", "tls-creds-x509,id=t"]),
            "Missing 'dir' property value\n",
        ),
        (
            with(&["-object", "tls-creds-x509,id=t,dir=/nonexistent-qchar-dir"]),
            "Unable to access credentials /nonexistent-qchar-dir/ca-cert.pem: No such file or directory\n",
        ),
        (
            with(&["-object", "tls-creds-x509,id=t,dir=/x,loaded=on"]),
            "Property 'tls-creds-x509.loaded' is not writable\n",
        ),
        (
            with(&[
                "-object",
                "{\"qom-type\":\"authz-simple\",\"id\":\"a\",\"identity\":\"x\"}",
                "-object",
                "{\"qom-type\":\"authz-simple\",\"id\":\"a\",\"identity\":\"x\"}",
            ]),
            "attempt to add duplicate property 'a' to object (type 'container')\n",
        ),
        (
            with(&["-object", "tls-creds-psk,id=p,dir=/tmp,endpoint=server,username=x"]),
            "username should not be set when endpoint=server\n",
        ),
        // Socket chardevs naming objects.
        (
            with(&["-chardev", "socket,id=c,host=127.0.0.1,port=1,server=on,wait=off,tls-creds=nope"]),
            "-chardev socket,id=c,host=127.0.0.1,port=1,server=on,wait=off,tls-creds=nope: No TLS credentials with id 'nope'\n",
        ),
        (
            with(&[
                "-object",
                "authz-simple,id=a,identity=x",
                "-chardev",
                "socket,id=c,host=127.0.0.1,port=1,server=on,wait=off,tls-creds=a",
            ]),
            "-chardev socket,id=c,host=127.0.0.1,port=1,server=on,wait=off,tls-creds=a: Object with id 'a' is not TLS credentials\n",
        ),
        (
            with(&[
                "-object",
                "authz-simple,id=a,identity=x",
                "-chardev",
                "socket,id=c,host=127.0.0.1,port=1,server=on,wait=off,tls-authz=a",
            ]),
            "-chardev socket,id=c,host=127.0.0.1,port=1,server=on,wait=off,tls-authz=a: 'tls_authz' option requires 'tls_creds' option\n",
        ),
    ]
}

/// QEMU's option-string rules (qchar_chardev::qemuopts) where qchar's two
/// former parsers disagreed with each other or with QEMU: warnings printed
/// before the error, ids checked first, numbers and sizes as QEMU reads
/// them, keyval for -machine/-display. `-mon chardev=zzz` is a later error
/// that shows the earlier option was accepted.
fn option_string_cases() -> Vec<(Vec<&'static str>, &'static str)> {
    let n = ["-nodefaults", "-display", "none", "-S"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        n.iter().copied().chain(extra.iter().copied()).collect()
    };
    let accepted = |extra: &[&'static str]| -> Vec<&'static str> {
        with(extra)
            .into_iter()
            .chain(["-mon", "chardev=zzz"])
            .collect()
    };
    macro_rules! size_err {
        ($prefix:literal) => {
            concat!(
                $prefix,
                "Parameter 'size' expects a non-negative number below 2^64\n\
                 Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
                 and exabytes, respectively.\n"
            )
        };
    }
    let not_found = "-mon chardev=zzz: chardev \"zzz\" not found\n";
    vec![
        // QEMU's first pass checks every option name and argument.
        (
            with(&["-chardev", "null,id=0x", "-foo"]),
            "-foo: invalid option\n",
        ),
        (
            with(&["-mon", "c,bogus=1", "-chardev"]),
            "-chardev: requires an argument\n",
        ),
        (
            with(&["-mon", "c,pretty,,mode=control"]),
            "-mon c,pretty,,mode=control: warning: short-form boolean option 'pretty' deprecated\n\
             Please use pretty=on instead\n\
             PROG: -mon c,pretty,,mode=control: warning: short-form boolean option '' deprecated\n\
             Please use =on instead\n\
             PROG: -mon c,pretty,,mode=control: Invalid parameter ''\n",
        ),
        (
            with(&["-mon", "c,nodelay"]),
            "-mon c,nodelay: warning: short-form boolean option 'nodelay' deprecated\n\
             Please use nodelay=on instead\n\
             PROG: -mon c,nodelay: Invalid parameter 'delay'\n",
        ),
        (
            with(&["-mon", "chardev=c,bogus=1,id=1x"]),
            "-mon chardev=c,bogus=1,id=1x: Parameter 'id' expects an identifier\n\
             Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n",
        ),
        (
            with(&["-name", "foo,bogus=1,id=x"]),
            "-name foo,bogus=1,id=x: Invalid parameter 'id'\n",
        ),
        (
            with(&["-chardev", "null,id=a,bogus"]),
            "-chardev null,id=a,bogus: warning: short-form boolean option 'bogus' deprecated\n\
             Please use bogus=on instead\n\
             PROG: -chardev null,id=a,bogus: Invalid parameter 'bogus'\n",
        ),
        (
            with(&["-chardev", "null,id=a,server", "-mon", "c,bogus=1"]),
            "-chardev null,id=a,server: warning: short-form boolean option 'server' deprecated\n\
             Please use server=on instead\n\
             PROG: -mon c,bogus=1: Invalid parameter 'bogus'\n",
        ),
        (
            with(&["-chardev", "null,id=0x", "-m", "foo"]),
            "-chardev null,id=0x: Parameter 'id' expects an identifier\n\
             Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n",
        ),
        (
            with(&["-chardev", "null,id=a", "-chardev", "null,id=a"]),
            "-chardev null,id=a: Duplicate ID 'a' for chardev\n",
        ),
        (
            with(&["-monitor", "null", "-chardev", "null,id=compat_monitor0"]),
            "-chardev null,id=compat_monitor0: Duplicate ID 'compat_monitor0' for chardev\n",
        ),
        (
            with(&["-chardev", "null,id=compat_monitor0", "-monitor", "null"]),
            "-monitor null: Duplicate ID 'compat_monitor0' for chardev\n\
             PROG: -monitor null: parse error: null\n",
        ),
        (
            with(&["-serial", "null", "-chardev", "null,id=serial0"]),
            "-serial null: Duplicate ID 'serial0' for chardev\n\
             PROG: -serial null: could not connect serial device to character backend 'null'\n",
        ),
        (
            with(&["-drive", "file=a,id=d", "-drive", "file=b,id=d"]),
            "-drive file=b,id=d: Duplicate ID 'd' for drive\n",
        ),
        (
            with(&["-chardev", "ringbuf,id=r,size=0x1kz"]),
            size_err!(
                "-chardev ringbuf,id=r,size=0x1kz: warning: Using a multiplier suffix on hex numbers is deprecated: 0x1kz\n\
                 PROG: -chardev ringbuf,id=r,size=0x1kz: "
            ),
        ),
        (
            with(&["-chardev", "ringbuf,id=r,size=1.5"]),
            size_err!("-chardev ringbuf,id=r,size=1.5: "),
        ),
        // 2047.5 rounds up to a power of two; a fraction that rounds to 1.0
        // counts as 0 (3072); an underflowing fraction is dropped.
        (
            accepted(&["-chardev", "ringbuf,id=r,size=1.99951171875k"]),
            not_found,
        ),
        (
            with(&["-chardev", "ringbuf,id=r,size=3.99999999999999999k"]),
            "-chardev ringbuf,id=r,size=3.99999999999999999k: size of ringbuf chardev must be power of two\n",
        ),
        (
            accepted(&["-chardev", "ringbuf,id=r,size=2.5e-400k"]),
            not_found,
        ),
        (accepted(&["-chardev", "null,id=a,to= 5"]), not_found),
        (accepted(&["-m", " 64"]), not_found),
        (with(&["-m", "1.5"]), size_err!("-m 1.5: ")),
        (
            with(&["-m", "17592186044416"]),
            "Parameter 'memory.size' expects size\n",
        ),
        (
            with(&["-device", "isa-serial,iobase=-1"]),
            "-device isa-serial,iobase=-1: Parameter 'iobase' expects uint32_t\n",
        ),
        (
            with(&["-device", "isa-serial,iobase= 0x2f8,bogus=1"]),
            "-device isa-serial,iobase= 0x2f8,bogus=1: Property 'isa-serial.bogus' not found\n",
        ),
        (
            with(&["-drive", "file=/dev/null,format=raw,if=ide,index=-3"]),
            "-drive file=/dev/null,format=raw,if=ide,index=-3: machine type does not support if=ide,bus=-1,unit=0\n",
        ),
        (
            with(&["-drive", "file=/dev/null,format=raw,if=floppy,index=99999999999999999999"]),
            "-drive file=/dev/null,format=raw,if=floppy,index=99999999999999999999: Value '99999999999999999999' is too large for parameter 'index'\n",
        ),
        (
            with(&["-drive", ",file=/dev/null,format=raw,if=floppy"]),
            "-drive ,file=/dev/null,format=raw,if=floppy: warning: short-form boolean option '' deprecated\n\
             Please use =on instead\n\
             PROG: -drive ,file=/dev/null,format=raw,if=floppy: Block format 'raw' does not support the option ''\n",
        ),
        (
            with(&["-machine", "pc,accel"]),
            "-machine pc,accel: Expected '=' after parameter 'accel'\n",
        ),
        (
            with(&["-display", "none,,x"]),
            "-display none,,x: Invalid parameter ''\n",
        ),
        (
            with(&["-display", "none,help"]),
            "-display none,help: Help is not available for this option\n",
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
    if !require(Prereq::Qemu) {
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
