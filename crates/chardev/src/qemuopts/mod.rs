//! QEMU's option strings (`key=value,key=value`) as QEMU 7.2 reads them,
//! for `-chardev` here and for the qchar binary's other options.
//!
//! Most of QEMU's options are *QemuOpts* strings, read against an option
//! list ([`OptsList`]): the first element may be the value of an implied key
//! (`-chardev null,...`), `,,` is a literal comma in a value, a bare `key`
//! or `nokey` is a deprecated short-form boolean, a bare `help` or `?` asks
//! for the list's options, `id=` is taken out in a first pass, and each
//! value is checked against the key's type: string, boolean
//! (`on`/`off`/`yes`/`no`/`true`/`false`/`y`/`n`), number (C's `strtoull`)
//! or size (`qemu_strtosz`, `1.5k`). [`parse`] does all of it and gives
//! QEMU's error texts and warnings; [`grammar`] and [`values`] hold the
//! pieces. `-machine` and `-display` use QEMU's other grammar, [`keyval`](mod@keyval).
//!
//! ```
//! use qchar_chardev::qemuopts::{self, OptDesc, OptType, OptsList};
//!
//! static MON: OptsList = OptsList {
//!     name: "mon",
//!     implied: Some("chardev"),
//!     merge_lists: false,
//!     desc: Some(&[
//!         OptDesc::new("chardev", OptType::String),
//!         OptDesc::new("mode", OptType::String),
//!         OptDesc::new("pretty", OptType::Bool),
//!     ]),
//! };
//!
//! let mut warnings = Vec::new();
//! let opts = qemuopts::parse(&MON, "c,mode=control,pretty", &mut warnings).unwrap();
//! assert_eq!(opts.get("chardev"), Some("c"));
//! assert_eq!(opts.get_bool("pretty"), Some(true));
//! assert_eq!(
//!     warnings,
//!     ["short-form boolean option 'pretty' deprecated\nPlease use pretty=on instead"]
//! );
//!
//! let e = qemuopts::parse(&MON, "c,pretty=maybe", &mut warnings).unwrap_err();
//! assert_eq!(e.to_string(), "Parameter 'pretty' expects 'on' or 'off'");
//! ```
// Hand-written: QemuOpts is QEMU's own format, and its texts are the point.

pub mod grammar;
pub mod keyval;
pub mod values;

use std::collections::HashSet;

use thiserror::Error;

pub use grammar::{elements, find_id, is_identifier, Element, Form, IDENTIFIER_HINT};
pub use keyval::{keyval, KeyvalItem};
pub use values::{parse_bool, strtosz, strtou64, NumError};

/// The hint QEMU prints under an invalid size.
pub const SIZE_HINT: &str = "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, \
                             tera-, peta-\nand exabytes, respectively.";

/// The type of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptType {
    /// Any string.
    String,
    /// A QEMU boolean.
    Bool,
    /// A C integer literal ([`strtou64`]).
    Number,
    /// A size ([`strtosz`]).
    Size,
}

impl OptType {
    /// The name QEMU's help text gives the type.
    pub fn help_name(self) -> &'static str {
        match self {
            OptType::String => "str",
            OptType::Bool => "bool (on/off)",
            OptType::Number => "num",
            OptType::Size => "size",
        }
    }
}

/// One key of an option list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptDesc {
    /// The key.
    pub name: &'static str,
    /// Its value's type.
    pub ty: OptType,
    /// A line for the help text, if any.
    pub help: Option<&'static str>,
}

impl OptDesc {
    /// A key without help text.
    pub const fn new(name: &'static str, ty: OptType) -> OptDesc {
        OptDesc {
            name,
            ty,
            help: None,
        }
    }

    /// A key with a help line.
    pub const fn with_help(name: &'static str, ty: OptType, help: &'static str) -> OptDesc {
        OptDesc {
            name,
            ty,
            help: Some(help),
        }
    }
}

/// What an option's string is read against (QEMU's `QemuOptsList`).
#[derive(Debug, PartialEq, Eq)]
pub struct OptsList {
    /// The list's name, as QEMU's messages give it (`chardev`, `mon`).
    pub name: &'static str,
    /// The key of a first element written without `=`.
    pub implied: Option<&'static str>,
    /// All uses of the option fill one set of values, so `id=` is refused
    /// (`-name`, `-m`).
    pub merge_lists: bool,
    /// The keys and their types; `None` accepts any key with a string value
    /// (QEMU checks those later, e.g. `-device`, `-drive`), and then a bare
    /// `help` is an ordinary flag rather than a help request.
    pub desc: Option<&'static [OptDesc]>,
}

impl OptsList {
    /// The description of `name`, if the list has a fixed set of keys.
    fn find(&self, name: &str) -> Option<&'static OptDesc> {
        self.desc?.iter().find(|d| d.name == name)
    }

    /// What QEMU prints for a help request: `NAME options:` and one line
    /// per key, sorted as QEMU sorts them (as whole lines), without a final
    /// newline.
    pub fn help_text(&self) -> String {
        let desc = self.desc.unwrap_or_default();
        if desc.is_empty() {
            return format!("There are no options for {}.", self.name);
        }
        let mut lines: Vec<String> = desc
            .iter()
            .map(|d| {
                let mut line = format!("  {}=<{}>", d.name, d.ty.help_name());
                if let Some(help) = d.help {
                    line = format!("{line:<24} - {help}");
                }
                line
            })
            .collect();
        lines.sort();
        format!("{} options:\n{}", self.name, lines.join("\n"))
    }
}

/// A value after its type check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A string key (or any key of a list that accepts any): the text is
    /// the value.
    Str,
    /// A boolean.
    Bool(bool),
    /// A number or size.
    Uint(u64),
}

/// One key and its value, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    /// The key.
    pub name: String,
    /// The value as written (`,,` unescaped).
    pub text: String,
    /// The checked value.
    pub value: Value,
}

/// The parsed values of one option (QEMU's `QemuOpts`). A key given twice
/// keeps both; lookups take the last, as QEMU's do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuOpts {
    list: &'static OptsList,
    id: Option<String>,
    opts: Vec<Opt>,
}

impl QemuOpts {
    /// No values and no id yet (as QEMU's `qemu_opts_create` without id),
    /// to be filled with [`QemuOpts::set`] and [`QemuOpts::do_parse`].
    pub fn new(list: &'static OptsList) -> QemuOpts {
        QemuOpts {
            list,
            id: None,
            opts: Vec::new(),
        }
    }

    /// The list these values were checked against.
    pub fn list(&self) -> &'static OptsList {
        self.list
    }

    /// The `id=` (the first one written).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Every key and value, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Opt> {
        self.opts.iter()
    }

    /// The last value given for `name`.
    pub fn last(&self, name: &str) -> Option<&Opt> {
        self.opts.iter().rev().find(|o| o.name == name)
    }

    /// Whether `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.last(name).is_some()
    }

    /// The text of `name`'s last value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.last(name).map(|o| o.text.as_str())
    }

    /// `name`'s last value if it is a boolean key.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        match self.last(name)?.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// `name`'s last value if it is a number or size key.
    pub fn get_number(&self, name: &str) -> Option<u64> {
        match self.last(name)?.value {
            Value::Uint(n) => Some(n),
            _ => None,
        }
    }

    /// Checks `value` against `name`'s type and adds it (QEMU's
    /// `qemu_opt_set`). A size's deprecation warning goes onto `warnings`.
    pub fn set(
        &mut self,
        name: &str,
        value: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(), QemuOptsError> {
        let checked = match self.list.desc {
            None => Value::Str,
            Some(_) => {
                let desc = self
                    .list
                    .find(name)
                    .ok_or_else(|| QemuOptsError::InvalidParameter(name.to_string()))?;
                check_value(desc, value, warnings)?
            }
        };
        self.opts.push(Opt {
            name: name.to_string(),
            text: value.to_string(),
            value: checked,
        });
        Ok(())
    }

    /// Adds the elements of `s` (QEMU's `qemu_opts_do_parse`, used for the
    /// options after a `-serial` shorthand): like [`parse`] but without the
    /// id pass, warnings for short forms or help requests, so a bare `help`
    /// is just an unknown key; `id=` elements are skipped.
    pub fn do_parse(
        &mut self,
        s: &str,
        implied: Option<&str>,
        warnings: &mut Vec<String>,
    ) -> Result<(), QemuOptsError> {
        for element in elements(s, implied) {
            if element.name != "id" {
                self.set(&element.name, &element.value, warnings)?;
            }
        }
        Ok(())
    }
}

/// Checks a value against its key's type.
fn check_value(
    desc: &OptDesc,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, QemuOptsError> {
    let name = desc.name;
    Ok(match desc.ty {
        OptType::String => Value::Str,
        OptType::Bool => Value::Bool(
            parse_bool(value).ok_or_else(|| QemuOptsError::ExpectsBool(name.to_string()))?,
        ),
        OptType::Number => Value::Uint(parse_number(name, value)?),
        OptType::Size => Value::Uint(parse_size(name, value, warnings)?),
    })
}

/// A number key's value, with QEMU's texts (`parse_option_number`).
pub fn parse_number(name: &str, value: &str) -> Result<u64, QemuOptsError> {
    strtou64(value).map_err(|e| match e {
        NumError::Invalid => QemuOptsError::ExpectsNumber(name.to_string()),
        NumError::Range => QemuOptsError::NumberTooLarge {
            name: name.to_string(),
            value: value.to_string(),
        },
    })
}

/// A size key's value, with QEMU's texts (`parse_option_size`); the hex
/// suffix warning goes onto `warnings`.
pub fn parse_size(
    name: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<u64, QemuOptsError> {
    strtosz(value, warnings).map_err(|e| match e {
        NumError::Invalid => QemuOptsError::ExpectsSize(name.to_string()),
        NumError::Range => QemuOptsError::OutOfRange {
            name: name.to_string(),
            value: value.to_string(),
        },
    })
}

/// Parses the string of one option against `list`, as QEMU does when it
/// reads its command line: the id first (refused on a merging list, or when
/// not an identifier), then each element in order, warnings for short-form
/// booleans and hex sizes pushed onto `warnings` as they come (before a
/// later error, as QEMU prints them), a help request ending the parse with
/// [`QemuOptsError::Help`].
pub fn parse(
    list: &'static OptsList,
    s: &str,
    warnings: &mut Vec<String>,
) -> Result<QemuOpts, QemuOptsError> {
    parse_inner(list, s, None, warnings)
}

/// [`parse`], also refusing an id already in `ids` (QEMU's "Duplicate ID"),
/// at the point QEMU checks it; the id is added to `ids` on success.
pub fn parse_unique(
    list: &'static OptsList,
    s: &str,
    ids: &mut HashSet<String>,
    warnings: &mut Vec<String>,
) -> Result<QemuOpts, QemuOptsError> {
    let opts = parse_inner(list, s, Some(ids), warnings)?;
    if let Some(id) = opts.id() {
        ids.insert(id.to_string());
    }
    Ok(opts)
}

fn parse_inner(
    list: &'static OptsList,
    s: &str,
    ids: Option<&mut HashSet<String>>,
    warnings: &mut Vec<String>,
) -> Result<QemuOpts, QemuOptsError> {
    let id = find_id(s);
    if let Some(id) = &id {
        if list.merge_lists {
            return Err(QemuOptsError::InvalidParameter("id".into()));
        }
        if !is_identifier(id) {
            return Err(QemuOptsError::InvalidId(id.clone()));
        }
        if ids.is_some_and(|ids| ids.contains(id)) {
            return Err(QemuOptsError::DuplicateId {
                id: id.clone(),
                list: list.name,
            });
        }
    }
    let mut opts = QemuOpts {
        list,
        id,
        opts: Vec::new(),
    };
    for element in elements(s, list.implied) {
        if element.is_help() && list.desc.is_some() {
            return Err(QemuOptsError::Help(list));
        }
        warnings.extend(element.short_form_warning());
        if element.name != "id" {
            opts.set(&element.name, &element.value, warnings)?;
        }
    }
    Ok(opts)
}

/// Why an option string was refused. `Display` is QEMU 7.2's text;
/// [`QemuOptsError::hint`] is the extra line QEMU prints under some.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QemuOptsError {
    /// `id=` is not an identifier.
    #[error("Parameter 'id' expects an identifier")]
    InvalidId(String),
    /// An id already used in the same list.
    #[error("Duplicate ID '{id}' for {list}")]
    DuplicateId {
        /// The id.
        id: String,
        /// The list's name.
        list: &'static str,
    },
    /// A key the list does not have (or, in keyval, not a key at all).
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(String),
    /// A boolean key with another value.
    #[error("Parameter '{0}' expects 'on' or 'off'")]
    ExpectsBool(String),
    /// A number key whose value is not one C integer literal.
    #[error("Parameter '{0}' expects a number")]
    ExpectsNumber(String),
    /// A number key whose value does not fit in 64 bits.
    #[error("Value '{value}' is too large for parameter '{name}'")]
    NumberTooLarge {
        /// The key.
        name: String,
        /// The value as written.
        value: String,
    },
    /// A size key whose value is not a size.
    #[error("Parameter '{0}' expects a non-negative number below 2^64")]
    ExpectsSize(String),
    /// A size of 2^64 or more (qchar also uses it for a value too big for
    /// its QAPI field, where QEMU would truncate).
    #[error("Value '{value}' is out of range for parameter '{name}'")]
    OutOfRange {
        /// The key.
        name: String,
        /// The value as written.
        value: String,
    },
    /// A bare `help` or `?`: `Display` is the list's help text, which QEMU
    /// prints on standard output (and then exits with status 1).
    #[error("{}", .0.help_text())]
    Help(&'static OptsList),
    /// keyval: a key without `=`.
    #[error("Expected '=' after parameter '{0}'")]
    ExpectedEquals(String),
    /// keyval: a key fragment over 127 bytes.
    #[error("Parameter{} '{key}' is too long", if *.fragment { " fragment" } else { "" })]
    KeyTooLong {
        /// The fragment.
        key: String,
        /// The key has several fragments.
        fragment: bool,
    },
}

impl QemuOptsError {
    /// The line(s) QEMU prints under this error, if any.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            QemuOptsError::InvalidId(_) => Some(IDENTIFIER_HINT),
            QemuOptsError::ExpectsSize(_) => Some(SIZE_HINT),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
