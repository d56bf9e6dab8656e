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
