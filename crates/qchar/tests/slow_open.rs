//! Opening a backend never stalls the chardev I/O thread (issue 11): a
//! `chardev-add`/`chardev-change` whose open waits for a peer (a TCP
//! connect that is neither accepted nor refused, a FIFO with no reader, a
//! `wait=on` server with no client) leaves the other monitors, chardevs and
//! the guest running; the waiting command gets QEMU's reply when the open
//! ends, and the next command on its own monitor waits for that reply.
//!
//! The connect that never completes goes to a loopback listener whose
//! accept queue is full ([`full_tcp_listener`]). The test ends it by
//! closing the listener: the kernel's next SYN retry, about a second after
//! the connect began, is refused. "Not stalled" is checked as a fact, not a
//! time: the other monitor answers while the first command's reply
//! provably has not come (its connect cannot end before the test closes the
//! listener).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use common::{argv, p, tempdir, Proc, RawQmp};
use qchar_testkit::{full_tcp_listener, mkfifo, proc_fds, require, wait_until, Prereq, WAIT};
use serde_json::json;

/// A client connect to `127.0.0.1:port` as a QMP socket backend.
fn tcp_client(port: u16) -> serde_json::Value {
    json!({"type": "socket", "data": {"addr": {"type": "inet",
        "data": {"host": "127.0.0.1", "port": port.to_string()}}, "server": false}})
}

/// The refusal QEMU words for a connect to `port` that is refused.
fn refused(port: u16) -> String {
    format!("Failed to connect to '127.0.0.1:{port}': Connection refused")
}

/// Sends three commands in one message on monitor `a`: `query-name`, a
/// `chardev-add` of `slow` with `backend` (a client whose connect to the
/// full `listener` on `port` hangs) and a `query-status` with id `after`.
/// The first's reply proves the message was read up to the second; while
/// its connect hangs, monitor `b` answers, the guest's output keeps
/// flowing into `con.log` and `a` stays silent. Closing the listener
/// refuses the connect: `a` then gets QEMU's refusal and the third reply.
/// Returns `query-chardev` as `b` saw it during the hang.
fn connect_hangs_then_refused(
    a: &mut RawQmp,
    b: &mut RawQmp,
    d: &Path,
    backend: serde_json::Value,
    listener: std::os::fd::OwnedFd,
    port: u16,
) -> String {
    let add = json!({"execute": "chardev-add", "arguments": {"id": "slow", "backend": backend}});
    a.send(
        &format!(
            "{{\"execute\":\"query-name\"}}\n{add}\n{{\"execute\":\"query-status\",\"id\":\"after\"}}"
        ),
        &[],
    );
    assert_eq!(a.reply(), "{\"return\": {}}\r\n");
    assert_eq!(
        b.cmd(r#"{"execute":"query-status"}"#, &[]),
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}\r\n"
    );
    let chardevs = b.cmd(r#"{"execute":"query-chardev"}"#, &[]);
    let size = || std::fs::metadata(p(d, "con.log")).map_or(0, |m| m.len());
    let before = size();
    wait_until("guest output while a connect hangs", || {
        size() > before + 1000
    });
    b.cmd(r#"{"execute":"query-name"}"#, &[]);
    assert!(!a.reply_ready(), "a answered before its connect ended");
    drop(listener);
    assert_eq!(
        a.reply(),
        format!(
            "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 'slow': {}\"}}}}\r\n",
            refused(port)
        )
    );
    assert_eq!(
        a.reply(),
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": \"after\"}\r\n"
    );
    chardevs
}

#[test]
fn a_connect_that_hangs_stalls_nothing_else() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -machine pc -fda builtin:demo \
             -chardev file,id=con,path=$D/con.log -serial chardev:con \
             -qmp unix:$D/a,server=on,wait=off -qmp unix:$D/b,server=on,wait=off",
            d,
        ),
        d,
    );
    let mut a = RawQmp::connect(&p(d, "a"));
    let mut b = RawQmp::connect(&p(d, "b"));
    let fds_before = proc_fds(proc.pid()).len();
    let (listener, _clients, port) = full_tcp_listener();
    let chardevs = connect_hangs_then_refused(&mut a, &mut b, d, tcp_client(port), listener, port);
    assert!(!chardevs.contains("\"slow\""), "{chardevs}");
    assert_eq!(proc_fds(proc.pid()).len(), fds_before, "descriptors leaked");
    a.cmd(r#"{"execute":"quit"}"#, &[]);
    assert!(proc.wait().success());
}

/// A TLS client chardev (`tls-creds`) is opened as a plain client is: its
/// connect runs off the I/O thread (QEMU connects before it starts TLS and
/// waits in its main loop the same way), and its handshake never holds
/// anything up: against a server that accepts and never answers the
/// ClientHello, `chardev-add` answers at once and everything else goes on.
#[test]
fn a_tls_client_whose_connect_or_handshake_hangs_stalls_nothing_else() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let pki = qchar_testkit::pki::Pki::new(&d.join("pki"));
    let mut proc = Proc::qchar(
        &argv(
            &format!(
                "-nodefaults -display none -machine pc -fda builtin:demo \
                 -object tls-creds-x509,id=tc,dir={},endpoint=client \
                 -chardev file,id=con,path=$D/con.log -serial chardev:con \
                 -qmp unix:$D/a,server=on,wait=off -qmp unix:$D/b,server=on,wait=off",
                pki.dir_str("client")
            ),
            d,
        ),
        d,
    );
    let tls_client = |port: u16| {
        let mut b = tcp_client(port);
        b["data"]["tls-creds"] = json!("tc");
        b
    };
    let running =
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}\r\n";
    let size = |d: &Path| std::fs::metadata(p(d, "con.log")).map_or(0, |m| m.len());
    let mut a = RawQmp::connect(&p(d, "a"));
    let mut b = RawQmp::connect(&p(d, "b"));
    let fds_before = proc_fds(proc.pid()).len();

    // 1. The connect hangs (full accept queue).
    let (listener, _clients, port) = full_tcp_listener();
    let chardevs = connect_hangs_then_refused(&mut a, &mut b, d, tls_client(port), listener, port);
    assert!(!chardevs.contains("\"slow\""), "{chardevs}");

    // 2. The connect succeeds (the kernel completes it; nobody accepts)
    // and the handshake never comes: added at once, nothing waits for it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let add = json!({"execute": "chardev-add",
        "arguments": {"id": "hs", "backend": tls_client(port)}});
    assert_eq!(a.exec(&add, &[]), "{\"return\": {}}\r\n");
    assert_eq!(b.cmd(r#"{"execute":"query-status"}"#, &[]), running);
    assert_eq!(a.cmd(r#"{"execute":"query-status"}"#, &[]), running);
    let before = size(d);
    wait_until("guest output while a TLS handshake hangs", || {
        size(d) > before + 1000
    });
    let chardevs = b.cmd(r#"{"execute":"query-chardev"}"#, &[]);
    assert!(chardevs.contains("\"label\": \"hs\""), "{chardevs}");
    assert_eq!(
        a.cmd(
            r#"{"execute":"chardev-remove","arguments":{"id":"hs"}}"#,
            &[]
        ),
        "{\"return\": {}}\r\n"
    );
    wait_until("qchar's descriptors back where they were", || {
        proc_fds(proc.pid()).len() == fds_before
    });
    drop(silent);
    a.cmd(r#"{"execute":"quit"}"#, &[]);
    assert!(proc.wait().success());
}

/// The same refused connect against QEMU 7.2: its reply (after its whole
/// main loop waited) is the one qchar gives.
#[test]
fn the_late_reply_is_qemus() {
    if !require(Prereq::Qemu) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let mut proc = Proc::spawn_program(
        "qemu-system-x86_64",
        &argv(
            "-nodefaults -display none -machine none -qmp unix:$D/a,server=on,wait=off",
            d,
        ),
        d,
    );
    let mut a = RawQmp::connect(&p(d, "a"));
    let (listener, _clients, port) = full_tcp_listener();
    a.send(
        &json!({"execute": "chardev-add", "arguments": {"id": "slow", "backend": tcp_client(port)}})
            .to_string(),
        &[],
    );
    drop(listener);
    assert_eq!(
        a.reply(),
        format!(
            "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 'slow': {}\"}}}}\r\n",
            refused(port)
        )
    );
    a.cmd(r#"{"execute":"quit"}"#, &[]);
    assert!(proc.wait().success());
}

/// Opens that wait for a peer, from QMP and HMP, on a machine in
/// prelaunch (no KVM needed): each one's monitor waits, the others answer.
#[test]
fn fifo_wait_server_change_and_hmp_wait_off_the_io_thread() {
    let dir = tempdir();
    let d = dir.path();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -chardev ringbuf,id=con -serial chardev:con \
             -qmp unix:$D/a,server=on,wait=off -qmp unix:$D/b,server=on,wait=off \
             -mon chardev=h,mode=readline -chardev socket,id=h,path=$D/h,server=on,wait=off",
            d,
        ),
        d,
    );
    let mut a = RawQmp::connect(&p(d, "a"));
    let mut b = RawQmp::connect(&p(d, "b"));
    let status =
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n";
    let ok = "{\"return\": {}}\r\n";

    // A file chardev on a FIFO nobody reads: its open waits for a reader.
    mkfifo(&p(d, "fifo"));
    let add_fifo = json!({"execute": "chardev-add", "arguments": {"id": "f", "backend":
        {"type": "file", "data": {"out": p(d, "fifo").to_str().unwrap()}}}});
    let first = |cmd: &serde_json::Value| format!("{{\"execute\":\"query-name\"}}\n{cmd}");
    a.send(&first(&add_fifo), &[]);
    assert_eq!(a.reply(), ok, "query-name");
    assert_eq!(b.cmd(r#"{"execute":"query-status"}"#, &[]), status);
    assert!(!a.reply_ready());
    let reader = std::fs::File::open(p(d, "fifo")).unwrap();
    assert_eq!(a.reply(), ok);
    b.cmd(
        r#"{"execute":"ringbuf-write","arguments":{"device":"con","data":"x"}}"#,
        &[],
    );

    // A wait=on server: the reply comes when its client does (as in QEMU,
    // whose whole main loop waits for it).
    let add_wait = json!({"execute": "chardev-add", "arguments": {"id": "w", "backend":
        {"type": "socket", "data": {"addr": {"type": "unix", "data": {"path": p(d, "w").to_str().unwrap()}},
        "server": true, "wait": true}}}});
    a.send(&first(&add_wait), &[]);
    assert_eq!(a.reply(), ok, "query-name");
    assert_eq!(b.cmd(r#"{"execute":"query-status"}"#, &[]), status);
    let client = qchar_testkit::connect_unix(&p(d, "w"));
    assert_eq!(a.reply(), ok);
    let q = b.cmd(r#"{"execute":"query-chardev"}"#, &[]);
    assert!(
        q.contains(r#""filename": "unix:"#) && q.contains(r#""label": "w""#),
        "{q}"
    );

    // A change of a chardev in use (the UART's console) to a connect that
    // hangs: the console keeps its ring meanwhile; the refusal comes bare,
    // as QEMU words a failed change of a chardev with a frontend.
    let (listener, _clients, port) = full_tcp_listener();
    a.send(
        &first(&json!({"execute": "chardev-change", "arguments": {"id": "con", "backend": tcp_client(port)}})),
        &[],
    );
    assert_eq!(a.reply(), ok, "query-name");
    assert_eq!(
        b.cmd(
            r#"{"execute":"ringbuf-read","arguments":{"device":"con","size":10}}"#,
            &[]
        ),
        "{\"return\": \"x\"}\r\n"
    );
    // HMP: its chardev-add waits too, with the prompt after its output.
    let (l2, _c2, port2) = full_tcp_listener();
    let mut h = qchar_testkit::connect_unix(&p(d, "h"));
    h.set_read_timeout(Some(WAIT)).unwrap();
    let mut hmp = Vec::new();
    let read_until = |h: &mut UnixStream, hmp: &mut Vec<u8>, end: &[u8]| {
        while !hmp.ends_with(end) {
            let mut buf = [0u8; 4096];
            let n = h.read(&mut buf).unwrap();
            assert!(n > 0, "HMP closed: {:?}", String::from_utf8_lossy(hmp));
            hmp.extend_from_slice(&buf[..n]);
        }
    };
    read_until(&mut h, &mut hmp, b"(qemu) ");
    hmp.clear();
    let line = format!("chardev-add socket,id=hs,host=127.0.0.1,port={port2}\ninfo status\n");
    h.write_all(line.as_bytes()).unwrap();
    // The echo of the whole first line and its end: the monitor handled it
    // (the chardev-add waits) and went back to the I/O thread.
    read_until(
        &mut h,
        &mut hmp,
        format!("port={port2}\x1b[K\r\n").as_bytes(),
    );
    assert_eq!(b.cmd(r#"{"execute":"query-status"}"#, &[]), status);
    assert!(!a.reply_ready());
    drop(listener);
    assert_eq!(
        a.reply(),
        format!(
            "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{}\"}}}}\r\n",
            refused(port)
        )
    );
    assert_eq!(
        b.cmd(
            r#"{"execute":"ringbuf-write","arguments":{"device":"con","data":"still a ring"}}"#,
            &[]
        ),
        ok
    );
    drop(l2);
    read_until(
        &mut h,
        &mut hmp,
        b"VM status: paused (prelaunch)\r\n(qemu) ",
    );
    let text = String::from_utf8_lossy(&hmp).into_owned();
    let err = format!("\r\nError: {}\r\n(qemu) ", refused(port2));
    let i = text.find(&err).unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        text[i + err.len()..].starts_with("i"),
        "the next line's echo comes after the prompt: {text:?}"
    );
    drop((client, reader));
    a.cmd(r#"{"execute":"quit"}"#, &[]);
    assert!(proc.wait().success());
}

/// A monitor that changes its own chardev to a connect that takes a while
/// answers through the old backend, then goes on over the new one; a
/// client that leaves while its command waits does not hold up the next
/// client, nor lose the command; `human-monitor-command` waits like QMP.
#[test]
fn own_chardev_change_reconnects_and_human_monitor_command() {
    let dir = tempdir();
    let d = dir.path();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -S \
             -qmp unix:$D/a,server=on,wait=off -qmp unix:$D/b,server=on,wait=off",
            d,
        ),
        d,
    );
    let mut a = RawQmp::connect(&p(d, "a"));
    let mut b = RawQmp::connect(&p(d, "b"));
    let status =
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n";

    // human-monitor-command: the HMP command's output, when it comes.
    let (l1, _c1, port1) = full_tcp_listener();
    let hmc = json!({"execute": "human-monitor-command", "arguments":
        {"command-line": format!("chardev-add socket,id=h1,host=127.0.0.1,port={port1}")}});
    a.send(&format!("{{\"execute\":\"query-name\"}}\n{hmc}"), &[]);
    assert_eq!(a.reply(), "{\"return\": {}}\r\n");
    assert_eq!(b.cmd(r#"{"execute":"query-status"}"#, &[]), status);
    assert!(!a.reply_ready());
    drop(l1);
    assert_eq!(
        a.reply(),
        format!("{{\"return\": \"Error: {}\\r\\n\"}}\r\n", refused(port1))
    );

    // The client leaves while its chardev-add waits: the monitor notices
    // (it had read everything the client sent) and takes the next client
    // at once; the add completes on its own.
    let (l2, _fill2, port2) = full_tcp_listener();
    let add = json!({"execute": "chardev-add", "arguments": {"id": "late", "backend": tcp_client(port2)}});
    a.send(&format!("{{\"execute\":\"query-name\"}}\n{add}"), &[]);
    assert_eq!(a.reply(), "{\"return\": {}}\r\n");
    drop(a);
    let mut a = RawQmp::connect(&p(d, "a"));
    assert_eq!(a.cmd(r#"{"execute":"query-status"}"#, &[]), status);
    // Room in the queue: the connect's next try is taken in.
    let listener = std::net::TcpListener::from(l2);
    drop(listener.accept().unwrap());
    wait_until("the add waited for completed", || {
        b.cmd(r#"{"execute":"query-chardev"}"#, &[])
            .contains(r#""label": "late""#)
    });

    // Monitor a changes its own chardev to a TCP client: the answer goes to
    // the old peer (this unix client), and the session goes on over TCP.
    let (l3, fill3, port3) = full_tcp_listener();
    let own = json!({"execute": "chardev-change", "arguments": {"id": "compat_monitor0", "backend": tcp_client(port3)}});
    a.send(&format!("{{\"execute\":\"query-name\"}}\n{own}"), &[]);
    assert_eq!(a.reply(), "{\"return\": {}}\r\n");
    assert_eq!(b.cmd(r#"{"execute":"query-status"}"#, &[]), status);
    assert!(!a.reply_ready());
    // The two connections filling the queue are taken; qchar's next try
    // comes after them.
    let listener = std::net::TcpListener::from(l3);
    let _taken = [listener.accept().unwrap(), listener.accept().unwrap()];
    let (tcp, _) = listener.accept().unwrap();
    assert_eq!(a.reply(), "{\"return\": {}}\r\n");
    // Both sides had a peer at the change: no new greeting, the session
    // (capabilities negotiated) goes on.
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = std::io::BufReader::new(tcp.try_clone().unwrap());
    let mut ask = |cmd: &str| {
        (&tcp).write_all(format!("{cmd}\n").as_bytes()).unwrap();
        loop {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            if !line.contains("\"event\"") {
                return line;
            }
        }
    };
    assert_eq!(ask(r#"{"execute":"query-status"}"#), status);
    ask(r#"{"execute":"quit"}"#);
    drop(fill3);
    assert!(proc.wait().success());
}

/// What never waits is not sent off the I/O thread: a mux (whatever its
/// log file) is opened by the registry at once, and HMP's `chardev-add
/// ...,mux=on` still makes `ID` and `ID-base`.
#[test]
fn muxes_open_at_once() {
    let dir = tempdir();
    let d = dir.path();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -machine none -S -qmp unix:$D/a,server=on,wait=off",
            d,
        ),
        d,
    );
    let mut a = RawQmp::connect(&p(d, "a"));
    let mux = json!({"execute": "chardev-add", "arguments": {"id": "m", "backend": {"type": "mux",
        "data": {"logfile": "/dev/null", "chardev": "none"}}}});
    assert_eq!(
        a.exec(&mux, &[]),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 'm': mux: base chardev none not found\"}}\r\n"
    );
    let hmp = json!({"execute": "human-monitor-command",
        "arguments": {"command-line": "chardev-add null,id=c,mux=on"}});
    assert_eq!(a.exec(&hmp, &[]), "{\"return\": \"\"}\r\n");
    let q = a.cmd(r#"{"execute":"query-chardev"}"#, &[]);
    assert!(
        q.contains(r#""filename": "mux", "label": "c""#) && q.contains(r#""label": "c-base""#),
        "{q}"
    );
    a.cmd(r#"{"execute":"quit"}"#, &[]);
    assert!(proc.wait().success());
}
