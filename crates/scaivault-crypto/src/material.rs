//! The two byte types every other module builds on: key material ([`Key32`]) and decrypted
//! buffers ([`SecretBytes`]). Both are wiped on drop and print as `[redacted]`. They live
//! apart from `keys` so that `aead` (which seals with a `Key32` and opens into a
//! `SecretBytes`) and `keys` (which uses `aead`) do not depend on each other.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 256 bits of key material.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Key32([u8; 32]);

impl Key32 {
    pub fn from_bytes(bytes: [u8; 32]) -> Key32 {
        Key32(bytes)
    }

    pub fn generate() -> Key32 {
        Key32(crate::random_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn derive(&self, label: &[u8]) -> Key32 {
        let hk = Hkdf::<Sha256>::new(Some(b"scaivault/v1"), &self.0);
        let mut out = [0u8; 32];
        hk.expand(label, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Key32(out)
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32([redacted])")
    }
}

/// A decrypted buffer (a secret's data, a keyring). Wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn from_vec(v: Vec<u8>) -> SecretBytes {
        SecretBytes(v)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}
