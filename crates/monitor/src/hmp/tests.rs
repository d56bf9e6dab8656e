//! HMP texts recorded from QEMU 7.2 (through `human-monitor-command`).

use qchar_chardev::registry::Registry;

use super::execute;
use crate::qmp::tests::qemu_like_env;

#[test]
fn outputs_match_qemu() {
    let reg = Registry::new().unwrap();
    let (env, _events) = qemu_like_env(&reg);
    let cases: &[(&str, &str)] = &[
        ("", ""),
        ("bogus", "unknown command: 'bogus'\r\n"),
        ("help ringbuf_read", "ringbuf_read device size -- Read from a ring buffer character device\r\n"),
        ("help stop", "stop|s  -- stop emulation\r\n"),
        ("help bogus", "unknown command: 'bogus'\r\n"),
        ("info bogus", "unknown command: 'info bogus'\r\n"),
        ("chardev-add ringbuf,id=r9,size=3", "Error: size of ringbuf chardev must be power of two\r\n"),
        ("chardev-add ringbuf,id=r9", ""),
        ("chardev-add bogus,id=x", "Error: 'bogus' is not a valid char driver name\r\n"),
        ("chardev-add null", "Error: chardev: no id specified\r\n"),
        ("chardev-add", "chardev-add: string expected\r\nTry \"help chardev-add\" for more information\r\n"),
        ("chardev-change r9", "chardev-change: string expected\r\nTry \"help chardev-change\" for more information\r\n"),
        ("ringbuf_write r9 abc", ""),
        ("ringbuf_read r9 10", "abc\r\n"),
        ("ringbuf_read r9", "unexpected end of expression\r\nTry \"help ringbuf_read\" for more information\r\n"),
        ("ringbuf_read r9 x", "invalid char 'x' in expression\r\nTry \"help ringbuf_read\" for more information\r\n"),
        ("ringbuf_write", "ringbuf_write: string expected\r\nTry \"help ringbuf_write\" for more information\r\n"),
        ("ringbuf_write r9 a\\x01b\\\\c\x7fd", ""),
        ("ringbuf_read r9 100", "a\\\\x01b\\\\\\\\c\\u007Fd\r\n"),
        ("ringbuf_read nope 3", "Error: Device 'nope' not found\r\n"),
        ("chardev-remove nope", "Error: Chardev 'nope' not found\r\n"),
        ("chardev-send-break nope", "Error: Chardev 'nope' not found\r\n"),
        ("chardev-change nope null", "Error: Chardev 'nope' does not exist\r\n"),
        ("chardev-change r9 path=/x", "Error: chardev: \"(null)\" missing backend\r\n"),
        ("chardev-change r9 null,id=foo", "Error: Unexpected 'id' parameter\r\n"),
        ("chardev-change r9 help", "Error: 'help' is not a valid char driver name\r\n"),
        ("chardev-change r9 null,help", "Error: Parsing chardev args failed\r\n"),
        ("chardev-add null,id=h,help", "Error: Parsing chardev args failed\r\n"),
        ("chardev-add id=e", "Error: chardev: \"e\" missing backend\r\n"),
        ("info chardev extra", "chardev: extraneous characters at the end of line\r\nTry \"help info chardev\" for more information\r\n"),
        ("stop extra", "stop|s: extraneous characters at the end of line\r\nTry \"help stop\" for more information\r\n"),
        ("info status", "VM status: paused (prelaunch)\r\n"),
        ("stop", ""),
        ("cont", ""),
        ("info status", "VM status: running\r\n"),
        ("info version", "7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3\r\n"),
        ("info chardev", "r9: filename=ringbuf\r\n"),
        ("object_add authz-simple,id=h0,identity=C=GB,,CN=x y", ""),
        ("object_add authz-simple,id=h0,identity=x", "Error: attempt to add duplicate property 'h0' to object (type 'container')\r\n"),
        ("object_add bogus,id=x", "Error: Parameter 'qom-type' does not accept value 'bogus'\r\n"),
        ("object_add tls-creds-x509,id=h1,dir=/nonexistent,endpoint=server", "Error: Unable to access credentials /nonexistent/ca-cert.pem: No such file or directory\r\n"),
        ("object_add tls-creds-x509,id=h1,foo=1", "Error: Parameter 'foo' is unexpected\r\n"),
        ("object_add", "object_add: string expected\r\nTry \"help object_add\" for more information\r\n"),
        ("object_del nope", "Error: object 'nope' not found\r\n"),
        ("object_del h0", ""),
        ("object_del", "object_del: string expected\r\nTry \"help object_del\" for more information\r\n"),
        ("help object_add", "object_add [qom-type=]type,id=str[,prop=value][,...] -- create QOM object\r\n"),
        ("help object_del", "object_del id -- destroy QOM object\r\n"),
        ("object_add {\"qom-type\":\"authz-simple\",\"id\":\"j0\",\"identity\":\"a b\"}", ""),
        ("object_add authz-list,id=l0,rules.0.match=*x,rules.0.policy=allow,rules.0.format=glob", ""),
        ("object_add authz-list,id=l1,rules.0.match=x", "Error: Parameter 'rules.0.policy' is missing\r\n"),
        ("object_add tls-creds-x509,id=h2,verify-peer=maybe", "Error: Parameter 'verify-peer' expects 'on' or 'off'\r\n"),
    ];
    let mut failures = Vec::new();
    for (line, want) in cases {
        let got = execute(&env, line);
        if got != *want {
            failures.push(format!("{line:?}\n  qemu:  {want:?}\n  qchar: {got:?}"));
        }
    }
    reg.shutdown();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
