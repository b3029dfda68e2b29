//! The one error type for a value this crate refuses: a flag, an
//! environment variable, a config-file entry, a client's subscription or a
//! Redis payload that is not acceptable. Its message names the value, the
//! problem and the accepted forms, so the command line, the config file and
//! an `error` frame all say the same thing. Owns no other error (each role
//! has its own: `server::ServeError`, `team::TargetError`, …).

/// A value that is not acceptable; the message says why and what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl From<String> for InvalidValue {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl InvalidValue {
    /// Whether the message contains `needle` (for tests and callers that
    /// branch on the wording).
    pub fn contains(&self, needle: &str) -> bool {
        self.0.contains(needle)
    }
}
