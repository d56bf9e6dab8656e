//! Inputs, class by class: QMP conversations (schema-drawn and mutated),
//! malformed JSON bytes, HMP command lines (through QMP), keystrokes on a
//! readline monitor, and command-line options. Seeds come from the fuzz
//! corpora and the recorded QEMU conversation ([`Seeds`]).

use fastrand::Rng;

use crate::json::{mutate, mutate_bytes, odd_string, J, ODD_NUMBERS};
use crate::schema::{chardev_id, Schema};

/// The kinds of input compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// QMP commands with schema-drawn, mutated arguments.
    Qmp,
    /// Malformed JSON at the byte level.
    QmpBytes,
    /// HMP command lines through `human-monitor-command`.
    Hmp,
    /// Keystrokes on a readline (HMP) monitor, echo included.
    Readline,
    /// `-chardev`, `-serial`, `-mon`, `-qmp`, `-monitor` options.
    Cli,
}

impl Class {
    /// All classes.
    pub const ALL: [Class; 5] = [
        Class::Qmp,
        Class::QmpBytes,
        Class::Hmp,
        Class::Readline,
        Class::Cli,
    ];

    /// Name in reports and reproducer files.
    pub fn name(self) -> &'static str {
        match self {
            Class::Qmp => "qmp",
            Class::QmpBytes => "qmp-bytes",
            Class::Hmp => "hmp",
            Class::Readline => "readline",
            Class::Cli => "cli",
        }
    }

    /// From [`Class::name`].
    pub fn from_name(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// One input: its class and its steps. A QMP step is the bytes of one
/// message (or garbage), a readline step a burst of keys, a command-line
/// step an option and its value separated by a NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Input {
    /// The class.
    pub class: Class,
    /// The steps.
    pub steps: Vec<Vec<u8>>,
}

/// Seeds from the repository.
#[derive(Default, Clone)]
pub struct Seeds {
    /// QMP messages (the recorded conversation's inputs, the qmp and
    /// json_stream fuzz seeds, one line each).
    pub qmp: Vec<Vec<u8>>,
    /// `-chardev` strings and `-serial` shorthands (chardev_opts seeds).
    pub opts: Vec<String>,
    /// Key sequences (readline seeds).
    pub keys: Vec<Vec<u8>>,
}

impl Seeds {
    /// Reads the seeds under the repository root `repo`; missing files are
    /// skipped (the generators work without seeds).
    pub fn load(repo: &std::path::Path) -> Seeds {
        let mut s = Seeds::default();
        let rd = |d: &str| -> Vec<Vec<u8>> {
            let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(repo.join(d))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).ok()?,
                    ))
                })
                .collect();
            v.sort();
            v.into_iter().map(|(_, b)| b).collect()
        };
        for d in ["fuzz/seeds/qmp", "fuzz/seeds/json_stream"] {
            for f in rd(d) {
                for l in f.split(|&b| b == b'\n') {
                    if !l.is_empty() {
                        s.qmp.push(l.to_vec());
                    }
                }
            }
        }
        if let Ok(src) = std::fs::read(repo.join("crates/monitor/tests/data/qemu72.rs")) {
            s.qmp.extend(recorded_inputs(&src));
        }
        for f in rd("fuzz/seeds/chardev_opts") {
            for part in f.split(|&b| b == 0) {
                let t = String::from_utf8_lossy(part).trim().to_string();
                if !t.is_empty() {
                    s.opts.push(sanitize_paths(&t));
                }
            }
        }
        s.keys = rd("fuzz/seeds/readline");
        s.qmp = s.qmp.iter().map(|m| sanitize_paths_bytes(m)).collect();
        s
    }
}

/// The inputs of the recorded conversation (`qemu72.rs`): the first byte
/// string literal of each `(b"...", b"...")` pair.
pub fn recorded_inputs(src: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = find(&src[i..], b"(b\"") {
        let start = i + p + 3;
        let (lit, end) = rust_bytes_literal(&src[start..]);
        out.push(lit);
        i = start + end;
        // Skip the reply literal.
        if let Some(q) = find(&src[i..], b"b\"") {
            let (_, e) = rust_bytes_literal(&src[i + q + 2..]);
            i = i + q + 2 + e;
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a Rust byte string body up to its closing quote; returns the
/// bytes and the length consumed (quote included).
fn rust_bytes_literal(s: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return (out, i + 1),
            b'\\' if i + 1 < s.len() => {
                i += 1;
                match s[i] {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'0' => out.push(0),
                    b'x' if i + 2 < s.len() => {
                        let h = std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("00");
                        out.push(u8::from_str_radix(h, 16).unwrap_or(0));
                        i += 2;
                    }
                    c => out.push(c),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    (out, i)
}

/// Absolute paths in seeds moved into the side's directory.
fn sanitize_paths(s: &str) -> String {
    s.replace("/tmp/", "$D/").replace("/dev/ttyS0", "$D/ttyS0")
}

fn sanitize_paths_bytes(b: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(b) {
        Ok(s) => sanitize_paths(s).into_bytes(),
        Err(_) => b.to_vec(),
    }
}

/// The commands both programs have (qchar's `query-commands` as QEMU's
/// schema knows them), with weights: `quit` ends the process (a restart),
/// `cont` leaves prelaunch (a restart too), so they come rarely.
pub fn weighted_commands(common: &[String]) -> Vec<(String, u32)> {
    common
        .iter()
        .map(|c| {
            let w = match c.as_str() {
                "quit" => 1,
                "cont" => 3,
                "chardev-add" | "chardev-change" => 30,
                "ringbuf-write" | "ringbuf-read" | "chardev-remove" => 12,
                "human-monitor-command" => 6,
                "qmp_capabilities" => 4,
                _ => 5,
            };
            (c.clone(), w)
        })
        .collect()
}

fn pick_weighted<'a>(rng: &mut Rng, items: &'a [(String, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut r = rng.u32(..total.max(1));
    for (s, w) in items {
        if r < *w {
            return s;
        }
        r -= w;
    }
    &items[0].0
}

/// What the generators need.
pub struct Gen<'a> {
    /// QEMU's schema.
    pub schema: &'a Schema,
    /// Commands to draw (both programs have them), weighted.
    pub commands: Vec<(String, u32)>,
    /// Seeds.
    pub seeds: &'a Seeds,
}

const CAPS: &[u8] = b"{\"execute\": \"qmp_capabilities\"}";

impl Gen<'_> {
    /// A new input of `class`.
    pub fn input(&self, class: Class, rng: &mut Rng) -> Input {
        let steps = match class {
            Class::Qmp => self.qmp(rng),
            Class::QmpBytes => self.qmp_bytes(rng),
            Class::Hmp => self.hmp(rng),
            Class::Readline => self.readline(rng),
            Class::Cli => self.cli(rng),
        };
        Input { class, steps }
    }

    /// A well-formed command message for `name`, arguments from the schema.
    pub fn command(&self, name: &str, rng: &mut Rng) -> J {
        let mut m = vec![("execute".to_string(), J::s(name))];
        if let Some(t) = self.schema.arg_type(name) {
            let args = if name == "human-monitor-command" {
                let mut a = vec![("command-line".to_string(), J::s(&hmp_line(rng)))];
                if rng.u8(0..15) == 0 {
                    a.push((
                        "cpu-index".into(),
                        J::Num(["0", "1", "-1", "x"][rng.usize(..4)].into()),
                    ));
                }
                J::Obj(a)
            } else {
                self.schema.gen(t, "", rng, 0)
            };
            if !matches!(&args, J::Obj(m) if m.is_empty()) || rng.u8(0..4) == 0 {
                m.push(("arguments".into(), args));
            }
        }
        if rng.u8(0..4) == 0 {
            let id = match rng.u8(0..4) {
                0 => J::n(rng.i64(0..1000)),
                1 => J::s("id-x"),
                2 => J::obj(vec![("a", J::Arr(vec![J::n(1), J::Num("2.5".into())]))]),
                _ => J::Num(ODD_NUMBERS[rng.usize(..ODD_NUMBERS.len())].into()),
            };
            let at = rng.usize(..=m.len());
            m.insert(at, ("id".into(), id));
        }
        J::Obj(m)
    }

    fn caps_step(&self, rng: &mut Rng) -> Option<Vec<u8>> {
        match rng.u8(0..20) {
            0 => None,
            1 => {
                let mut j = J::obj(vec![
                    ("execute", J::s("qmp_capabilities")),
                    (
                        "arguments",
                        J::obj(vec![("enable", J::Arr(vec![J::s("oob")]))]),
                    ),
                ]);
                if rng.bool() {
                    mutate(&mut j, rng);
                }
                Some(j.text())
            }
            _ => Some(CAPS.to_vec()),
        }
    }

    fn qmp(&self, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut steps: Vec<Vec<u8>> = self.caps_step(rng).into_iter().collect();
        for _ in 0..rng.usize(1..7) {
            if !self.seeds.qmp.is_empty() && rng.u8(0..8) == 0 {
                steps.push(self.seeds.qmp[rng.usize(..self.seeds.qmp.len())].clone());
                continue;
            }
            let name = pick_weighted(rng, &self.commands).to_string();
            let mut j = self.command(&name, rng);
            for _ in 0..[0, 0, 1, 1, 2, 3][rng.usize(..6)] {
                mutate(&mut j, rng);
            }
            steps.push(j.text());
        }
        steps
    }

    fn qmp_bytes(&self, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut steps: Vec<Vec<u8>> = self.caps_step(rng).into_iter().collect();
        for _ in 0..rng.usize(1..5) {
            let mut t = if !self.seeds.qmp.is_empty() && rng.bool() {
                self.seeds.qmp[rng.usize(..self.seeds.qmp.len())].clone()
            } else {
                let name = pick_weighted(rng, &self.commands).to_string();
                self.command(&name, rng).text()
            };
            for _ in 0..rng.usize(1..4) {
                mutate_bytes(&mut t, rng);
            }
            if rng.bool() {
                t.push(b'\n');
            }
            steps.push(t);
        }
        steps
    }

    fn hmp(&self, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut steps = vec![CAPS.to_vec()];
        for _ in 0..rng.usize(1..6) {
            let mut a = vec![("command-line".to_string(), J::s(&hmp_line(rng)))];
            if rng.u8(0..20) == 0 {
                a.push((
                    "cpu-index".into(),
                    J::Num(["0", "1", "-1"][rng.usize(..3)].into()),
                ));
            }
            let j = J::Obj(vec![
                ("execute".into(), J::s("human-monitor-command")),
                ("arguments".into(), J::Obj(a)),
            ]);
            steps.push(j.text());
        }
        steps
    }

    fn readline(&self, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut steps = Vec::new();
        for _ in 0..rng.usize(1..5) {
            let mut s = Vec::new();
            match rng.u8(0..6) {
                0 if !self.seeds.keys.is_empty() => {
                    s.extend_from_slice(&self.seeds.keys[rng.usize(..self.seeds.keys.len())]);
                }
                1 => {
                    for _ in 0..rng.usize(1..8) {
                        s.extend_from_slice(KEYS[rng.usize(..KEYS.len())]);
                    }
                }
                _ => {
                    let line = hmp_line(rng);
                    let mut b = line.into_bytes();
                    for _ in 0..rng.usize(0..3) {
                        let at = rng.usize(..=b.len());
                        let k = KEYS[rng.usize(..KEYS.len())];
                        b.splice(at..at, k.iter().copied());
                    }
                    s.extend_from_slice(&b);
                    s.push(b'\r');
                }
            }
            // The echo shows what is typed, cut anywhere: a path or port
            // there must not depend on the side (relative paths are in its
            // directory; port 0 is any free port).
            let mut s = crate::norm::replace(&crate::norm::replace(&s, b"$D/", b""), b"$D", b".");
            for i in 0..4 {
                s = crate::norm::replace(&s, format!("$PORT{i}").as_bytes(), b"0");
            }
            steps.push(s);
        }
        steps
    }

    fn cli(&self, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut steps = Vec::new();
        for _ in 0..rng.usize(1..5) {
            let (opt, val) = match rng.u8(0..20) {
                0..=9 => ("-chardev", self.chardev_opts(rng)),
                10..=13 => ("-serial", self.serial_dev(rng)),
                14..=16 => ("-mon", mon_opts(rng)),
                17 | 18 => ("-qmp", self.serial_dev(rng)),
                _ => ("-monitor", self.serial_dev(rng)),
            };
            let mut v = opt.as_bytes().to_vec();
            v.push(0);
            v.extend_from_slice(val.as_bytes());
            steps.push(v);
        }
        steps
    }

    /// A `-chardev` option string.
    pub fn chardev_opts(&self, rng: &mut Rng) -> String {
        let mut s = if !self.seeds.opts.is_empty() && rng.u8(0..4) == 0 {
            self.seeds.opts[rng.usize(..self.seeds.opts.len())].clone()
        } else {
            fresh_chardev_opts(rng)
        };
        for _ in 0..[0, 0, 0, 1, 1, 2][rng.usize(..6)] {
            mutate_opts(&mut s, rng);
        }
        s
    }

    /// A `-serial` device string (QEMU's shorthands).
    pub fn serial_dev(&self, rng: &mut Rng) -> String {
        let mut s = SERIAL_DEVS[rng.usize(..SERIAL_DEVS.len())].to_string();
        if rng.u8(0..4) == 0 {
            mutate_opts(&mut s, rng);
        }
        s
    }
}

const SERIAL_DEVS: &[&str] = &[
    "null",
    "pty",
    "stdio",
    "none",
    "file:$D/f1",
    "file:",
    "pipe:$D/p1",
    "tcp:127.0.0.1:$PORT0,server=on,wait=off",
    "tcp::$PORT0,server=on,wait=off",
    "tcp:127.0.0.1:$PORT1",
    "tcp:127.0.0.1:0,server,nowait",
    "telnet:127.0.0.1:$PORT0,server=on,wait=off",
    "websocket:127.0.0.1:$PORT0,server=on,wait=off",
    "unix:$D/s1,server=on,wait=off",
    "unix:$D/s1,server,nowait",
    "unix:$D/s2",
    "udp:127.0.0.1:$PORT1",
    "udp:127.0.0.1:$PORT1@127.0.0.1:$PORT2",
    "udp::$PORT1@:0",
    "$D/null",
    "$D/tty",
    "chardev:r0",
    "chardev:n0",
    "chardev:nope",
    "chardev:",
    "mon:null",
    "mon:pty",
    "mon:stdio",
    "mon:chardev:n0",
    "vc",
    "vc:80Cx24C",
    "msmouse",
    "braille",
    "bogus",
    "",
    "ringbuf",
    "file",
    "tcp:",
    "unix:",
    "mon:",
];

const BACKENDS: &[&str] = &[
    "file", "pipe", "socket", "udp", "pty", "null", "serial", "tty", "stdio", "ringbuf", "memory",
    "null", "socket", "file", "ringbuf", "parallel", "parport", "vc", "msmouse", "testdev",
    "spicevmc", "braille", "bogus", "", "mux",
];

const KEYS_OPTS: &[&str] = &[
    "path",
    "host",
    "port",
    "server",
    "wait",
    "nowait",
    "telnet",
    "websocket",
    "tn3270",
    "nodelay",
    "delay",
    "reconnect",
    "localaddr",
    "localport",
    "ipv4",
    "ipv6",
    "to",
    "logfile",
    "logappend",
    "append",
    "size",
    "mux",
    "chardev",
    "signal",
    "abstract",
    "tight",
    "fd",
    "input-path",
    "numeric",
    "keep-alive",
    "tls-creds",
    "tls-authz",
    "backlog",
    "bogus",
    "id",
    "backend",
    "server",
    "wait",
    "path",
    "mux",
];

fn opt_value(key: &str, rng: &mut Rng) -> String {
    let pool: &[&str] = match key {
        "path" | "logfile" | "input-path" => &[
            "$D/f1",
            "$D/s1",
            "$D/p1",
            "f2",
            "/nonexistent-dir/x",
            "",
            "$D/null",
            "$D",
        ],
        "host" | "localaddr" => &[
            "127.0.0.1",
            "localhost",
            "::1",
            "",
            "0.0.0.0",
            "[::1]",
            "no.such.host.invalid",
        ],
        "port" | "localport" | "to" => &[
            "$PORT0",
            "$PORT1",
            "0",
            "",
            "65536",
            "-1",
            "x",
            "4294967296",
        ],
        "size" => &[
            "0",
            "1",
            "2",
            "3",
            "1024",
            "1k",
            "64K",
            "1M",
            "0x100",
            "1.5k",
            "-1",
            "x",
            "",
            "18446744073709551615",
            "16E",
            "1T",
        ],
        "reconnect" => &["0", "1", "-1", "x", ""],
        "chardev" | "id" => &["r0", "n0", "a", "b", "m", "", "1x", "a b", "qin", "hmp"],
        "fd" => &["myfd", "x", ""],
        "backlog" => &["0", "1k", "x"],
        "backend" => &["null", "ringbuf", "bogus"],
        _ => &[
            "on", "off", "yes", "no", "true", "false", "", "x", "ON", "1", "0",
        ],
    };
    pool[rng.usize(..pool.len())].to_string()
}

/// A chardev option string from the keys each backend takes, plus others.
pub fn fresh_chardev_opts(rng: &mut Rng) -> String {
    let backend = BACKENDS[rng.usize(..BACKENDS.len())];
    let mut parts: Vec<String> = Vec::new();
    if rng.u8(0..10) == 0 {
        parts.push(format!("backend={backend}"));
    } else {
        parts.push(backend.to_string());
    }
    if rng.u8(0..12) != 0 {
        let id = [
            "a", "b", "c", "m", "x1", "r0", "n0", "", "1a", "a-b_c.d", "qin",
        ];
        parts.push(format!("id={}", id[rng.usize(..id.len())]));
    }
    let likely: &[&str] = match backend {
        "file" => &["path", "append", "logfile", "logappend", "input-path"],
        "pipe" | "serial" | "tty" | "parallel" | "parport" => &["path", "logfile"],
        "socket" => &[
            "path",
            "host",
            "port",
            "server",
            "wait",
            "telnet",
            "websocket",
            "nodelay",
            "reconnect",
            "abstract",
            "tight",
            "to",
            "ipv4",
            "ipv6",
            "fd",
        ],
        "udp" => &["host", "port", "localaddr", "localport", "ipv4", "ipv6"],
        "ringbuf" | "memory" => &["size", "logfile"],
        "stdio" => &["signal"],
        "mux" => &["chardev"],
        _ => &["logfile", "mux"],
    };
    for _ in 0..rng.usize(0..5) {
        let key = if rng.u8(0..4) == 0 {
            KEYS_OPTS[rng.usize(..KEYS_OPTS.len())]
        } else {
            likely[rng.usize(..likely.len())]
        };
        match rng.u8(0..8) {
            0 => parts.push(key.to_string()),
            _ => parts.push(format!("{key}={}", opt_value(key, rng))),
        }
    }
    if backend == "socket" && rng.u8(0..3) != 0 && !parts.iter().any(|p| p.starts_with("wait")) {
        parts.push("wait=off".into());
    }
    parts.join(",")
}

/// A string mutation of an option string.
fn mutate_opts(s: &mut String, rng: &mut Rng) {
    let mut b = s.clone().into_bytes();
    let at = rng.usize(..=b.len());
    const INS: &[&str] = &[
        ",",
        ",,",
        "=",
        "id=",
        "x",
        " ",
        ":",
        "@",
        "\\",
        "on",
        "mux=on,",
        ",wait=off",
        "$D/",
        "0x",
        "k",
        "%",
        "\u{e9}",
        "\t",
    ];
    match rng.u8(0..5) {
        0 | 1 => {
            let i = INS[rng.usize(..INS.len())];
            b.splice(at..at, i.bytes());
        }
        2 => {
            let end = (at + rng.usize(1..6)).min(b.len());
            b.drain(at.min(end)..end);
        }
        3 => {
            let key = KEYS_OPTS[rng.usize(..KEYS_OPTS.len())];
            let v = opt_value(key, rng);
            b.extend_from_slice(format!(",{key}={v}").as_bytes());
        }
        _ => b.truncate(at),
    }
    *s = String::from_utf8_lossy(&b).into_owned();
}

fn mon_opts(rng: &mut Rng) -> String {
    let mut parts = Vec::new();
    let ids = ["r0", "n0", "a", "nope", "", "compat_monitor0", "serial0"];
    if rng.u8(0..6) != 0 {
        let c = ids[rng.usize(..ids.len())];
        parts.push(if rng.bool() {
            format!("chardev={c}")
        } else {
            c.to_string()
        });
    }
    for _ in 0..rng.usize(0..3) {
        parts.push(match rng.u8(0..6) {
            0 => format!(
                "mode={}",
                ["readline", "control", "bogus", ""][rng.usize(..4)]
            ),
            1 => format!("pretty={}", ["on", "off", "x", ""][rng.usize(..4)]),
            2 => format!("id={}", ["m1", "1m", "", "compat_monitor0"][rng.usize(..4)]),
            3 => "default=on".into(),
            4 => "bogus=1".into(),
            _ => "mode=control".into(),
        });
    }
    parts.join(",")
}

/// Keys with a meaning to QEMU's line editor.
pub const KEYS: &[&[u8]] = &[
    b"\x01",
    b"\x05",
    b"\x04",
    b"\x08",
    b"\x7f",
    b"\x0b",
    b"\x17",
    b"\x0e",
    b"\x10",
    b"\x0c",
    b"\t",
    b"\x1b[A",
    b"\x1b[B",
    b"\x1b[C",
    b"\x1b[D",
    b"\x1b[H",
    b"\x1b[F",
    b"\x1b[1~",
    b"\x1b[3~",
    b"\x1b[4~",
    b"\x1bOH",
    b"\x1bOF",
    b"\x1b",
    b"\x1b[",
    b"\x1b[12",
    b"\x9b",
    b"\x03",
    b"\x15",
    b"\x00",
    b"\n",
    b"\r",
    b"\r\n",
    b"\xc3\xa9",
    b"\xff",
    b" ",
];

/// An HMP command line over the commands qchar has (aliases too), with
/// their arguments drawn and mutated.
pub fn hmp_line(rng: &mut Rng) -> String {
    let id = |rng: &mut Rng| -> String {
        match chardev_id(rng) {
            J::Str(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => "a".into(),
        }
    };
    let word = |rng: &mut Rng| -> String {
        match rng.u8(0..8) {
            0 => format!(
                "\"{}\"",
                ["a b", "x\\ny", "q\\\"", "\\z", "", "é"][rng.usize(..6)]
            ),
            1 => "\"unterminated".into(),
            2 => String::from_utf8_lossy(&odd_string(rng)).replace(['\r', '\n'], " "),
            _ => ["hello", "x", "aGVsbG8=", "-", "0", "é", "a\\b"][rng.usize(..7)].into(),
        }
    };
    let int = |rng: &mut Rng| -> String {
        [
            "1",
            "16",
            "0",
            "-1",
            "0x10",
            "010",
            "1+2",
            "2*3",
            "(4)",
            "1k",
            "x",
            "",
            "99999999999999999999",
            "9223372036854775807",
            "1 2",
            "$pc",
            "1-",
            "~1",
            "%",
            "1/0",
            "0b1",
            "1.5",
        ][rng.usize(..22)]
        .into()
    };
    let mut line = match rng.u8(0..24) {
        0..=3 => format!("chardev-add {}", fresh_chardev_opts(rng)),
        4..=5 => format!("chardev-change {} {}", id(rng), fresh_chardev_opts(rng)),
        6..=7 => format!("chardev-remove {}", id(rng)),
        8 => format!("chardev-send-break {}", id(rng)),
        9..=10 => format!("ringbuf_write {} {}", id(rng), word(rng)),
        11..=12 => format!("ringbuf_read {} {}", id(rng), int(rng)),
        13 => "info chardev".into(),
        14 => format!(
            "info {}",
            ["status", "version", "chardev", "bogus", "", "chardev x"][rng.usize(..6)]
        ),
        15 => format!(
            "help {}",
            [
                "",
                "info",
                "chardev-add",
                "info chardev",
                "bogus",
                "c",
                "ringbuf_read",
                "quit"
            ][rng.usize(..8)]
        ),
        16 => ["stop", "s", "cont", "c", "stop x", "c 1"][rng.usize(..6)].into(),
        17 => [
            "bogus",
            "",
            "   ",
            "info",
            "chardev",
            "?",
            "help",
            "ringbuf_write",
            "q x",
        ][rng.usize(..9)]
        .into(),
        18 => format!("ringbuf_write r0 {}", word(rng)),
        19 => format!("ringbuf_read r0 {}", int(rng)),
        20 => format!("chardev-add ringbuf,id={},size={}", id(rng), int(rng)),
        _ => format!("chardev-add {}", fresh_chardev_opts(rng)),
    };
    match rng.u8(0..12) {
        0 => line.push_str(" extra"),
        1 => line = format!("  {line}"),
        2 => line = line.replacen(' ', "\t", 1),
        3 => line.push_str("   "),
        4 => line = line.replacen(' ', "  ", 1),
        _ => {}
    }
    line
}
