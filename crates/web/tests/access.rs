//! Who gets in: every page, file, API and websocket needs the token; a
//! request without it (or with a wrong one, or another console's cookie)
//! gets the same `403` and nothing else; the token in a URL becomes a
//! cookie; a browser's websocket from another site is refused.

mod support;

use qchar_chardev::spec::{ChardevBackend, ChardevRingbuf};
use qchar_chardev::Registry;
use support::{get, Setup};

fn setup() -> Setup {
    let reg = Registry::new().unwrap();
    reg.add("con", ChardevBackend::Ringbuf(ChardevRingbuf::default()))
        .unwrap();
    reg.add(
        "hidden-id",
        ChardevBackend::Ringbuf(ChardevRingbuf::default()),
    )
    .unwrap();
    Setup::new(&reg)
}

const PATHS: &[&str] = &[
    "/",
    "/api/chardevs",
    "/console/con",
    "/console/nope",
    "/static/xterm.js",
    "/static/console.js",
    "/static/nope",
    "/ws/con",
    "/ws/con?ro=1",
    "/nope",
];

#[test]
fn without_the_token_every_path_gets_the_same_403() {
    let s = setup();
    let wrong = format!("{}x", &s.token()[..s.token().len() - 1]);
    let other_port = format!("qchar-web-{}={}", s.addr().port() + 1, s.token());
    let wrong_cookie = format!("qchar-web-{}={wrong}", s.addr().port());
    let wrong_bearer = format!("Bearer {wrong}");
    let ws = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    for path in PATHS {
        let with_query = |t: &str| {
            if path.contains('?') {
                format!("{path}&token={t}")
            } else {
                format!("{path}?token={t}")
            }
        };
        let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
            (path.to_string(), vec![]),
            (with_query(&wrong), vec![]),
            (with_query(""), vec![]),
            (path.to_string(), vec![("Cookie", other_port.as_str())]),
            (path.to_string(), vec![("Cookie", wrong_cookie.as_str())]),
            (
                path.to_string(),
                vec![("Authorization", wrong_bearer.as_str())],
            ),
            (path.to_string(), ws.to_vec()),
        ];
        for (p, headers) in cases {
            let r = get(s.addr(), &p, &headers);
            assert_eq!(r.status, 403, "{p} {headers:?}: {}", r.head);
            assert_eq!(r.text(), "403 Forbidden\n", "{p} {headers:?}");
            assert!(r.header("set-cookie").is_none());
            assert!(!r.head.contains("hidden-id"), "{}", r.head);
        }
    }
    // Another method without the token: the same.
    let raw = support::exchange(
        s.addr(),
        format!(
            "POST /api/chardevs HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            s.addr()
        )
        .as_bytes(),
    );
    let r = support::parse(&raw);
    assert_eq!((r.status, r.text().as_str()), (403, "403 Forbidden\n"));
}

#[test]
fn the_token_in_a_url_becomes_a_cookie_and_leaves_the_url() {
    let s = setup();
    let t = s.token().to_string();
    let cookie = format!("qchar-web-{}={t}", s.addr().port());
    for (path, to) in [
        (format!("/?token={t}"), "/"),
        (format!("/console/con?token={t}&ro=1"), "/console/con?ro=1"),
        (format!("/console/con?ro=1&token={t}"), "/console/con?ro=1"),
    ] {
        let r = get(s.addr(), &path, &[]);
        assert_eq!(r.status, 303, "{path}: {}", r.head);
        assert_eq!(r.header("location").as_deref(), Some(to));
        assert_eq!(
            r.header("set-cookie"),
            Some(format!("{cookie}; Path=/; HttpOnly; SameSite=Strict"))
        );
    }
    // With the cookie: the pages, each with headers that keep it to itself.
    for (path, mime) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/con", "text/html; charset=utf-8"),
        ("/static/console.js", "text/javascript; charset=utf-8"),
        ("/api/chardevs", "application/json"),
    ] {
        let r = get(s.addr(), path, &[("Cookie", &format!("a=b; {cookie}"))]);
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        assert_eq!(r.header("content-type").as_deref(), Some(mime));
        assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
        assert!(r
            .header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'none'") && c.contains("connect-src 'self'")));
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    }
    // The bearer form works too; a chardev that does not exist is a 404
    // (to whoever has the token).
    assert_eq!(s.get("/console/con").status, 200);
    assert_eq!(s.get("/console/nope").status, 404);
    assert_eq!(s.get("/static/../Cargo.toml").status, 404);
}

#[test]
fn a_websocket_from_another_site_is_refused() {
    let s = setup();
    let cookie = format!("qchar-web-{}={}", s.addr().port(), s.token());
    let host = s.addr().to_string();
    for origin in [
        "http://evil.example".to_string(),
        "null".to_string(),
        format!("https://{host}"),
        format!("http://127.0.0.1:{}", s.addr().port() + 1),
    ] {
        let r = get(
            s.addr(),
            "/ws/con",
            &[
                ("Cookie", &cookie),
                ("Origin", &origin),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        );
        assert_eq!(r.status, 403, "{origin}: {}", r.head);
        assert_eq!(r.text(), "403 Forbidden\n");
    }
}

#[test]
fn a_token_given_is_used_and_a_bad_one_refused() {
    let reg = Registry::new().unwrap();
    let consoles = qchar_web::Consoles::new(&reg);
    let opts = qchar_web::WebOptions {
        token: Some("my-own.token_0123456789~".into()),
        ..Default::default()
    };
    let web = qchar_web::WebConsole::start(consoles.clone(), &opts).unwrap();
    assert_eq!(web.token(), "my-own.token_0123456789~");
    assert!(web.local_addr().ip().is_loopback());
    let r = get(
        web.local_addr(),
        "/api/chardevs",
        &[("Authorization", "Bearer my-own.token_0123456789~")],
    );
    assert_eq!(r.status, 200);
    web.stop();
    for bad in [
        "short",
        "has space in it 0123456789",
        "semi;colon-0123456789",
    ] {
        let opts = qchar_web::WebOptions {
            token: Some(bad.into()),
            ..Default::default()
        };
        let e = qchar_web::WebConsole::start(consoles.clone(), &opts)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "web console: the token must be 16 to 256 characters of A-Z a-z 0-9 - . _ ~"
        );
    }
}
