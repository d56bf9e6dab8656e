//! HMP, the human monitor (being written).

use crate::qmp::QmpEnv;

/// Runs one HMP command line and returns its output.
pub fn execute(_env: &QmpEnv, line: &str) -> String {
    if line.trim().is_empty() {
        return String::new();
    }
    let cmd = line.split_whitespace().next().unwrap_or("");
    format!("unknown command: '{cmd}'\r\n")
}
