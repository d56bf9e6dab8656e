//! [`parse`] against small lists shaped like QEMU's. The expected texts and
//! orders were compared with QEMU 7.2's `qemu-system-x86_64` (command lines
//! in each test's comment).

use super::*;

static MON: OptsList = OptsList {
    name: "mon",
    implied: Some("chardev"),
    merge_lists: false,
    desc: Some(&[
        OptDesc::new("mode", OptType::String),
        OptDesc::new("chardev", OptType::String),
        OptDesc::new("pretty", OptType::Bool),
    ]),
};

static MEMORY: OptsList = OptsList {
    name: "memory",
    implied: Some("size"),
    merge_lists: true,
    desc: Some(&[
        OptDesc::new("size", OptType::Size),
        OptDesc::new("slots", OptType::Number),
        OptDesc::new("maxmem", OptType::Size),
    ]),
};

static ANY: OptsList = OptsList {
    name: "device",
    implied: Some("driver"),
    merge_lists: false,
    desc: None,
};

static HELPFUL: OptsList = OptsList {
    name: "name",
    implied: Some("guest"),
    merge_lists: true,
    desc: Some(&[
        OptDesc::with_help("process", OptType::String, "the process name"),
        OptDesc::with_help("debug-threads", OptType::Bool, "thread names"),
        OptDesc::new("guest", OptType::String),
    ]),
};

/// The error text and the warnings pushed before it.
fn refused(list: &'static OptsList, s: &str) -> (String, Vec<String>) {
    let mut warnings = Vec::new();
    match parse(list, s, &mut warnings) {
        Ok(o) => panic!("{s:?} accepted: {o:?}"),
        Err(e) => (e.to_string(), warnings),
    }
}

fn accepted(list: &'static OptsList, s: &str) -> (QemuOpts, Vec<String>) {
    let mut warnings = Vec::new();
    let opts = parse(list, s, &mut warnings).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    (opts, warnings)
}

fn short_form(flag: &str, advice: &str) -> String {
    format!("short-form boolean option '{flag}' deprecated\nPlease use {advice} instead")
}

#[test]
fn typed_values_and_last_wins() {
    let (o, w) = accepted(&MON, "c,mode=control,pretty=on,mode=readline");
    assert!(w.is_empty());
    assert_eq!(o.get("chardev"), Some("c"));
    assert_eq!(o.get("mode"), Some("readline"));
    assert_eq!(o.get_bool("pretty"), Some(true));
    assert_eq!(o.get_bool("mode"), None);
    assert_eq!(o.iter().count(), 4);
    assert_eq!(o.id(), None);
    let (o, _) = accepted(&MEMORY, " 64,slots=+2,maxmem=1.5G");
    assert_eq!(o.get_number("size"), Some(64));
    assert_eq!(o.get("size"), Some(" 64"));
    assert_eq!(o.get_number("slots"), Some(2));
    assert_eq!(o.get_number("maxmem"), Some(3 << 29));
    let (o, _) = accepted(&MON, "");
    assert_eq!(o.iter().count(), 0);
}

/// `-mon chardev=c,bogus=1,id=1x` and `-mon chardev=c,id,bogus=1`: the id is
/// found and checked before any element; `-name foo,bogus=1,id=x`: a
/// merging list refuses any id first.
#[test]
fn ids_come_first() {
    assert_eq!(
        refused(&MON, "chardev=c,bogus=1,id=1x").0,
        "Parameter 'id' expects an identifier"
    );
    let (text, w) = refused(&MON, "chardev=c,id,bogus=1");
    assert_eq!(text, "Invalid parameter 'bogus'");
    assert_eq!(w, [short_form("id", "id=on")]);
    let (o, _) = accepted(&ANY, "id=m1,c,id=x");
    assert_eq!(o.id(), Some("m1"));
    assert_eq!(o.get("c"), Some("on"), "only the first element is implied");
    assert!(!o.has("id"), "ids are not values");
    assert_eq!(
        refused(&HELPFUL, "foo,bogus=1,id=x").0,
        "Invalid parameter 'id'"
    );
    assert_eq!(refused(&HELPFUL, "foo,id=1x").0, "Invalid parameter 'id'");
    let e = parse(&MON, "c,id=9", &mut Vec::new()).unwrap_err();
    assert_eq!(e.hint(), Some(IDENTIFIER_HINT));
}

/// `-mon chardev=c,id=m -mon chardev=c,id=m,bogus=1` and `-chardev
/// null,id=a -chardev null,id=a`: "Duplicate ID 'm' for mon", before the
/// elements are read.
#[test]
fn duplicate_ids() {
    let mut ids = HashSet::new();
    let mut w = Vec::new();
    assert!(parse_unique(&MON, "chardev=c,id=m", &mut ids, &mut w).is_ok());
    assert!(ids.contains("m"));
    let e = parse_unique(&MON, "chardev=c,id=m,bogus=1", &mut ids, &mut w).unwrap_err();
    assert_eq!(e.to_string(), "Duplicate ID 'm' for mon");
    // Without an id nothing is recorded; a failed parse records nothing.
    assert!(parse_unique(&MON, "chardev=c", &mut ids, &mut w).is_ok());
    assert!(parse_unique(&MON, "chardev=c,id=n,bogus=1", &mut ids, &mut w).is_err());
    assert!(parse_unique(&MON, "chardev=c,id=n", &mut ids, &mut w).is_ok());
    assert_eq!(ids.len(), 2);
}

/// `-mon c,pretty,,mode=control` warns twice, then "Invalid parameter ''";
/// `-chardev null,id=a,bogus` and `-mon c,nohelp` warn before the error;
/// `-mon c,nodelay` advises nodelay=on.
#[test]
fn warnings_come_before_errors() {
    let (text, w) = refused(&MON, "c,pretty,,mode=control");
    assert_eq!(text, "Invalid parameter ''");
    assert_eq!(
        w,
        [short_form("pretty", "pretty=on"), short_form("", "=on")]
    );
    let (text, w) = refused(&MON, "c,nohelp");
    assert_eq!(text, "Invalid parameter 'help'");
    assert_eq!(w, [short_form("nohelp", "help=off")]);
    let (text, w) = refused(&MON, "c,nodelay");
    assert_eq!(text, "Invalid parameter 'delay'");
    assert_eq!(w, [short_form("nodelay", "nodelay=on")]);
    let (text, w) = refused(&MEMORY, "0x1kz");
    assert_eq!(
        text,
        "Parameter 'size' expects a non-negative number below 2^64"
    );
    assert_eq!(
        w,
        ["Using a multiplier suffix on hex numbers is deprecated: 0x1kz"]
    );
}

/// `-mon c,help`, `-m 64,help` and `-name foo,help` print the list's options
/// (on stdout, status 1); `-mon help` is the chardev named `help`; earlier
/// errors and warnings still come first.
#[test]
fn help_requests() {
    let (text, _) = refused(&MON, "c,help");
    assert_eq!(
        text,
        "mon options:\n  chardev=<str>\n  mode=<str>\n  pretty=<bool (on/off)>"
    );
    assert_eq!(
        refused(&MEMORY, "64,?").0,
        "memory options:\n  maxmem=<size>\n  size=<size>\n  slots=<num>"
    );
    let (o, _) = accepted(&MON, "help");
    assert_eq!(o.get("chardev"), Some("help"));
    assert_eq!(
        refused(&MON, "c,bogus=1,help").0,
        "Invalid parameter 'bogus'"
    );
    let (_, w) = refused(&MON, "c,pretty,help");
    assert_eq!(w, [short_form("pretty", "pretty=on")]);
    let e = parse(&MON, "c,help", &mut Vec::new()).unwrap_err();
    assert_eq!(e, QemuOptsError::Help(&MON));
    // Help lines pad to 24 columns and sort as whole lines.
    assert_eq!(
        HELPFUL.help_text(),
        "name options:\n  debug-threads=<bool (on/off)> - thread names\n  \
         guest=<str>\n  process=<str>          - the process name"
    );
}

/// QEMU sorts the help lines as strings: `reconnect-ms=` before
/// `reconnect=` since '-' sorts before '='.
#[test]
fn help_sorts_whole_lines() {
    static L: OptsList = OptsList {
        name: "x",
        implied: None,
        merge_lists: false,
        desc: Some(&[
            OptDesc::new("reconnect", OptType::Number),
            OptDesc::new("reconnect-ms", OptType::Number),
        ]),
    };
    assert_eq!(
        L.help_text(),
        "x options:\n  reconnect-ms=<num>\n  reconnect=<num>"
    );
    static EMPTY: OptsList = OptsList {
        name: "e",
        implied: None,
        merge_lists: false,
        desc: Some(&[]),
    };
    assert_eq!(EMPTY.help_text(), "There are no options for e.");
}

/// `-device isa-serial,nohelp` warns, `-device isa-serial,help` does not
/// (and is no help request at parse time: the list takes any key);
/// `-drive ,file=...` warns about ''.
#[test]
fn lists_that_take_any_key() {
    let (o, w) = accepted(&ANY, "isa-serial,help,?,x=1,nohelp,id=d0");
    assert_eq!(o.get("driver"), Some("isa-serial"));
    assert_eq!(o.get("help"), Some("off"));
    assert_eq!(o.get("?"), Some("on"));
    assert_eq!(o.get("x"), Some("1"));
    assert_eq!(o.id(), Some("d0"));
    assert!(o.iter().all(|opt| opt.value == Value::Str));
    assert_eq!(w, [short_form("nohelp", "help=off")]);
    static DRIVE: OptsList = OptsList {
        name: "drive",
        implied: None,
        merge_lists: false,
        desc: None,
    };
    let (o, w) = accepted(&DRIVE, ",file=/dev/null");
    assert_eq!(o.get(""), Some("on"));
    assert_eq!(w, [short_form("", "=on")]);
}

/// `-serial tcp::1,help`: "Invalid parameter 'help'", no warning for
/// `server` after a shorthand.
#[test]
fn do_parse_has_no_help_and_no_warnings() {
    static CHARDEV: OptsList = OptsList {
        name: "chardev",
        implied: Some("backend"),
        merge_lists: false,
        desc: Some(&[
            OptDesc::new("backend", OptType::String),
            OptDesc::new("path", OptType::String),
            OptDesc::new("server", OptType::Bool),
        ]),
    };
    let mut o = QemuOpts::new(&CHARDEV);
    let mut w = Vec::new();
    o.set("backend", "socket", &mut w).unwrap();
    o.do_parse("/p,server,id=x", Some("path"), &mut w).unwrap();
    assert_eq!(o.get("path"), Some("/p"));
    assert_eq!(o.get_bool("server"), Some(true));
    assert_eq!(o.id(), None);
    assert!(w.is_empty());
    assert_eq!(
        o.do_parse("help", None, &mut w).unwrap_err().to_string(),
        "Invalid parameter 'help'"
    );
    assert_eq!(
        o.set("server", "x", &mut w).unwrap_err(),
        QemuOptsError::ExpectsBool("server".into())
    );
}

#[test]
fn value_errors_name_the_key() {
    assert_eq!(
        refused(&MON, "c,pretty=1").0,
        "Parameter 'pretty' expects 'on' or 'off'"
    );
    assert_eq!(
        refused(&MEMORY, "1,slots=x").0,
        "Parameter 'slots' expects a number"
    );
    assert_eq!(
        refused(&MEMORY, "1,slots=99999999999999999999").0,
        "Value '99999999999999999999' is too large for parameter 'slots'"
    );
    assert_eq!(
        refused(&MEMORY, "16E").0,
        "Value '16E' is out of range for parameter 'size'"
    );
    let e = parse(&MEMORY, "1.5", &mut Vec::new()).unwrap_err();
    assert_eq!(e, QemuOptsError::ExpectsSize("size".into()));
    assert_eq!(e.hint(), Some(SIZE_HINT));
}
