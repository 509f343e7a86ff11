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
// This crate is where the primitives clippy.toml keeps out of every other crate live.
#![allow(clippy::disallowed_types)]

mod aead;
mod credential_seal;
mod error;
mod kdf;
mod keys;
mod mac;
mod material;
mod scram;

pub use aead::sealing_fingerprint;
pub use credential_seal::{open_with_credential, seal_to_credential};
pub use error::CryptoError;
pub use kdf::{KdfParams, derive_kek};
pub use keys::{
    Authenticator, Blinder, DataKeyId, Kek, Keyring, Recipient, RootKey, SecretBytes, TokenHasher,
    UnlockKey,
};
pub use mac::{Sha256Stream, constant_time_eq, hmac_sha256, sha256};
pub use scram::{ScramKeys, scram_sha256_keys};

/// Fills a fresh buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

/// Fills `buf` from the operating system's CSPRNG (what a plugin asks for as randomness).
pub fn fill_random(buf: &mut [u8]) {
    use rand::RngCore;
    rand::rngs::OsRng.fill_bytes(buf);
}

/// A uniform index below `n` (n > 0) from the OS CSPRNG: a character of a generated password.
pub fn random_below(n: usize) -> usize {
    use rand::Rng;
    rand::rngs::OsRng.gen_range(0..n)
}

/// Bytes for an identifier that must not collide and is not a secret (request, event and
/// webhook ids): from the thread-local generator (ChaCha, seeded from the OS), which saves a
/// system call per request.
#[allow(clippy::disallowed_methods)] // the one place for it
pub fn unique_id_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    rand::thread_rng().fill_bytes(&mut out);
    out
}

/// A uniform factor in `[low, high)` for spreading retries (not a secret).
#[allow(clippy::disallowed_methods)] // the one place for it
pub fn jitter(low: f64, high: f64) -> f64 {
    use rand::Rng;
    rand::thread_rng().gen_range(low..high)
}

/// A random token body: 256 bits, base64url without padding (43 characters).
pub fn random_token_body() -> String {
    use base64::Engine;
    let bytes = zeroize::Zeroizing::new(random_bytes::<32>());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*bytes)
}
