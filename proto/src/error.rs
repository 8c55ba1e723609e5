//! The crate's error type.

use std::fmt;

/// What went wrong, in a form callers can match on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An argument or configuration value is unusable; the message names it.
    InvalidArgument(String),
    /// A session, call or other object was not found.
    NotFound(String),
    /// The operation does not fit the current state (for example, a session that has ended).
    State(String),
    /// The operation or format is not supported.
    Unsupported(String),
    /// An operating-system I/O error, with what we were doing.
    Io(String, std::io::Error),
}

/// Shorthand for `std::result::Result<T, roomkit_media::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::State(m) => write!(f, "invalid state: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(_, e) => Some(e),
            _ => None,
        }
    }
}
