//! Builds the chardev spec types (`qchar_chardev::spec`) from QMP arguments
//! with the visitor, in QAPI schema member order so the first error reported
//! is the one QEMU reports.

use qchar_chardev::spec::*;

use super::error::{QmpError, QmpResult};
use super::visitor::ObjVisitor;

/// Every backend type name QEMU 7.2's `ChardevBackendKind` accepts (in this
/// Linux build), and QEMU 10's `hub`. Those qchar does not implement pass
/// validation and are then refused with QEMU's "not a valid char driver
/// name" text.
pub const QEMU_BACKEND_KINDS: &[&str] = &[
    "file",
    "serial",
    "parallel",
    "pipe",
    "socket",
    "udp",
    "pty",
    "null",
    "mux",
    "hub",
    "msmouse",
    "wctablet",
    "braille",
    "testdev",
    "stdio",
    "spicevmc",
    "spiceport",
    "qemu-vdagent",
    "dbus",
    "vc",
    "ringbuf",
    "memory",
];

/// A backend type that validated but that qchar cannot open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedKind(pub &'static str);

/// Visits member `name` (a `ChardevBackend`) of `v`.
pub fn visit_backend(
    v: &mut ObjVisitor<'_>,
    name: &str,
) -> QmpResult<Result<ChardevBackend, UnsupportedKind>> {
    let mut b = v.req_obj(name)?;
    let kind = QEMU_BACKEND_KINDS[b.req_enum("type", QEMU_BACKEND_KINDS)?];
    let mut d = b.req_obj("data")?;
    let backend = match kind {
        "file" => {
            let common = common(&mut d)?;
            let input = d.opt_str("in")?;
            let out = d.req_str("out")?;
            let append = d.opt_bool("append")?;
            Ok(ChardevBackend::File(ChardevFile {
                common,
                input,
                out,
                append,
            }))
        }
        "serial" | "parallel" | "pipe" => {
            let h = ChardevHostdev {
                common: common(&mut d)?,
                device: d.req_str("device")?,
            };
            Ok(match kind {
                "serial" => ChardevBackend::Serial(h),
                "parallel" => ChardevBackend::Parallel(h),
                _ => ChardevBackend::Pipe(h),
            })
        }
        "socket" => {
            let common = common(&mut d)?;
            let mut a = d.req_obj("addr")?;
            let addr = socket_address(&mut a)?;
            a.finish()?;
            Ok(ChardevBackend::Socket(ChardevSocket {
                common,
                addr,
                tls_creds: d.opt_str("tls-creds")?,
                tls_authz: d.opt_str("tls-authz")?,
                server: d.opt_bool("server")?,
                wait: d.opt_bool("wait")?,
                nodelay: d.opt_bool("nodelay")?,
                telnet: d.opt_bool("telnet")?,
                tn3270: d.opt_bool("tn3270")?,
                websocket: d.opt_bool("websocket")?,
                reconnect: d.opt_int("reconnect")?,
                reconnect_ms: None,
            }))
        }
        "udp" => {
            let common = common(&mut d)?;
            let mut r = d.req_obj("remote")?;
            let remote = socket_address(&mut r)?;
            r.finish()?;
            let local = match d.opt_obj("local")? {
                Some(mut l) => {
                    let a = socket_address(&mut l)?;
                    l.finish()?;
                    Some(a)
                }
                None => None,
            };
            Ok(ChardevBackend::Udp(ChardevUdp {
                common,
                remote,
                local,
            }))
        }
        "pty" => Ok(ChardevBackend::Pty(common(&mut d)?)),
        "null" => Ok(ChardevBackend::Null(common(&mut d)?)),
        "mux" => Ok(ChardevBackend::Mux(ChardevMux {
            common: common(&mut d)?,
            chardev: d.req_str("chardev")?,
        })),
        "hub" => Ok(ChardevBackend::Hub(ChardevHub {
            common: common(&mut d)?,
            chardevs: d.req_str_list("chardevs")?,
        })),
        "stdio" => Ok(ChardevBackend::Stdio(ChardevStdio {
            common: common(&mut d)?,
            signal: d.opt_bool("signal")?,
        })),
        "ringbuf" | "memory" => {
            let r = ChardevRingbuf {
                common: common(&mut d)?,
                size: d.opt_int("size")?,
            };
            Ok(if kind == "ringbuf" {
                ChardevBackend::Ringbuf(r)
            } else {
                ChardevBackend::Memory(r)
            })
        }
        other => {
            // Validate as QEMU would, then refuse.
            common(&mut d)?;
            match other {
                "spicevmc" => drop(d.req_str("type")?),
                "spiceport" => drop(d.req_str("fqdn")?),
                "dbus" => drop(d.req_str("name")?),
                "qemu-vdagent" => {
                    d.opt_bool("mouse")?;
                    d.opt_bool("clipboard")?;
                }
                "vc" => {
                    for m in ["width", "height", "cols", "rows"] {
                        d.opt_int(m)?;
                    }
                }
                _ => {}
            }
            Err(UnsupportedKind(
                QEMU_BACKEND_KINDS
                    .iter()
                    .find(|k| **k == other)
                    .copied()
                    .unwrap_or("?"),
            ))
        }
    };
    d.finish()?;
    b.finish()?;
    Ok(backend)
}

/// `ChardevCommon` members, plus qchar's `x-backlog`, `x-logsize`,
/// `x-logkeep` and `x-logtimestamp`.
fn common(d: &mut ObjVisitor<'_>) -> QmpResult<ChardevCommon> {
    Ok(ChardevCommon {
        logfile: d.opt_str("logfile")?,
        logappend: d.opt_bool("logappend")?,
        backlog: d.opt_u64("x-backlog")?,
        logsize: d.opt_u64("x-logsize")?,
        logkeep: d.opt_u64("x-logkeep")?,
        logtimestamp: d.opt_bool("x-logtimestamp")?,
    })
}

const ADDR_KINDS: &[&str] = &["inet", "unix", "vsock", "fd"];

/// `SocketAddressLegacy`: `{"type": ..., "data": {...}}`.
fn socket_address(a: &mut ObjVisitor<'_>) -> QmpResult<SocketAddressLegacy> {
    let kind = ADDR_KINDS[a.req_enum("type", ADDR_KINDS)?];
    let mut d = a.req_obj("data")?;
    let addr = match kind {
        "inet" => {
            let host = d.req_str("host")?;
            let port = d.req_str("port")?;
            let numeric = d.opt_bool("numeric")?;
            let to = d.opt_u16("to")?;
            let ipv4 = d.opt_bool("ipv4")?;
            let ipv6 = d.opt_bool("ipv6")?;
            let keep_alive = d.opt_bool("keep-alive")?;
            if d.opt_bool("mptcp")? == Some(true) {
                return Err(QmpError::generic("MPTCP is not supported by qchar"));
            }
            SocketAddressLegacy::Inet(InetSocketAddress {
                host,
                port,
                numeric,
                to,
                ipv4,
                ipv6,
                keep_alive,
            })
        }
        "unix" => {
            let path = d.req_str("path")?;
            let abstract_ = d.opt_bool("abstract")?;
            let tight = d.opt_bool("tight")?;
            SocketAddressLegacy::Unix(UnixSocketAddress {
                path,
                abstract_,
                tight,
            })
        }
        "vsock" => SocketAddressLegacy::Vsock(VsockSocketAddress {
            cid: d.req_str("cid")?,
            port: d.req_str("port")?,
        }),
        _ => SocketAddressLegacy::Fd(StringWrapper {
            str: d.req_str("str")?,
        }),
    };
    d.finish()?;
    Ok(addr)
}
