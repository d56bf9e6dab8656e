//! Command-line parsing. Expected texts are what QEMU 7.2 prints for the
//! same command lines (after `qemu-system-x86_64: `), recorded by running
//! it; the qchar-only texts are marked.

use super::*;
use qchar_chardev::spec::{ChardevBackend, ChardevFile, ChardevMux};

fn args(s: &[&str]) -> Vec<String> {
    s.iter().map(|a| a.to_string()).collect()
}

fn cfg(a: &[&str]) -> Config {
    match parse(&args(a)) {
        Ok(Action::Run(c)) => *c,
        Ok(other) => panic!("{a:?}: not a run: {other:?}"),
        Err(d) => panic!("{a:?}: {}", d.render("PROG")),
    }
}

/// The whole error text for `a`, program name `PROG`.
fn err(a: &[&str]) -> String {
    match parse(&args(a)) {
        Err(d) => d.render("PROG"),
        Ok(other) => panic!("{a:?}: no error: {other:?}"),
    }
}

fn printed(a: &[&str]) -> String {
    match parse(&args(a)) {
        Ok(Action::Print(s)) => s,
        other => panic!("{a:?}: {other:?}"),
    }
}

fn deferred<T: std::fmt::Debug>(r: &Result<T, Diag>) -> String {
    match r {
        Err(d) => d.render("PROG"),
        Ok(v) => panic!("no error: {v:?}"),
    }
}

fn chardev_ids(c: &Config) -> Vec<String> {
    c.chardevs
        .iter()
        .map(|r| r.options.as_ref().unwrap().id.clone())
        .collect()
}

fn monitors(c: &Config) -> Vec<(String, MonMode)> {
    c.monitors.iter().map(|m| m.spec.clone().unwrap()).collect()
}

#[test]
fn unknown_options_and_missing_arguments() {
    assert_eq!(err(&["-foo"]), "PROG: -foo: invalid option\n");
    assert_eq!(err(&["--foo"]), "PROG: --foo: invalid option\n");
    // `-opt=value` is not QEMU syntax either.
    assert_eq!(
        err(&["-chardev=null,id=x"]),
        "PROG: -chardev=null,id=x: invalid option\n"
    );
    assert_eq!(err(&["-chardev"]), "PROG: -chardev: requires an argument\n");
    assert_eq!(err(&["-name"]), "PROG: -name: requires an argument\n");
    assert_eq!(err(&["-"]), "PROG: -: invalid option\n");
    // Options QEMU has and qchar lacks are unknown to qchar.
    assert_eq!(err(&["-vga", "std"]), "PROG: -vga: invalid option\n");
    assert_eq!(err(&["-sdl"]), "PROG: -sdl: invalid option\n");
    // The first problem wins, as options are read in order.
    assert_eq!(err(&["-foo", "-version"]), "PROG: -foo: invalid option\n");
}

#[test]
fn double_dash_is_accepted() {
    let c = cfg(&["--nodefaults", "--chardev", "null,id=c", "--S"]);
    assert_eq!(chardev_ids(&c), vec!["c"]);
    assert!(c.start_paused);
}

#[test]
fn help_and_version() {
    assert!(printed(&["-h"]).starts_with("usage: qchar [options] [disk_image]"));
    assert!(printed(&["--help"]).contains("-chardev"));
    assert!(printed(&["-help"]).contains("--write-builtin-image"));
    let v = printed(&["-version"]);
    assert!(v.starts_with("QEMU emulator version 7.2.0 (qchar "), "{v}");
    // Errors QEMU only finds when it creates things come after -version.
    assert!(printed(&["-chardev", "bogus,id=x", "-version"]).starts_with("QEMU emulator"));
}

#[test]
fn chardevs_in_order_with_deferred_errors() {
    let c = cfg(&[
        "-nodefaults",
        "-chardev",
        "file,id=a,path=out.log",
        "-chardev",
        "bogus,id=x",
        "-chardev",
        "null",
    ]);
    assert_eq!(c.chardevs.len(), 3);
    match &c.chardevs[0].options.as_ref().unwrap().backend {
        ChardevBackend::File(ChardevFile { out, .. }) => assert_eq!(out, "out.log"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        deferred(&c.chardevs[1].options),
        "PROG: -chardev bogus,id=x: 'bogus' is not a valid char driver name\n"
    );
    assert_eq!(
        deferred(&c.chardevs[2].options),
        "PROG: -chardev null: chardev: no id specified\n"
    );
    // QEMU checks the option string itself (the id, the keys and their
    // values) while it reads the command line, before -m's error and an
    // earlier chardev's creation error (recorded from QEMU 7.2), its
    // warnings first.
    assert_eq!(
        err(&["-chardev", "null,id=0x", "-m", "foo"]),
        "PROG: -chardev null,id=0x: Parameter 'id' expects an identifier\n\
         Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"
    );
    assert_eq!(
        err(&["-chardev", "bogus,id=y", "-chardev", "null,id=0x"]),
        "PROG: -chardev null,id=0x: Parameter 'id' expects an identifier\n\
         Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"
    );
    assert_eq!(
        err(&["-chardev", "bogus,id=y", "-chardev", "null,id=a,server,x=1"]),
        "PROG: -chardev null,id=a,server,x=1: warning: short-form boolean option 'server' deprecated\n\
         Please use server=on instead\n\
         PROG: -chardev null,id=a,server,x=1: Invalid parameter 'x'\n"
    );
    assert_eq!(
        err(&["-chardev", "null,id=a,to=08", "-m", "foo"]),
        "PROG: -chardev null,id=a,to=08: Parameter 'to' expects a number\n"
    );
    assert_eq!(
        err(&["-chardev", "null,id=a", "-chardev", "null,id=a"]),
        "PROG: -chardev null,id=a: Duplicate ID 'a' for chardev\n"
    );
}

#[test]
fn chardev_deprecation_warnings() {
    let c = cfg(&["-chardev", "socket,id=s,path=p,server,nowait"]);
    let w: Vec<String> = c.warnings.iter().map(|w| w.render("PROG")).collect();
    assert_eq!(
        w,
        vec![
            "PROG: -chardev socket,id=s,path=p,server,nowait: warning: short-form boolean option 'server' deprecated\nPlease use server=on instead\n",
            "PROG: -chardev socket,id=s,path=p,server,nowait: warning: short-form boolean option 'nowait' deprecated\nPlease use wait=off instead\n",
        ]
    );
}

#[test]
fn serial_labels_and_sources() {
    let c = cfg(&[
        "-nodefaults",
        "-serial",
        "none",
        "-serial",
        "null",
        "-serial",
        "chardev:c",
        "-serial",
        "mon:stdio",
    ]);
    // `none` keeps its place (QEMU 7.2: serial1 on COM2, and so on).
    assert_eq!(c.serials.len(), 3);
    let indexes: Vec<usize> = c.serials.iter().map(|s| s.index).collect();
    assert_eq!(indexes, [1, 2, 3]);
    match &c.serials[0].source {
        Ok(SerialSource::New { options, monitor }) => {
            assert_eq!(options.id, "serial1");
            assert!(!monitor);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.serials[1].source, Ok(SerialSource::Existing("c".into())));
    match &c.serials[2].source {
        Ok(SerialSource::New { options, monitor }) => {
            assert_eq!(options.id, "serial3");
            assert!(options.mux && *monitor);
            assert!(uses_stdio(options));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.serials[2].loc.as_deref(), Some("-serial mon:stdio"));
}

#[test]
fn serial_errors() {
    let c = cfg(&["-nodefaults", "-serial", "bogus"]);
    assert_eq!(
        deferred(&c.serials[0].source),
        "PROG: -serial bogus: 'bogus' is not a valid char driver\n\
         PROG: -serial bogus: could not connect serial device to character backend 'bogus'\n"
    );
    let c = cfg(&["-nodefaults", "-serial", "tcp:"]);
    assert_eq!(
        deferred(&c.serials[0].source),
        "PROG: -serial tcp:: could not connect serial device to character backend 'tcp:'\n"
    );
    // qchar has no `vc`: refused like a QEMU built without it.
    let c = cfg(&["-nodefaults", "-serial", "vc"]);
    assert_eq!(
        deferred(&c.serials[0].source),
        "PROG: -serial vc: 'vc' is not a valid char driver name\n\
         PROG: -serial vc: could not connect serial device to character backend 'vc'\n"
    );
}

#[test]
fn monitor_labels_follow_qemu_numbering() {
    // As `query-chardev` shows for QEMU 7.2: -qmp first is compat_monitor0.
    let c = cfg(&[
        "-nodefaults",
        "-qmp",
        "unix:a,server=on,wait=off",
        "-monitor",
        "unix:b,server=on,wait=off",
    ]);
    assert_eq!(chardev_ids(&c), vec!["compat_monitor0", "compat_monitor1"]);
    assert_eq!(
        monitors(&c),
        vec![
            ("compat_monitor0".into(), MonMode::Control),
            ("compat_monitor1".into(), MonMode::Readline)
        ]
    );
    // `chardev:ID` creates no chardev but still takes a number.
    let c = cfg(&[
        "-nodefaults",
        "-chardev",
        "socket,id=x,path=a,server=on,wait=off",
        "-qmp",
        "chardev:x",
        "-monitor",
        "unix:b,server=on,wait=off",
    ]);
    assert_eq!(chardev_ids(&c), vec!["x", "compat_monitor1"]);
    assert_eq!(
        monitors(&c),
        vec![
            ("x".into(), MonMode::Control),
            ("compat_monitor1".into(), MonMode::Readline)
        ]
    );
    // -monitor none: no monitor, no default one either.
    let c = cfg(&["-monitor", "none", "-serial", "null"]);
    assert!(c.monitors.is_empty());
}

#[test]
fn monitor_errors() {
    assert_eq!(
        err(&["-monitor", "bogus"]),
        "PROG: -monitor bogus: 'bogus' is not a valid char driver\n\
         PROG: -monitor bogus: parse error: bogus\n"
    );
    assert_eq!(
        err(&["-qmp", "bogus"]),
        "PROG: -qmp bogus: 'bogus' is not a valid char driver\n\
         PROG: -qmp bogus: parse error: bogus\n"
    );
    assert_eq!(
        err(&["-qmp", "none"]),
        "PROG: -qmp none: 'none' is not a valid char driver\n\
         PROG: -qmp none: parse error: none\n"
    );
    assert_eq!(
        err(&["-monitor", "tcp:"]),
        "PROG: -monitor tcp:: parse error: tcp:\n"
    );
}

#[test]
fn mon_option() {
    let c = cfg(&[
        "-nodefaults",
        "-chardev",
        "null,id=c",
        "-mon",
        "chardev=c,mode=control",
        "-mon",
        "d",
    ]);
    assert_eq!(
        monitors(&c),
        vec![
            ("c".into(), MonMode::Control),
            ("d".into(), MonMode::Readline)
        ]
    );
    assert_eq!(
        err(&["-mon", "chardev=c,bogus=1"]),
        "PROG: -mon chardev=c,bogus=1: Invalid parameter 'bogus'\n"
    );
    assert_eq!(
        err(&["-mon", "chardev=c,pretty=bogus"]),
        "PROG: -mon chardev=c,pretty=bogus: Parameter 'pretty' expects 'on' or 'off'\n"
    );
    assert_eq!(
        err(&["-mon", "chardev=c,id=m1", "-mon", "chardev=d,id=m1"]),
        "PROG: -mon chardev=d,id=m1: Duplicate ID 'm1' for mon\n"
    );
    let c = cfg(&["-mon", "chardev=c,mode=bogus", "-mon", "mode=control"]);
    assert_eq!(
        deferred(&c.monitors[0].spec),
        "PROG: -mon chardev=c,mode=bogus: Parameter 'mode' does not accept value 'bogus'\n"
    );
    assert_eq!(
        deferred(&c.monitors[1].spec),
        "PROG: -mon mode=control: Parameter 'chardev' is missing\n"
    );
    // `-mon help` names a chardev called help, as in QEMU.
    let c = cfg(&["-mon", "help"]);
    assert_eq!(monitors(&c), vec![("help".into(), MonMode::Readline)]);
    let c = cfg(&["-mon", "chardev=c,mode=control,pretty=on"]);
    assert_eq!(monitors(&c), vec![("c".into(), MonMode::Control)]);
    assert!(c.monitors[0].pretty);
    // Refused by the set-up once the chardev is found (QEMU looks for the
    // chardev first); tests/cli_errors.rs has the text.
    let c = cfg(&["-mon", "chardev=c,pretty=on"]);
    assert_eq!(monitors(&c), vec![("c".into(), MonMode::Readline)]);
    assert!(c.monitors[0].pretty);
    let c = cfg(&["-mon", "c,mode=control,pretty=off"]);
    assert_eq!(monitors(&c), vec![("c".into(), MonMode::Control)]);
    assert!(!c.monitors[0].pretty);
    let c = cfg(&["-qmp-pretty", "unix:q,server=on,wait=off", "-qmp", "stdio"]);
    assert_eq!(
        c.monitors.iter().map(|m| m.pretty).collect::<Vec<_>>(),
        [true, false]
    );
    let c = cfg(&["-mon", "c,mode=control,nopretty"]);
    assert_eq!(
        c.warnings[0].render("PROG"),
        "PROG: -mon c,mode=control,nopretty: warning: short-form boolean option 'nopretty' deprecated\nPlease use pretty=off instead\n"
    );
}

#[test]
fn defaults_without_display() {
    // QEMU: serial0 and compat_monitor0 on `vc`; qchar has no vc: null.
    let c = cfg(&[]);
    assert_eq!(chardev_ids(&c), vec!["compat_monitor0"]);
    assert!(matches!(
        c.chardevs[0].options.as_ref().unwrap().backend,
        ChardevBackend::Null(_)
    ));
    assert_eq!(
        monitors(&c),
        vec![("compat_monitor0".into(), MonMode::Readline)]
    );
    assert_eq!(c.serials.len(), 1);
    assert_eq!(c.serials[0].loc, None);
    match &c.serials[0].source {
        Ok(SerialSource::New { options, monitor }) => {
            assert_eq!(options.id, "serial0");
            assert!(matches!(options.backend, ChardevBackend::Null(_)));
            assert!(!monitor);
        }
        other => panic!("{other:?}"),
    }
    let c = cfg(&["-nodefaults"]);
    assert!(c.chardevs.is_empty() && c.monitors.is_empty() && c.serials.is_empty());
    // -qmp and -serial turn the defaults they replace off.
    let c = cfg(&["-qmp", "unix:q,server=on,wait=off", "-serial", "null"]);
    assert_eq!(chardev_ids(&c), vec!["compat_monitor0"]);
    assert_eq!(
        monitors(&c),
        vec![("compat_monitor0".into(), MonMode::Control)]
    );
    // -device isa-serial replaces the default serial port.
    let c = cfg(&["-device", "isa-serial", "-monitor", "none"]);
    assert!(c.serials.is_empty());
}

#[test]
fn nographic_defaults() {
    // serial0 = mux over serial0-base (stdio), with the HMP on the mux.
    let c = cfg(&["-nographic"]);
    assert!(c.chardevs.is_empty());
    assert!(c.monitors.is_empty());
    match &c.serials[0].source {
        Ok(SerialSource::New { options, monitor }) => {
            assert_eq!(options.id, "serial0");
            assert!(options.mux && *monitor && uses_stdio(options));
        }
        other => panic!("{other:?}"),
    }
    // With a -qmp the monitor default is gone: a plain stdio serial0.
    let c = cfg(&["-nographic", "-qmp", "unix:q,server=on,wait=off"]);
    match &c.serials[0].source {
        Ok(SerialSource::New { options, monitor }) => {
            assert!(!options.mux && !*monitor && uses_stdio(options));
        }
        other => panic!("{other:?}"),
    }
    // With an explicit serial the monitor goes to stdio alone.
    let c = cfg(&["-nographic", "-serial", "null"]);
    assert_eq!(chardev_ids(&c), vec!["compat_monitor0"]);
    assert!(uses_stdio(c.chardevs[0].options.as_ref().unwrap()));
    // -daemonize refuses -nographic only when a default would use stdio.
    assert!(cfg(&["-daemonize", "-nographic"]).nographic_daemonize);
    assert!(!cfg(&["-daemonize", "-nographic", "-nodefaults"]).nographic_daemonize);
    assert!(
        cfg(&[
            "-daemonize",
            "-nographic",
            "-serial",
            "null",
            "-monitor",
            "none"
        ])
        .nographic_daemonize,
        "QEMU counts the default parallel port too"
    );
    assert!(
        !cfg(&[
            "-daemonize",
            "-nographic",
            "-serial",
            "null",
            "-monitor",
            "none",
            "-parallel",
            "none"
        ])
        .nographic_daemonize
    );
}

#[test]
fn mux_chardev_option() {
    let c = cfg(&["-chardev", "stdio,id=con,mux=on,signal=off"]);
    let o = c.chardevs[0].options.as_ref().unwrap();
    assert!(o.mux);
    assert!(!matches!(o.backend, ChardevBackend::Mux(ChardevMux { .. })));
}

#[test]
fn isa_serial_devices() {
    let c = cfg(&[
        "-device",
        "isa-serial,chardev=c,iobase=0x2f8,irq=3,id=s1",
        "-device",
        "isa-serial,index=2,bus=isa.0",
        "-device",
        "isa-serial,chardev=",
    ]);
    assert_eq!(
        c.devices[0].spec,
        Ok(IsaSerial {
            chardev: Some("c".into()),
            iobase: Some(0x2f8),
            irq: Some(3),
            index: None,
            id: Some("s1".into())
        })
    );
    assert_eq!(c.devices[1].spec.as_ref().unwrap().index, Some(2));
    assert_eq!(c.devices[2].spec.as_ref().unwrap().chardev, None);
    let one = |d: &str| deferred(&cfg(&["-device", d]).devices[0].spec);
    assert_eq!(
        one("foo"),
        "PROG: -device foo: 'foo' is not a valid device model name\n"
    );
    assert_eq!(
        one("isa-serial,chardev=c,bogus=1"),
        "PROG: -device isa-serial,chardev=c,bogus=1: Property 'isa-serial.bogus' not found\n"
    );
    assert_eq!(
        one("isa-serial,iobase=zz"),
        "PROG: -device isa-serial,iobase=zz: Parameter 'iobase' expects integer\n"
    );
    assert_eq!(
        one("isa-serial,iobase=0x10000000000"),
        "PROG: -device isa-serial,iobase=0x10000000000: Parameter 'iobase' expects uint32_t\n"
    );
    // The id is checked (and its duplicates below) while QEMU reads the
    // command line.
    assert_eq!(
        err(&["-device", "isa-serial,chardev=c,id=bad!", "-m", "foo"]),
        "PROG: -device isa-serial,chardev=c,id=bad!: Parameter 'id' expects an identifier\n\
         Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"
    );
    assert_eq!(
        one("isa-serial,bus=pci.0"),
        "PROG: -device isa-serial,bus=pci.0: Device 'isa-serial' can't go on PCI bus\n"
    );
    assert_eq!(
        one("isa-serial,bus=foo"),
        "PROG: -device isa-serial,bus=foo: Bus 'foo' not found\n"
    );
    assert_eq!(
        one("id=x"),
        "PROG: -device id=x: Parameter 'driver' is missing\n"
    );
    assert!(one("isa-serial,baudbase=9600").contains("qchar does not support"));
    assert!(cfg(&["-device", "isa-serial,baudbase=115200"]).devices[0]
        .spec
        .is_ok());
    assert_eq!(
        err(&["-device", "isa-serial,id=s1", "-device", "isa-serial,id=s1"]),
        "PROG: -device isa-serial,id=s1: Duplicate ID 's1' for device\n"
    );
    assert_eq!(
        printed(&["-device", "help"]),
        "Input devices:\nname \"isa-serial\", bus ISA\n"
    );
    assert!(printed(&["-device", "isa-serial,help"]).starts_with("isa-serial options:\n"));
}

#[test]
fn memory_sizes() {
    assert_eq!(cfg(&[]).mem_size, 128 << 20);
    assert_eq!(cfg(&["-m", "64"]).mem_size, 64 << 20);
    assert_eq!(cfg(&["-m", "64M"]).mem_size, 64 << 20);
    assert_eq!(cfg(&["-m", "size=64M"]).mem_size, 64 << 20);
    assert_eq!(cfg(&["-m", "1G"]).mem_size, 1 << 30);
    assert_eq!(cfg(&["-m", "0"]).mem_size, 128 << 20);
    let c = cfg(&["-m", "0x10"]);
    assert_eq!(c.mem_size, 16 << 20);
    assert_eq!(
        c.warnings[0].render("PROG"),
        "PROG: warning: Using a multiplier suffix on hex numbers is deprecated: 0x10M\n"
    );
    let size_err = |v: &str| {
        format!(
            "PROG: -m {v}: Parameter 'size' expects a non-negative number below 2^64\n\
             Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
             and exabytes, respectively.\n"
        )
    };
    assert_eq!(err(&["-m", "foo"]), size_err("foo"));
    assert_eq!(err(&["-m", "64Q"]), size_err("64Q"));
    assert_eq!(
        err(&["-m", "size=64M,bogus=1"]),
        "PROG: -m size=64M,bogus=1: Invalid parameter 'bogus'\n"
    );
    // qchar's machine limit.
    assert!(err(&["-m", "4G"]).starts_with("PROG: -m 4G: qchar supports 1M to 3G"));
}

#[test]
fn machine_accel_display_name() {
    for m in ["pc", "q35", "none", "pc-i440fx-7.2", "type=pc,accel=kvm"] {
        cfg(&["-machine", m]);
        cfg(&["-M", m]);
    }
    assert_eq!(
        err(&["-machine", "foo"]),
        "PROG: unsupported machine type\nUse -machine help to list supported machines\n"
    );
    assert!(printed(&["-machine", "help"]).starts_with("Supported machines are:\npc "));
    assert_eq!(
        err(&["-machine", "pc,accel=tcg"]),
        "PROG: -machine pc,accel=tcg: invalid accelerator tcg\n"
    );
    assert!(
        err(&["-machine", "pc,usb=off"]).contains("qchar does not support machine property 'usb'")
    );

    cfg(&["-accel", "kvm", "-enable-kvm", "-accel", "accel=kvm"]);
    // A QEMU built without TCG says this for tcg.
    assert_eq!(
        err(&["-accel", "tcg"]),
        "PROG: -accel tcg: invalid accelerator tcg\n"
    );
    assert_eq!(
        err(&["-accel", "foo"]),
        "PROG: -accel foo: invalid accelerator foo\n"
    );
    assert!(err(&["-accel", "kvm,kernel-irqchip=off"]).contains("qchar does not support"));
    assert_eq!(
        printed(&["-accel", "help"]),
        "Accelerators supported in QEMU binary:\nkvm\n"
    );

    cfg(&["-display", "none"]);
    assert_eq!(
        err(&["-display", "foo"]),
        "PROG: -display foo: Parameter 'type' does not accept value 'foo'\n"
    );
    assert_eq!(
        err(&["-display", "gtk"]),
        "PROG: -display gtk: Parameter 'type' does not accept value 'gtk'\n"
    );
    assert_eq!(
        err(&["-display", "none,bogus=1"]),
        "PROG: -display none,bogus=1: Parameter 'bogus' is unexpected\n"
    );
    assert_eq!(
        printed(&["-display", "help"]),
        "Available display backend types:\nnone\n"
    );

    let c = cfg(&["-name", "guest=vm1,process=qchar-vm1,debug-threads=on"]);
    assert_eq!(c.name.as_deref(), Some("vm1"));
    assert_eq!(c.process_name.as_deref(), Some("qchar-vm1"));
    assert_eq!(cfg(&["-name", "vm2"]).name.as_deref(), Some("vm2"));
    assert_eq!(
        err(&["-name", "foo,bogus=1"]),
        "PROG: -name foo,bogus=1: Invalid parameter 'bogus'\n"
    );
}

#[test]
fn process_options() {
    let c = cfg(&["-S", "-daemonize", "-pidfile", "q.pid", "-no-reboot"]);
    assert!(c.start_paused && c.daemonize);
    assert_eq!(c.pidfile.as_deref(), Some("q.pid"));
    cfg(&["-parallel", "none"]);
    assert!(err(&["-parallel", "null"]).contains("qchar has no parallel port"));
}

#[test]
fn drives() {
    let c = cfg(&["-fda", "a.img"]);
    assert_eq!(
        c.drives[0].spec,
        Ok((ImageSource::File("a.img".into()), 0x00))
    );
    assert_eq!(
        c.drives[0].probe_warning.as_ref().unwrap().render("PROG"),
        "WARNING: Image format was not specified for 'a.img' and probing guessed raw.\n         \
         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n         \
         Specify the 'raw' format explicitly to remove the restrictions.\n"
    );
    assert_eq!(
        cfg(&["-hda", "h.img"]).drives[0].spec,
        Ok((ImageSource::File("h.img".into()), 0x80))
    );
    let c = cfg(&["h.img"]);
    assert_eq!(
        c.drives[0].spec,
        Ok((ImageSource::File("h.img".into()), 0x80))
    );
    assert_eq!(c.drives[0].loc, "h.img");
    let c = cfg(&["-drive", "file=f,,1.img,format=raw,if=floppy"]);
    assert_eq!(
        c.drives[0].spec,
        Ok((ImageSource::File("f,1.img".into()), 0x00))
    );
    assert!(c.drives[0].probe_warning.is_none());
    assert_eq!(
        cfg(&["-drive", "file=builtin:demo:5,format=raw,if=ide"]).drives[0].spec,
        Ok((ImageSource::Builtin("demo:5".into()), 0x80))
    );
    assert_eq!(
        cfg(&["-fda", "builtin:demo"]).drives[0].spec,
        Ok((ImageSource::Builtin("demo".into()), 0x00))
    );
    let one = |d: &str| deferred(&cfg(&["-drive", d]).drives[0].spec);
    let late = |d: &str| {
        cfg(&["-drive", d]).drives[0]
            .after_open
            .as_ref()
            .map(|d| d.render("PROG"))
            .unwrap_or_default()
    };
    assert_eq!(
        late("file=a,format=raw,if=floppy,bogus=1"),
        "PROG: -drive file=a,format=raw,if=floppy,bogus=1: Block format 'raw' does not support the option 'bogus'\n"
    );
    assert_eq!(
        one("file=a,format=raw,if=bogus"),
        "PROG: -drive file=a,format=raw,if=bogus: unsupported bus type 'bogus'\n"
    );
    assert_eq!(
        one("format=raw,if=floppy"),
        "PROG: -drive format=raw,if=floppy: A block device must be specified for \"file\"\n"
    );
    assert_eq!(
        one("file=a,format=raw,if=floppy,index=2"),
        "PROG: -drive file=a,format=raw,if=floppy,index=2: machine type does not support if=floppy,bus=0,unit=2\n"
    );
    assert_eq!(
        one("file=a,format=raw,if=ide,index=9"),
        "PROG: -drive file=a,format=raw,if=ide,index=9: machine type does not support if=ide,bus=4,unit=1\n"
    );
    assert!(late("file=a,format=qcow2").contains("qchar supports format=raw only"));
    assert!(one("file=a,if=virtio").contains("qchar supports if=floppy and if=ide only"));
    assert!(one("file=a,if=floppy,index=1").contains("index=0"));
    assert!(one("file=a,media=cdrom").contains("media=cdrom"));
}

#[test]
fn write_builtin_image() {
    match parse(&args(&["--write-builtin-image", "demo:10", "d.img"])) {
        Ok(Action::WriteImage { name, path }) => {
            assert_eq!((name.as_str(), path.as_str()), ("demo:10", "d.img"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err(&["-write-builtin-image", "demo"]).contains("expects two arguments"));
}

/// Warnings, text and exit status of a print after warnings.
fn print_after_warnings(a: &[&str]) -> (Vec<String>, String, i32) {
    match parse(&args(a)) {
        Ok(Action::PrintAfterWarnings {
            warnings,
            text,
            status,
        }) => (
            warnings.iter().map(|w| w.render("PROG")).collect(),
            text,
            status,
        ),
        Ok(Action::Print(text)) => (Vec::new(), text, 0),
        other => panic!("{a:?}: {other:?}"),
    }
}

/// A help request inside an option string: warnings and text, exit 1.
fn options_help(a: &[&str]) -> (Vec<String>, String) {
    let (warnings, text, status) = print_after_warnings(a);
    assert_eq!(status, 1, "{a:?}");
    (warnings, text)
}

/// A help request inside an option string: QEMU 7.2 prints the list on
/// stdout and exits 1 (`-mon c,help`, `-m 64,help`,
/// `-chardev null,id=a,server,help`); `-chardev help` lists backends and
/// exits 0.
#[test]
fn help_inside_option_strings() {
    let (w, text) = options_help(&["-mon", "c,help"]);
    assert!(w.is_empty());
    assert_eq!(
        text,
        "mon options:\n  chardev=<str>\n  mode=<str>\n  pretty=<bool (on/off)>\n"
    );
    let (_, text) = options_help(&["-m", "64,help"]);
    assert_eq!(
        text,
        "memory options:\n  maxmem=<size>\n  size=<size>\n  slots=<num>\n"
    );
    let (w, text) = options_help(&["-chardev", "null,id=a,server,help"]);
    assert_eq!(
        w,
        ["PROG: -chardev null,id=a,server,help: warning: short-form boolean option 'server' deprecated\nPlease use server=on instead\n"]
    );
    assert!(text.starts_with("chardev options:\n  abstract=<bool (on/off)>\n"));
    assert!(text.contains("\n  reconnect-ms=<num>\n  reconnect=<num>\n"));
    let (_, text) = options_help(&["-name", "x,?"]);
    assert!(text.starts_with("name options:\n  debug-threads=<bool (on/off)> - "));
    // `-chardev help` prints when QEMU would create that chardev (the set-up
    // prints it): after an earlier chardev's error or warnings.
    let c = cfg(&["-chardev", "tty,id=t,path=/dev/null", "-chardev", "help"]);
    assert!(c.chardevs[1]
        .help
        .as_deref()
        .is_some_and(|h| h.starts_with("Available chardev backend types: \n  stdio\n")));
    assert_eq!(
        c.chardevs[0].create_warnings[0].1.render("PROG"),
        "PROG: -chardev tty,id=t,path=/dev/null: warning: The alias 'tty' is deprecated, use 'serial' instead\n"
    );
    let c = cfg(&["-chardev", "null", "-chardev", "help"]);
    assert_eq!(
        deferred(&c.chardevs[0].options),
        "PROG: -chardev null: chardev: no id specified\n"
    );
    // The device list takes any key: `help` there is the device's, which
    // QEMU honours even as `nohelp` (after warning), with status 0.
    let (w, text, status) = print_after_warnings(&["-device", "isa-serial,nohelp"]);
    assert_eq!(
        w,
        ["PROG: -device isa-serial,nohelp: warning: short-form boolean option 'nohelp' deprecated\nPlease use help=off instead\n"]
    );
    assert!(text.starts_with("isa-serial options:\n"));
    assert_eq!(status, 0);
}

/// Numbers as QEMU's qemu_strtou64 reads them, for -device properties and
/// -drive's index (a C int there, -1 meaning none).
#[test]
fn numbers_in_device_and_drive_options() {
    let dev = |d: &str| cfg(&["-device", d]).devices.remove(0).spec;
    assert_eq!(dev("isa-serial,iobase= 0x2f8").unwrap().iobase, Some(0x2f8));
    assert_eq!(dev("isa-serial,irq=+4").unwrap().irq, Some(4));
    assert_eq!(dev("isa-serial,index=01").unwrap().index, Some(1));
    assert_eq!(
        deferred(&dev("isa-serial,iobase=-1")),
        "PROG: -device isa-serial,iobase=-1: Parameter 'iobase' expects uint32_t\n"
    );
    assert_eq!(
        deferred(&dev("isa-serial,irq=4 ")),
        "PROG: -device isa-serial,irq=4 : Parameter 'irq' expects integer\n"
    );
    assert!(dev("isa-serial,baudbase= 115200").is_ok());
    let drive = |d: &str| cfg(&["-drive", d]).drives.remove(0).spec;
    for index in [
        "0",
        " 0",
        "+0",
        "-0",
        "-1",
        "4294967295",
        "18446744073709551615",
    ] {
        assert_eq!(
            drive(&format!("file=a,format=raw,if=floppy,index={index}")),
            Ok((ImageSource::File("a".into()), 0x00)),
            "{index:?}"
        );
    }
    assert_eq!(
        deferred(&drive("file=a,format=raw,if=floppy,index=-2")),
        "PROG: -drive file=a,format=raw,if=floppy,index=-2: machine type does not support if=floppy,bus=0,unit=-2\n"
    );
    assert_eq!(
        deferred(&drive("file=a,format=raw,if=ide,index=-3")),
        "PROG: -drive file=a,format=raw,if=ide,index=-3: machine type does not support if=ide,bus=-1,unit=0\n"
    );
    assert_eq!(
        deferred(&drive("file=a,format=raw,if=ide,index=2147483648")),
        "PROG: -drive file=a,format=raw,if=ide,index=2147483648: machine type does not support if=ide,bus=-1073741824,unit=0\n"
    );
    assert_eq!(
        deferred(&drive("file=a,index=99999999999999999999")),
        "PROG: -drive file=a,index=99999999999999999999: Value '99999999999999999999' is too large for parameter 'index'\n"
    );
    assert_eq!(
        deferred(&drive("file=a,index=08")),
        "PROG: -drive file=a,index=08: Parameter 'index' expects a number\n"
    );
}

/// `-m`: QEMU checks the size when it reads the option (with location),
/// then reads it again in MiB when it ends in a digit (without).
#[test]
fn memory_size_read_twice() {
    assert_eq!(cfg(&["-m", " 64"]).mem_size, 64 << 20);
    assert_eq!(cfg(&["-m", "+64"]).mem_size, 64 << 20);
    assert_eq!(cfg(&["-m", "1.5M"]).mem_size, 3 << 19);
    assert_eq!(cfg(&["-m", "67108864b"]).mem_size, 64 << 20);
    let c = cfg(&["-m", "0x40M"]);
    assert_eq!(c.mem_size, 64 << 20);
    let w: Vec<String> = c.warnings.iter().map(|w| w.render("PROG")).collect();
    assert_eq!(
        w,
        [
            "PROG: -m 0x40M: warning: Using a multiplier suffix on hex numbers is deprecated: 0x40M\n",
            "PROG: warning: Using a multiplier suffix on hex numbers is deprecated: 0x40M\n",
        ]
    );
    assert!(err(&["-m", "1.5"]).starts_with("PROG: -m 1.5: Parameter 'size' expects"));
    assert_eq!(
        err(&["-m", "17592186044416"]),
        "PROG: Parameter 'memory.size' expects size\n"
    );
    assert_eq!(
        err(&["-m", "64,slots=x"]),
        "PROG: -m 64,slots=x: Parameter 'slots' expects a number\n"
    );
}

/// `-machine` and `-display` are keyval strings in QEMU 7.2.
#[test]
fn machine_and_display_are_keyval() {
    assert_eq!(
        err(&["-machine", "pc,accel"]),
        "PROG: -machine pc,accel: Expected '=' after parameter 'accel'\n"
    );
    assert_eq!(
        err(&["-machine", "pc,,x"]),
        "PROG: -machine pc,,x: Invalid parameter ''\n"
    );
    assert_eq!(
        err(&["-machine", "pc,help,1=x"]),
        "PROG: -machine pc,help,1=x: Invalid parameter '1'\n"
    );
    assert!(printed(&["-machine", "pc,?"]).starts_with("Supported machines are:"));
    cfg(&["-machine", "type=pc,accel=kvm,"]);
    assert_eq!(
        err(&["-display", "none,help"]),
        "PROG: -display none,help: Help is not available for this option\n"
    );
    assert_eq!(
        err(&["-display", "help,x"]),
        "PROG: -display help,x: Expected '=' after parameter 'x'\n"
    );
    assert_eq!(
        err(&["-display", "none,a.b=1"]),
        "PROG: -display none,a.b=1: Parameter 'a' is unexpected\n"
    );
    cfg(&["-display", "none,type=none"]);
}

/// QEMU prints the warnings of the options it has read before an error.
#[test]
fn warnings_before_a_scan_error() {
    // Except that option names and arguments are all checked first.
    assert_eq!(
        err(&["-mon", "c,pretty", "-chardev", "null,id=0x", "-foo"]),
        "PROG: -foo: invalid option\n"
    );
    assert_eq!(err(&["-version", "-m"]), "PROG: -m: requires an argument\n");
    assert_eq!(
        err(&["-mon", "c,pretty", "-name", "x,bogus=1"]),
        "PROG: -mon c,pretty: warning: short-form boolean option 'pretty' deprecated\n\
         Please use pretty=on instead\n\
         PROG: -name x,bogus=1: Invalid parameter 'bogus'\n"
    );
    // Not those QEMU prints only when it creates things (the alias).
    assert_eq!(
        err(&["-chardev", "tty,id=t,path=/dev/null", "-m", "1.5"])
            .lines()
            .next(),
        Some("PROG: -m 1.5: Parameter 'size' expects a non-negative number below 2^64")
    );
}

#[test]
fn web_console_option() {
    // qchar-only texts.
    assert_eq!(cfg(&["-nodefaults"]).web, None);
    let w = cfg(&["-x-web", "8080"]).web.unwrap();
    assert_eq!((w.host, w.port, w.token), (None, 8080, None));
    let w = cfg(&["-x-web", "host=0.0.0.0,port=0,token=0123456789abcdef-_.~"])
        .web
        .unwrap();
    assert_eq!(w.host.as_deref(), Some("0.0.0.0"));
    assert_eq!(w.port, 0);
    assert_eq!(w.token.as_deref(), Some("0123456789abcdef-_.~"));
    // A later one replaces an earlier one.
    assert_eq!(cfg(&["-x-web", "1", "-x-web", "2"]).web.unwrap().port, 2);
    assert_eq!(
        err(&["-x-web", "host=::1"]),
        "PROG: -x-web host=::1: Parameter 'port' is missing\n"
    );
    assert_eq!(
        err(&["-x-web", "65536"]),
        "PROG: -x-web 65536: Parameter 'port' expects a TCP port number (0 to 65535)\n"
    );
    assert_eq!(
        err(&["-x-web", "port=1,token=short"]),
        "PROG: -x-web port=1,token=short: web console: the token must be 16 to 256 \
         characters of A-Z a-z 0-9 - . _ ~\n"
    );
    assert_eq!(
        err(&["-x-web", "port=1,tls=on"]),
        "PROG: -x-web port=1,tls=on: Invalid parameter 'tls'\n"
    );
    assert!(printed(&["-h"]).contains("-x-web [host=H,]port=P[,token=T]"));
}

/// qchar's `-object x-bridge` (QEMU's `-object` syntax and texts for its
/// mistakes) and `-machine none` (no guest, no default serial port).
#[test]
fn bridge_objects_and_machine_none() {
    let c = cfg(&[
        "-object",
        "x-bridge,id=br,chardev-a=vm,chardev-b=con",
        "-object",
        "qom-type=x-bridge,id=br2,chardev-a=x,chardev-b=y",
    ]);
    assert_eq!(c.bridges.len(), 2);
    assert_eq!(
        (c.bridges[0].id.as_str(), c.bridges[0].chardev_a.as_str()),
        ("br", "vm")
    );
    assert!(!c.machine_none);
    assert_eq!(
        err(&["-object", "x-bridge,id=br,chardev-a=a"]),
        "PROG: -object x-bridge,id=br,chardev-a=a: Parameter 'chardev-b' is missing\n"
    );
    // A type of QEMU's enum that qchar lacks is read as QEMU reads it and
    // refused when objects are made, without a location
    // (`tests/cli_errors.rs`: `invalid object type: authz-pam`).
    let c = cfg(&["-object", "memory-backend-ram,id=m"]);
    assert_eq!(c.objects[0].qom_type, "memory-backend-ram");
    assert_eq!(
        err(&[
            "-object",
            "x-bridge,id=br,chardev-a=a,chardev-b=b",
            "-object",
            "x-bridge,id=br,chardev-a=c,chardev-b=d"
        ]),
        "PROG: -object x-bridge,id=br,chardev-a=c,chardev-b=d: Duplicate ID 'br' for object\n"
    );
    assert_eq!(
        printed(&["-object", "help"]),
        "List of user creatable objects:\n  authz-list\n  authz-simple\n  tls-creds-psk\n  \
         tls-creds-x509\n  x-bridge\n"
    );
    // -machine none: no default serial port (QEMU's none machine has
    // none), the default monitor stays.
    let c = cfg(&["-machine", "none"]);
    assert!(c.machine_none);
    assert!(c.serials.is_empty());
    assert_eq!(c.monitors.len(), 1);
    let c = cfg(&["-M", "none", "-M", "pc"]);
    assert!(!c.machine_none, "the last -machine type counts");
    let c = cfg(&[
        "-machine",
        "type=none",
        "-serial",
        "unix:s,server=on,wait=off",
    ]);
    assert!(c.machine_none && c.serials.len() == 1);
}
