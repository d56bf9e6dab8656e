use super::*;
use crate::spec::{
    ChardevCommon, ChardevFile, ChardevHostdev, ChardevMux, ChardevRingbuf, ChardevSocket,
    ChardevStdio, InetSocketAddress, SocketAddressLegacy, StringWrapper, UnixSocketAddress,
};

fn ok(s: &str) -> ChardevOptions {
    parse_chardev(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
}

fn warned(s: &str) -> (ChardevOptions, Vec<String>) {
    parse_chardev_with_warnings(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
}

fn err(s: &str) -> OptsError {
    match parse_chardev(s) {
        Ok(o) => panic!("{s:?} accepted as {o:?}"),
        Err(e) => e,
    }
}

fn new(s: &str, id: &str) -> (ChardevOptions, bool) {
    match parse_serial_shorthand(s, id) {
        Ok(SerialTarget::New { options, monitor }) => (options, monitor),
        other => panic!("{s:?} gave {other:?}"),
    }
}

fn compat_err(s: &str) -> OptsError {
    match parse_serial_shorthand(s, "serial0") {
        Ok(t) => panic!("{s:?} accepted as {t:?}"),
        Err(e) => e,
    }
}

fn c0() -> ChardevCommon {
    ChardevCommon {
        logfile: None,
        logappend: Some(false),
        ..ChardevCommon::default()
    }
}

fn unix(path: &str) -> SocketAddressLegacy {
    SocketAddressLegacy::Unix(UnixSocketAddress {
        path: path.into(),
        abstract_: Some(false),
        tight: Some(true),
    })
}

fn inet(host: &str, port: &str) -> InetSocketAddress {
    InetSocketAddress {
        host: host.into(),
        port: port.into(),
        ..InetSocketAddress::default()
    }
}

fn socket_of(o: &ChardevOptions) -> &ChardevSocket {
    match &o.backend {
        ChardevBackend::Socket(s) => s,
        other => panic!("not a socket: {other:?}"),
    }
}

fn base_socket(addr: SocketAddressLegacy) -> ChardevSocket {
    ChardevSocket {
        common: c0(),
        ..ChardevSocket::new(addr, false)
    }
}

fn backlog(v: &str) -> Result<Option<u64>, OptsError> {
    parse_chardev(&format!("null,id=a,backlog={v}")).map(|o| o.backend.common().backlog)
}

// --- backends ---------------------------------------------------------

#[test]
fn null_and_pty_carry_only_common_options() {
    let o = ok("null,id=a");
    assert_eq!(
        o,
        ChardevOptions {
            id: "a".into(),
            backend: ChardevBackend::Null(c0()),
            mux: false
        }
    );
    assert_eq!(ok("pty,id=p").backend, ChardevBackend::Pty(c0()));
    assert_eq!(ok("id=p,backend=pty").backend, ChardevBackend::Pty(c0()));
}

#[test]
fn common_options_and_backlog() {
    let o = ok("null,id=a,logfile=/l,,og,logappend=on,backlog=64k");
    let want = ChardevCommon {
        logfile: Some("/l,og".into()),
        logappend: Some(true),
        backlog: Some(65536),
        ..ChardevCommon::default()
    };
    assert_eq!(o.backend, ChardevBackend::Null(want));
    let json = serde_json::to_string(&o.backend).unwrap();
    assert!(json.contains(r#""x-backlog":65536"#), "{json}");
    assert_eq!(ok("null,id=a,backlog=0").backend.common().backlog, Some(0));
}

#[test]
fn log_rotation_and_timestamps() {
    let o = ok("null,id=a,logfile=/l,x-logsize=1M,x-logkeep=5,x-logtimestamp=on");
    let c = o.backend.common();
    assert_eq!(c.logsize, Some(1 << 20));
    assert_eq!(c.logkeep, Some(5));
    assert_eq!(c.logtimestamp, Some(true));
    let json = serde_json::to_string(&o.backend).unwrap();
    for m in [
        r#""x-logsize":1048576"#,
        r#""x-logkeep":5"#,
        r#""x-logtimestamp":true"#,
    ] {
        assert!(json.contains(m), "{json} lacks {m}");
    }
    // Absent unless given.
    let c = ok("null,id=a,logfile=/l").backend.common().clone();
    assert_eq!((c.logsize, c.logkeep, c.logtimestamp), (None, None, None));
    assert_eq!(
        err("null,id=a,x-logkeep=many").to_string(),
        "Parameter 'x-logkeep' expects a number"
    );
}

#[test]
fn file_backend() {
    let want = ChardevFile {
        common: c0(),
        input: None,
        out: "/o".into(),
        append: Some(false),
    };
    assert_eq!(
        ok("file,id=f,path=/o").backend,
        ChardevBackend::File(want.clone())
    );
    let o = ok("file,id=f,path=/o,append=on,input-path=/i");
    let want2 = ChardevFile {
        input: Some("/i".into()),
        append: Some(true),
        ..want
    };
    assert_eq!(o.backend, ChardevBackend::File(want2));
    let (o, w) = warned("file,id=f,path=/o,append");
    assert!(matches!(o.backend, ChardevBackend::File(ref f) if f.append == Some(true)));
    assert_eq!(
        w,
        ["short-form boolean option 'append' deprecated\nPlease use append=on instead"]
    );
    // QEMU checks the path only when opening.
    assert!(
        matches!(ok("file,id=f,path=").backend, ChardevBackend::File(ref f) if f.out.is_empty())
    );
}

#[test]
fn escaped_commas_in_values() {
    let out = |s: &str| match ok(s).backend {
        ChardevBackend::File(f) => f.out,
        other => panic!("{other:?}"),
    };
    assert_eq!(out("file,id=f,path=/srv/a,,b"), "/srv/a,b");
    assert_eq!(out("file,id=f,path=x,,,,y"), "x,,y");
    assert_eq!(out("file,id=f,path=x,,"), "x,");
    assert_eq!(out("file,path=,,,id=f"), ",");
}

#[test]
fn host_device_backends() {
    let hd = |d: &str| ChardevHostdev {
        common: c0(),
        device: d.into(),
    };
    assert_eq!(
        ok("pipe,id=p,path=/p").backend,
        ChardevBackend::Pipe(hd("/p"))
    );
    assert_eq!(
        ok("serial,id=s,path=/dev/ttyS0").backend,
        ChardevBackend::Serial(hd("/dev/ttyS0"))
    );
    assert_eq!(
        ok("parallel,id=p,path=/dev/parport0").backend,
        ChardevBackend::Parallel(hd("/dev/parport0"))
    );
    let (o, w) = warned("tty,id=s,path=/dev/null");
    assert_eq!(o.backend, ChardevBackend::Serial(hd("/dev/null")));
    assert_eq!(w, ["The alias 'tty' is deprecated, use 'serial' instead"]);
    let (o, w) = warned("parport,id=p,path=/dev/parport0");
    assert_eq!(o.backend, ChardevBackend::Parallel(hd("/dev/parport0")));
    assert_eq!(
        w,
        ["The alias 'parport' is deprecated, use 'parallel' instead"]
    );
}

/// QEMU translates an alias (and warns) before it looks for the id, and
/// HMP's `chardev-change` builds a backend without one (QEMU 7.2's texts).
#[test]
fn alias_warning_comes_first_and_a_change_needs_no_id() {
    let parsed = |s: &str| qemuopts::parse(&CHARDEV_OPTS, s, &mut Vec::new()).unwrap();
    let mut w = Vec::new();
    let e = chardev_from_opts(&parsed("tty,path=/dev/null"), &mut w).unwrap_err();
    assert_eq!(e, OptsError::NoId);
    assert_eq!(w, ["The alias 'tty' is deprecated, use 'serial' instead"]);
    let mut w = Vec::new();
    let b = backend_from_opts(&parsed("parport,path=/dev/parport0"), &mut w).unwrap();
    assert!(
        matches!(&b, ChardevBackend::Parallel(h) if h.device == "/dev/parport0"),
        "{b:?}"
    );
    assert_eq!(
        w,
        ["The alias 'parport' is deprecated, use 'parallel' instead"]
    );
    let e = backend_from_opts(&parsed("path=/x"), &mut w).unwrap_err();
    assert_eq!(e.to_string(), "chardev: \"(null)\" missing backend");
    let e = backend_from_opts(&parsed("help"), &mut w).unwrap_err();
    assert_eq!(e.to_string(), "'help' is not a valid char driver name");
    assert!(warn_once("a warning of this test"));
    assert!(!warn_once("a warning of this test"));
}

#[test]
fn stdio_signal_defaults_on() {
    let st = |s: Option<bool>| {
        ChardevBackend::Stdio(ChardevStdio {
            common: c0(),
            signal: s,
        })
    };
    assert_eq!(ok("stdio,id=s").backend, st(Some(true)));
    assert_eq!(ok("stdio,id=s,signal=off").backend, st(Some(false)));
    assert_eq!(ok("stdio,id=s,signal=no").backend, st(Some(false)));
}

#[test]
fn ringbuf_and_memory() {
    let rb = |size| ChardevRingbuf { common: c0(), size };
    assert_eq!(
        ok("ringbuf,id=r").backend,
        ChardevBackend::Ringbuf(rb(None))
    );
    assert_eq!(
        ok("ringbuf,id=r,size=1k").backend,
        ChardevBackend::Ringbuf(rb(Some(1024)))
    );
    assert_eq!(
        ok("memory,id=r,size=4M").backend,
        ChardevBackend::Memory(rb(Some(4 << 20)))
    );
    // size=0 means "not given", as in QEMU.
    assert_eq!(
        ok("ringbuf,id=r,size=0").backend,
        ChardevBackend::Ringbuf(rb(None))
    );
    // Power-of-two is an open-time check (the backend's), not a parse error.
    assert_eq!(
        ok("ringbuf,id=r,size=100").backend,
        ChardevBackend::Ringbuf(rb(Some(100)))
    );
    // qchar: a size beyond the QAPI int64 field is refused, not wrapped.
    assert_eq!(
        err("ringbuf,id=r,size=15E").to_string(),
        "Value '15E' is out of range for parameter 'size'"
    );
}

#[test]
fn mux_backend() {
    let want = ChardevMux {
        common: c0(),
        chardev: "r".into(),
    };
    assert_eq!(ok("mux,id=m,chardev=r").backend, ChardevBackend::Mux(want));
}

#[test]
fn mux_flag_last_value_wins() {
    assert!(ok("null,id=a,mux=on").mux);
    assert!(!ok("null,id=a,mux=on,mux=off").mux);
    assert!(!ok("null,id=a").mux);
    let (o, w) = warned("null,id=a,mux");
    assert!(o.mux);
    assert_eq!(
        w,
        ["short-form boolean option 'mux' deprecated\nPlease use mux=on instead"]
    );
    let (o, w) = warned("null,id=a,mux=on,nomux");
    assert!(!o.mux);
    assert_eq!(
        w,
        ["short-form boolean option 'nomux' deprecated\nPlease use mux=off instead"]
    );
}

#[test]
fn booleans_as_qemu_spells_them() {
    for v in ["on", "yes", "true", "y"] {
        assert!(ok(&format!("null,id=a,mux={v}")).mux, "{v}");
    }
    for v in ["off", "no", "false", "n"] {
        assert!(!ok(&format!("null,id=a,mux={v}")).mux, "{v}");
    }
    for v in ["ON", "On", "1", "0", "", "enable"] {
        assert_eq!(
            err(&format!("null,id=a,mux={v}")).to_string(),
            "Parameter 'mux' expects 'on' or 'off'",
            "{v}"
        );
    }
}

// --- ids ------------------------------------------------------------------

#[test]
fn id_first_occurrence_wins_and_is_scanned_separately() {
    assert_eq!(ok("null,id=a,id=1b").id, "a");
    assert_eq!(ok("id=a.b-c_d,backend=null").id, "a.b-c_d");
    assert_eq!(ok("null,id=a.b-c_d").id, "a.b-c_d");
    let (o, w) = warned("null,id,id=a");
    assert_eq!(o.id, "on");
    assert_eq!(
        w,
        ["short-form boolean option 'id' deprecated\nPlease use id=on instead"]
    );
    assert_eq!(ok("null,noid").id, "off");
}

// --- sockets ----------------------------------------------------------------

#[test]
fn many_clients_options() {
    let o = ok("socket,id=s,path=/p,server=on,wait=off,x-clients=8,x-writers=1");
    let want = ChardevSocket {
        server: Some(true),
        wait: Some(false),
        clients: Some(8),
        writers: Some(1),
        ..base_socket(unix("/p"))
    };
    assert_eq!(*socket_of(&o), want);
    assert_eq!(
        err("socket,id=s,path=/p,server=on,x-clients=many").to_string(),
        "Parameter 'x-clients' expects a number"
    );
}

#[test]
fn unix_socket_defaults() {
    assert_eq!(
        *socket_of(&ok("socket,id=s,path=/p")),
        base_socket(unix("/p"))
    );
    let o = ok("socket,id=s,path=/p,server=on");
    assert_eq!(socket_of(&o).wait, Some(true), "servers wait by default");
    let o = ok("socket,id=s,path=/p,server=on,wait=off");
    let want = ChardevSocket {
        server: Some(true),
        wait: Some(false),
        ..base_socket(unix("/p"))
    };
    assert_eq!(*socket_of(&o), want);
    // A client keeps an explicit wait; QEMU refuses it when opening.
    assert_eq!(
        socket_of(&ok("socket,id=s,path=/p,wait=off")).wait,
        Some(false)
    );
}

#[test]
fn legacy_bare_flags_match_modern_spelling() {
    let (legacy, w) = warned("socket,id=s,path=/p,server,nowait,nodelay,telnet");
    let modern = ok("socket,id=s,path=/p,server=on,wait=off,nodelay=on,telnet=on");
    assert_eq!(socket_of(&legacy), socket_of(&modern));
    assert_eq!(
        w,
        [
            "short-form boolean option 'server' deprecated\nPlease use server=on instead",
            "short-form boolean option 'nowait' deprecated\nPlease use wait=off instead",
            "short-form boolean option 'nodelay' deprecated\nPlease use nodelay=on instead",
            "short-form boolean option 'telnet' deprecated\nPlease use telnet=on instead",
        ]
    );
    let (o, w) = warned("socket,id=s,path=/p,delay");
    assert_eq!(socket_of(&o).nodelay, Some(false));
    assert_eq!(
        w,
        ["short-form boolean option 'delay' deprecated\nPlease use nodelay=off instead"]
    );
    assert_eq!(
        socket_of(&ok("socket,id=s,path=/p,delay=off")).nodelay,
        Some(true)
    );
    assert_eq!(
        socket_of(&ok("socket,id=s,path=/p,nodelay=off")).nodelay,
        Some(false)
    );
}

#[test]
fn abstract_unix_socket() {
    let o = ok("socket,id=s,path=sock,abstract=on,tight=off");
    let want = SocketAddressLegacy::Unix(UnixSocketAddress {
        path: "sock".into(),
        abstract_: Some(true),
        tight: Some(false),
    });
    assert_eq!(socket_of(&o).addr, want);
}

#[test]
fn tcp_socket_with_every_option() {
    let o = ok(
        "socket,id=s,host=localhost,port=4444,to=4450,ipv4=on,ipv6=off,numeric=on,\
                keep-alive=on,server=on,wait=off,nodelay=on,telnet=on,websocket=off,\
                tls-creds=c,tls-authz=z,tn3270=off,logfile=/l",
    );
    let addr = InetSocketAddress {
        to: Some(4450),
        ipv4: Some(true),
        ipv6: Some(false),
        numeric: Some(true),
        keep_alive: Some(true),
        ..inet("localhost", "4444")
    };
    let want = ChardevSocket {
        common: ChardevCommon {
            logfile: Some("/l".into()),
            ..c0()
        },
        tls_creds: Some("c".into()),
        tls_authz: Some("z".into()),
        server: Some(true),
        wait: Some(false),
        nodelay: Some(true),
        telnet: Some(true),
        tn3270: Some(false),
        websocket: Some(false),
        ..base_socket(SocketAddressLegacy::Inet(addr))
    };
    assert_eq!(*socket_of(&o), want);
}

#[test]
fn websocket_text_option() {
    // qchar extension: text frames as input is the default (absent);
    // `x-websocket-text=off` asks for QEMU's binary-only websocket.
    let o = ok("socket,id=s,host=h,port=1,server=on,websocket=on");
    assert_eq!(socket_of(&o).websocket_text, None);
    let o = ok("socket,id=s,host=h,port=1,server=on,websocket=on,x-websocket-text=off");
    assert_eq!(socket_of(&o).websocket_text, Some(false));
    let json = serde_json::to_string(&o.backend).unwrap();
    assert!(json.contains(r#""x-websocket-text":false"#), "{json}");
    let back: ChardevBackend = serde_json::from_str(&json).unwrap();
    assert_eq!(back, o.backend);
}

#[test]
fn tcp_socket_edge_values() {
    let addr = |s: &str| socket_of(&ok(s)).addr.clone();
    assert_eq!(
        addr("socket,id=s,host=,port=4444"),
        SocketAddressLegacy::Inet(inet("", "4444"))
    );
    assert_eq!(
        addr("socket,id=s,host=h,port="),
        SocketAddressLegacy::Inet(inet("h", ""))
    );
    let to = |v: &str| match addr(&format!("socket,id=s,host=h,port=1,to={v}")) {
        SocketAddressLegacy::Inet(i) => i.to,
        other => panic!("{other:?}"),
    };
    assert_eq!(to("010"), Some(8), "octal, as strtoull");
    assert_eq!(to("0x10"), Some(16));
    assert_eq!(to("65535"), Some(65535));
    assert_eq!(
        err("socket,id=s,host=h,port=1,to=70000").to_string(),
        "Value '70000' is out of range for parameter 'to'"
    );
    assert_eq!(
        addr("socket,id=s,fd=3"),
        SocketAddressLegacy::Fd(StringWrapper { str: "3".into() })
    );
    // No address (a port alone is none) is a descriptor with an empty
    // name, as QEMU 7.2 reads it; the shorthand `unix:` too.
    let no_name = SocketAddressLegacy::Fd(StringWrapper { str: "".into() });
    assert_eq!(addr("socket,id=s"), no_name);
    assert_eq!(addr("socket,id=s,port=4444"), no_name);
    let (o, _) = new("unix:", "serial0");
    assert_eq!(socket_of(&o).addr, no_name);
}

#[test]
fn reconnect_options() {
    let o = ok("socket,id=s,host=h,port=1,reconnect=5");
    assert_eq!(socket_of(&o).reconnect, Some(5));
    assert_eq!(socket_of(&o).reconnect_ms, None);
    let o = ok("socket,id=s,host=h,port=1,reconnect-ms=250");
    assert_eq!(socket_of(&o).reconnect_ms, Some(250));
    assert_eq!(
        err("socket,id=s,host=h,port=1,reconnect=-1").to_string(),
        "Value '-1' is out of range for parameter 'reconnect'"
    );
}

// --- udp ----------------------------------------------------------------------

#[test]
fn udp_defaults_and_local_address() {
    let udp = |s: &str| match ok(s).backend {
        ChardevBackend::Udp(u) => u,
        other => panic!("{other:?}"),
    };
    let u = udp("udp,id=u,port=4555");
    assert_eq!(
        u.remote,
        SocketAddressLegacy::Inet(inet("localhost", "4555"))
    );
    assert_eq!(u.local, None);
    assert_eq!(u.common, c0());
    let u = udp("udp,id=u,host=,port=4555,localaddr=,localport=");
    assert_eq!(
        u.remote,
        SocketAddressLegacy::Inet(inet("localhost", "4555"))
    );
    assert_eq!(u.local, None);
    let u = udp("udp,id=u,host=10.0.0.1,port=4555,localport=4556,ipv4=on");
    let remote = InetSocketAddress {
        ipv4: Some(true),
        ..inet("10.0.0.1", "4555")
    };
    assert_eq!(u.remote, SocketAddressLegacy::Inet(remote));
    assert_eq!(u.local, Some(SocketAddressLegacy::Inet(inet("", "4556"))));
    let u = udp("udp,id=u,port=4555,localaddr=127.0.0.1");
    assert_eq!(
        u.local,
        Some(SocketAddressLegacy::Inet(inet("127.0.0.1", "0")))
    );
}

// --- numbers and sizes ------------------------------------------------------

#[test]
fn sizes_as_qemu_reads_them() {
    let table: &[(&str, u64)] = &[
        ("16", 16),
        ("016", 16),
        (" 16", 16),
        ("+16", 16),
        ("16b", 16),
        ("16B", 16),
        ("0x10", 16),
        ("0X10", 16),
        ("+0x10", 16),
        ("  0x10", 16),
        ("1k", 1024),
        ("1K", 1024),
        ("1.5k", 1536),
        ("0.5k", 512),
        ("1.k", 1024),
        ("1.", 1),
        ("1.0", 1),
        ("1.0b", 1),
        ("1m", 1 << 20),
        ("1g", 1 << 30),
        ("1t", 1 << 40),
        ("1p", 1 << 50),
        ("1e", 1 << 60),
        ("1.5E", 3 << 59),
        ("15E", 15 << 60),
        ("0.0009765625M", 1024),
        ("2.00000000000000000000000001k", 2048),
        ("0xffffffffffffffff", u64::MAX),
        ("0x1e", 30),
    ];
    for (v, want) in table {
        assert_eq!(backlog(v), Ok(Some(*want)), "{v}");
    }
    let (o, w) = warned("null,id=a,backlog=0x1k");
    assert_eq!(o.backend.common().backlog, Some(1024));
    assert_eq!(
        w,
        ["Using a multiplier suffix on hex numbers is deprecated: 0x1k"]
    );
}

#[test]
fn bad_sizes_give_qemu_texts() {
    let invalid = [
        "1x",
        "",
        "-1",
        "-0",
        "16 ",
        "1e3",
        ".5k",
        "0x10.0",
        "1.5",
        "1.5b",
        "1KB",
        "k",
        "0x",
        "1.0e2k",
        "1.5e3",
        "1.5E+",
        "1e+3",
        "0x1.5k",
        "99999999999999999999k",
    ];
    for v in invalid {
        let e = err(&format!("null,id=a,size={v}"));
        assert_eq!(
            e.to_string(),
            "Parameter 'size' expects a non-negative number below 2^64",
            "{v}"
        );
        assert_eq!(
            e.hint(),
            Some(
                "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
                 and exabytes, respectively."
            )
        );
    }
    for v in [
        "99999999999999999999",
        "16E",
        "0x10000000000000000",
        "-99999999999999999999",
    ] {
        assert_eq!(
            err(&format!("null,id=a,size={v}")).to_string(),
            format!("Value '{v}' is out of range for parameter 'size'"),
        );
    }
    assert_eq!(
        backlog("1q").map_err(|e| e.to_string()),
        Err("Parameter 'backlog' expects a non-negative number below 2^64".to_string())
    );
}

#[test]
fn numbers_as_qemu_reads_them() {
    for v in [
        " 5",
        "+5",
        "010",
        "0X1f",
        "-0x5",
        "-1",
        "18446744073709551615",
        "-18446744073709551615",
    ] {
        assert!(parse_chardev(&format!("null,id=a,to={v}")).is_ok(), "{v}");
    }
    for v in [
        "x",
        "",
        "08",
        "0x",
        "5 ",
        " ",
        "+",
        "-",
        "0b1",
        "- 5",
        "0x-5",
        "1k",
        "99999999999999999999x",
    ] {
        assert_eq!(
            err(&format!("null,id=a,to={v}")).to_string(),
            "Parameter 'to' expects a number",
            "{v:?}"
        );
    }
    for v in [
        "99999999999999999999",
        "18446744073709551616",
        "-18446744073709551616",
    ] {
        assert_eq!(
            err(&format!("null,id=a,to={v}")).to_string(),
            format!("Value '{v}' is too large for parameter 'to'")
        );
    }
}

/// Where qchar's two former parsers disagreed, QEMU 7.2 decided (checked
/// with `-chardev ringbuf,id=r,size=V` and `-chardev null,id=a,to=V`, see
/// crate::qemuopts::values): white space and `+` before sizes, rounding
/// half up, fractions below 2^-64 ignored.
#[test]
fn sizes_resolved_against_qemu() {
    assert_eq!(backlog(" 64"), Ok(Some(64)));
    assert_eq!(backlog("+64"), Ok(Some(64)));
    assert_eq!(backlog("1.99951171875k"), Ok(Some(2048)));
    assert_eq!(backlog("1.00000000000000000001"), Ok(Some(1)));
    assert_eq!(backlog("2.5e-400k"), Ok(Some(2)));
    assert_eq!(
        backlog("1.5").map_err(|e| e.to_string()),
        Err("Parameter 'backlog' expects a non-negative number below 2^64".to_string())
    );
    let (_, w) = warned("null,id=a,backlog=0x10k");
    assert_eq!(
        w,
        ["Using a multiplier suffix on hex numbers is deprecated: 0x10k"]
    );
}

// --- errors -------------------------------------------------------------------

/// Texts observed from QEMU 7.2's `-chardev STRING` (the part after the
/// `-chardev STRING: ` prefix).
#[test]
fn malformed_strings_give_qemu_texts() {
    const ID: &str = "Parameter 'id' expects an identifier";
    let table: &[(&str, &str)] = &[
        ("", "chardev: no id specified"),
        (",", "chardev: no id specified"),
        ("null", "chardev: no id specified"),
        ("foo", "chardev: no id specified"),
        ("=", "Invalid parameter ''"),
        ("=,id=a", "Invalid parameter ''"),
        ("id=", ID),
        ("null,id=", ID),
        ("null,id=1a", ID),
        ("null,id=a b", ID),
        ("null,id=é", ID),
        ("null,id=a,,", ID),
        ("null,id=a,,b", ID),
        ("null,id=a,,,", ID),
        ("null,id=1a,id=b", ID),
        ("null,bogus=1,id=1a", ID),
        ("id=a", "chardev: \"a\" missing backend"),
        (",id=a", "'' is not a valid char driver name"),
        ("foo,id=a", "'foo' is not a valid char driver name"),
        ("NULL,id=a", "'NULL' is not a valid char driver name"),
        ("console,id=c", "'console' is not a valid char driver name"),
        ("null,,x,id=a", "'null,x' is not a valid char driver name"),
        (
            "null,,id=b,id=a",
            "'null,id=b' is not a valid char driver name",
        ),
        ("null,id=a,bogus=1", "Invalid parameter 'bogus'"),
        ("null,id=a,bogus", "Invalid parameter 'bogus'"),
        ("null,id=a,nobogus", "Invalid parameter 'bogus'"),
        ("null,id=a,nohelp", "Invalid parameter 'help'"),
        ("null,id=a,=", "Invalid parameter ''"),
        ("null,=x,id=a", "Invalid parameter ''"),
        ("null,id=a,x=,", "Invalid parameter 'x'"),
        ("null,ID=a", "Invalid parameter 'ID'"),
        ("null,id=a,Mux=on", "Invalid parameter 'Mux'"),
        ("id=a,null", "Invalid parameter 'null'"),
        ("null=,id=a", "Invalid parameter 'null'"),
        ("foo,bogus=1", "Invalid parameter 'bogus'"),
        ("null,bogus=1,server=x", "Invalid parameter 'bogus'"),
        (
            "null,server=x,bogus=1",
            "Parameter 'server' expects 'on' or 'off'",
        ),
        ("foo,server=x", "Parameter 'server' expects 'on' or 'off'"),
        (
            "socket,id=s,server=maybe",
            "Parameter 'server' expects 'on' or 'off'",
        ),
        ("null,id=a,mux=", "Parameter 'mux' expects 'on' or 'off'"),
        ("null,id=a,to=x", "Parameter 'to' expects a number"),
        (
            "null,id=a,size=1x",
            "Parameter 'size' expects a non-negative number below 2^64",
        ),
        ("file,id=f", "chardev: file: no filename given"),
        ("null,id=a,backend=file", "chardev: file: no filename given"),
        ("file,id=f,append=on", "chardev: file: no filename given"),
        ("pipe,id=p", "chardev: pipe: no device path given"),
        ("serial,id=s", "chardev: serial/tty: no device path given"),
        ("tty,id=s", "chardev: serial/tty: no device path given"),
        ("parallel,id=p", "chardev: parallel: no device path given"),
        ("parport,id=p", "chardev: parallel: no device path given"),
        ("mux,id=m", "chardev: mux: no chardev given"),
        ("udp,id=u", "chardev: udp: remote port not specified"),
        ("udp,id=u,port=", "chardev: udp: remote port not specified"),
        (
            "socket,id=s,path=/a,host=x",
            "None or one of 'path', 'fd' or 'host' option required.",
        ),
        (
            "socket,id=s,path=/a,fd=3",
            "None or one of 'path', 'fd' or 'host' option required.",
        ),
        (
            "socket,id=s,host=localhost",
            "chardev: socket: no port given",
        ),
        (
            "socket,id=s,path=/b,delay=on,nodelay=on",
            "'delay' and 'nodelay' are mutually exclusive",
        ),
        (
            "socket,id=s,path=/b,nodelay,nodelay=on",
            "'delay' and 'nodelay' are mutually exclusive",
        ),
    ];
    for (input, want) in table {
        assert_eq!(err(input).to_string(), *want, "input {input:?}");
    }
    assert_eq!(
        err("null,id=1a").hint(),
        Some("Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.")
    );
    assert_eq!(err("null,id=a,bogus=1").hint(), None);
    assert_eq!(err("null,id=a,,").to_string(), ID);
    assert_eq!(
        err("null,id=a,,"),
        OptsError::Parse(QemuOptsError::InvalidId("a,".into()))
    );
}

#[test]
fn qemu_only_backends_are_unknown_to_qchar() {
    for b in [
        "vc",
        "msmouse",
        "testdev",
        "wctablet",
        "braille",
        "spicevmc",
        "qemu-vdagent",
    ] {
        assert_eq!(
            err(&format!("{b},id=a")).to_string(),
            format!("'{b}' is not a valid char driver name")
        );
    }
    // Keys QEMU knows are accepted and type-checked even if unused.
    assert!(
        parse_chardev("null,id=a,width=80,cols=3,name=x,mouse=on,clipboard=off,debug=1").is_ok()
    );
    assert_eq!(
        err("null,id=a,width=x").to_string(),
        "Parameter 'width' expects a number"
    );
}

#[test]
fn help_requests() {
    for s in ["help", "?", "help,id=a", "backend=help"] {
        let e = err(s);
        assert_eq!(e, OptsError::BackendHelp, "{s}");
        let text = e.to_string();
        assert!(
            text.starts_with("Available chardev backend types: \n  stdio\n  ringbuf"),
            "{text}"
        );
    }
    for s in ["null,id=a,help", "null,id=a,?", "foo,help,bogus=1"] {
        let e = err(s);
        assert_eq!(
            e,
            OptsError::Parse(QemuOptsError::Help(&CHARDEV_OPTS)),
            "{s}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("chardev options:\n  abstract=<bool (on/off)>\n"),
            "{text}"
        );
        assert!(text.contains("\n  size=<size>\n") && text.contains("\n  to=<num>\n"));
        assert!(text.contains("\n  width=<num>\n"));
        // qchar's own keys come last, as their names sort.
        assert!(
            text.ends_with(
                "\n  x-clients=<num>\n  x-logkeep=<num>\n  x-logsize=<size>\n  \
                 x-logtimestamp=<bool (on/off)>\n  x-websocket-text=<bool (on/off)>\n  \
                 x-writers=<num>"
            ),
            "{text}"
        );
    }
    // Errors before the help key still win.
    assert_eq!(
        err("null,bogus=1,help").to_string(),
        "Invalid parameter 'bogus'"
    );
    assert_eq!(
        err("help,id=1").to_string(),
        "Parameter 'id' expects an identifier"
    );
}

// --- shorthands -----------------------------------------------------------------

#[test]
fn shorthand_none_and_existing() {
    assert_eq!(
        parse_serial_shorthand("none", "serial0"),
        Ok(SerialTarget::None)
    );
    assert_eq!(
        parse_serial_shorthand("chardev:foo", "x"),
        Ok(SerialTarget::Existing("foo".into()))
    );
    assert_eq!(
        parse_serial_shorthand("chardev:", "x"),
        Ok(SerialTarget::Existing(String::new()))
    );
    // Only the exact word: "none2" is an unknown device.
    assert_eq!(
        compat_err("none2").to_string(),
        "'none2' is not a valid char driver"
    );
}

#[test]
fn shorthand_simple_devices() {
    let (o, mon) = new("null", "serial0");
    assert_eq!(
        o,
        ChardevOptions {
            id: "serial0".into(),
            backend: ChardevBackend::Null(c0()),
            mux: false
        }
    );
    assert!(!mon);
    assert_eq!(new("pty", "s").0.backend, ChardevBackend::Pty(c0()));
    let stdio = ChardevBackend::Stdio(ChardevStdio {
        common: c0(),
        signal: Some(true),
    });
    assert_eq!(new("stdio", "s").0.backend, stdio);
    let hd = |d: &str| ChardevHostdev {
        common: c0(),
        device: d.into(),
    };
    assert_eq!(
        new("pipe:/p", "s").0.backend,
        ChardevBackend::Pipe(hd("/p"))
    );
    assert_eq!(
        new("/dev/ttyS0", "s").0.backend,
        ChardevBackend::Serial(hd("/dev/ttyS0"))
    );
    assert_eq!(
        new("COM1", "s").0.backend,
        ChardevBackend::Serial(hd("COM1"))
    );
    assert_eq!(
        new("/dev/parport0", "s").0.backend,
        ChardevBackend::Parallel(hd("/dev/parport0"))
    );
    assert_eq!(
        new("/dev/ppi0", "s").0.backend,
        ChardevBackend::Parallel(hd("/dev/ppi0"))
    );
    // file: takes the rest verbatim, commas included.
    let file = ChardevFile {
        common: c0(),
        input: None,
        out: "/f1,x".into(),
        append: Some(false),
    };
    assert_eq!(new("file:/f1,x", "s").0.backend, ChardevBackend::File(file));
    assert!(matches!(new("file:", "s").0.backend, ChardevBackend::File(ref f) if f.out.is_empty()));
}

#[test]
fn shorthand_mon_prefix_muxes_and_flags_monitor() {
    let (o, mon) = new("mon:stdio", "serial0");
    assert!(mon && o.mux);
    assert_eq!(
        o.backend,
        ChardevBackend::Stdio(ChardevStdio {
            common: c0(),
            signal: Some(false)
        })
    );
    let (o, mon) = new("mon:null", "m");
    assert!(mon && o.mux);
    assert_eq!(o.backend, ChardevBackend::Null(c0()));
    let (o, mon) = new("mon:tcp::4444,server=on,wait=off,mux=off", "m");
    assert!(!mon && !o.mux);
    let (o, mon) = new("tcp::4444,server=on,wait=off,mux=on", "m");
    assert!(mon && o.mux);
}

#[test]
fn shorthand_tcp_family() {
    let (o, _) = new("tcp::4444,server,nowait", "serial0");
    let want = ChardevSocket {
        server: Some(true),
        wait: Some(false),
        ..base_socket(SocketAddressLegacy::Inet(inet("", "4444")))
    };
    assert_eq!(*socket_of(&o), want);
    let (o, _) = new("tcp:127.0.0.1:4444,server=on,wait=off,id=zz", "serial0");
    assert_eq!(o.id, "serial0");
    assert_eq!(
        socket_of(&o).addr,
        SocketAddressLegacy::Inet(inet("127.0.0.1", "4444"))
    );
    let (o, _) = new("tcp:h:1", "s");
    assert_eq!(
        *socket_of(&o),
        base_socket(SocketAddressLegacy::Inet(inet("h", "1")))
    );
    let (o, _) = new("telnet::4444,server=on,wait=off,telnet=off", "s");
    assert_eq!(
        socket_of(&o).telnet,
        Some(true),
        "the prefix wins over the options"
    );
    assert_eq!(
        socket_of(&new("websocket::1,server", "s").0).websocket,
        Some(true)
    );
    assert_eq!(
        socket_of(&new("tn3270::1,server", "s").0).tn3270,
        Some(true)
    );
    // QEMU's scanner: host stops at the first colon, no brackets.
    let (o, _) = new("tcp:[::1]:4444", "s");
    assert_eq!(
        socket_of(&o).addr,
        SocketAddressLegacy::Inet(inet("[", ":1]:4444"))
    );
    assert_eq!(
        socket_of(&new("tcp::4444x", "s").0).addr,
        SocketAddressLegacy::Inet(inet("", "4444x"))
    );
    // Ports are cut at 32 bytes and the rest, options included, ignored.
    let long = format!("tcp::{},server=on", "9".repeat(40));
    let s = new(&long, "s").0;
    assert_eq!(
        socket_of(&s).addr,
        SocketAddressLegacy::Inet(inet("", &"9".repeat(32)))
    );
    assert_eq!(socket_of(&s).server, Some(false));
    // Later options override what the shorthand set.
    assert_eq!(
        new("tcp::1,server=on,wait=off,backend=null", "s").0.backend,
        ChardevBackend::Null(c0())
    );
}

#[test]
fn shorthand_unix() {
    let (o, _) = new("unix:/p,server,nowait", "s");
    let want = ChardevSocket {
        server: Some(true),
        wait: Some(false),
        ..base_socket(unix("/p"))
    };
    assert_eq!(*socket_of(&o), want);
    let (o, _) = new("unix:/u,,2,server=on,wait=off", "s");
    assert_eq!(socket_of(&o).addr, unix("/u,2"));
    let (o, _) = new("unix:path=/q", "s");
    assert_eq!(socket_of(&o).addr, unix("/q"));
    // No path: as QEMU, a descriptor named by the empty string (which
    // fails to open outside a monitor: `Unable to parse FD number `).
    let (o, _) = new("unix:", "s");
    let empty = SocketAddressLegacy::Fd(StringWrapper { str: String::new() });
    assert_eq!(socket_of(&o).addr, empty);
    for s in ["socket,id=s", "socket,id=s,port=4444"] {
        let o = parse_chardev(s).unwrap();
        assert_eq!(socket_of(&o).addr, empty, "{s}");
    }
}

#[test]
fn shorthand_udp() {
    let udp = |s: &str| match new(s, "s").0.backend {
        ChardevBackend::Udp(u) => u,
        other => panic!("{other:?}"),
    };
    let u = udp("udp::4555");
    assert_eq!(
        u.remote,
        SocketAddressLegacy::Inet(inet("localhost", "4555"))
    );
    assert_eq!(u.local, None);
    let u = udp("udp:h:1@:2");
    assert_eq!(u.remote, SocketAddressLegacy::Inet(inet("h", "1")));
    assert_eq!(u.local, Some(SocketAddressLegacy::Inet(inet("", "2"))));
    let u = udp("udp:h:1@l:2");
    assert_eq!(u.local, Some(SocketAddressLegacy::Inet(inet("l", "2"))));
    // No trailing options for udp: the rest is ignored.
    assert_eq!(
        udp("udp:h:1,junk").remote,
        SocketAddressLegacy::Inet(inet("h", "1"))
    );
}

/// Texts observed from QEMU 7.2's `-serial DEV` (the line before its
/// "could not connect serial device" line), plus qchar's choices for the
/// devices QEMU has and qchar lacks.
#[test]
fn shorthand_errors() {
    let table: &[(&str, &str)] = &[
        ("foo", "'foo' is not a valid char driver"),
        ("ringbuf", "'ringbuf' is not a valid char driver"),
        ("", "'' is not a valid char driver"),
        ("mon:mon:null", "'mon:null' is not a valid char driver"),
        ("mon:chardev:x", "'chardev:x' is not a valid char driver"),
        ("null,id=x", "'null,id=x' is not a valid char driver"),
        ("pty:/x", "'pty:/x' is not a valid char driver"),
        (
            "tcp:127.0.0.1:1,server=on,bogus=1",
            "Invalid parameter 'bogus'",
        ),
        ("tcp::1,help", "Invalid parameter 'help'"),
        ("unix:/a=b", "Invalid parameter '/a'"),
        ("con:", "'console' is not a valid char driver name"),
        // QEMU prints only its caller's line for these.
        ("tcp:", "parse error: tcp:"),
        ("tcp:host", "parse error: tcp:host"),
        ("tcp::", "parse error: tcp::"),
        ("tcp:h:", "parse error: tcp:h:"),
        ("udp:", "parse error: udp:"),
        ("udp:1", "parse error: udp:1"),
        ("udp:h:1@", "parse error: udp:h:1@"),
        ("vc:80", "parse error: vc:80"),
        ("mon:vc:x", "parse error: mon:vc:x"),
        // QEMU opens these; qchar cannot.
        ("vc", "'vc' is not a valid char driver name"),
        ("vcxyz", "'vc' is not a valid char driver name"),
        ("vc:80x24", "'vc' is not a valid char driver name"),
        ("vc:80Cx24C", "'vc' is not a valid char driver name"),
        ("msmouse", "'msmouse' is not a valid char driver name"),
    ];
    for (input, want) in table {
        assert_eq!(compat_err(input).to_string(), *want, "input {input:?}");
    }
    assert_eq!(
        parse_serial_shorthand("null", "0bad"),
        Err(OptsError::Parse(QemuOptsError::InvalidId("0bad".into())))
    );
}

// --- robustness -----------------------------------------------------------------

const VALID: &[&str] = &[
    "null,id=a",
    "file,id=f,path=/srv/a,,b,append=on,input-path=/i,logfile=/l,logappend=off",
    "socket,id=s,path=/p,server,nowait,nodelay,abstract,notight",
    "socket,id=s,host=::1,port=4444,to=4450,ipv4=on,reconnect=3,reconnect-ms=5,telnet=on",
    "udp,id=u,host=h,port=1,localaddr=l,localport=2,ipv6=on",
    "ringbuf,id=r,size=1.5k,backlog=0x1k,mux=on",
    "stdio,id=s,signal=off",
    "mux,id=m,chardev=r",
    "tty,id=t,path=/dev/ttyS0",
];

const SHORTHANDS: &[&str] = &[
    "mon:stdio",
    "tcp:127.0.0.1:4444,server=on,wait=off,nodelay",
    "telnet::4444,server,nowait",
    "udp:h:1@l:2",
    "unix:/p,,q,server=on",
    "file:/f",
    "vc:80Cx24C",
    "/dev/ttyS0",
    "chardev:x",
];

/// What an accepted result must satisfy: a well-formed id and a backend
/// that survives the QMP JSON form.
fn check_accepted(input: &str, o: &ChardevOptions) {
    assert!(is_identifier(&o.id), "{input:?} gave bad id {:?}", o.id);
    let json = serde_json::to_string(&o.backend).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    let back: ChardevBackend =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{input:?}: {json}: {e}"));
    assert_eq!(back, o.backend, "{input:?}");
}

fn exercise(input: &str) {
    if let Ok(o) = parse_chardev(input) {
        check_accepted(input, &o);
    }
    if let Ok(SerialTarget::New { options, monitor }) = parse_serial_shorthand(input, "serial0") {
        check_accepted(input, &options);
        assert_eq!(monitor, options.mux);
    }
}

#[test]
fn every_prefix_parses_or_errs() {
    for s in VALID.iter().chain(SHORTHANDS) {
        for (i, _) in s.char_indices().chain([(s.len(), ' ')]) {
            exercise(&s[..i]);
        }
    }
}

#[test]
fn mutations_never_panic() {
    const BITS: &[&str] = &[
        ",",
        "=",
        ",,",
        ":",
        "@",
        "no",
        "id=",
        "0x",
        "é",
        "€",
        "\u{10348}",
        "\0",
        " ",
        "k",
        "E",
        ".",
        "-",
        "server",
        "help",
        "?",
        "9999999999999999999999",
        "path=",
        "host=",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for s in VALID.iter().chain(SHORTHANDS) {
        for _ in 0..400 {
            let mut m = s.to_string();
            for _ in 0..1 + rand(3) {
                let cuts: Vec<usize> = m.char_indices().map(|(i, _)| i).chain([m.len()]).collect();
                let at = cuts[rand(cuts.len())];
                match rand(3) {
                    0 => m.insert_str(at, BITS[rand(BITS.len())]),
                    1 => {
                        let to = cuts[rand(cuts.len())].max(at);
                        m.replace_range(at..to, "");
                    }
                    _ => {
                        let to = cuts[rand(cuts.len())].max(at);
                        m.replace_range(at..to, BITS[rand(BITS.len())]);
                    }
                }
            }
            exercise(&m);
        }
    }
}

#[test]
fn huge_inputs_are_handled() {
    let long_value = format!("file,id=f,path={}", "x".repeat(1 << 20));
    assert!(
        matches!(ok(&long_value).backend, ChardevBackend::File(ref f) if f.out.len() == 1 << 20)
    );
    let commas = format!("file,id=f,path={}", ",,".repeat(100_000));
    assert!(matches!(ok(&commas).backend, ChardevBackend::File(ref f) if f.out.len() == 100_000));
    let many = format!("null,id=a{}", ",mux=on".repeat(100_000));
    assert!(ok(&many).mux);
    exercise(&",".repeat(100_000));
    exercise(&"=".repeat(100_000));
    assert_eq!(
        backlog(&"9".repeat(10_000)).map_err(|e| e.to_string()),
        Err(format!(
            "Value '{}' is out of range for parameter 'backlog'",
            "9".repeat(10_000)
        ))
    );
    let host = "h".repeat(100_000);
    assert_eq!(
        compat_err(&format!("tcp:{host}:1")).to_string(),
        format!("parse error: tcp:{host}:1")
    );
}
