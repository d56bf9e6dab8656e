//! Parser tests: limits, recovery, and error texts recorded from QEMU 7.2.

use super::*;

/// Feeds `input` and renders each outcome: a value as JSON, an error as the
/// quoted `desc` string QEMU would put in its reply.
fn run(p: &mut JsonStreamer, input: &[u8]) -> Vec<String> {
    p.feed(input)
        .into_iter()
        .map(|r| match r {
            Ok(v) => v.to_json_string(),
            Err(e) => format!("ERR {}", Value::Str(e.message_bytes()).to_json_string()),
        })
        .collect()
}

fn one(input: &[u8]) -> Vec<String> {
    run(&mut JsonStreamer::default(), input)
}

#[test]
fn parses_values_and_reprints_in_qemu_order() {
    assert_eq!(
        one(br#"{"b":1,"a":2,"id":3,"execute":4}"#),
        [r#"{"a": 2, "execute": 4, "b": 1, "id": 3}"#]
    );
    assert_eq!(
        one(b"[1, -0, -0.0, 1E2, 12345678901234567890, 123456789012345678901]\n"),
        ["[1, 0, -0, 100, 12345678901234567890, 1.2345678901234568e+20]"]
    );
    assert_eq!(one(b"'a\"b\\'c'"), [r#""a\"b'c""#]);
    assert_eq!(one(b"\"\\u0000\xc0\x80\""), [r#""\u0000\u0000""#]);
}

#[test]
fn bulk_feed_splits_messages_and_keeps_partial_ones() {
    let mut p = JsonStreamer::default();
    assert_eq!(run(&mut p, b"{\"a\":1}{\"b\":[1,2"), [r#"{"a": 1}"#]);
    assert!(!p.is_idle());
    assert_eq!(run(&mut p, b"]}"), [r#"{"b": [1, 2]}"#]);
    // A bare number needs a following byte to end.
    assert!(run(&mut p, b"12").is_empty());
    assert_eq!(run(&mut p, b"\n"), ["12"]);
}

#[test]
fn error_texts_match_qemu() {
    // (input, outcomes) pairs observed from qemu-system-x86_64 7.2.
    let cases: &[(&[u8], &[&str])] = &[
        (b"{]\n", &[r#"ERR "JSON parse error, expecting value""#]),
        (b"\xff", &[r#"ERR "JSON parse error, stray '\uFFFD'""#]),
        (
            b"{\"execute\":\"query-st\x01atus\"}\n",
            &[
                r#"ERR "JSON parse error, stray '\"query-st\u0001'""#,
                r#"ERR "JSON parse error, expecting value""#,
            ],
        ),
        (
            b"{\"execute\":\"query-status\n",
            &[r#"ERR "JSON parse error, stray '\"query-status\n'""#],
        ),
        (b"]\n", &[r#"ERR "JSON parse error, expecting value""#]),
        (
            b"abc\n",
            &[r#"ERR "JSON parse error, invalid keyword 'abc'""#],
        ),
        (b"01\n", &[r#"ERR "JSON parse error, stray '01'""#]),
        (b"-\n", &[r#"ERR "JSON parse error, stray '-\n'""#]),
        (b"%d\n", &[r#"ERR "JSON parse error, stray '%'""#]),
        (
            b"{\"a\" 1}\n",
            &[r#"ERR "JSON parse error, missing : in object pair""#],
        ),
        (
            b"{1:2}\n",
            &[r#"ERR "JSON parse error, key is not a string in object""#],
        ),
        (
            b"[1 2]\n",
            &[r#"ERR "JSON parse error, expected separator in list""#],
        ),
        (
            b"{\"a\":1,}\n",
            &[r#"ERR "JSON parse error, expecting value""#],
        ),
        (
            b"{\"a\":1,\"a\":2}\n",
            &[r#"ERR "JSON parse error, duplicate key""#],
        ),
        (
            b"\"\\x\"\n",
            &[r#"ERR "JSON parse error, invalid escape sequence in string""#],
        ),
        (
            b"\"\\ud800\"\n",
            &[r#"ERR "JSON parse error, \\ud800 is not a valid Unicode character""#],
        ),
        (
            b"\"\\uD800\\u0041\"",
            &[r#"ERR "JSON parse error, \\uD800 is not a valid Unicode character""#],
        ),
        (
            b"\"\\u00\"\n",
            &[r#"ERR "JSON parse error, \\u00\" is not a valid Unicode character""#],
        ),
        (
            b"\"\\u\"",
            &[r#"ERR "JSON parse error, \\u\" is not a valid Unicode character""#],
        ),
        (
            b"\"\\uFFFE\"",
            &[r#"ERR "JSON parse error, \\uFFFE is not a valid Unicode character""#],
        ),
        (
            b"\"\xc3\x28\"\n",
            &[r#"ERR "JSON parse error, invalid UTF-8 sequence in string""#],
        ),
        (
            b"\"\xed\xa0\x80\"",
            &[r#"ERR "JSON parse error, invalid UTF-8 sequence in string""#],
        ),
        (b"[}", &[r#"ERR "JSON parse error, expecting value""#]),
        (
            b"\"a\x01bc\x01\n",
            &[
                r#"ERR "JSON parse error, stray '\"a\u0001'""#,
                r#"ERR "JSON parse error, stray '\u0001'""#,
            ],
        ),
        (
            b"\"a\x01bc\xff\n",
            &[
                r#"ERR "JSON parse error, stray '\"a\u0001'""#,
                r#"ERR "JSON parse error, stray '\uFFFD'""#,
            ],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            one(input),
            *want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn unterminated_string_swallows_the_next_command_as_qemu_does() {
    let mut p = JsonStreamer::default();
    assert!(run(&mut p, b"\"unterminated").is_empty());
    assert_eq!(
        run(&mut p, b"{\"execute\":\"query-status\"}\n"),
        [
            r#""unterminated{""#,
            r#"ERR "JSON parse error, invalid keyword 'execute'""#,
            r#"":""#,
            r#"ERR "JSON parse error, invalid keyword 'query'""#,
            r#"ERR "JSON parse error, stray '-s'""#,
            r#"ERR "JSON parse error, expecting value""#,
        ]
    );
    assert!(p.is_idle());
}

#[test]
fn long_keyword_message_is_cut_at_1023_bytes() {
    let mut input = vec![b'a'; 2000];
    input.push(b'\n');
    let out = one(&input);
    let want = format!(
        r#"ERR "JSON parse error, invalid keyword '{}""#,
        "a".repeat(1006)
    );
    assert_eq!(out, [want]);
}

#[test]
fn nul_byte_ends_the_stray_text() {
    assert_eq!(one(b"\x00"), [r#"ERR "JSON parse error, stray ''""#]);
}

#[test]
fn nesting_limit_then_resync() {
    let mut input = vec![b'['; 1024];
    input.extend(vec![b']'; 1024]);
    assert_eq!(one(&input).len(), 1);
    // One level too deep: QEMU reports the limit, then each surplus `]`.
    let mut input = vec![b'['; 1025];
    input.extend(vec![b']'; 1025]);
    input.push(b'\n');
    let out = one(&input);
    assert_eq!(out[0], r#"ERR "JSON nesting depth limit exceeded""#);
    assert_eq!(out.len(), 1 + 1025);
    assert!(out[1..]
        .iter()
        .all(|s| s == r#"ERR "JSON parse error, expecting value""#));
}

#[test]
fn token_count_and_size_limits() {
    let limits = JsonLimits {
        max_size: 100,
        max_tokens: 10,
        max_nesting: 4,
    };
    let mut p = JsonStreamer::new(limits);
    // [1,1,1,1,1] is 11 tokens.
    let out = run(&mut p, b"[1,1,1,1,1]");
    assert_eq!(out[0], r#"ERR "JSON token count limit exceeded""#);
    p.reset();
    assert_eq!(run(&mut p, b"[1,1,1,1]"), ["[1, 1, 1, 1]"]);
    // A string token bigger than the whole budget.
    let mut big = b"\"".to_vec();
    big.extend(vec![b'x'; 150]);
    let out = run(&mut p, &big);
    assert_eq!(out, [r#"ERR "JSON token size limit exceeded""#]);
    p.reset();
    let out = run(&mut p, b"[[[[[1]]]]]");
    assert_eq!(out[0], r#"ERR "JSON nesting depth limit exceeded""#);
    p.reset();
    assert_eq!(run(&mut p, b"{\"execute\":\"x\"}"), [r#"{"execute": "x"}"#]);
}

#[test]
fn byte_at_a_time_equals_bulk() {
    let input: &[u8] = b"{\"a\": [1, 2.5, \"x\\u00e9\"]} 17 \xff{\"b\":true}[}\"q\x01z\"null ";
    let bulk = one(input);
    let mut p = JsonStreamer::default();
    let mut single = Vec::new();
    for b in input {
        single.extend(run(&mut p, std::slice::from_ref(b)));
    }
    assert_eq!(bulk, single);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: xorshift bytes biased to JSON characters.
    let alphabet = b"{}[]:,\"'\\0123456789-+.eEtruefalsn \n\t\x01\xff\xc3\xa9u";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut p = JsonStreamer::new(JsonLimits {
        max_size: 4096,
        max_tokens: 512,
        max_nesting: 32,
    });
    for _ in 0..200 {
        let mut chunk = Vec::new();
        for _ in 0..512 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        for v in p.feed(&chunk).into_iter().flatten() {
            let _ = v.to_json();
        }
    }
}
