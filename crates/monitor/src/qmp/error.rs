//! QMP errors: what goes into `{"error": {"class": ..., "desc": ...}}`.

use thiserror::Error;

use crate::json::{JsonError, Value};

/// A command or protocol error, with QEMU's class and text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QmpError {
    /// QEMU's `GenericError`: almost everything.
    #[error("{0}")]
    Generic(String),
    /// QEMU's `CommandNotFound`.
    #[error("{0}")]
    CommandNotFound(String),
    /// QEMU's `DeviceNotFound` (what `yank` says of an unknown instance).
    #[error("{0}")]
    DeviceNotFound(String),
    /// Malformed JSON input (class `GenericError`).
    #[error(transparent)]
    Json(#[from] JsonError),
}

impl QmpError {
    /// A `GenericError`.
    pub fn generic(desc: impl Into<String>) -> QmpError {
        QmpError::Generic(desc.into())
    }

    /// The QAPI error class name.
    pub fn class(&self) -> &'static str {
        match self {
            QmpError::CommandNotFound(_) => "CommandNotFound",
            QmpError::DeviceNotFound(_) => "DeviceNotFound",
            _ => "GenericError",
        }
    }

    /// The `desc` text as bytes (a JSON error may quote invalid UTF-8).
    pub fn desc_bytes(&self) -> Vec<u8> {
        match self {
            QmpError::Json(e) => e.message_bytes(),
            // A NUL a client sent (`\u0000`) is kept as QEMU keeps it,
            // `C0 80`, so the text goes on after it.
            QmpError::Generic(s) | QmpError::CommandNotFound(s) | QmpError::DeviceNotFound(s) => {
                crate::json::utf8::from_str(s)
            }
        }
    }

    /// The `{"class": ..., "desc": ...}` object.
    pub fn to_value(&self) -> Value {
        let mut d = crate::json::Dict::new();
        d.insert("class", Value::str(self.class()));
        d.insert("desc", Value::Str(self.desc_bytes()));
        Value::Dict(d)
    }
}

/// Result of a QMP command.
pub type QmpResult<T> = std::result::Result<T, QmpError>;
