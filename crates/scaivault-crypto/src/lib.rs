//! ScaiVault's cryptography, in one small crate with a narrow API.
//!
//! Key hierarchy: passphrase → Argon2id → key-encryption key (KEK) that wraps a random root key;
//! a key file or the recovery key is an X25519 recipient the root key is wrapped to. The root
//! key derives (HKDF-SHA256) the key that seals the keyring and the header's tag; the keyring's
//! lineage key derives the key that blinds table keys, the key that hashes tokens and durable
//! tags, so replacing the root key (a passphrase change) rewrites no record. The keyring holds data keys; every record is sealed with
//! XChaCha20-Poly1305 under the newest data key, with an AAD the caller binds to the record's
//! place. Every key type zeroizes on drop and prints as `[redacted]`.

#![forbid(unsafe_code)]

mod aead;
mod error;
mod kdf;
mod keys;
mod mac;

pub use aead::{SEAL_OVERHEAD, open_with, seal_with, sealing_fingerprint};
pub use error::CryptoError;
pub use kdf::{KdfParams, derive_kek};
pub use keys::{
    Authenticator, Blinder, DataKeyId, Kek, Key32, Keyring, Recipient, RootKey, SecretBytes,
    TokenHasher, UnlockKey,
};
pub use mac::{constant_time_eq, hmac_sha256, sha256};

/// Fills a fresh buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

/// A random token body: 256 bits, base64url without padding (43 characters).
pub fn random_token_body() -> String {
    use base64::Engine;
    let bytes = zeroize::Zeroizing::new(random_bytes::<32>());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*bytes)
}
