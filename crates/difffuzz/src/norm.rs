//! What may differ between the two programs and is masked before the
//! comparison: each side's directory and ports, pty numbers, ephemeral
//! ports, event timestamps, the version's micro number and package string,
//! qchar's own `X_QCHAR_*` events, and the order of chardev lists (QEMU's
//! is a hash table's). Also the substitution of `$D` and `$PORTi` into
//! inputs, and the guard that keeps every path an input names inside the
//! side's directory.

/// Per-side facts for substitution and masking.
#[derive(Debug, Clone, Default)]
pub struct SideCtx {
    /// The side's directory (`$D`).
    pub dir: String,
    /// `$PORT0..` for this side.
    pub ports: Vec<u16>,
    /// The version micro number the side reports.
    pub micro: Option<i64>,
    /// The version package string the side reports.
    pub package: Option<String>,
}

impl SideCtx {
    /// `$D` and `$PORTi` replaced in an input.
    pub fn subst(&self, b: &[u8]) -> Vec<u8> {
        let mut out = replace(b, b"$D", self.dir.as_bytes());
        for (i, p) in self.ports.iter().enumerate().rev() {
            out = replace(
                &out,
                format!("$PORT{i}").as_bytes(),
                p.to_string().as_bytes(),
            );
        }
        out
    }

    /// The masks applied to what the side sent.
    pub fn normalize(&self, b: &[u8]) -> Vec<u8> {
        let mut out = replace(b, self.dir.as_bytes(), b"$D");
        for (i, p) in self.ports.iter().enumerate() {
            out = replace_number(&out, &p.to_string(), &format!("$PORT{i}"));
        }
        out = mask_after(&out, b"/dev/pts/", b"N");
        out = mask_after(&out, b"\"seconds\": ", b"S");
        out = mask_after(&out, b"\"microseconds\": ", b"U");
        if let Some(m) = self.micro {
            out = replace(&out, format!("\"micro\": {m}").as_bytes(), b"\"micro\": M");
            out = replace(
                &out,
                format!("QEMU 7.2.{m} monitor").as_bytes(),
                b"QEMU 7.2.M monitor",
            );
            if let Some(p) = &self.package {
                out = replace(&out, format!("7.2.{m}{p}").as_bytes(), b"7.2.M PKG");
            }
        }
        if let Some(p) = &self.package {
            let q = format!("\"package\": \"{p}\"");
            out = replace(&out, q.as_bytes(), b"\"package\": \"PKG\"");
        }
        mask_ephemeral_ports(&out)
    }
}

/// Drops qchar's own events (`X_QCHAR_*` lines).
pub fn drop_extension_events(lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    lines
        .into_iter()
        .filter(|l| {
            !(contains(l, b"\"event\": \"X_QCHAR_") || contains(l, b"\"event\": \"X-QCHAR"))
        })
        .collect()
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every `from` replaced by `to`.
pub fn replace(b: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return b.to_vec();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `num` replaced where it stands as a whole number.
fn replace_number(b: &[u8], num: &str, to: &str) -> Vec<u8> {
    let n = num.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let before_ok = i == 0 || !b[i - 1].is_ascii_digit();
        if before_ok && b[i..].starts_with(n) && !b.get(i + n.len()).is_some_and(u8::is_ascii_digit)
        {
            out.extend_from_slice(to.as_bytes());
            i += n.len();
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The digits right after each `prefix` replaced by `mask`.
fn mask_after(b: &[u8], prefix: &[u8], mask: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(prefix) {
            out.extend_from_slice(prefix);
            i += prefix.len();
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i > start {
                out.extend_from_slice(mask);
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `:NNNNN` with NNNNN in Linux's ephemeral range becomes `:EPH` (a port
/// 0 listener's port, a client's local port).
fn mask_ephemeral_ports(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b':' {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j - i - 1 == 5 && !b.get(j).is_some_and(|c| c.is_ascii_alphanumeric()) {
                let n: u32 = std::str::from_utf8(&b[i + 1..j])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if (32_768..=60_999).contains(&n) {
                    out.extend_from_slice(b":EPH");
                    i = j;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `query-chardev`'s return as sorted `label filename frontend-open`
/// lines (QEMU lists chardevs in its hash table's order).
pub fn chardev_list(reply: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = match serde_json::from_slice(reply) {
        Ok(v) => v,
        Err(_) => return reply.to_vec(),
    };
    let Some(list) = v.get("return").and_then(|r| r.as_array()) else {
        return reply.to_vec();
    };
    let mut lines: Vec<String> = list
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["label"].as_str().unwrap_or("?"),
                e["filename"].as_str().unwrap_or("?"),
                e["frontend-open"]
            )
        })
        .collect();
    lines.sort();
    lines.join("\n").into_bytes()
}

/// Lines sorted (`info chardev` prints in `query-chardev`'s order).
pub fn sorted_lines(text: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines.join(&b'\n')
}

/// Whether every path an input names stays in the side's directory: each
/// `/` that starts a token (after `,=:@"'` space, tab or the start) must
/// begin `$D/`, `$D` itself or `/nonexistent-dir/` (not `/dev/null`: a
/// socket server on it would unlink the machine's), and no
/// token climbs with `..`. JSON escapes that spell `/` or `.` are decoded
/// first. Inputs that fail are not run.
pub fn paths_are_safe(input: &[u8]) -> bool {
    let decoded = replace(
        &replace(
            &replace(&replace(input, b"\\/", b"/"), b"\\u002f", b"/"),
            b"\\u002F",
            b"/",
        ),
        b"\\u002e",
        b".",
    );
    let decoded = replace(&decoded, b"\\u002E", b".");
    if contains(&decoded, b"..") {
        return false;
    }
    const OK: &[&[u8]] = &[b"/nonexistent-dir/"];
    const DELIMS: &[u8] = b",=:@\"' \t\n\r\x00{}[]";
    for i in 0..decoded.len() {
        if decoded[i] != b'/' {
            continue;
        }
        let at_token_start = i == 0 || DELIMS.contains(&decoded[i - 1]);
        if !at_token_start {
            // `$D/...` or a relative path `a/b`; `$D` itself is checked
            // where it is substituted (it is absolute and ours).
            continue;
        }
        let rest = &decoded[i..];
        let ok = OK.iter().any(|p| {
            rest.starts_with(p)
                && (p.ends_with(b"/")
                    || rest
                        .get(p.len())
                        .is_none_or(|c| DELIMS.contains(c) || *c == b'\\'))
        });
        if !ok {
            return false;
        }
    }
    true
}

/// Lists whose order is a hash table's in QEMU, put in sorted order:
/// the entries of a `query-chardev` or `query-chardev-backends` return,
/// and runs of `LABEL: filename=...` lines (`info chardev`), whether
/// sent as text or inside a `human-monitor-command` return string.
pub fn sort_unordered(text: &[u8]) -> Vec<u8> {
    let t = sort_runs(text, b"\r\n");
    let t = match t.strip_prefix(b"{\"return\": \"") {
        Some(rest) => {
            let mut o = b"{\"return\": \"".to_vec();
            o.extend_from_slice(&sort_runs(rest, b"\\r\\n"));
            o
        }
        None => t,
    };
    sort_json_list(&t)
}

fn is_info_chardev_line(l: &[u8]) -> bool {
    let Some(i) = l.windows(11).position(|w| w == b": filename=") else {
        return false;
    };
    // The label may be empty (QMP's chardev-add takes "id": "").
    !l[..i].iter().any(|&c| c == b' ' || c == b'"' || c == b'{')
}

fn sort_runs(text: &[u8], sep: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        parts.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    parts.push(rest);
    let mut i = 0;
    while i < parts.len() {
        if is_info_chardev_line(parts[i]) {
            let mut j = i;
            while j < parts.len() && is_info_chardev_line(parts[j]) {
                j += 1;
            }
            parts[i..j].sort();
            i = j;
        } else {
            i += 1;
        }
    }
    parts.join(sep)
}

fn sort_json_list(line: &[u8]) -> Vec<u8> {
    for key in [&b"[{\"frontend-open\""[..], b"[{\"name\""] {
        let Some(s) = line.windows(key.len()).position(|w| w == key) else {
            continue;
        };
        let Some(e) = line[s..].windows(2).position(|w| w == b"}]") else {
            continue;
        };
        let body = &line[s + 1..s + e + 1];
        let mut items: Vec<Vec<u8>> = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.windows(4).position(|w| w == b"}, {") {
            items.push(rest[..=i].to_vec());
            rest = &rest[i + 3..];
        }
        items.push(rest.to_vec());
        items.sort();
        let mut out = line[..=s].to_vec();
        out.extend_from_slice(&items.join(&b", "[..]));
        out.extend_from_slice(&line[s + e + 1..]);
        return out;
    }
    line.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_keeps_paths_in_the_side_directory() {
        for ok in [
            &b"{\"out\": \"$D/f1\"}"[..],
            b"file,id=a,path=$D/x,logfile=rel/y",
            b"{\"path\": \"$D/null\"}",
            b"serial,path=/nonexistent-dir/x",
            b"ringbuf_write r0 a/b",
        ] {
            assert!(paths_are_safe(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"{\"out\": \"/etc/passwd\"}"[..],
            b"file,id=a,path=/f",
            b"{\"out\": \"\\/etc\\/x\"}",
            b"{\"out\": \"\\u002fetc\"}",
            b"file,path=$D/../../x",
            b"{\"out\": \"$D/\\u002e\\u002e/x\"}",
            b"serial,path=/dev/null/x",
            b"socket,id=s,path=/dev/null,server=on",
            b"{\"path\": \"/dev/null\"}",
            b"/dev/ttyS0",
        ] {
            assert!(!paths_are_safe(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn masks() {
        let ctx = SideCtx {
            dir: "/tmp/dfzX/q".into(),
            ports: vec![23400, 23401],
            micro: Some(22),
            package: Some("Debian 1:7.2".into()),
        };
        assert_eq!(ctx.subst(b"$D/s1:$PORT1"), b"/tmp/dfzX/q/s1:23401");
        let got = ctx.normalize(
            b"{\"seconds\": 17, \"microseconds\": 5} /tmp/dfzX/q/a /dev/pts/12 tcp:127.0.0.1:23400 \
              tcp:127.0.0.1:45678,server 234001 \"micro\": 22, \"package\": \"Debian 1:7.2\" 7.2.22Debian 1:7.2",
        );
        assert_eq!(
            String::from_utf8_lossy(&got),
            "{\"seconds\": S, \"microseconds\": U} $D/a /dev/pts/N tcp:127.0.0.1:$PORT0 \
             tcp:127.0.0.1:EPH,server 234001 \"micro\": M, \"package\": \"PKG\" 7.2.M PKG"
        );
    }

    #[test]
    fn chardev_lists_in_sorted_order() {
        let q = b"{\"return\": [{\"frontend-open\": false, \"filename\": \"null\", \"label\": \"b\"}, {\"frontend-open\": true, \"filename\": \"ringbuf\", \"label\": \"a\"}]}\r\n";
        let c = b"{\"return\": [{\"frontend-open\": true, \"filename\": \"ringbuf\", \"label\": \"a\"}, {\"frontend-open\": false, \"filename\": \"null\", \"label\": \"b\"}]}\r\n";
        assert_eq!(sort_unordered(q), sort_unordered(c));
        let q = b"{\"return\": \"b: filename=null\\r\\na: filename=ringbuf\\r\\n\"}";
        let c = b"{\"return\": \"a: filename=ringbuf\\r\\nb: filename=null\\r\\n\"}";
        assert_eq!(sort_unordered(q), sort_unordered(c));
        // Anything else keeps its order.
        assert_ne!(
            sort_unordered(b"{\"return\": \"b\\r\\na\\r\\n\"}"),
            sort_unordered(b"{\"return\": \"a\\r\\nb\\r\\n\"}")
        );
    }
}
