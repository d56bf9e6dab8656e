//! Who may use the console: every request carries the token (in the URL's
//! query as `token=`, in the console's cookie, or as `Authorization:
//! Bearer`), and a websocket opened by a browser comes from a page of the
//! console itself (its `Origin` is the console's own).
//!
//! The token is 128 random bits unless the user gives one. A page asked for
//! with the right token in its URL sets a cookie (`HttpOnly`,
//! `SameSite=Strict`, named after the port so that two consoles on one
//! host keep theirs apart) and is redirected to the same URL without it, so
//! the token leaves the address bar and the browser's history.

use hyper::header::{HeaderMap, AUTHORIZATION, COOKIE, HOST, ORIGIN};

use crate::WebError;

/// Shortest token a user may give.
pub const MIN_TOKEN: usize = 16;
/// Longest token a user may give.
pub const MAX_TOKEN: usize = 256;

/// A new random token: 32 hex digits.
pub(crate) fn new_token() -> Result<String, WebError> {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        filled += rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty())
            .map_err(|e| WebError::Random(e.into()))?;
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Checks a token the user gave: 16 to 256 characters a URL and a cookie
/// carry as they are (`A-Z a-z 0-9 - . _ ~`).
pub fn check_token(t: &str) -> Result<(), WebError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if (MIN_TOKEN..=MAX_TOKEN).contains(&t.len()) && t.chars().all(ok_char) {
        Ok(())
    } else {
        Err(WebError::BadToken)
    }
}

/// Equality that takes as long whatever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// The name of the console's cookie on `port`.
pub(crate) fn cookie_name(port: u16) -> String {
    format!("qchar-web-{port}")
}

/// The value of `key` in a query string (`a=1&b=2`), as it is written.
pub(crate) fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// How a request proved it may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// The token in the URL's query.
    Query,
    /// The cookie or the `Authorization` header.
    Carried,
}

/// Whether the request carries `token`, and how.
pub(crate) fn check(
    token: &str,
    port: u16,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<Pass> {
    let want = token.as_bytes();
    if query_param(query, "token").is_some_and(|t| same(t.as_bytes(), want)) {
        return Some(Pass::Query);
    }
    let name = cookie_name(port);
    let cookie_ok = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == name && same(v.as_bytes(), want));
    let bearer_ok = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim().as_bytes(), want));
    (cookie_ok || bearer_ok).then_some(Pass::Carried)
}

/// Whether a websocket request may go on: without an `Origin` (not a
/// browser: a script, websocat) yes; from a browser only when the page that
/// opens it was served by this console, that is, its origin is the scheme
/// and the `Host` the request was sent to.
pub(crate) fn same_origin(headers: &HeaderMap, tls: bool) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), headers.get(HOST).map(|h| h.to_str()))
    else {
        return false;
    };
    let scheme = if tls { "https://" } else { "http://" };
    origin
        .strip_prefix(scheme)
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(list: &[(hyper::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_are_random_hex_and_user_tokens_are_checked() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(check_token(&a).is_ok());
        assert!(check_token("short").is_err());
        assert!(check_token("0123456789abcdef;x").is_err());
        assert!(check_token(&"x".repeat(MAX_TOKEN + 1)).is_err());
    }

    #[test]
    fn a_request_passes_by_query_cookie_or_bearer_only_with_the_token() {
        let t = "0123456789abcdef0123";
        let none = HeaderMap::new();
        assert_eq!(
            check(t, 80, Some("token=0123456789abcdef0123"), &none),
            Some(Pass::Query)
        );
        assert_eq!(
            check(t, 80, Some("ro=1&token=0123456789abcdef0123"), &none),
            Some(Pass::Query)
        );
        assert_eq!(check(t, 80, Some("token=0123456789abcdef012"), &none), None);
        assert_eq!(check(t, 80, Some("token="), &none), None);
        assert_eq!(check(t, 80, None, &none), None);
        let c = headers(&[(COOKIE, "a=b; qchar-web-80=0123456789abcdef0123")]);
        assert_eq!(check(t, 80, None, &c), Some(Pass::Carried));
        // Another console's cookie (another port) is not this one's.
        assert_eq!(check(t, 81, None, &c), None);
        let b = headers(&[(AUTHORIZATION, "Bearer 0123456789abcdef0123")]);
        assert_eq!(check(t, 80, None, &b), Some(Pass::Carried));
        let wrong = headers(&[(AUTHORIZATION, "Bearer 0123456789abcdef0124")]);
        assert_eq!(check(t, 80, None, &wrong), None);
    }

    #[test]
    fn only_the_consoles_own_pages_may_open_a_websocket() {
        let ok = headers(&[(HOST, "127.0.0.1:8080"), (ORIGIN, "http://127.0.0.1:8080")]);
        assert!(same_origin(&ok, false));
        assert!(!same_origin(&ok, true));
        let cross = headers(&[(HOST, "127.0.0.1:8080"), (ORIGIN, "http://evil.example")]);
        assert!(!same_origin(&cross, false));
        let port = headers(&[(HOST, "127.0.0.1:8080"), (ORIGIN, "http://127.0.0.1:8081")]);
        assert!(!same_origin(&port, false));
        let null = headers(&[(HOST, "127.0.0.1:8080"), (ORIGIN, "null")]);
        assert!(!same_origin(&null, false));
        assert!(same_origin(&headers(&[(HOST, "127.0.0.1:8080")]), false));
    }

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(query_param(Some("a=1&ro=1"), "ro"), Some("1"));
        assert_eq!(query_param(Some("ro"), "ro"), Some(""));
        assert_eq!(query_param(Some("rox=1"), "ro"), None);
        assert_eq!(query_param(None, "ro"), None);
    }
}
