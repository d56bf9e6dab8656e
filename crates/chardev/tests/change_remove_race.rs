//! A `change` that loses a race with `remove` of the same chardev fails
//! with QEMU's "does not exist" instead of reporting a change that went
//! nowhere. Regression test: the change looked the chardev up, the remove
//! ran, then the change applied its backend to the removed chardev and
//! returned Ok.
//!
//! The order is forced: the remove runs in a handler of another chardev on
//! the I/O thread, after the changing thread has looked the chardev up (the
//! file its new backend creates is the sign: the change opens the backend
//! after the look-up and before it hands the swap to the I/O thread, which
//! this handler keeps busy).

mod support;

use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::time::Duration;

use qchar_chardev::{ChardevError, FrontendHandlers, Registry};
use qchar_testkit::wait_until;
use support::{file_in_spec, file_spec, ringbuf_spec};

/// On its first input: says so, waits until the changer has opened the new
/// backend (`opened` exists), removes `x`.
struct Remover {
    reg: Registry,
    in_handler: Sender<()>,
    opened: PathBuf,
    done: bool,
}

impl FrontendHandlers for Remover {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, _input: &[u8]) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.in_handler.send(()).unwrap();
        wait_until("the change to open its new backend", || {
            self.opened.exists()
        });
        self.reg.remove("x").unwrap();
    }
}

#[test]
fn change_that_loses_the_race_with_remove_says_the_chardev_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, b"go").unwrap();
    let reg = Registry::new().unwrap();
    reg.add("x", ringbuf_spec(4096)).unwrap();

    let (in_handler_tx, in_handler) = channel();
    let opened = dir.path().join("new.out");
    reg.add("trigger", file_in_spec(&dir.path().join("out"), &input))
        .unwrap();
    let trigger = reg.attach("trigger").unwrap();
    trigger.set_handlers(Box::new(Remover {
        reg: reg.clone(),
        in_handler: in_handler_tx,
        opened: opened.clone(),
        done: false,
    }));
    in_handler
        .recv_timeout(Duration::from_secs(20))
        .expect("the handler ran");
    assert!(!opened.exists());
    let r2 = reg.clone();
    let changer = std::thread::spawn(move || r2.change("x", file_spec(&opened)));
    let e = changer.join().unwrap().unwrap_err();
    assert!(
        matches!(&e, ChardevError::DoesNotExist(id) if id == "x"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "Chardev 'x' does not exist");
    assert!(!reg.contains("x"));
    trigger.detach();
    reg.shutdown();
}
