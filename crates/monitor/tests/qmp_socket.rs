//! QMP over real unix sockets: the recorded QEMU 7.2 conversation, the
//! Python `qemu.qmp` client, many clients, slow readers and hotswap.

mod common;
#[path = "data/qemu72.rs"]
mod qemu72;

use std::process::Command;
use std::time::Duration;

use common::{mask_timestamps, Client, Harness};
use qchar_monitor::json::{JsonLimits, JsonStreamer, Value};
use qchar_monitor::qmp::QmpOptions;
use qchar_testkit::{require, Prereq};

#[test]
fn recorded_qemu_conversation_over_a_socket() {
    let mut h = Harness::qemu_compatible();
    let path = h.qmp_socket("mon0");
    let mut c = Client::connect(&path);
    assert_eq!(
        String::from_utf8_lossy(&c.line()),
        String::from_utf8_lossy(qemu72::GREETING)
    );
    let mut failures = Vec::new();
    for (input, want) in qemu72::CONVERSATION {
        let n = want.windows(2).filter(|w| w == b"\r\n").count();
        let got = mask_timestamps(&c.cmd_lines(input, n));
        if got != *want {
            failures.push(format!(
                "input {:?}\n  qemu:  {:?}\n  qchar: {:?}",
                String::from_utf8_lossy(input),
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn python_qemu_qmp_client_works_unchanged() {
    if !require(Prereq::PythonQemuQmp) {
        return;
    }
    let mut h = Harness::new();
    let path = h.qmp_socket("mon0");
    let script = r#"
import asyncio, sys
from qemu.qmp import QMPClient
async def main(path):
    qmp = QMPClient('qchar-test')
    await qmp.connect(path)
    print('status', (await qmp.execute('query-status'))['status'])
    await qmp.execute('chardev-add', {'id': 'rb', 'backend': {'type': 'ringbuf', 'data': {'size': 64}}})
    await qmp.execute('ringbuf-write', {'device': 'rb', 'data': 'hi there'})
    print('read', await qmp.execute('ringbuf-read', {'device': 'rb', 'size': 64}))
    try:
        await qmp.execute('chardev-remove', {'id': 'nope'})
    except Exception as e:
        print('error', e)
    await qmp.execute('cont')
    print('status', (await qmp.execute('query-status'))['status'])
    await qmp.disconnect()
asyncio.run(main(sys.argv[1]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "status prelaunch\nread hi there\nerror Chardev 'nope' not found\nstatus running\n"
    );
}

#[test]
fn sequential_reconnects_renegotiate_each_time() {
    let mut h = Harness::new();
    let path = h.qmp_socket("mon0");
    for i in 0..100 {
        let mut c = Client::connect(&path);
        // Before negotiation, as in QEMU, only qmp_capabilities exists.
        let g = c.line_str();
        assert!(g.starts_with("{\"QMP\""), "greeting {i}: {g}");
        assert_eq!(
            c.cmd(&format!("{{\"execute\":\"query-status\",\"id\":{i}}}")),
            format!(
                "{{\"id\": {i}, \"error\": {{\"class\": \"CommandNotFound\", \"desc\": \
                 \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}}}\r\n"
            )
        );
        assert_eq!(
            c.cmd("{\"execute\":\"qmp_capabilities\"}"),
            "{\"return\": {}}\r\n"
        );
        assert!(c
            .cmd("{\"execute\":\"query-status\"}")
            .starts_with("{\"return\": {\"status\""));
    }
}

#[test]
fn hundred_concurrent_monitors() {
    let mut h = Harness::new();
    let mut paths = Vec::new();
    for i in 0..100 {
        let p = h.qmp_socket(&format!("mon{i}"));
        paths.push(p);
    }
    let threads: Vec<_> = paths
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            std::thread::spawn(move || {
                let mut c = Client::connect(&p);
                c.handshake();
                let add = format!(
                    "{{\"execute\":\"chardev-add\",\"arguments\":{{\"id\":\"rb{i}\",\"backend\":{{\"type\":\"ringbuf\",\"data\":{{}}}}}}}}"
                );
                // Other monitors' chardev-add events may arrive first.
                c.send(add.as_bytes());
                loop {
                    let l = c.line_str();
                    if !l.contains("\"event\"") {
                        assert_eq!(l, "{\"return\": {}}\r\n");
                        break;
                    }
                }
                let w = format!("{{\"execute\":\"ringbuf-write\",\"arguments\":{{\"device\":\"rb{i}\",\"data\":\"m{i}\"}}}}");
                c.send(w.as_bytes());
                let r = format!("{{\"execute\":\"ringbuf-read\",\"arguments\":{{\"device\":\"rb{i}\",\"size\":10}},\"id\":{i}}}");
                c.send(r.as_bytes());
                let mut replies = Vec::new();
                while replies.len() < 2 {
                    let l = c.line_str();
                    if !l.contains("\"event\"") {
                        replies.push(l);
                    }
                }
                assert_eq!(replies[0], "{\"return\": {}}\r\n");
                assert_eq!(replies[1], format!("{{\"return\": \"m{i}\", \"id\": {i}}}\r\n"));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn client_that_never_reads_does_not_hurt_others() {
    let mut h = Harness::new();
    let p1 = h.qmp_socket("slow");
    let p2 = h.qmp_socket("fast");
    let mut slow = Client::connect(&p1);
    slow.handshake();
    slow.w
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Flood without reading: input stops being read once output backs up,
    // so our writes eventually block (time out).
    let req = b"{\"execute\":\"query-version\"}".repeat(1000);
    let mut sent = 0usize;
    for _ in 0..2000 {
        use std::io::Write;
        match slow.w.write(&req) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < req.len() * 2000, "the monitor never pushed back");
    // Others are served meanwhile.
    let mut fast = Client::connect(&p2);
    fast.handshake();
    assert!(fast
        .cmd("{\"execute\":\"query-status\"}")
        .starts_with("{\"return\""));
    drop(slow);
    // And the slow monitor's chardev recovers for a new client.
    let mut again = Client::connect(&p1);
    again.handshake();
    assert!(again
        .cmd("{\"execute\":\"query-version\"}")
        .starts_with("{\"return\""));
}

#[test]
fn chardev_change_of_own_chardev_answers_on_old_backend() {
    let mut h = Harness::new();
    let p1 = h.qmp_socket("mon0");
    let p_watch = h.qmp_socket("watch");
    let mut watch = Client::connect(&p_watch);
    watch.handshake();
    let mut c = Client::connect(&p1);
    c.handshake();
    let p2 = h.path("new.sock");
    let change = format!(
        "{{\"execute\":\"chardev-change\",\"arguments\":{{\"id\":\"mon0\",\"backend\":{{\"type\":\"socket\",\"data\":{{\"addr\":{{\"type\":\"unix\",\"data\":{{\"path\":\"{}\"}}}},\"server\":true,\"wait\":false}}}}}},\"id\":\"sw\"}}",
        p2.display()
    );
    assert_eq!(c.cmd(&change), "{\"return\": {}, \"id\": \"sw\"}\r\n");
    // The old backend is gone after the reply.
    assert!(c.at_eof());
    // Other monitors hear about it.
    let ev = loop {
        let l = watch.line_str();
        if l.contains("X_QCHAR_CHARDEV_CHANGED") {
            break l;
        }
    };
    assert!(ev.contains("\"id\": \"mon0\""), "{ev}");
    // A client of the new backend is a new connection: greeting, negotiation.
    let mut c2 = Client::connect(&p2);
    c2.handshake();
    assert!(c2
        .cmd("{\"execute\":\"query-status\"}")
        .starts_with("{\"return\""));
}

/// Regression test: with `mux=on` the change of `c` is applied to `c-base`,
/// and the check for a change asked from inside a handler of the chardev
/// looked at `c-base` only, not at the mux `c` whose monitor asked. The
/// change then ran at once: the reply, still to be written, went to the new
/// backend (the file got the CHANGED event, the reply and a new greeting;
/// the socket client got nothing).
#[test]
fn chardev_change_of_own_mux_chardev_answers_on_old_backend() {
    use qchar_chardev::opts::ChardevOptions;
    use qchar_monitor::qmp::QmpMonitor;
    let mut h = Harness::new();
    let sock = h.path("c.sock");
    h.reg
        .add_options(&ChardevOptions {
            id: "c".into(),
            backend: common::socket_spec(&sock),
            mux: true,
        })
        .expect("mux chardev on a socket");
    let mon = QmpMonitor::attach(&h.reg, "c", h.env.clone(), QmpOptions::default())
        .expect("monitor on the mux");
    h.monitors.push(mon);
    let mut c = Client::connect(&sock);
    c.handshake();
    c.send(b"{\"execute\":\"query-status\",\"id\":\"before\"}");
    let file = h.path("after.out");
    let change = format!(
        "{{\"execute\":\"chardev-change\",\"arguments\":{{\"id\":\"c\",\"backend\":{{\"type\":\"file\",\"data\":{{\"out\":\"{}\"}}}}}},\"id\":\"sw\"}}",
        file.display()
    );
    c.send(change.as_bytes());
    // What the monitor wrote before the change and its reply leave through
    // the socket; then the old connection ends.
    let first = c.line_str();
    assert!(first.contains("\"id\": \"before\""), "{first}");
    assert_eq!(c.line_str(), "{\"return\": {}, \"id\": \"sw\"}\r\n");
    assert!(c.at_eof());
    // The monitor carries on in the file: the event, a greeting.
    let text = qchar_testkit::wait_for("a greeting in the file", || {
        let t = String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
        t.contains("{\"QMP\": ").then_some(t)
    });
    assert!(text.contains("X_QCHAR_CHARDEV_CHANGED"), "{text}");
    assert!(
        !text.contains("\"id\": \"sw\""),
        "the reply went to the file: {text}"
    );
}

#[test]
fn live_comparison_with_qemu() {
    compare_with_qemu(false, &chardev_steps(), &[]);
}

/// `-qmp-pretty` / `pretty=on`: the same conversation, printed pretty.
#[test]
fn live_comparison_with_qemu_pretty() {
    compare_with_qemu(true, &chardev_steps(), &[]);
}

/// `object-add`/`object-del` of TLS credentials and authorization objects,
/// and `qom-list`/`qom-get` under `/objects`: every answer byte for byte as
/// QEMU's, on certificates made for the run (both read the same files).
#[test]
fn live_comparison_with_qemu_objects() {
    let t = tempfile::tempdir().unwrap();
    let pki = qchar_testkit::pki::Pki::new(t.path());
    let server = pki.dir_str("server");
    let client = pki.dir_str("client");
    // A directory whose key does not match its certificate.
    let mismatch = t.path().join("mismatch");
    std::fs::create_dir(&mismatch).unwrap();
    for f in ["ca-cert.pem", "server-cert.pem"] {
        std::fs::copy(pki.dir("server").join(f), mismatch.join(f)).unwrap();
    }
    std::fs::copy(
        pki.dir("server-expired").join("server-key.pem"),
        mismatch.join("server-key.pem"),
    )
    .unwrap();
    let mismatch = mismatch.to_string_lossy().into_owned();
    let add = |body: &str| format!("{{\"execute\":\"object-add\",\"arguments\":{{{body}}}}}");
    let x509 = |id: &str, dir: &str, ep: &str| {
        add(&format!(
            "\"qom-type\":\"tls-creds-x509\",\"id\":\"{id}\",\"dir\":\"{dir}\",\"endpoint\":\"{ep}\""
        ))
    };
    let list =
        |path: &str| format!("{{\"execute\":\"qom-list\",\"arguments\":{{\"path\":\"{path}\"}}}}");
    let get = |path: &str, p: &str| {
        format!("{{\"execute\":\"qom-get\",\"arguments\":{{\"path\":\"{path}\",\"property\":\"{p}\"}}}}")
    };
    let del =
        |id: &str| format!("{{\"execute\":\"object-del\",\"arguments\":{{\"id\":\"{id}\"}}}}");
    let mut steps = vec![
        "{\"execute\":\"qmp_capabilities\"}".to_string(),
        list("/objects"),
        x509("t0", &server, "server"),
        // One object: /objects in a defined order.
        list("/objects"),
        list("objects"),
        list("/objects/t0"),
        list("t0"),
        x509("t0", &server, "server"),
        x509("t1", &mismatch, "server"),
        x509("t1", "/nonexistent-qchar-dir", "server"),
        x509("t1", &server, "bogus"),
        add("\"qom-type\":\"tls-creds-x509\",\"id\":\"t1\",\"verify-peer\":\"yes\""),
        add("\"qom-type\":\"tls-creds-x509\",\"id\":\"t1\",\"loaded\":true"),
        add("\"qom-type\":\"tls-creds-x509\",\"id\":\"t1\",\"bogus\":true"),
        add("\"qom-type\":\"tls-creds\",\"id\":\"t1\""),
        add("\"qom-type\":\"authz-pam\",\"id\":\"t1\",\"service\":\"x\""),
        add("\"qom-type\":\"authz-simple\",\"id\":\"1q\",\"identity\":\"x\""),
        add("\"qom-type\":\"authz-simple\",\"identity\":\"x\""),
        add("\"id\":\"x\""),
        x509("c0", &client, "client"),
        add("\"qom-type\":\"authz-simple\",\"id\":\"a0\",\"identity\":\"C=GB,CN=x\""),
        add(
            "\"qom-type\":\"authz-list\",\"id\":\"l0\",\"rules\":[{\"match\":\"a\",\"policy\":\"allow\"},{\"match\":\"b*\",\"policy\":\"deny\",\"format\":\"glob\"}]",
        ),
        add("\"qom-type\":\"authz-list\",\"id\":\"l1\",\"rules\":[{\"match\":\"a\"}]"),
        add("\"qom-type\":\"authz-list\",\"id\":\"l1\",\"rules\":[{\"match\":\"a\",\"policy\":\"allow\",\"format\":\"regex\"}]"),
        list("/objects/a0"),
        list("/objects/l0"),
        list("/objects/c0"),
        list("/objects/zz"),
        list("/machine/zz"),
    ];
    for p in [
        "type",
        "endpoint",
        "dir",
        "verify-peer",
        "priority",
        "sanity-check",
        "passwordid",
        "loaded",
        "nope",
    ] {
        steps.push(get("/objects/t0", p));
    }
    // A socket chardev naming objects: QEMU's checks, in its order.
    let sock = |server: bool, extra: &str| {
        format!(
            "{{\"execute\":\"chardev-add\",\"arguments\":{{\"id\":\"s\",\"backend\":{{\"type\":\"socket\",\"data\":{{\"addr\":{{\"type\":\"inet\",\"data\":{{\"host\":\"127.0.0.1\",\"port\":\"1\"}}}},\"server\":{server}{extra}}}}}}}}}"
        )
    };
    steps.extend([
        sock(true, ",\"tls-creds\":\"nope\""),
        sock(true, ",\"tls-creds\":\"l0\""),
        sock(true, ",\"tls-creds\":\"c0\""),
        sock(false, ",\"tls-creds\":\"t0\""),
        sock(true, ",\"tls-authz\":\"a0\""),
        sock(true, ",\"tls-creds\":\"nope\",\"reconnect\":1"),
        sock(
            true,
            ",\"tls-creds\":\"c0\",\"tls-authz\":\"a0\",\"websocket\":true",
        ),
    ]);
    steps.extend([
        get("/objects/l0", "rules"),
        get("/objects/l0", "policy"),
        get("/objects/a0", "identity"),
        get("/objects", "type"),
        get("/objects/zz", "type"),
        del("zz"),
        del("a0"),
        get("/objects/a0", "identity"),
        del("c0"),
        x509("c0", &client, "client"),
    ]);
    let steps: Vec<Vec<u8>> = steps.into_iter().map(String::into_bytes).collect();
    // No machine: QEMU's /objects then holds only what the steps add.
    compare_with_qemu(false, &steps, &["-machine", "none"]);
}

fn chardev_steps() -> Vec<Vec<u8>> {
    let steps: &[&[u8]] = &[
        b"{\"execute\":\"query-status\",\"id\":[1]}",
        b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}",
        b"{]\n",
        b"{\"execute\":\"qmp_capabilities\"}",
        b"{\"exec-oob\":\"query-status\",\"id\":{\"x\":0.5}}",
        b"{\"execute\":\"query-status\",\"id\":[1,{\"a\":[]},{},\"x\"]}",
        b"{\"execute\":\"query-name\"}",
        b"{\"execute\":\"query-name\",\"arguments\":{\"x\":1}}",
        b"{\"execute\":\"chardev-add\",\"arguments\":{\"id\":\"r\",\"backend\":{\"type\":\"ringbuf\",\"data\":{\"size\":8}}}}",
        b"{\"execute\":\"ringbuf-write\",\"arguments\":{\"device\":\"r\",\"data\":\"\\u00e9\\u0000abcdefgh\"}}",
        b"{\"execute\":\"ringbuf-read\",\"arguments\":{\"device\":\"r\",\"size\":100}}",
        b"{\"execute\":\"ringbuf-read\",\"arguments\":{\"device\":\"r\",\"size\":100,\"format\":\"base64\"}}",
        b"{\"execute\":\"chardev-add\",\"arguments\":{\"id\":\"r\",\"backend\":{\"type\":\"file\",\"data\":{\"out\":1}}},\"id\":\"x\"}",
        b"{\"execute\":\"stop\"}",
        b"{\"execute\":\"cont\"}",
        b"{\"execute\":\"query-status\"}",
    ];
    steps.iter().map(|s| s.to_vec()).collect()
}

/// Runs one conversation against qchar's monitor and QEMU's (`-qmp`, or
/// `-qmp-pretty` when `pretty`) and compares every byte of the answers,
/// event timestamps masked.
fn compare_with_qemu(pretty: bool, steps: &[Vec<u8>], qemu_args: &[&str]) {
    if !require(Prereq::Qemu) {
        return;
    }
    let qemu = "qemu-system-x86_64";
    let mut h = Harness::qemu_compatible();
    let opts = QmpOptions {
        pretty,
        ..QmpOptions::default()
    };
    let ours = h.qmp_socket_with("mon0", opts);
    let qsock = h.path("qemu.sock");
    let _child = KillOnDrop(
        Command::new(qemu)
            .args(["-nodefaults", "-display", "none", "-S"])
            .args(qemu_args)
            .arg(if pretty { "-qmp-pretty" } else { "-qmp" })
            .arg(format!("unix:{},server=on,wait=off", qsock.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn qemu"),
    );
    let mut ours = Client::connect(&ours);
    let mut theirs = Client::connect(&qsock);
    // The greeting is one message; each step's answer ends where the reply
    // to a sentinel sent right after it ends (an unknown command, answered
    // in order, the same way by both).
    let g_theirs = read_through(&mut theirs, |_| true);
    let g_ours = read_through(&mut ours, |_| true);
    // The version differs only if the installed QEMU is not 7.2.22.
    if g_ours != g_theirs {
        eprintln!(
            "note: greetings differ (other QEMU build): {:?}",
            String::from_utf8_lossy(&g_theirs)
        );
    }
    for (n, s) in steps.iter().enumerate() {
        let sync = format!("sync-{n}");
        let sentinel = format!("{{\"execute\":\"x-qchar-test-sync\",\"id\":\"{sync}\"}}");
        let is_sentinel = |v: &Value| {
            v.as_dict()
                .and_then(|d| d.get("id"))
                .is_some_and(|id| *id == Value::str(&sync))
        };
        theirs.send(s);
        theirs.send(sentinel.as_bytes());
        ours.send(s);
        ours.send(sentinel.as_bytes());
        let a = read_through(&mut theirs, is_sentinel);
        let b = read_through(&mut ours, is_sentinel);
        assert_eq!(
            String::from_utf8_lossy(&b),
            String::from_utf8_lossy(&a),
            "step {:?} (pretty {pretty})",
            String::from_utf8_lossy(s)
        );
    }
}

/// Reads `c` up to the end of the line that ends the first message for
/// which `last` holds; returns the bytes, event timestamps masked. Bounded
/// by the client's read timeout.
fn read_through(c: &mut Client, mut last: impl FnMut(&Value) -> bool) -> Vec<u8> {
    use std::io::{BufRead, Read};
    let mut json = JsonStreamer::new(JsonLimits::default());
    let mut buf = Vec::new();
    let mut found = false;
    while !(found && buf.ends_with(b"\n")) {
        // What the BufReader already holds first.
        let mut chunk = c.r.buffer().to_vec();
        c.r.consume(chunk.len());
        if chunk.is_empty() {
            let mut b = [0u8; 4096];
            let n = c.r.get_mut().read(&mut b).expect("read the monitor");
            assert!(
                n > 0,
                "the monitor closed; so far: {:?}",
                String::from_utf8_lossy(&buf)
            );
            chunk.extend_from_slice(&b[..n]);
        }
        for v in json.feed(&chunk) {
            let v = v.unwrap_or_else(|e| panic!("the monitor sent bad JSON: {e:?}"));
            found |= last(&v);
        }
        buf.extend_from_slice(&chunk);
    }
    mask_timestamps(&buf)
}

/// Kills the QEMU child even when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
