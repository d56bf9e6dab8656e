//! The 16550A on a real chardev, without a guest: the test thread plays the
//! vCPU (register writes), the registry's I/O thread flushes the transmit
//! FIFO when the chardev has room again (`write_ready`), as in a running
//! machine. No KVM needed.

use std::path::Path;
use std::sync::Arc;

use qchar_chardev::spec::{ChardevBackend, ChardevFile};
use qchar_chardev::Registry;
use qchar_machine::serial::ChardevSink;
use qchar_machine::uart::{NoIrq, FCR, FCR_CLEAR_TX, FCR_FIFO_ENABLE, THR};
use qchar_machine::{ComPort, SerialPort};
use qchar_testkit::wait_until;

fn file_spec(path: &Path) -> ChardevBackend {
    ChardevBackend::File(ChardevFile {
        out: path.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

/// Bytes per segment: the guest writes one segment, then clears the FIFO.
const SEG: usize = 8;
/// Segment tags cycle through 32 values, so a byte says its segment (mod
/// 32) and its place in it.
fn byte(seg: usize, pos: usize) -> u8 {
    ((seg % 32) * SEG + pos) as u8
}

/// Regression test: `clear_tx` (an FCR write on the vCPU thread) emptied the
/// transmit FIFO while the I/O thread's flush had bytes out at the sink;
/// the flush then removed as many bytes from the front of the FIFO as the
/// sink had taken, which by then were the next, never sent, bytes.
///
/// What a correct UART sends of each segment is a prefix of it: the sink
/// takes bytes from the front, a clear discards the rest. A segment that
/// arrives without its first bytes, or with a hole, lost unsent bytes.
#[test]
fn tx_fifo_clears_racing_the_io_thread_flush_lose_no_unsent_byte() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A tiny output queue: the UART's writes often come back short, so most
    // flushes run on the I/O thread (write_ready), concurrent with the
    // guest's register writes.
    let reg = Registry::with_out_capacity(8).unwrap();
    reg.add("s", file_spec(&out)).unwrap();
    let fe = reg.attach("s").unwrap();
    let port = SerialPort::new(
        ComPort::COM1,
        Arc::new(ChardevSink::new(fe.clone())),
        Arc::new(NoIrq),
    );
    port.attach_frontend(&fe);
    let u = port.uart();
    u.pio_write(FCR, FCR_FIFO_ENABLE);
    const SEGMENTS: usize = 200_000;
    for k in 0..SEGMENTS {
        for p in 0..SEG {
            u.pio_write(THR, byte(k, p));
        }
        u.pio_write(FCR, FCR_FIFO_ENABLE | FCR_CLEAR_TX);
    }
    // A last segment nobody clears: it must arrive whole.
    for p in 0..SEG {
        u.pio_write(THR, byte(SEGMENTS, p));
    }
    wait_until("the UART and the chardev drained", || {
        u.tx_pending() == 0 && reg.stats("s").unwrap().queued == 0
    });
    let got = std::fs::read(&out).unwrap();
    let mut bad = Vec::new();
    let mut expect_pos = 0usize;
    let mut seg_of_run = None;
    for (i, &b) in got.iter().enumerate() {
        let (seg, pos) = (b as usize / SEG, b as usize % SEG);
        let continues = seg_of_run == Some(seg) && pos == expect_pos;
        if pos != 0 && !continues {
            bad.push(format!(
                "byte {i}: segment {seg} position {pos} (expected {})",
                if seg_of_run == Some(seg) {
                    format!("position {expect_pos}")
                } else {
                    "a segment start".into()
                }
            ));
        }
        seg_of_run = Some(seg);
        expect_pos = pos + 1;
    }
    let tail: Vec<u8> = (0..SEG).map(|p| byte(SEGMENTS, p)).collect();
    assert!(
        got.ends_with(&tail),
        "the last, uncleared segment arrived whole"
    );
    assert!(
        bad.is_empty(),
        "{} segments lost unsent bytes (of {} bytes out); first: {:?}",
        bad.len(),
        got.len(),
        &bad[..bad.len().min(5)]
    );
    fe.detach();
    reg.shutdown();
}
