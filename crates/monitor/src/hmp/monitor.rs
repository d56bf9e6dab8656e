//! The HMP monitor as a chardev frontend (`-mon chardev=ID,mode=readline`,
//! `-monitor DEV`): banner and `(qemu) ` prompt when a peer connects, line
//! editing with QEMU's echo, command output, the prompt again. Supports
//! hotswap like the QMP monitor (the line being edited survives).

use std::collections::VecDeque;
use std::sync::Arc;

use qchar_chardev::registry::Registry;
use qchar_chardev::{CharFrontend, ChardevError, ChardevEvent, FrontendHandlers};

use super::readline::{Readline, PROMPT};
use crate::output::{Shared, DEFAULT_OUTPUT_CAP, INPUT_PAUSE_THRESHOLD};
use crate::qmp::cmd::QmpEnv;

/// A running HMP monitor.
pub struct HmpMonitor {
    fe: CharFrontend,
}

impl HmpMonitor {
    /// Starts an HMP monitor on chardev `id`.
    pub fn attach(
        registry: &Registry,
        id: &str,
        env: Arc<QmpEnv>,
    ) -> Result<HmpMonitor, ChardevError> {
        Ok(HmpMonitor::on_frontend(registry.attach(id)?, env))
    }

    /// Starts an HMP monitor on an attached frontend.
    pub fn on_frontend(fe: CharFrontend, env: Arc<QmpEnv>) -> HmpMonitor {
        let shared = Shared::new(DEFAULT_OUTPUT_CAP);
        shared.out().set_frontend(fe.clone());
        let h = HmpHandlers {
            rl: Readline::new(),
            env,
            shared,
            quit: false,
            swap_keeps_peer: false,
            pending: VecDeque::new(),
        };
        fe.set_handlers(Box::new(h));
        HmpMonitor { fe }
    }

    /// Stops the monitor and releases its chardev.
    pub fn detach(self) {
        self.fe.clear_handlers();
        self.fe.detach();
    }
}

struct HmpHandlers {
    rl: Readline,
    env: Arc<QmpEnv>,
    shared: Arc<Shared>,
    quit: bool,
    swap_keeps_peer: bool,
    /// Keys taken but not handled yet: each key's echo redraws the line
    /// (a few KiB for a long one), so keys wait here while the client has
    /// not read what came before, instead of overflowing the output.
    pending: VecDeque<u8>,
}

impl HmpHandlers {
    /// Handles waiting keys while the output held stays small.
    fn process_pending(&mut self) {
        while !self.quit && self.shared.out().held() <= INPUT_PAUSE_THRESHOLD {
            let Some(b) = self.pending.pop_front() else {
                return;
            };
            self.key(b);
        }
    }

    fn key(&mut self, b: u8) {
        {
            let mut echo = Vec::new();
            let line = self.rl.feed_completing(b, &mut echo, &super::completions);
            self.shared.out().push(echo);
            if let Some(line) = line {
                let line = super::str_of(&line);
                let o = super::run_line(&self.env, &line);
                let mut text = super::bytes_of(&super::crlf(&o.text));
                if o.quit {
                    self.quit = true;
                } else {
                    text.extend_from_slice(PROMPT);
                    self.rl.prompt_shown();
                }
                self.shared.out().push(text);
            }
        }
    }
}

impl FrontendHandlers for HmpHandlers {
    fn can_read(&mut self) -> usize {
        if self.quit {
            return 0;
        }
        if !self.pending.is_empty() {
            // Resumed by `write_ready` once the client has read.
            self.shared.out().input_paused = true;
            return 0;
        }
        self.shared.out().input_room(4096)
    }

    fn read(&mut self, data: &[u8]) {
        self.swap_keeps_peer = false;
        self.pending.extend(data);
        self.process_pending();
    }

    fn event(&mut self, event: ChardevEvent) {
        match event {
            ChardevEvent::Opened => {
                if std::mem::take(&mut self.swap_keeps_peer) {
                    return;
                }
                self.rl.restart();
                let v = &self.env.version;
                let banner = format!(
                    "QEMU {}.{}.{} monitor - type 'help' for more information\r\n(qemu) ",
                    v.major, v.minor, v.micro
                );
                self.shared.out().push(banner.into_bytes());
            }
            ChardevEvent::Closed => {
                self.swap_keeps_peer = false;
                self.shared.out().clear();
                self.pending.clear();
            }
            _ => {}
        }
    }

    fn supports_hotswap(&self) -> bool {
        true
    }

    fn backend_changed(&mut self, fe: &CharFrontend) -> Result<(), String> {
        self.swap_keeps_peer = fe.is_open();
        Ok(())
    }

    fn write_ready(&mut self) {
        self.shared.out().flush();
        self.process_pending();
        self.shared.output_ready();
    }
}
