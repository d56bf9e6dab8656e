//! The `-chardev` keys and how they become a backend spec: QEMU's
//! `qemu_chardev_opts` list (plus qchar's keys) and, per backend, the
//! defaults and checks QEMU applies when it creates the chardev.

// Hand-written: the key table and defaults are QEMU's, read from its behaviour.

use crate::qemuopts::{OptDesc, OptType, OptsList, QemuOpts, QemuOptsError};
use crate::spec::{
    ChardevBackend, ChardevCommon, ChardevFile, ChardevHostdev, ChardevHub, ChardevMux,
    ChardevRingbuf, ChardevSocket, ChardevStdio, ChardevUdp, InetSocketAddress,
    SocketAddressLegacy, StringWrapper, UnixSocketAddress,
};

use super::OptsError;
use OptType::{Bool, Number, Size, String as Str};

const fn key(name: &'static str, ty: OptType) -> OptDesc {
    OptDesc::new(name, ty)
}

/// Every key `-chardev` accepts: QEMU 7.2's and QEMU 10's `chardevs.N` for
/// `hub` (some only matter to backends
/// qchar lacks; they are accepted and ignored, as QEMU ignores keys a
/// backend does not use) plus qchar's own (`backlog`, `input-path`,
/// `keep-alive`, `numeric`, `reconnect-ms`, `x-logsize`, `x-logkeep`,
/// `x-logtimestamp`).
const KEYS: &[OptDesc] = &[
    key("abstract", Bool),
    key("append", Bool),
    key("backend", Str),
    key("backlog", Size),
    key("chardev", Str),
    key("chardevs.0", Str),
    key("chardevs.1", Str),
    key("chardevs.2", Str),
    key("chardevs.3", Str),
    key("clipboard", Bool),
    key("cols", Number),
    key("debug", Number),
    key("delay", Bool),
    key("fd", Str),
    key("height", Number),
    key("host", Str),
    key("input-path", Str),
    key("ipv4", Bool),
    key("ipv6", Bool),
    key("keep-alive", Bool),
    key("localaddr", Str),
    key("localport", Str),
    key("logappend", Bool),
    key("logfile", Str),
    key("mouse", Bool),
    key("mux", Bool),
    key("name", Str),
    key("nodelay", Bool),
    key("numeric", Bool),
    key("path", Str),
    key("port", Str),
    key("reconnect", Number),
    key("reconnect-ms", Number),
    key("rows", Number),
    key("server", Bool),
    key("signal", Bool),
    key("size", Size),
    key("telnet", Bool),
    key("tight", Bool),
    key("tls-authz", Str),
    key("tls-creds", Str),
    key("tn3270", Bool),
    key("to", Number),
    key("wait", Bool),
    key("websocket", Bool),
    key("width", Number),
    key("x-logkeep", Number),
    key("x-logsize", Size),
    key("x-logtimestamp", Bool),
];

/// QEMU's `-chardev` option list, with qchar's keys.
pub static CHARDEV_OPTS: OptsList = OptsList {
    name: "chardev",
    implied: Some("backend"),
    merge_lists: false,
    desc: Some(KEYS),
};

fn owned(opts: &QemuOpts, name: &str) -> Option<String> {
    opts.get(name).map(str::to_string)
}

/// A number narrowed to its QAPI field's type. QEMU truncates silently;
/// qchar refuses instead.
fn narrow<T: TryFrom<u64>>(opts: &QemuOpts, name: &str) -> Result<Option<T>, OptsError> {
    let (Some(opt), Some(n)) = (opts.last(name), opts.get_number(name)) else {
        return Ok(None);
    };
    T::try_from(n).map(Some).map_err(|_| {
        OptsError::Parse(QemuOptsError::OutOfRange {
            name: name.to_string(),
            value: opt.text.clone(),
        })
    })
}

fn common(opts: &QemuOpts) -> ChardevCommon {
    ChardevCommon {
        logfile: owned(opts, "logfile"),
        logappend: Some(opts.get_bool("logappend").unwrap_or(false)),
        backlog: opts.get_number("backlog"),
        logsize: opts.get_number("x-logsize"),
        logkeep: opts.get_number("x-logkeep"),
        logtimestamp: opts.get_bool("x-logtimestamp"),
    }
}

fn hostdev(opts: &QemuOpts, what: &'static str) -> Result<ChardevHostdev, OptsError> {
    let device = owned(opts, "path").ok_or(OptsError::NoDevicePath(what))?;
    Ok(ChardevHostdev {
        common: common(opts),
        device,
    })
}

fn ringbuf(opts: &QemuOpts) -> Result<ChardevRingbuf, OptsError> {
    // QEMU treats size=0 as "not given" (the backend's default).
    let size = narrow::<i64>(opts, "size")?.filter(|&s| s != 0);
    Ok(ChardevRingbuf {
        common: common(opts),
        size,
    })
}

/// Builds the backend named `name` from the keys.
pub(super) fn build_backend(
    name: &str,
    opts: &QemuOpts,
    warnings: &mut Vec<String>,
) -> Result<ChardevBackend, OptsError> {
    let name = super::legacy::translate_alias(name, warnings);
    Ok(match name {
        "null" => ChardevBackend::Null(common(opts)),
        "pty" => ChardevBackend::Pty(common(opts)),
        "file" => {
            let out = owned(opts, "path").ok_or(OptsError::NoFilename)?;
            ChardevBackend::File(ChardevFile {
                common: common(opts),
                input: owned(opts, "input-path"),
                out,
                append: Some(opts.get_bool("append").unwrap_or(false)),
            })
        }
        "pipe" => ChardevBackend::Pipe(hostdev(opts, "pipe")?),
        "serial" => ChardevBackend::Serial(hostdev(opts, "serial/tty")?),
        "parallel" => ChardevBackend::Parallel(hostdev(opts, "parallel")?),
        "stdio" => ChardevBackend::Stdio(ChardevStdio {
            common: common(opts),
            signal: Some(opts.get_bool("signal").unwrap_or(true)),
        }),
        "ringbuf" => ChardevBackend::Ringbuf(ringbuf(opts)?),
        "memory" => ChardevBackend::Memory(ringbuf(opts)?),
        "mux" => {
            let chardev = owned(opts, "chardev").ok_or(OptsError::NoMuxChardev)?;
            ChardevBackend::Mux(ChardevMux {
                common: common(opts),
                chardev,
            })
        }
        "hub" => ChardevBackend::Hub(ChardevHub {
            common: common(opts),
            // QEMU reads chardevs.0, chardevs.1... up to the first gap; an
            // empty list is refused when the hub opens.
            chardevs: (0..crate::MAX_HUB)
                .map_while(|i| owned(opts, &format!("chardevs.{i}")))
                .collect(),
        }),
        "socket" => ChardevBackend::Socket(socket(opts)?),
        "udp" => ChardevBackend::Udp(udp(opts)?),
        other => return Err(OptsError::UnknownDriver(other.to_string())),
    })
}

fn socket(opts: &QemuOpts) -> Result<ChardevSocket, OptsError> {
    let path = opts.get("path");
    let host = opts.get("host");
    let fd = opts.get("fd");
    let given = [path.is_some(), host.is_some(), fd.is_some()];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(OptsError::SocketAddressConflict);
    }
    if host.is_some() && !opts.has("port") {
        return Err(OptsError::SocketNoPort);
    }
    if opts.has("delay") && opts.has("nodelay") {
        return Err(OptsError::DelayConflict);
    }
    let nodelay = if opts.has("delay") || opts.has("nodelay") {
        Some(!opts.get_bool("delay").unwrap_or(true) || opts.get_bool("nodelay").unwrap_or(false))
    } else {
        None
    };
    let server = opts.get_bool("server").unwrap_or(false);
    let wait = if opts.has("wait") || server {
        Some(opts.get_bool("wait").unwrap_or(true))
    } else {
        None
    };
    let addr = if let Some(path) = path {
        SocketAddressLegacy::Unix(UnixSocketAddress {
            path: path.to_string(),
            abstract_: Some(opts.get_bool("abstract").unwrap_or(false)),
            tight: Some(opts.get_bool("tight").unwrap_or(true)),
        })
    } else if let Some(host) = host {
        SocketAddressLegacy::Inet(InetSocketAddress {
            host: host.to_string(),
            port: owned(opts, "port").unwrap_or_default(),
            numeric: opts.get_bool("numeric"),
            to: narrow::<u16>(opts, "to")?,
            ipv4: opts.get_bool("ipv4"),
            ipv6: opts.get_bool("ipv6"),
            keep_alive: opts.get_bool("keep-alive"),
        })
    } else {
        // No address at all is, as in QEMU 7.2, a descriptor with an empty
        // name: the checks of the mode come first, its look-up fails last.
        SocketAddressLegacy::Fd(StringWrapper {
            str: fd.unwrap_or_default().to_string(),
        })
    };
    Ok(ChardevSocket {
        common: common(opts),
        addr,
        tls_creds: owned(opts, "tls-creds"),
        tls_authz: owned(opts, "tls-authz"),
        server: Some(server),
        wait,
        nodelay,
        telnet: opts.get_bool("telnet"),
        tn3270: opts.get_bool("tn3270"),
        websocket: opts.get_bool("websocket"),
        reconnect: narrow::<i64>(opts, "reconnect")?,
        reconnect_ms: narrow::<i64>(opts, "reconnect-ms")?,
    })
}

fn udp(opts: &QemuOpts) -> Result<ChardevUdp, OptsError> {
    let non_empty = |k: &str| opts.get(k).filter(|v| !v.is_empty());
    let host = non_empty("host").unwrap_or("localhost");
    let port = non_empty("port").ok_or(OptsError::UdpNoPort)?;
    let localaddr = non_empty("localaddr");
    let localport = non_empty("localport");
    let local = (localaddr.is_some() || localport.is_some()).then(|| {
        SocketAddressLegacy::Inet(InetSocketAddress {
            host: localaddr.unwrap_or("").to_string(),
            port: localport.unwrap_or("0").to_string(),
            ..InetSocketAddress::default()
        })
    });
    Ok(ChardevUdp {
        common: common(opts),
        remote: SocketAddressLegacy::Inet(InetSocketAddress {
            host: host.to_string(),
            port: port.to_string(),
            ipv4: opts.get_bool("ipv4"),
            ipv6: opts.get_bool("ipv6"),
            ..InetSocketAddress::default()
        }),
        local,
    })
}
