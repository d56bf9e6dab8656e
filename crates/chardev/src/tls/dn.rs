//! The peer identity `tls-authz` checks: a certificate's subject DN written
//! the way QEMU 7.2 gets it from GnuTLS (`gnutls_x509_crt_get_dn`, GnuTLS's
//! pre-RFC 4514 "compat" string), so that identities written for QEMU match
//! byte for byte.
//!
//! The format: RDNs in certificate (DER) order joined by `,`, the attributes
//! of a multi-valued RDN in DER order joined by `+`, no spaces; attribute
//! names from GnuTLS's table (`C`, `ST`, `CN`, `EMAIL`...), else the dotted
//! OID; values as decoded strings with `, + " \ < > ;`, a leading `#` or
//! space and a trailing space escaped by a backslash; a value of an unknown
//! attribute (or one that is not a string) as `#` and the lowercase hex of
//! its whole DER encoding.
// Hand-written: no crate renders GnuTLS's legacy DN string; x509-parser's
// Display uses other names, spaces and no escaping.

use x509_parser::der_parser::asn1_rs::ToDer;

/// GnuTLS's short names for the attribute types it knows.
const NAMES: &[(&str, &str)] = &[
    ("2.5.4.6", "C"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.20", "telephoneNumber"),
    ("2.5.4.4", "surName"),
    ("2.5.4.42", "givenName"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.65", "pseudonym"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.41", "name"),
    ("2.5.4.15", "businessCategory"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "EMAIL"),
    ("1.3.6.1.5.5.7.9.2", "placeOfBirth"),
    ("1.3.6.1.5.5.7.9.3", "gender"),
    ("1.3.6.1.5.5.7.9.4", "countryOfCitizenship"),
    ("1.3.6.1.5.5.7.9.5", "countryOfResidence"),
    (
        "1.3.6.1.4.1.311.60.2.1.1",
        "jurisdictionOfIncorporationLocalityName",
    ),
    (
        "1.3.6.1.4.1.311.60.2.1.2",
        "jurisdictionOfIncorporationStateOrProvinceName",
    ),
    (
        "1.3.6.1.4.1.311.60.2.1.3",
        "jurisdictionOfIncorporationCountryName",
    ),
    ("1.3.6.1.4.1.311.20.2.3", "userPrincipalName"),
    ("1.3.6.1.5.5.7.8.5", "XmppAddr"),
    ("1.2.643.100.1", "OGRN"),
    ("1.2.643.100.3", "SNILS"),
    ("1.2.643.100.5", "OGRNIP"),
    ("1.2.643.3.131.1.1", "INN"),
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
            let name = NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n);
            let value = match (name, atv.as_str()) {
                (Some(_), Ok(s)) => escape(s),
                _ => {
                    let tlv = atv
                        .attr_value()
                        .to_der_vec()
                        .map_err(|e| DnError::BadCertificate(e.to_string()))?;
                    let mut hex = String::with_capacity(1 + 2 * tlv.len());
                    hex.push('#');
                    for b in tlv {
                        hex.push_str(&format!("{b:02x}"));
                    }
                    hex
                }
            };
            parts.push(format!("{}={value}", name.unwrap_or(&oid)));
        }
        rdns.push(parts.join("+"));
    }
    if rdns.is_empty() {
        return Err(DnError::EmptySubject);
    }
    Ok(rdns.join(","))
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
