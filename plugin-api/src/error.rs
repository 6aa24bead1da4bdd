//! The error type module code returns to the host.

use std::fmt;

/// An error a module reports: text that says what failed and, where it helps, what to do.
///
/// The host prefixes it with the module's name when it logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this text.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// The text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context` in front (`"reading pua table: <error>"`).
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self { message: format!("{context}: {}", self.message) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self { message: message.to_string() }
    }
}
