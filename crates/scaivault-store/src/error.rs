use std::fmt;

use scaivault_core::{Error, ErrorCode};

/// What can go wrong below the engine. Messages name tables and problems, never contents.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The vault is sealed: no keys in memory.
    Sealed,
    /// The passphrase or key did not open the root key. Deliberately says nothing more.
    WrongPassphrase,
    /// A record failed to authenticate: tampered, moved, or sealed with another key.
    Integrity {
        table: &'static str,
        detail: String,
    },
    /// The file is not a readable vault (truncated, not redb, damaged structure).
    Corrupt(String),
    UnsupportedFormat(u32),
    AlreadyExists(String),
    NotFound(String),
    /// The disk is full; nothing of the failed batch was written.
    StorageFull,
    /// The file is in use by another process.
    Locked,
    Io(String),
    /// The operation cannot be done on this file as it is; the message says what to do first.
    Refused(String),
    /// The writer has stopped (shutdown, or an earlier fatal error).
    Closed,
    /// The database holding the vault cannot be reached now; the same call may succeed later.
    Unavailable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Sealed => f.write_str("the vault is sealed"),
            StoreError::WrongPassphrase => {
                f.write_str("the passphrase or key does not open this vault")
            }
            StoreError::Integrity { table, detail } => {
                write!(f, "integrity check failed in table '{table}': {detail}")
            }
            StoreError::Corrupt(d) => {
                write!(f, "the vault file is damaged or not a vault file: {d}")
            }
            StoreError::UnsupportedFormat(v) => write!(
                f,
                "vault file format version {v} is not supported by this binary (it reads version {})",
                crate::FORMAT_VERSION
            ),
            StoreError::AlreadyExists(p) => write!(f, "a vault file already exists at {p}"),
            StoreError::NotFound(p) => write!(f, "no vault file at {p}"),
            StoreError::StorageFull => f.write_str(
                "the disk is full; the write was not made (the file is consistent: free space, then restart the server)",
            ),
            StoreError::Locked => f.write_str("the vault file is in use by another process"),
            StoreError::Io(d) => write!(f, "I/O error: {d}"),
            StoreError::Refused(d) => f.write_str(d),
            StoreError::Closed => f.write_str("the vault is closed"),
            StoreError::Unavailable(d) => write!(f, "the vault's database is unavailable: {d}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        let code = match &e {
            StoreError::Sealed | StoreError::Closed => ErrorCode::VaultSealed,
            StoreError::WrongPassphrase => ErrorCode::InvalidPassphrase,
            StoreError::Integrity { .. } | StoreError::Corrupt(_) => ErrorCode::IntegrityError,
            StoreError::UnsupportedFormat(_) => ErrorCode::UnsupportedFormat,
            StoreError::AlreadyExists(_) => ErrorCode::VaultExists,
            StoreError::NotFound(_) => ErrorCode::VaultNotFound,
            StoreError::StorageFull => ErrorCode::StorageFull,
            StoreError::Locked | StoreError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            StoreError::Io(_) => ErrorCode::InternalError,
            StoreError::Refused(_) => ErrorCode::InvalidRequest,
        };
        Error::new(code, e.to_string())
    }
}

/// Maps an I/O error, singling out a full disk so callers can say so plainly.
pub(crate) fn io_error(e: &std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
        StoreError::StorageFull
    } else {
        StoreError::Io(e.to_string())
    }
}
