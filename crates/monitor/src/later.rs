//! An answer that may come later: what a monitor command returns when its
//! work waits for something outside the process (a `chardev-add` whose
//! connect has not finished). The monitor stops reading its client until
//! the answer is there, as QEMU's stops while its command runs, but the I/O
//! thread and every other monitor go on.

use std::sync::{Arc, Mutex};

type Sink<T> = Box<dyn FnOnce(T) + Send + 'static>;

enum State<T> {
    /// Neither the answer nor where it goes yet.
    Open,
    /// The answer, waiting for [`Later::then`].
    Ready(T),
    /// Where the answer goes, waiting for [`Later::finish`].
    Wanted(Sink<T>),
    /// Delivered.
    Done,
}

/// See the module documentation. Cheap to clone; all clones are one answer.
pub struct Later<T>(Arc<Mutex<State<T>>>);

impl<T> Clone for Later<T> {
    fn clone(&self) -> Self {
        Later(self.0.clone())
    }
}

impl<T: Send + 'static> Default for Later<T> {
    fn default() -> Self {
        Later::new()
    }
}

impl<T: Send + 'static> Later<T> {
    /// An answer not given yet.
    pub fn new() -> Later<T> {
        Later(Arc::new(Mutex::new(State::Open)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the answer: to the sink if one waits, else kept for it. A
    /// second answer is dropped.
    pub fn finish(&self, v: T) {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, State::Done) {
            State::Open => *st = State::Ready(v),
            State::Wanted(sink) => {
                drop(st);
                sink(v);
            }
            other => *st = other,
        }
    }

    /// The answer, if it has come and no sink took it.
    pub fn take_ready(&self) -> Option<T> {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, State::Done) {
            State::Ready(v) => Some(v),
            other => {
                *st = other;
                None
            }
        }
    }

    /// Sends the answer to `sink`, now if it is there, else when it comes.
    pub fn then(&self, sink: impl FnOnce(T) + Send + 'static) {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, State::Done) {
            State::Ready(v) => {
                drop(st);
                sink(v);
            }
            State::Open => *st = State::Wanted(Box::new(sink)),
            other => *st = other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Later;
    use std::sync::mpsc::channel;

    #[test]
    fn the_answer_reaches_the_sink_in_either_order() {
        let l = Later::new();
        let (tx, rx) = channel();
        l.then(move |v: u32| tx.send(v).unwrap());
        assert!(rx.try_recv().is_err());
        l.finish(1);
        assert_eq!(rx.try_recv(), Ok(1));
        l.finish(2);
        assert!(rx.try_recv().is_err(), "one answer only");

        let l = Later::new();
        l.finish(3);
        let (tx, rx) = channel();
        l.then(move |v: u32| tx.send(v).unwrap());
        assert_eq!(rx.try_recv(), Ok(3));

        let l = Later::new();
        l.clone().finish(4);
        assert_eq!(l.take_ready(), Some(4));
        assert_eq!(l.take_ready(), None);
    }
}
