//! Splitting a QemuOpts string into its elements, QEMU 7.2's way.
// Hand-written: QEMU's QemuOpts grammar (implied first key, `,,`, bare
// flags with a `no` prefix) is its own; no crate parses it.

/// How an element was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `key=value`.
    Pair,
    /// A first element without `=`, taken as the value of the list's
    /// implied key (`-chardev null,...`: `backend=null`).
    Implied,
    /// A bare `key` (value `on`) or `nokey` (key `key`, value `off`): QEMU's
    /// deprecated short-form boolean, or, for `help` and `?`, a request for
    /// help.
    Flag {
        /// Written with the `no` prefix.
        negated: bool,
    },
}

/// One element of an option string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The key; for a flag without its `no` prefix. Keys have no escapes:
    /// they end at the first `=` or `,`.
    pub name: String,
    /// The value with `,,` turned into `,`; `on`/`off` for a flag.
    pub value: String,
    /// How it was written.
    pub form: Form,
}

impl Element {
    /// A bare `help` or `?`: QEMU prints the list's options instead of
    /// parsing on (where the list has a fixed set of keys).
    pub fn is_help(&self) -> bool {
        self.form == (Form::Flag { negated: false }) && is_help_word(&self.name)
    }

    /// The deprecation warning QEMU 7.2 prints for a short-form boolean (the
    /// text after `warning: `, then QEMU's advice line after a `\n`); `None`
    /// for other elements and for help requests.
    pub fn short_form_warning(&self) -> Option<String> {
        let Form::Flag { negated } = self.form else {
            return None;
        };
        if self.is_help() {
            return None;
        }
        let prefix = if negated { "no" } else { "" };
        let advice = if self.name == "delay" {
            // `nodelay` is delay=off, and its modern spelling nodelay=on.
            format!("nodelay={}", if negated { "on" } else { "off" })
        } else {
            format!("{}={}", self.name, self.value)
        };
        Some(format!(
            "short-form boolean option '{prefix}{}' deprecated\nPlease use {advice} instead",
            self.name
        ))
    }
}

/// `help` or `?`, the words QEMU takes as a request for help.
pub fn is_help_word(s: &str) -> bool {
    s == "help" || s == "?"
}

/// The elements of `s`, in order. `implied` names the key of a first
/// element written without `=` (the whole first value, `,,` escapes
/// included); without it such an element is a flag.
pub fn elements<'a>(s: &'a str, implied: Option<&'a str>) -> Elements<'a> {
    Elements { s, pos: 0, implied }
}

/// Iterator over the elements of an option string; see [`elements`].
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    s: &'a str,
    pos: usize,
    implied: Option<&'a str>,
}

impl Iterator for Elements<'_> {
    type Item = Element;

    fn next(&mut self) -> Option<Element> {
        if self.pos >= self.s.len() {
            return None;
        }
        let (element, next) = next_element(self.s, self.pos, self.implied.take());
        self.pos = next;
        Some(element)
    }
}

/// Reads a value from `pos` up to the next single comma, turning `,,` into
/// `,`. Returns the value and the index of the ending comma (or the end).
fn read_value(s: &str, mut pos: usize) -> (String, usize) {
    let b = s.as_bytes();
    let mut out = String::new();
    loop {
        let seg_end = b[pos..]
            .iter()
            .position(|&c| c == b',')
            .map_or(b.len(), |i| pos + i);
        out.push_str(&s[pos..seg_end]);
        if b.get(seg_end + 1) == Some(&b',') {
            out.push(',');
            pos = seg_end + 2;
        } else {
            return (out, seg_end);
        }
    }
}

/// The element at `pos` (< `s.len()`) and where the next one starts.
fn next_element(s: &str, pos: usize, implied: Option<&str>) -> (Element, usize) {
    let b = s.as_bytes();
    let len = b[pos..]
        .iter()
        .position(|&c| c == b'=' || c == b',')
        .unwrap_or(b.len() - pos);
    let (element, end) = if b.get(pos + len) == Some(&b'=') {
        let (value, end) = read_value(s, pos + len + 1);
        let name = s[pos..pos + len].to_string();
        let form = Form::Pair;
        (Element { name, value, form }, end)
    } else if let Some(key) = implied {
        let (value, end) = read_value(s, pos);
        let name = key.to_string();
        let form = Form::Implied;
        (Element { name, value, form }, end)
    } else {
        let raw = &s[pos..pos + len];
        let (name, value, negated) = match raw.strip_prefix("no") {
            Some(rest) => (rest, "off", true),
            None => (raw, "on", false),
        };
        let element = Element {
            name: name.to_string(),
            value: value.to_string(),
            form: Form::Flag { negated },
        };
        (element, pos + len)
    };
    let next = if end < b.len() { end + 1 } else { end };
    (element, next)
}

/// The id QEMU finds in a first pass over `s`: the value of the first
/// element named `id`, where even a first element without `=` counts as a
/// key (`id` alone gives `on`).
pub fn find_id(s: &str) -> Option<String> {
    elements(s, None).find(|e| e.name == "id").map(|e| e.value)
}

/// QEMU's identifier rule: an ASCII letter, then ASCII letters, digits,
/// `-`, `.` or `_`.
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The hint QEMU prints under an invalid identifier.
pub const IDENTIFIER_HINT: &str =
    "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.";

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str, implied: Option<&str>) -> Vec<(String, String, Form)> {
        elements(s, implied)
            .map(|e| (e.name, e.value, e.form))
            .collect()
    }

    fn el(name: &str, value: &str, form: Form) -> (String, String, Form) {
        (name.into(), value.into(), form)
    }

    const ON: Form = Form::Flag { negated: false };
    const OFF: Form = Form::Flag { negated: true };

    #[test]
    fn pairs_implied_keys_and_flags() {
        assert_eq!(
            split("c,mode=control,pretty", Some("chardev")),
            [
                el("chardev", "c", Form::Implied),
                el("mode", "control", Form::Pair),
                el("pretty", "on", ON),
            ]
        );
        assert_eq!(
            split("x,nowait", None),
            [el("x", "on", ON), el("wait", "off", OFF)]
        );
        // Only the first element can be the implied key's value.
        assert_eq!(
            split("a,b", Some("k")),
            [el("k", "a", Form::Implied), el("b", "on", ON)]
        );
        assert_eq!(split("", Some("k")), []);
        assert_eq!(split(",", Some("k")), [el("k", "", Form::Implied)]);
        assert_eq!(split(",", None), [el("", "on", ON)]);
        assert_eq!(split("no", None), [el("", "off", OFF)]);
        assert_eq!(split("a=", None), [el("a", "", Form::Pair)]);
        assert_eq!(split("=x", None), [el("", "x", Form::Pair)]);
        assert_eq!(
            split("a=b=c", None),
            [el("a", "b=c", Form::Pair)],
            "a value runs to the comma"
        );
    }

    #[test]
    fn double_commas() {
        assert_eq!(
            split("file=a,,b,if=floppy", None),
            [
                el("file", "a,b", Form::Pair),
                el("if", "floppy", Form::Pair)
            ]
        );
        assert_eq!(split("x,,,,y", Some("k")), [el("k", "x,,y", Form::Implied)]);
        assert_eq!(split("p=x,,", None), [el("p", "x,", Form::Pair)]);
        // No escapes in keys: after a flag, `,,` leaves an empty flag
        // (QEMU 7.2: `-mon c,pretty,,mode=control` warns about '' and
        // refuses "Invalid parameter ''").
        assert_eq!(
            split("c,pretty,,mode=control", Some("chardev")),
            [
                el("chardev", "c", Form::Implied),
                el("pretty", "on", ON),
                el("", "on", ON),
                el("mode", "control", Form::Pair),
            ]
        );
        assert_eq!(
            split("a,,b", None),
            [el("a", "on", ON), el("", "on", ON), el("b", "on", ON)]
        );
    }

    /// The texts QEMU 7.2 prints, e.g. for `-mon c,nodelay` ("Please use
    /// nodelay=on instead", then "Invalid parameter 'delay'") and
    /// `-mon c,nohelp`.
    #[test]
    fn short_form_warnings() {
        let warn = |s: &str| {
            elements(s, None)
                .next()
                .and_then(|e| e.short_form_warning())
        };
        assert_eq!(
            warn("server").as_deref(),
            Some("short-form boolean option 'server' deprecated\nPlease use server=on instead")
        );
        assert_eq!(
            warn("nowait").as_deref(),
            Some("short-form boolean option 'nowait' deprecated\nPlease use wait=off instead")
        );
        assert_eq!(
            warn("nodelay").as_deref(),
            Some("short-form boolean option 'nodelay' deprecated\nPlease use nodelay=on instead")
        );
        assert_eq!(
            warn("delay").as_deref(),
            Some("short-form boolean option 'delay' deprecated\nPlease use nodelay=off instead")
        );
        assert_eq!(
            warn("nohelp").as_deref(),
            Some("short-form boolean option 'nohelp' deprecated\nPlease use help=off instead")
        );
        assert_eq!(
            warn(",").as_deref(),
            Some("short-form boolean option '' deprecated\nPlease use =on instead")
        );
        assert_eq!(warn("help"), None);
        assert_eq!(warn("?"), None);
        assert_eq!(warn("a=b"), None);
        let first = elements("x", Some("k")).next().unwrap();
        assert_eq!(first.short_form_warning(), None);
        assert!(!first.is_help());
    }

    #[test]
    fn help_requests() {
        let help = |s: &str| elements(s, None).map(|e| e.is_help()).collect::<Vec<_>>();
        assert_eq!(
            help("help,?,nohelp,help=on,a"),
            [true, true, false, false, false]
        );
        // As the implied key's value it is a value, for the caller to judge.
        assert!(!elements("help", Some("backend")).next().unwrap().is_help());
    }

    #[test]
    fn the_first_id_wins_and_the_first_element_counts() {
        assert_eq!(find_id("null,id=a,id=b").as_deref(), Some("a"));
        assert_eq!(find_id("id=x,backend=null").as_deref(), Some("x"));
        assert_eq!(find_id("null,id,id=a").as_deref(), Some("on"));
        assert_eq!(find_id("null,noid").as_deref(), Some("off"));
        assert_eq!(find_id("null,path=a,,id=b").as_deref(), None);
        assert_eq!(find_id("id").as_deref(), Some("on"));
        assert_eq!(find_id("null"), None);
    }

    #[test]
    fn identifiers() {
        for ok in ["a", "serial0", "a-b.c_d", "Z9"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "0x", "-a", "_a", ".a", "a b", "bad!", "é", "a,"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
