//! The peer identity `tls-authz` checks: a certificate's subject DN written
//! the way QEMU 7.2 gets it from GnuTLS (`gnutls_x509_crt_get_dn`, GnuTLS's
//! pre-RFC 4514 "compat" string), so that identities written for QEMU match
//! byte for byte.
//!
//! The format: RDNs in certificate (DER) order joined by `,`, the attributes
//! of a multi-valued RDN in DER order joined by `+`, no spaces; attribute
//! names from GnuTLS's table (`C`, `ST`, `CN`, `EMAIL`...), else the dotted
//! OID. A value is decoded as GnuTLS decodes that attribute: a
//! DirectoryString (`CN`, `O`...) of any of its five string types, or the
//! one string type the attribute has (`C`: PrintableString, `DC` and
//! `EMAIL`: IA5String...); then `, + " \ < > ;`, a leading `#` or space
//! and a trailing space are escaped by a backslash. What does not decode
//! that way (an unknown attribute, a `C` in UTF8String, an embedded NUL) is
//! written `#` and the lowercase hex of the value's whole DER encoding; a
//! TeletexString that is not plain ASCII, a UniversalString and a
//! BMPString that is not valid UTF-16 are `\#` and the hex of their
//! contents (GnuTLS escapes that `#` like any other leading `#`).
// Hand-written: no crate renders GnuTLS's legacy DN string; x509-parser's
// Display uses other names, spaces and no escaping.

use x509_parser::der_parser::asn1_rs::{Any, Class, ToDer};

/// How GnuTLS decodes an attribute's value.
#[derive(Clone, Copy)]
enum Decode {
    /// A DirectoryString: teletex, printable, universal, UTF-8 or BMP.
    Directory,
    /// Exactly this universal string tag.
    Only(u32),
}

const PRINTABLE: u32 = 19;
const IA5: u32 = 22;
const UTF8: u32 = 12;
const NUMERIC: u32 = 18;
const TELETEX: u32 = 20;
const UNIVERSAL: u32 = 28;
const BMP: u32 = 30;
const OCTETS: u32 = 4;

/// GnuTLS 3.7's attribute table: OID, name (none: the OID is printed),
/// decoding.
const ATTRS: &[(&str, Option<&str>, Decode)] = &[
    ("1.3.6.1.5.5.7.9.2", Some("placeOfBirth"), Decode::Directory),
    ("1.3.6.1.5.5.7.9.3", Some("gender"), Decode::Only(PRINTABLE)),
    (
        "1.3.6.1.5.5.7.9.4",
        Some("countryOfCitizenship"),
        Decode::Only(PRINTABLE),
    ),
    (
        "1.3.6.1.5.5.7.9.5",
        Some("countryOfResidence"),
        Decode::Only(PRINTABLE),
    ),
    ("2.5.4.6", Some("C"), Decode::Only(PRINTABLE)),
    ("2.5.4.9", Some("street"), Decode::Directory),
    ("2.5.4.12", Some("title"), Decode::Directory),
    ("2.5.4.10", Some("O"), Decode::Directory),
    ("2.5.4.11", Some("OU"), Decode::Directory),
    ("2.5.4.3", Some("CN"), Decode::Directory),
    ("2.5.4.7", Some("L"), Decode::Directory),
    ("2.5.4.8", Some("ST"), Decode::Directory),
    ("2.5.4.13", Some("description"), Decode::Directory),
    ("2.5.4.5", Some("serialNumber"), Decode::Only(PRINTABLE)),
    ("2.5.4.20", Some("telephoneNumber"), Decode::Only(PRINTABLE)),
    ("2.5.4.4", Some("surName"), Decode::Directory),
    ("2.5.4.43", Some("initials"), Decode::Directory),
    ("2.5.4.44", Some("generationQualifier"), Decode::Directory),
    ("2.5.4.42", Some("givenName"), Decode::Directory),
    ("2.5.4.65", Some("pseudonym"), Decode::Directory),
    ("2.5.4.46", Some("dnQualifier"), Decode::Only(PRINTABLE)),
    ("2.5.4.17", Some("postalCode"), Decode::Directory),
    ("2.5.4.41", Some("name"), Decode::Directory),
    ("2.5.4.15", Some("businessCategory"), Decode::Directory),
    ("0.9.2342.19200300.100.1.25", Some("DC"), Decode::Only(IA5)),
    ("0.9.2342.19200300.100.1.1", Some("UID"), Decode::Directory),
    (
        "1.2.840.113556.1.4.656",
        Some("userPrincipalName"),
        Decode::Directory,
    ),
    (
        "1.3.6.1.4.1.311.60.2.1.1",
        Some("jurisdictionOfIncorporationLocalityName"),
        Decode::Directory,
    ),
    (
        "1.3.6.1.4.1.311.60.2.1.2",
        Some("jurisdictionOfIncorporationStateOrProvinceName"),
        Decode::Directory,
    ),
    (
        "1.3.6.1.4.1.311.60.2.1.3",
        Some("jurisdictionOfIncorporationCountryName"),
        Decode::Only(PRINTABLE),
    ),
    ("1.2.840.113549.1.9.1", Some("EMAIL"), Decode::Only(IA5)),
    ("1.2.840.113549.1.9.20", None, Decode::Only(BMP)),
    ("1.2.840.113549.1.9.21", None, Decode::Only(OCTETS)),
    ("1.2.840.113549.1.9.4", None, Decode::Only(OCTETS)),
    ("1.3.6.1.5.5.7.8.5", Some("XmppAddr"), Decode::Only(UTF8)),
    ("1.2.643.100.1", Some("OGRN"), Decode::Only(NUMERIC)),
    ("1.2.643.100.3", Some("SNILS"), Decode::Only(NUMERIC)),
    ("1.2.643.100.5", Some("OGRNIP"), Decode::Only(NUMERIC)),
    ("1.2.643.3.131.1.1", Some("INN"), Decode::Only(NUMERIC)),
];

/// Why no identity could be read from a certificate. `Display` is the
/// reason QEMU gives for the same failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    /// The certificate does not parse.
    #[error("Cannot import certificate: {0}")]
    BadCertificate(String),
    /// The subject is empty.
    #[error("Cannot get client distinguished name: The requested data were not available.")]
    EmptySubject,
}

/// The subject DN of a DER certificate as QEMU's `tls-authz` sees it.
pub fn subject_dn(der: &[u8]) -> Result<String, DnError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| DnError::BadCertificate(e.to_string()))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let mut parts = Vec::new();
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            let entry = ATTRS.iter().find(|(o, _, _)| *o == oid);
            let value = match entry.and_then(|(_, _, d)| decode(*d, atv.attr_value())) {
                Some(v) => escape(&v),
                None => {
                    let tlv = atv
                        .attr_value()
                        .to_der_vec()
                        .map_err(|e| DnError::BadCertificate(e.to_string()))?;
                    format!("#{}", hex(&tlv))
                }
            };
            let name = entry.and_then(|(_, n, _)| *n).unwrap_or(&oid);
            parts.push(format!("{name}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    if rdns.is_empty() {
        return Err(DnError::EmptySubject);
    }
    Ok(rdns.join(","))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value as GnuTLS decodes it, before escaping; `None` when GnuTLS
/// falls back to the hex of the whole encoding.
fn decode(how: Decode, v: &Any<'_>) -> Option<String> {
    if v.header.class() != Class::Universal || v.header.is_constructed() {
        return None;
    }
    let tag = v.header.tag().0;
    let data = v.data;
    let text = match how {
        Decode::Only(t) if t != tag => return None,
        Decode::Only(BMP) => bmp(data),
        Decode::Only(_) => String::from_utf8_lossy(data).into_owned(),
        Decode::Directory => match tag {
            UTF8 | PRINTABLE => String::from_utf8_lossy(data).into_owned(),
            TELETEX if data.iter().all(|c| (0x20..0x7f).contains(c)) => {
                String::from_utf8_lossy(data).into_owned()
            }
            TELETEX | UNIVERSAL => format!("#{}", hex(data)),
            BMP => bmp(data),
            _ => return None,
        },
    };
    // GnuTLS refuses strings with an embedded NUL.
    (!text.contains('\0')).then_some(text)
}

/// A BMPString's UTF-16BE as UTF-8 (a trailing NUL pair dropped), or the
/// hex of its bytes when it is not valid.
fn bmp(data: &[u8]) -> String {
    if data.is_empty() {
        return String::new();
    }
    let d = match data {
        [rest @ .., 0, 0] if data.len() > 2 => rest,
        _ => data,
    };
    let units = d.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    match char::decode_utf16(units).collect::<Result<String, _>>() {
        Ok(s) if !d.is_empty() => s,
        _ => format!("#{}", hex(data)),
    }
}

/// Escapes one attribute value as GnuTLS does.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.char_indices().last().map(|(i, _)| i);
    for (i, ch) in s.char_indices() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (ch == '#' || ch == ' '))
            || (Some(i) == last && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_gnutls() {
        assert_eq!(escape("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(escape("#hash"), "\\#hash");
        assert_eq!(escape(" spaced "), "\\ spaced\\ ");
        assert_eq!(escape(" "), "\\ ");
        assert_eq!(escape("a#b"), "a#b");
        assert_eq!(escape("x=y"), "x=y");
        assert_eq!(escape("J\"Q\" <j;d>\\x"), "J\\\"Q\\\" \\<j\\;d\\>\\\\x");
        assert_eq!(escape("Jöhn"), "Jöhn");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            subject_dn(b"not a certificate"),
            Err(DnError::BadCertificate(_))
        ));
    }
}
