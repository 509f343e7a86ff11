//! Key types. None of them can be printed, cloned by accident into logs, or outlive their use
//! without being wiped: every buffer is zeroized on drop.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::aead::{key_id_of, open_with, seal_with};
use crate::error::CryptoError;
use crate::mac::constant_time_eq;

/// 256 bits of key material.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; 32]);

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

    fn derive(&self, label: &[u8]) -> Key32 {
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

/// Key-encryption key: derived from the passphrase, used only to wrap the root key.
pub struct Kek(pub(crate) Key32);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

const ROOT_AAD: &[u8] = b"scaivault/v1/root-key";

impl Kek {
    /// A KEK from a high-entropy key file or recovery key (no Argon2 needed for 256 random bits).
    pub fn from_key_material(material: &[u8]) -> Kek {
        let hk = Hkdf::<Sha256>::new(Some(b"scaivault/v1/key-file"), material);
        let mut out = [0u8; 32];
        hk.expand(b"kek", &mut out).expect("valid length");
        Kek(Key32(out))
    }

    pub fn wrap(&self, root: &RootKey) -> Vec<u8> {
        seal_with(&self.0, 0, ROOT_AAD, root.0.as_bytes())
    }

    /// Fails with [`CryptoError::Authentication`] for a wrong passphrase.
    pub fn unwrap_root(&self, blob: &[u8]) -> Result<RootKey, CryptoError> {
        let plain = open_with(&self.0, ROOT_AAD, blob)?;
        let bytes: [u8; 32] = plain
            .as_bytes()
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        Ok(RootKey(Key32(bytes)))
    }
}

/// The root key: random, never derived from the passphrase, so changing the passphrase only
/// re-wraps these 32 bytes.
pub struct RootKey(Key32);

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([redacted])")
    }
}

const KEYRING_AAD: &[u8] = b"scaivault/v1/keyring";

impl RootKey {
    pub fn generate() -> RootKey {
        RootKey(Key32::generate())
    }

    pub fn blinder(&self) -> Blinder {
        Blinder(Keyed::new(&self.0.derive(b"blind")))
    }

    pub fn token_hasher(&self) -> TokenHasher {
        TokenHasher(Keyed::new(&self.0.derive(b"token-hash")))
    }

    /// A MAC key for one purpose (`backup-trailer`, …), derived from this root key: what it
    /// tags can be checked only by someone holding the vault's key.
    pub fn authenticator(&self, purpose: &str) -> Authenticator {
        let mut label = b"auth:".to_vec();
        label.extend_from_slice(purpose.as_bytes());
        Authenticator(Keyed::new(&self.0.derive(&label)))
    }

    pub fn seal_keyring(&self, ring: &Keyring) -> Vec<u8> {
        let mut plain = Zeroizing::new(Vec::with_capacity(4 + ring.keys.len() * 36));
        plain.extend_from_slice(&ring.active.to_be_bytes());
        for (id, key) in &ring.keys {
            plain.extend_from_slice(&id.to_be_bytes());
            plain.extend_from_slice(key.as_bytes());
        }
        seal_with(&self.0.derive(b"keyring"), 0, KEYRING_AAD, &plain)
    }

    pub fn open_keyring(&self, blob: &[u8]) -> Result<Keyring, CryptoError> {
        let plain = open_with(&self.0.derive(b"keyring"), KEYRING_AAD, blob)?;
        let b = plain.as_bytes();
        if b.len() < 4 || (b.len() - 4) % 36 != 0 {
            return Err(CryptoError::Malformed);
        }
        let active = u32::from_be_bytes(b[..4].try_into().expect("checked"));
        let keys = b[4..]
            .chunks_exact(36)
            .map(|c| {
                let id = u32::from_be_bytes(c[..4].try_into().expect("checked"));
                let key: [u8; 32] = c[4..].try_into().expect("checked");
                (id, Key32(key))
            })
            .collect::<Vec<_>>();
        if !keys.iter().any(|(id, _)| *id == active) {
            return Err(CryptoError::Malformed);
        }
        Ok(Keyring { keys, active })
    }
}

pub type DataKeyId = u32;

/// Data keys by id; new records are sealed with the active (newest) one, old records still open.
pub struct Keyring {
    keys: Vec<(DataKeyId, Key32)>,
    active: DataKeyId,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keyring {{ keys: {}, active: {} }}",
            self.keys.len(),
            self.active
        )
    }
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring {
            keys: vec![(1, Key32::generate())],
            active: 1,
        }
    }

    pub fn active_id(&self) -> DataKeyId {
        self.active
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds a fresh data key and makes it the one new writes use.
    pub fn rotate(&mut self) -> DataKeyId {
        let id = self.keys.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
        self.keys.push((id, Key32::generate()));
        self.active = id;
        id
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = self
            .key(self.active)
            .expect("the active key is always in the ring");
        seal_with(key, self.active, aad, plaintext)
    }

    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Result<SecretBytes, CryptoError> {
        let id = key_id_of(blob)?;
        let key = self.key(id).ok_or(CryptoError::UnknownKey(id))?;
        open_with(key, aad, blob)
    }

    /// The data key id a record was sealed with (for key-usage reports).
    pub fn key_id_of(blob: &[u8]) -> Result<DataKeyId, CryptoError> {
        key_id_of(blob)
    }

    fn key(&self, id: DataKeyId) -> Option<&Key32> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, key)| key)
    }
}

impl Default for Keyring {
    fn default() -> Self {
        Self::new()
    }
}

/// HMAC-SHA256 with the key schedule done once: every use clones the keyed state, which saves
/// two of the four compression-function calls on the hot path (every read blinds a key).
/// The prepared state is derived from a key but is not zeroized on drop: `sha2` offers no
/// zeroizing state. It lives exactly as long as the vault is unsealed.
struct Keyed(Hmac<Sha256>);

impl Keyed {
    fn new(key: &Key32) -> Keyed {
        Keyed(
            <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
                .expect("HMAC accepts any key length"),
        )
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.0.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

/// Keyed hash that turns logical record keys (paths, ids) into opaque table keys, so the file
/// reveals no path or identity. Stable across data-key rotation.
pub struct Blinder(Keyed);

impl fmt::Debug for Blinder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blinder([redacted])")
    }
}

impl Blinder {
    pub fn blind(&self, domain: &str, key: &[u8]) -> [u8; 32] {
        self.0.mac(&[domain.as_bytes(), &[0], key])
    }
}

/// Keyed hash of API tokens: the file stores only this, so a stolen file yields no token.
pub struct TokenHasher(Keyed);

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher([redacted])")
    }
}

impl TokenHasher {
    pub fn hash(&self, token: &str) -> [u8; 32] {
        self.0.mac(&[token.as_bytes()])
    }

    /// Constant-time comparison of a presented token against a stored hash.
    pub fn verify(&self, token: &str, stored: &[u8; 32]) -> bool {
        constant_time_eq(&self.hash(token), stored)
    }
}

/// Tags and checks messages under a key derived from the root key for one purpose.
pub struct Authenticator(Keyed);

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator([redacted])")
    }
}

impl Authenticator {
    pub fn tag(&self, msg: &[u8]) -> [u8; 32] {
        self.0.mac(&[msg])
    }

    /// Constant-time check of a tag.
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        constant_time_eq(&self.tag(msg), tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authenticator_checks_its_own_tags_only() {
        let root = RootKey::generate();
        let a = root.authenticator("backup-trailer");
        let tag = a.tag(b"trailer");
        assert!(a.verify(b"trailer", &tag));
        assert!(!a.verify(b"trailes", &tag));
        assert!(!root.authenticator("other").verify(b"trailer", &tag));
        assert!(
            !RootKey::generate()
                .authenticator("backup-trailer")
                .verify(b"trailer", &tag)
        );
        assert_eq!(format!("{a:?}"), "Authenticator([redacted])");
    }

    #[test]
    fn debug_never_prints_key_material() {
        let k = Key32::from_bytes([0xAB; 32]);
        let s = format!(
            "{k:?} {:?} {:?}",
            SecretBytes::from_vec(b"hunter2".to_vec()),
            RootKey::generate()
        );
        assert!(
            !s.contains("ab") && !s.contains("171") && !s.contains("hunter2"),
            "{s}"
        );
    }

    #[test]
    fn wrap_unwrap_and_wrong_kek() {
        let root = RootKey::generate();
        let kek = Kek::from_key_material(b"key file contents");
        let blob = kek.wrap(&root);
        let back = kek.unwrap_root(&blob).unwrap();
        assert_eq!(back.0.as_bytes(), root.0.as_bytes());
        let wrong = Kek::from_key_material(b"other");
        assert_eq!(
            wrong.unwrap_root(&blob).unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn keyring_rotation_keeps_old_records_readable() {
        let root = RootKey::generate();
        let mut ring = Keyring::new();
        let old = ring.seal(b"a", b"v1");
        assert_eq!(ring.rotate(), 2);
        let new = ring.seal(b"a", b"v2");
        assert_eq!(Keyring::key_id_of(&old).unwrap(), 1);
        assert_eq!(Keyring::key_id_of(&new).unwrap(), 2);
        let ring2 = root.open_keyring(&root.seal_keyring(&ring)).unwrap();
        assert_eq!(ring2.open(b"a", &old).unwrap().as_bytes(), b"v1");
        assert_eq!(ring2.open(b"a", &new).unwrap().as_bytes(), b"v2");
        assert_eq!(ring2.active_id(), 2);
        let other_root = RootKey::generate();
        assert!(other_root.open_keyring(&root.seal_keyring(&ring)).is_err());
    }

    #[test]
    fn blinding_and_token_hashing() {
        let root = RootKey::generate();
        let b = root.blinder();
        assert_eq!(b.blind("secret", b"a/b"), b.blind("secret", b"a/b"));
        assert_ne!(b.blind("secret", b"a/b"), b.blind("policy", b"a/b"));
        let h = root.token_hasher();
        let stored = h.hash("skt_abc");
        assert!(h.verify("skt_abc", &stored));
        assert!(!h.verify("skt_abd", &stored));
    }
}
