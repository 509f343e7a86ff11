//! The file header, the only plaintext record: enough to derive the key-encryption key and
//! nothing else. Stored in the meta table under the key `header`.

use scaivault_crypto::KdfParams;
use serde::{Deserialize, Serialize};

/// The file-format version this binary writes and reads. A change that older binaries cannot
/// read bumps it; migrations run at unseal.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u32,
    pub kdf: KdfParams,
    /// Hex of the 16-byte Argon2id salt.
    pub salt: String,
    /// The root key sealed under the passphrase-derived KEK (hex).
    pub wrapped_root: String,
    /// The root key sealed under a KEK from a key file, when one was set up (hex).
    #[serde(default)]
    pub wrapped_root_keyfile: Option<String>,
    /// The root key sealed under a KEK from the offline recovery key (hex).
    #[serde(default)]
    pub wrapped_root_recovery: Option<String>,
    /// The keyring sealed under a key derived from the root key (hex).
    pub keyring: String,
    /// Unix seconds; coarse on purpose.
    pub created_at: i64,
}

impl Header {
    pub fn salt_bytes(&self) -> Option<[u8; 16]> {
        hex::decode(&self.salt).ok()?.try_into().ok()
    }
}
