//! QEMU's legacy spellings: the `-serial`/`-monitor`/`-parallel` DEV
//! shorthands (`tcp:HOST:PORT,...`, `unix:PATH`, `mon:DEV`, `/dev/ttyS0`...)
//! and the deprecated backend aliases `tty` and `parport`. (The deprecated
//! short-form booleans are part of the shared grammar,
//! [`crate::qemuopts::Element::short_form_warning`].)

// Hand-written: QEMU's own shorthand syntax (sscanf patterns) has no crate.

use crate::qemuopts::QemuOpts;

use super::OptsError;

/// QEMU's deprecated backend aliases: the real name, with QEMU's warning
/// pushed onto `warnings`.
pub(super) fn translate_alias<'a>(name: &'a str, warnings: &mut Vec<String>) -> &'a str {
    let real = match name {
        "tty" => "serial",
        "parport" => "parallel",
        other => return other,
    };
    warnings.push(format!(
        "The alias '{name}' is deprecated, use '{real}' instead"
    ));
    real
}

/// Like C's `%N[^stops]`: one to `max` bytes none of which is in `stops`
/// (cut back to a character boundary). Returns the match and the rest.
fn scan_set<'a>(s: &'a str, max: usize, stops: &[u8]) -> Option<(&'a str, &'a str)> {
    let b = s.as_bytes();
    let mut end = b
        .iter()
        .take(max)
        .take_while(|c| !stops.contains(c))
        .count();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (end > 0).then(|| s.split_at(end))
}

/// `HOST:PORT` or `:PORT` as QEMU scans it: host up to 64 bytes without `:`,
/// port up to 32 bytes without any of `port_stops`; anything after an
/// over-long port is ignored by the caller unless it starts with a stop.
fn scan_host_port<'a>(p: &'a str, port_stops: &[u8]) -> Option<(&'a str, &'a str, &'a str)> {
    if let Some((host, rest)) = scan_set(p, 64, b":") {
        if let Some((port, rest)) = rest
            .strip_prefix(':')
            .and_then(|r| scan_set(r, 32, port_stops))
        {
            return Some((host, port, rest));
        }
    }
    let (port, rest) = scan_set(p.strip_prefix(':')?, 32, port_stops)?;
    Some(("", port, rest))
}

/// `vc:WxH` (pixels) or `vc:WCxHC` (characters), each number 1 to 7 digits.
fn vc_size_ok(p: &str) -> bool {
    fn digits(s: &str) -> Option<&str> {
        let n = s.bytes().take(7).take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| &s[n..])
    }
    let pixels = digits(p)
        .and_then(|r| r.strip_prefix('x'))
        .and_then(digits)
        .is_some();
    let chars = digits(p)
        .and_then(|r| r.strip_prefix("Cx"))
        .and_then(digits)
        .is_some();
    pixels || chars
}

/// Fills `opts` from the DEV string `dev` (after any `mon:`); `whole` is the
/// full string for error texts.
pub(super) fn compat_fill(
    opts: &mut QemuOpts,
    whole: &str,
    dev: &str,
    warnings: &mut Vec<String>,
) -> Result<(), OptsError> {
    let syntax = || OptsError::CompatSyntax(whole.to_string());
    if [
        "null", "pty", "msmouse", "wctablet", "braille", "testdev", "stdio",
    ]
    .contains(&dev)
    {
        return Ok(opts.set("backend", dev, warnings)?);
    }
    if let Some(p) = dev.strip_prefix("vc") {
        if let Some(size) = p.strip_prefix(':') {
            if !vc_size_ok(size) {
                return Err(syntax());
            }
        }
        return Ok(opts.set("backend", "vc", warnings)?);
    }
    if dev == "con:" {
        return Ok(opts.set("backend", "console", warnings)?);
    }
    if dev.starts_with("COM") {
        opts.set("backend", "serial", warnings)?;
        return Ok(opts.set("path", dev, warnings)?);
    }
    for (prefix, backend) in [("file:", "file"), ("pipe:", "pipe")] {
        if let Some(path) = dev.strip_prefix(prefix) {
            opts.set("backend", backend, warnings)?;
            return Ok(opts.set("path", path, warnings)?);
        }
    }
    for (prefix, flag) in [
        ("tcp:", None),
        ("telnet:", Some("telnet")),
        ("tn3270:", Some("tn3270")),
        ("websocket:", Some("websocket")),
    ] {
        let Some(p) = dev.strip_prefix(prefix) else {
            continue;
        };
        let (host, port, rest) = scan_host_port(p, b",").ok_or_else(syntax)?;
        opts.set("backend", "socket", warnings)?;
        opts.set("host", host, warnings)?;
        opts.set("port", port, warnings)?;
        if let Some(more) = rest.strip_prefix(',') {
            opts.do_parse(more, None, warnings)?;
        }
        if let Some(flag) = flag {
            opts.set(flag, "on", warnings)?;
        }
        return Ok(());
    }
    if let Some(p) = dev.strip_prefix("udp:") {
        opts.set("backend", "udp", warnings)?;
        let (host, port, rest) = scan_host_port(p, b"@,").ok_or_else(syntax)?;
        opts.set("host", host, warnings)?;
        opts.set("port", port, warnings)?;
        if let Some(local) = rest.strip_prefix('@') {
            let (host, port, _) = scan_host_port(local, b",").ok_or_else(syntax)?;
            opts.set("localaddr", host, warnings)?;
            opts.set("localport", port, warnings)?;
        }
        return Ok(());
    }
    if let Some(p) = dev.strip_prefix("unix:") {
        opts.set("backend", "socket", warnings)?;
        return Ok(opts.do_parse(p, Some("path"), warnings)?);
    }
    if dev.starts_with("/dev/parport") || dev.starts_with("/dev/ppi") {
        opts.set("backend", "parallel", warnings)?;
        return Ok(opts.set("path", dev, warnings)?);
    }
    if dev.starts_with("/dev/") {
        opts.set("backend", "serial", warnings)?;
        return Ok(opts.set("path", dev, warnings)?);
    }
    Err(OptsError::CompatUnknown(dev.to_string()))
}
