// Hand-written part: the `wire` copies of the backend structs, because serde cannot refuse unknown members of a struct that flattens another.
//! The backend specification: Rust types for QEMU's QAPI `ChardevBackend`
//! union (qapi/char.json). With the `serde` feature they serialize and
//! deserialize with field names exactly as QEMU spells them on the wire, so
//! a `chardev-add`/`chardev-change` argument deserializes as-is, and an
//! unknown member is refused as QEMU refuses it.
//!
//! The types are plain data: they describe a backend, they do not open one.
//! [`crate::backend::open`] turns a spec into a live backend.

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Options every backend accepts (QAPI `ChardevCommon`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct ChardevCommon {
    /// Copy every byte the frontend writes to this file as well.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub logfile: Option<String>,
    /// Append to `logfile` instead of truncating it.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub logappend: Option<bool>,
    /// qchar extension: size in bytes of the chardev's history, the newest
    /// output it sent out (see [`crate::history`]); a pty or a one-client
    /// server also replays to the next peer what no peer got. Absent: no
    /// history, unless a tap or a multi-client server needs one.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "x-backlog", default, skip_serializing_if = "Option::is_none")
    )]
    pub backlog: Option<u64>,
    /// qchar extension: rotate `logfile` before it would grow past this
    /// many bytes (`PATH` is renamed `PATH.1`, and so on, then reopened).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "x-logsize", default, skip_serializing_if = "Option::is_none")
    )]
    pub logsize: Option<u64>,
    /// qchar extension: how many rotated files (`PATH.1` .. `PATH.N`) are
    /// kept (default 1; 0 keeps none).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "x-logkeep", default, skip_serializing_if = "Option::is_none")
    )]
    pub logkeep: Option<u64>,
    /// qchar extension: a UTC timestamp at the start of each line of
    /// `logfile`.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "x-logtimestamp",
            default,
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub logtimestamp: Option<bool>,
}

/// `file` backend (QAPI `ChardevFile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::File"))]
pub struct ChardevFile {
    /// Common options.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub common: ChardevCommon,
    /// File to read input from (none: the backend has no input).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "in", default, skip_serializing_if = "Option::is_none")
    )]
    pub input: Option<String>,
    /// File the output goes to.
    pub out: String,
    /// Open `out` for appending instead of truncating it.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub append: Option<bool>,
}

/// A host device path: `pipe`, `serial` and `parallel` (QAPI `ChardevHostdev`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::Hostdev"))]
pub struct ChardevHostdev {
    /// Common options.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub common: ChardevCommon,
    /// The device or pipe path.
    pub device: String,
}

/// `socket` backend (QAPI `ChardevSocket`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::Socket"))]
pub struct ChardevSocket {
    /// Common options.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub common: ChardevCommon,
    /// Address to listen on (server) or connect to (client).
    pub addr: SocketAddressLegacy,
    /// Id of a `tls-creds-x509` object: the connection runs TLS with it
    /// (see [`crate::tls`]).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "tls-creds", default, skip_serializing_if = "Option::is_none")
    )]
    pub tls_creds: Option<String>,
    /// Id of an `authz-simple`/`authz-list` object a server asks about each
    /// client's certificate DN (with `verify-peer=on` credentials).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "tls-authz", default, skip_serializing_if = "Option::is_none")
    )]
    pub tls_authz: Option<String>,
    /// Listen instead of connecting (QEMU's default: true).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub server: Option<bool>,
    /// A server waits for its first client before start-up goes on
    /// (absent: no, QMP's default; the `-chardev` parser sets it).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub wait: Option<bool>,
    /// Set TCP_NODELAY.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub nodelay: Option<bool>,
    /// Speak telnet.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub telnet: Option<bool>,
    /// Speak tn3270 (not supported by qchar; refused).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub tn3270: Option<bool>,
    /// Speak websocket (server only).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub websocket: Option<bool>,
    /// Websocket: text frames carry input bytes like binary frames, and the
    /// handshake needs no subprotocol (absent: on, qchar's default); off is
    /// QEMU's exact behaviour (subprotocol `binary` required, a text frame
    /// drops the client). qchar extension (`x-websocket-text`).
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "x-websocket-text",
            default,
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub websocket_text: Option<bool>,
    /// Client: seconds between reconnection attempts (0: none).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub reconnect: Option<i64>,
    /// Client: milliseconds between reconnection attempts (newer QEMU).
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "reconnect-ms",
            default,
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub reconnect_ms: Option<i64>,
    /// qchar extension, server only: how many clients may be connected at
    /// once (absent or 1: QEMU's one client at a time). With more than one,
    /// every client gets the chardev's history, then live output.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "x-clients", default, skip_serializing_if = "Option::is_none")
    )]
    pub clients: Option<u64>,
    /// qchar extension, with `x-clients`: how many of the clients may type
    /// (the first to connect; absent: all; 0: none).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "x-writers", default, skip_serializing_if = "Option::is_none")
    )]
    pub writers: Option<u64>,
}

impl ChardevSocket {
    /// A socket with every option absent: a client of `addr`, or with
    /// `server` a server on it that does not wait for its first client.
    ///
    /// ```
    /// use qchar_chardev::spec::{ChardevSocket, SocketAddressLegacy};
    /// let s = ChardevSocket::new(SocketAddressLegacy::unix("/run/vm/con.sock"), true);
    /// assert_eq!((s.server, s.wait), (Some(true), Some(false)));
    /// ```
    pub fn new(addr: SocketAddressLegacy, server: bool) -> ChardevSocket {
        ChardevSocket {
            common: ChardevCommon::default(),
            addr,
            tls_creds: None,
            tls_authz: None,
            server: Some(server),
            wait: server.then_some(false),
            nodelay: None,
            telnet: None,
            tn3270: None,
            websocket: None,
            websocket_text: None,
            reconnect: None,
            reconnect_ms: None,
            clients: None,
            writers: None,
        }
    }
}

/// `udp` backend (QAPI `ChardevUdp`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::Udp"))]
pub struct ChardevUdp {
    /// Common options.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub common: ChardevCommon,
    /// Where datagrams are sent.
    pub remote: SocketAddressLegacy,
    /// Local address to bind.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub local: Option<SocketAddressLegacy>,
}

/// `mux` backend (QAPI `ChardevMux`): in QMP terms a mux wraps another
/// chardev by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::Mux"))]
pub struct ChardevMux {
    /// Common options.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub common: ChardevCommon,
    /// Id of the chardev underneath.
    pub chardev: String,
}

/// `hub` backend (QAPI `ChardevHub`, QEMU 10): one frontend over several
/// member chardevs by id; output goes to every member, input comes from
/// any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::Hub"))]
pub struct ChardevHub {
    /// Common options.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub common: ChardevCommon,
    /// Ids of the member chardevs (at most [`crate::MAX_HUB`]).
    pub chardevs: Vec<String>,
}

/// `stdio` backend (QAPI `ChardevStdio`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::Stdio"))]
pub struct ChardevStdio {
    /// Common options.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub common: ChardevCommon,
    /// Let Ctrl-C and friends raise signals (QEMU's default: true).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub signal: Option<bool>,
}

/// `ringbuf`/`memory` backend (QAPI `ChardevRingbuf`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "wire::Ringbuf"))]
pub struct ChardevRingbuf {
    /// Common options.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub common: ChardevCommon,
    /// Capacity in bytes, a power of two (QEMU's default: 65536).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub size: Option<i64>,
}

/// Backends with only the common options (`null`, `pty`): QAPI `ChardevCommon`
/// used as a variant.
pub type ChardevDummy = ChardevCommon;

/// The backend union (QAPI `ChardevBackend`), as `{"type": T, "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "type", content = "data", rename_all = "kebab-case")
)]
pub enum ChardevBackend {
    /// Output to a file, input optionally from another.
    File(ChardevFile),
    /// A host tty.
    Serial(ChardevHostdev),
    /// A host parallel port (not supported by qchar; refused).
    Parallel(ChardevHostdev),
    /// A named pipe pair (`PATH.in`/`PATH.out`) or a single FIFO.
    Pipe(ChardevHostdev),
    /// Unix or TCP stream socket.
    Socket(ChardevSocket),
    /// UDP datagrams.
    Udp(ChardevUdp),
    /// A new pseudo-terminal.
    Pty(ChardevDummy),
    /// Discards output, never has input.
    Null(ChardevDummy),
    /// Several frontends sharing another chardev.
    Mux(ChardevMux),
    /// One frontend over several chardevs (QEMU 10).
    Hub(ChardevHub),
    /// qchar's standard input and output.
    Stdio(ChardevStdio),
    /// A ring buffer read by `ringbuf-read`.
    Ringbuf(ChardevRingbuf),
    /// Old name of `ringbuf`.
    Memory(ChardevRingbuf),
}

/// A socket address in QEMU's legacy (flat union with `data`) form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "type", content = "data", rename_all = "kebab-case")
)]
pub enum SocketAddressLegacy {
    /// TCP or UDP over IPv4/IPv6.
    Inet(InetSocketAddress),
    /// A unix domain socket.
    Unix(UnixSocketAddress),
    /// AF_VSOCK (not supported by qchar; refused).
    Vsock(VsockSocketAddress),
    /// A file descriptor passed by name (not supported by qchar; refused).
    Fd(StringWrapper),
}

impl SocketAddressLegacy {
    /// The unix socket at `path` (not abstract).
    pub fn unix(path: impl Into<String>) -> SocketAddressLegacy {
        SocketAddressLegacy::Unix(UnixSocketAddress {
            path: path.into(),
            ..Default::default()
        })
    }
}

/// QAPI `InetSocketAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct InetSocketAddress {
    /// Host name or address.
    pub host: String,
    /// Port number or service name, a string as in QEMU.
    pub port: String,
    /// Don't resolve names.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub numeric: Option<bool>,
    /// Try ports `port..=to` until one is free (server).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub to: Option<u16>,
    /// Restrict to IPv4.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub ipv4: Option<bool>,
    /// Restrict to IPv6.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub ipv6: Option<bool>,
    /// Enable SO_KEEPALIVE.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "keep-alive",
            default,
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub keep_alive: Option<bool>,
}

/// QAPI `UnixSocketAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct UnixSocketAddress {
    /// Filesystem path, or the name in the abstract namespace.
    pub path: String,
    /// Use the abstract namespace.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "abstract", default, skip_serializing_if = "Option::is_none")
    )]
    pub abstract_: Option<bool>,
    /// With `abstract`: the address length covers only the name (default true).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub tight: Option<bool>,
}

/// QAPI `VsockSocketAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct VsockSocketAddress {
    /// Context id.
    pub cid: String,
    /// Port.
    pub port: String,
}

/// QAPI `String` wrapper.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct StringWrapper {
    /// The string.
    pub str: String,
}

/// What `chardev-add`/`chardev-change` return (QAPI `ChardevReturn`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ChardevReturn {
    /// Path of the pty slave, when the new backend is a pty.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub pty: Option<String>,
}

/// One entry of `query-chardev` (QAPI `ChardevInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ChardevInfo {
    /// The chardev's id.
    pub label: String,
    /// The backend described as QEMU prints it (`file`, `pty:/dev/pts/3`,
    /// `unix:/p,server=on`...).
    pub filename: String,
    /// Whether a frontend has it open.
    #[cfg_attr(feature = "serde", serde(rename = "frontend-open"))]
    pub frontend_open: bool,
}

/// One entry of `query-chardev-backends` (QAPI `ChardevBackendInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ChardevBackendInfo {
    /// Backend type name.
    pub name: String,
}

impl ChardevBackend {
    /// The QAPI type name (`"file"`, `"socket"`...).
    pub fn type_name(&self) -> &'static str {
        match self {
            ChardevBackend::File(_) => "file",
            ChardevBackend::Serial(_) => "serial",
            ChardevBackend::Parallel(_) => "parallel",
            ChardevBackend::Pipe(_) => "pipe",
            ChardevBackend::Socket(_) => "socket",
            ChardevBackend::Udp(_) => "udp",
            ChardevBackend::Pty(_) => "pty",
            ChardevBackend::Null(_) => "null",
            ChardevBackend::Mux(_) => "mux",
            ChardevBackend::Hub(_) => "hub",
            ChardevBackend::Stdio(_) => "stdio",
            ChardevBackend::Ringbuf(_) => "ringbuf",
            ChardevBackend::Memory(_) => "memory",
        }
    }

    /// The options common to every backend.
    pub fn common(&self) -> &ChardevCommon {
        match self {
            ChardevBackend::File(f) => &f.common,
            ChardevBackend::Serial(h) | ChardevBackend::Parallel(h) | ChardevBackend::Pipe(h) => {
                &h.common
            }
            ChardevBackend::Socket(s) => &s.common,
            ChardevBackend::Udp(u) => &u.common,
            ChardevBackend::Pty(c) | ChardevBackend::Null(c) => c,
            ChardevBackend::Mux(m) => &m.common,
            ChardevBackend::Hub(h) => &h.common,
            ChardevBackend::Stdio(s) => &s.common,
            ChardevBackend::Ringbuf(r) | ChardevBackend::Memory(r) => &r.common,
        }
    }

    /// Mutable access to the common options.
    pub fn common_mut(&mut self) -> &mut ChardevCommon {
        match self {
            ChardevBackend::File(f) => &mut f.common,
            ChardevBackend::Serial(h) | ChardevBackend::Parallel(h) | ChardevBackend::Pipe(h) => {
                &mut h.common
            }
            ChardevBackend::Socket(s) => &mut s.common,
            ChardevBackend::Udp(u) => &mut u.common,
            ChardevBackend::Pty(c) | ChardevBackend::Null(c) => c,
            ChardevBackend::Mux(m) => &mut m.common,
            ChardevBackend::Hub(h) => &mut h.common,
            ChardevBackend::Stdio(s) => &mut s.common,
            ChardevBackend::Ringbuf(r) | ChardevBackend::Memory(r) => &mut r.common,
        }
    }
}

/// The backend type names qchar can open, in the order QEMU 7.2's
/// `-chardev help` lists those it has (its type table's order;
/// `query-chardev-backends` gives the reverse), qchar's own `hub` last.
pub const SUPPORTED_BACKENDS: &[&str] = &[
    "stdio", "ringbuf", "mux", "pipe", "null", "socket", "udp", "memory", "file", "serial", "pty",
    "hub",
];

/// Deserialization forms of the backend structs that flatten
/// [`ChardevCommon`]. serde does not apply `deny_unknown_fields` to a struct
/// with a flattened member (nor to the member), so through the derived form
/// an unknown member would be dropped silently. These flat copies list the
/// common members themselves and refuse unknown ones, as QEMU does; the
/// `From` impls fail to compile if a member is missing, and the round-trip
/// test catches a misspelt name.
#[cfg(feature = "serde")]
mod wire {
    use super::*;

    macro_rules! with_common {
        ($public:ident as $wire:ident { $($(#[$m:meta])* $field:ident: $ty:ty,)* }) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            pub(super) struct $wire {
                #[serde(default)]
                logfile: Option<String>,
                #[serde(default)]
                logappend: Option<bool>,
                #[serde(rename = "x-backlog", default)]
                backlog: Option<u64>,
                #[serde(rename = "x-logsize", default)]
                logsize: Option<u64>,
                #[serde(rename = "x-logkeep", default)]
                logkeep: Option<u64>,
                #[serde(rename = "x-logtimestamp", default)]
                logtimestamp: Option<bool>,
                $($(#[$m])* $field: $ty,)*
            }

            impl From<$wire> for $public {
                fn from(w: $wire) -> $public {
                    $public {
                        common: ChardevCommon {
                            logfile: w.logfile,
                            logappend: w.logappend,
                            backlog: w.backlog,
                            logsize: w.logsize,
                            logkeep: w.logkeep,
                            logtimestamp: w.logtimestamp,
                        },
                        $($field: w.$field,)*
                    }
                }
            }
        };
    }

    with_common!(ChardevFile as File {
        #[serde(rename = "in", default)]
        input: Option<String>,
        out: String,
        #[serde(default)]
        append: Option<bool>,
    });

    with_common!(ChardevHostdev as Hostdev { device: String, });

    with_common!(ChardevSocket as Socket {
        addr: SocketAddressLegacy,
        #[serde(rename = "tls-creds", default)]
        tls_creds: Option<String>,
        #[serde(rename = "tls-authz", default)]
        tls_authz: Option<String>,
        #[serde(default)]
        server: Option<bool>,
        #[serde(default)]
        wait: Option<bool>,
        #[serde(default)]
        nodelay: Option<bool>,
        #[serde(default)]
        telnet: Option<bool>,
        #[serde(default)]
        tn3270: Option<bool>,
        #[serde(default)]
        websocket: Option<bool>,
        #[serde(rename = "x-websocket-text", default)]
        websocket_text: Option<bool>,
        #[serde(default)]
        reconnect: Option<i64>,
        #[serde(rename = "reconnect-ms", default)]
        reconnect_ms: Option<i64>,
        #[serde(rename = "x-clients", default)]
        clients: Option<u64>,
        #[serde(rename = "x-writers", default)]
        writers: Option<u64>,
    });

    with_common!(ChardevUdp as Udp {
        remote: SocketAddressLegacy,
        #[serde(default)]
        local: Option<SocketAddressLegacy>,
    });

    with_common!(ChardevMux as Mux { chardev: String, });

    with_common!(ChardevHub as Hub { chardevs: Vec<String>, });

    with_common!(ChardevStdio as Stdio {
        #[serde(default)]
        signal: Option<bool>,
    });

    with_common!(ChardevRingbuf as Ringbuf {
        #[serde(default)]
        size: Option<i64>,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_backend_round_trips_with_qemu_field_names() {
        let json = r#"{"type":"file","data":{"in":"/i","out":"/o","append":true}}"#;
        let b: ChardevBackend = serde_json::from_str(json).unwrap();
        match &b {
            ChardevBackend::File(f) => {
                assert_eq!(f.input.as_deref(), Some("/i"));
                assert_eq!(f.out, "/o");
                assert_eq!(f.append, Some(true));
            }
            other => panic!("wrong variant {other:?}"),
        }
        assert_eq!(serde_json::to_string(&b).unwrap(), json);
    }

    #[test]
    fn socket_backend_parses_qemu_example() {
        let json = r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"/tmp/c.sock"}},"server":true,"wait":false}}"#;
        let b: ChardevBackend = serde_json::from_str(json).unwrap();
        let ChardevBackend::Socket(s) = b else {
            panic!("not a socket")
        };
        assert_eq!(s.server, Some(true));
        assert_eq!(s.wait, Some(false));
        assert!(matches!(s.addr, SocketAddressLegacy::Unix(ref u) if u.path == "/tmp/c.sock"));
    }

    #[test]
    fn unknown_field_is_refused() {
        let json =
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"/p","bogus":1}}}}"#;
        assert!(serde_json::from_str::<ChardevBackend>(json).is_err());
    }

    #[test]
    fn unknown_member_beside_the_common_options_is_refused() {
        // Each backend struct flattens ChardevCommon; QEMU refuses a member
        // it does not know there as anywhere else.
        for json in [
            r#"{"type":"file","data":{"out":"/o","bogus":1}}"#,
            r#"{"type":"serial","data":{"device":"/d","bogus":1}}"#,
            r#"{"type":"pipe","data":{"device":"/d","bogus":1}}"#,
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"/p"}},"bogus":1}}"#,
            r#"{"type":"udp","data":{"remote":{"type":"inet","data":{"host":"h","port":"1"}},"bogus":1}}"#,
            r#"{"type":"mux","data":{"chardev":"c","bogus":1}}"#,
            r#"{"type":"hub","data":{"chardevs":["c"],"bogus":1}}"#,
            r#"{"type":"stdio","data":{"bogus":1}}"#,
            r#"{"type":"ringbuf","data":{"bogus":1}}"#,
            r#"{"type":"memory","data":{"bogus":1}}"#,
            r#"{"type":"null","data":{"bogus":1}}"#,
            r#"{"type":"pty","data":{"bogus":1}}"#,
        ] {
            let r = serde_json::from_str::<ChardevBackend>(json);
            let e = r.expect_err(json).to_string();
            assert!(e.contains("unknown field `bogus`"), "{json}: {e}");
        }
    }

    #[test]
    fn every_member_of_every_backend_round_trips() {
        let common = ChardevCommon {
            logfile: Some("/log".into()),
            logappend: Some(true),
            backlog: Some(4096),
            logsize: Some(65536),
            logkeep: Some(3),
            logtimestamp: Some(true),
        };
        let hostdev = || ChardevHostdev {
            common: common.clone(),
            device: "/dev/x".into(),
        };
        let inet = SocketAddressLegacy::Inet(InetSocketAddress {
            host: "localhost".into(),
            port: "4444".into(),
            numeric: Some(true),
            to: Some(4450),
            ipv4: Some(true),
            ipv6: Some(false),
            keep_alive: Some(true),
        });
        let all = [
            ChardevBackend::File(ChardevFile {
                common: common.clone(),
                input: Some("/in".into()),
                out: "/out".into(),
                append: Some(true),
            }),
            ChardevBackend::Serial(hostdev()),
            ChardevBackend::Parallel(hostdev()),
            ChardevBackend::Pipe(hostdev()),
            ChardevBackend::Socket(ChardevSocket {
                common: common.clone(),
                addr: SocketAddressLegacy::Unix(UnixSocketAddress {
                    path: "/s".into(),
                    abstract_: Some(true),
                    tight: Some(false),
                }),
                tls_creds: Some("c".into()),
                tls_authz: Some("a".into()),
                server: Some(true),
                wait: Some(false),
                nodelay: Some(true),
                telnet: Some(true),
                tn3270: Some(false),
                websocket: Some(false),
                websocket_text: Some(false),
                reconnect: Some(3),
                reconnect_ms: Some(3000),
                clients: Some(8),
                writers: Some(1),
            }),
            ChardevBackend::Udp(ChardevUdp {
                common: common.clone(),
                remote: inet.clone(),
                local: Some(inet),
            }),
            ChardevBackend::Pty(common.clone()),
            ChardevBackend::Null(common.clone()),
            ChardevBackend::Mux(ChardevMux {
                common: common.clone(),
                chardev: "base".into(),
            }),
            ChardevBackend::Hub(ChardevHub {
                common: common.clone(),
                chardevs: vec!["a".into(), "b".into()],
            }),
            ChardevBackend::Stdio(ChardevStdio {
                common: common.clone(),
                signal: Some(false),
            }),
            ChardevBackend::Ringbuf(ChardevRingbuf {
                common: common.clone(),
                size: Some(1024),
            }),
            ChardevBackend::Memory(ChardevRingbuf {
                common: common.clone(),
                size: Some(2048),
            }),
        ];
        for b in all {
            let json = serde_json::to_string(&b).unwrap();
            for name in [
                r#""logfile":"/log""#,
                r#""logappend":true"#,
                r#""x-backlog":4096"#,
                r#""x-logsize":65536"#,
                r#""x-logkeep":3"#,
                r#""x-logtimestamp":true"#,
            ] {
                assert!(json.contains(name), "{json} lacks {name}");
            }
            let back: ChardevBackend =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, b, "{json}");
        }
    }

    #[test]
    fn pty_return_and_info_use_qemu_names() {
        let r = ChardevReturn {
            pty: Some("/dev/pts/4".into()),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"pty":"/dev/pts/4"}"#
        );
        let i = ChardevInfo {
            label: "s".into(),
            filename: "null".into(),
            frontend_open: true,
        };
        assert_eq!(
            serde_json::to_string(&i).unwrap(),
            r#"{"label":"s","filename":"null","frontend-open":true}"#
        );
    }
}
