//! Helpers shared by the chardev integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use qchar_chardev::spec::{ChardevBackend, ChardevFile, ChardevRingbuf};
use qchar_chardev::{CharFrontend, ChardevEvent, FrontendHandlers};

/// What a [`Recorder`] saw.
#[derive(Default, Debug)]
pub struct Seen {
    pub input: Vec<u8>,
    pub events: Vec<ChardevEvent>,
    pub changes: usize,
    pub write_ready: usize,
}

impl Seen {
    /// How many times `e` was seen.
    pub fn count(&self, e: ChardevEvent) -> usize {
        self.events.iter().filter(|&&x| x == e).count()
    }
}

/// How many times a [`Recorder`] saw `e`.
pub fn count(seen: &Arc<Mutex<Seen>>, e: ChardevEvent) -> usize {
    seen.lock().unwrap().count(e)
}

/// The input a [`Recorder`] got so far.
pub fn input(seen: &Arc<Mutex<Seen>>) -> Vec<u8> {
    seen.lock().unwrap().input.clone()
}

/// A frontend that records everything and can be told to refuse changes.
pub struct Recorder {
    pub seen: Arc<Mutex<Seen>>,
    pub hotswap: bool,
    pub refuse: Arc<Mutex<Option<String>>>,
    pub room: usize,
}

impl Recorder {
    pub fn new(hotswap: bool) -> (Recorder, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (
            Recorder {
                seen: seen.clone(),
                hotswap,
                refuse: Arc::new(Mutex::new(None)),
                room: 4096,
            },
            seen,
        )
    }
}

impl FrontendHandlers for Recorder {
    fn can_read(&mut self) -> usize {
        self.room
    }
    fn read(&mut self, data: &[u8]) {
        self.seen.lock().unwrap().input.extend_from_slice(data);
    }
    fn event(&mut self, e: ChardevEvent) {
        self.seen.lock().unwrap().events.push(e);
    }
    fn supports_hotswap(&self) -> bool {
        self.hotswap
    }
    fn backend_changed(&mut self, _fe: &CharFrontend) -> Result<(), String> {
        if let Some(r) = self.refuse.lock().unwrap().clone() {
            return Err(r);
        }
        self.seen.lock().unwrap().changes += 1;
        Ok(())
    }
    fn write_ready(&mut self) {
        self.seen.lock().unwrap().write_ready += 1;
    }
}

pub fn file_spec(path: &std::path::Path) -> ChardevBackend {
    ChardevBackend::File(ChardevFile {
        out: path.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

pub fn file_in_spec(out: &std::path::Path, input: &std::path::Path) -> ChardevBackend {
    ChardevBackend::File(ChardevFile {
        out: out.to_string_lossy().into_owned(),
        input: Some(input.to_string_lossy().into_owned()),
        ..Default::default()
    })
}

pub fn ringbuf_spec(size: i64) -> ChardevBackend {
    ChardevBackend::Ringbuf(ChardevRingbuf {
        size: Some(size),
        ..Default::default()
    })
}

pub fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}
