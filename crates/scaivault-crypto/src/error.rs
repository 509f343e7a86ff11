use std::fmt;

/// Crypto failures. Deliberately coarse: telling a wrong key from a tampered ciphertext would
/// help nobody but an attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong AAD, or the bytes were changed.
    Authentication,
    /// The sealed blob is too short or has an unknown format byte.
    Malformed,
    /// The blob names a data key the keyring does not hold.
    UnknownKey(u32),
    /// KDF parameters below the floor, or a KDF failure.
    WeakParameters,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::Authentication => {
                f.write_str("authentication failed (wrong key or tampered data)")
            }
            CryptoError::Malformed => f.write_str("malformed sealed record"),
            CryptoError::UnknownKey(id) => write!(f, "record sealed with unknown data key {id}"),
            CryptoError::WeakParameters => {
                f.write_str("key-derivation parameters are below the floor")
            }
        }
    }
}

impl std::error::Error for CryptoError {}
