//! Key types. None of them can be printed, cloned by accident into logs, or outlive their use
//! without being wiped: every buffer is zeroized on drop.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::aead::{key_id_of, open_with, seal_with};
use crate::error::CryptoError;
use crate::mac::constant_time_eq;
use crate::material::Key32;
pub use crate::material::SecretBytes;

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
        Kek(Key32::from_bytes(out))
    }

    pub fn wrap(&self, root: &RootKey) -> Vec<u8> {
        seal_with(&self.0, 0, ROOT_AAD, root.0.as_bytes())
    }

    /// The X25519 key this KEK derives: the passphrase as a [`Recipient`], so the root key
    /// can be re-wrapped for it without the passphrase.
    pub fn unlock_key(&self) -> UnlockKey {
        UnlockKey::from_material(self.0.as_bytes())
    }

    /// Fails with [`CryptoError::Authentication`] for a wrong passphrase.
    pub fn unwrap_root(&self, blob: &[u8]) -> Result<RootKey, CryptoError> {
        let plain = open_with(&self.0, ROOT_AAD, blob)?;
        let bytes: [u8; 32] = plain
            .as_bytes()
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        Ok(RootKey(Key32::from_bytes(bytes)))
    }
}

const RECIPIENT_AAD: &[u8] = b"scaivault/v1/root-key-to-recipient";

/// Someone the root key can be wrapped to without holding their secret: an X25519 public key
/// whose private half is derived from a key file or the recovery key. This is what lets a
/// passphrase change replace the root key while the key file and recovery key keep working
/// (the new root key is wrapped to them anew), as age wraps a file key to its recipients.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient(x25519_dalek::PublicKey);

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.to_hex())
    }
}

impl Recipient {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    pub fn from_hex(s: &str) -> Option<Recipient> {
        let bytes: [u8; 32] = hex::decode(s).ok()?.try_into().ok()?;
        Some(Recipient(x25519_dalek::PublicKey::from(bytes)))
    }

    /// `[ephemeral public key: 32][root key sealed under HKDF(X25519(e, R))]`.
    pub fn wrap(&self, root: &RootKey) -> Vec<u8> {
        let ephemeral =
            x25519_dalek::StaticSecret::from(*Zeroizing::new(crate::random_bytes::<32>()));
        let epk = x25519_dalek::PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&self.0);
        let key = recipient_key(shared.as_bytes(), &epk, &self.0);
        let mut out = epk.as_bytes().to_vec();
        out.extend_from_slice(&seal_with(&key, 0, RECIPIENT_AAD, root.0.as_bytes()));
        out
    }
}

fn recipient_key(
    shared: &[u8; 32],
    epk: &x25519_dalek::PublicKey,
    pk: &x25519_dalek::PublicKey,
) -> Key32 {
    let hk = Hkdf::<Sha256>::new(Some(b"scaivault/v1/recipient"), shared);
    let mut out = [0u8; 32];
    hk.expand_multi_info(&[epk.as_bytes(), pk.as_bytes()], &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Key32::from_bytes(out)
}

/// The private half of a [`Recipient`], derived from a key file's or recovery key's bytes.
///
/// Anyone can wrap a root key *to* a recipient, so a wrap alone proves nothing about who made
/// it: the unlock key also tags the slot it was set in (see [`UnlockKey::slot_tag`]).
pub struct UnlockKey {
    secret: x25519_dalek::StaticSecret,
    tagger: Keyed,
}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey([redacted])")
    }
}

impl UnlockKey {
    pub fn from_material(material: &[u8]) -> UnlockKey {
        let hk = Hkdf::<Sha256>::new(Some(b"scaivault/v1/unlock-key"), material);
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(b"x25519", &mut *out).expect("valid length");
        let mut tag = Zeroizing::new([0u8; 32]);
        hk.expand(b"slot-tag", &mut *tag).expect("valid length");
        let tag_key = Key32::from_bytes(*tag);
        UnlockKey {
            secret: x25519_dalek::StaticSecret::from(*out),
            tagger: Keyed::new(&tag_key),
        }
    }

    pub fn recipient(&self) -> Recipient {
        Recipient(x25519_dalek::PublicKey::from(&self.secret))
    }

    /// Binds the slot `slot` to the data key `anchor` of the keyring it was set up with: a
    /// MAC, under a key only this unlock key's holder has, of the slot's name and the anchor's
    /// fingerprint ([`Keyring::anchor`]). At unseal the keyring the unwrapped root key opens
    /// must hold that anchor: someone who wrapped a root key of their own to the recipient
    /// (a header made from scratch, or from an older copy of the file) has neither the tag's
    /// key nor, unless they held the vault's keys after the slot was set, the anchor.
    pub fn slot_tag(&self, slot: &str, anchor: DataKeyId, fingerprint: &[u8; 32]) -> [u8; 32] {
        self.tagger
            .mac(&[slot.as_bytes(), &[0], &anchor.to_be_bytes(), fingerprint])
    }

    /// Fails with [`CryptoError::Authentication`] when the blob was wrapped to someone else.
    pub fn unwrap_root(&self, blob: &[u8]) -> Result<RootKey, CryptoError> {
        let (epk, sealed) = blob.split_at_checked(32).ok_or(CryptoError::Malformed)?;
        let epk = x25519_dalek::PublicKey::from(
            <[u8; 32]>::try_from(epk).map_err(|_| CryptoError::Malformed)?,
        );
        let shared = self.secret.diffie_hellman(&epk);
        if !shared.was_contributory() {
            return Err(CryptoError::Authentication);
        }
        let key = recipient_key(shared.as_bytes(), &epk, &self.recipient().0);
        let plain = open_with(&key, RECIPIENT_AAD, sealed)?;
        let bytes: [u8; 32] = plain
            .as_bytes()
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        Ok(RootKey(Key32::from_bytes(bytes)))
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

    /// A MAC key for one purpose, derived from this root key itself: what it tags (the file
    /// header) stops checking when the root key is replaced. Tags that must outlive a root
    /// key use [`Keyring::authenticator`].
    pub fn authenticator(&self, purpose: &str) -> Authenticator {
        authenticator_from(&self.0, purpose)
    }

    /// Replaces this root key: the keyring keeps this key's derivations (blinded keys, token
    /// hashes and durable tags stay valid without rewriting a record) and gains a fresh data
    /// key for every write from now on, so someone who held the old root key (an old
    /// passphrase, a replaced recovery key) and gets a later copy of the file can open nothing
    /// written after the change.
    pub fn successor(&self, ring: &mut Keyring) -> RootKey {
        ring.adopt_lineage(self);
        ring.rotate();
        RootKey::generate()
    }

    pub fn seal_keyring(&self, ring: &Keyring) -> Vec<u8> {
        let mut plain = Zeroizing::new(Vec::with_capacity(4 + (ring.keys.len() + 1) * 36));
        plain.extend_from_slice(&ring.active.to_be_bytes());
        for (id, key) in &ring.keys {
            plain.extend_from_slice(&id.to_be_bytes());
            plain.extend_from_slice(key.as_bytes());
        }
        if let Some(lineage) = &ring.lineage {
            plain.extend_from_slice(&LINEAGE_ID.to_be_bytes());
            plain.extend_from_slice(lineage.as_bytes());
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
        let mut keys = Vec::new();
        let mut lineage = None;
        for c in b[4..].chunks_exact(36) {
            let id = u32::from_be_bytes(c[..4].try_into().expect("checked"));
            let key = Key32::from_bytes(c[4..].try_into().expect("checked"));
            if id == LINEAGE_ID {
                if lineage.replace(key).is_some() {
                    return Err(CryptoError::Malformed);
                }
            } else {
                keys.push((id, key));
            }
        }
        if active == LINEAGE_ID || !keys.iter().any(|(id, _)| *id == active) {
            return Err(CryptoError::Malformed);
        }
        Ok(Keyring {
            keys,
            active,
            lineage,
        })
    }
}

pub type DataKeyId = u32;

/// The id under which a keyring stores its lineage key; data keys count from 1.
const LINEAGE_ID: u32 = 0;

fn authenticator_from(base: &Key32, purpose: &str) -> Authenticator {
    let mut label = b"auth:".to_vec();
    label.extend_from_slice(purpose.as_bytes());
    Authenticator(Keyed::new(&base.derive(&label)))
}

/// Data keys by id; new records are sealed with the active (newest) one, old records still open.
///
/// The lineage key is the vault's first root key, kept once the root key has been replaced
/// (or the file upgraded): blinded keys, token hashes and durable tags derive from it, so they
/// survive root rotation. A keyring that holds one also marks a file whose integrity ledger
/// and header tag are mandatory: stripping them is tampering, not an old format.
pub struct Keyring {
    keys: Vec<(DataKeyId, Key32)>,
    active: DataKeyId,
    lineage: Option<Key32>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keyring {{ keys: {}, active: {}, lineage: {} }}",
            self.keys.len(),
            self.active,
            self.lineage.is_some()
        )
    }
}

impl Keyring {
    /// A keyring for a new vault: one data key, and a lineage key of its own.
    pub fn new() -> Keyring {
        Keyring {
            keys: vec![(1, Key32::generate())],
            active: 1,
            lineage: Some(Key32::generate()),
        }
    }

    /// A keyring as file format 1 made it, without a lineage key: for tests of the upgrade.
    #[doc(hidden)]
    pub fn first_generation() -> Keyring {
        Keyring {
            lineage: None,
            ..Keyring::new()
        }
    }

    /// Whether this keyring carries a lineage key (see the type's documentation).
    pub fn has_lineage(&self) -> bool {
        self.lineage.is_some()
    }

    /// Keeps `root`'s derivations as this keyring's lineage, if it has none yet: what an
    /// upgrade from a file written before lineage keys does. Returns whether it changed.
    pub fn adopt_lineage(&mut self, root: &RootKey) -> bool {
        if self.lineage.is_some() {
            return false;
        }
        self.lineage = Some(root.0.clone());
        true
    }

    fn lineage_or<'a>(&'a self, root: &'a RootKey) -> &'a Key32 {
        self.lineage.as_ref().unwrap_or(&root.0)
    }

    /// Blinds table keys; the same for the life of the vault, whatever root key opens it.
    pub fn blinder(&self, root: &RootKey) -> Blinder {
        Blinder(Keyed::new(&self.lineage_or(root).derive(b"blind")))
    }

    /// Hashes API tokens; the same for the life of the vault.
    pub fn token_hasher(&self, root: &RootKey) -> TokenHasher {
        TokenHasher(Keyed::new(&self.lineage_or(root).derive(b"token-hash")))
    }

    /// A MAC key for one purpose (`backup-trailer`, `ledger`) that stays valid when the root
    /// key is replaced, so backups made before a passphrase change still check.
    pub fn authenticator(&self, root: &RootKey, purpose: &str) -> Authenticator {
        authenticator_from(self.lineage_or(root), purpose)
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

    /// The fingerprint of data key `id` that slot tags bind to (a MAC under the key, which
    /// reveals nothing of it), or `None` if this keyring does not hold it.
    pub fn anchor(&self, id: DataKeyId) -> Option<[u8; 32]> {
        self.key(id)
            .map(|k| Keyed::new(k).mac(&[b"scaivault/v1/slot-anchor"]))
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

    /// The tag of the concatenation of `parts` (the caller makes the encoding unambiguous).
    pub fn tag_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.0.mac(parts)
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
    fn a_recipient_wrap_opens_only_with_its_unlock_key() {
        let root = RootKey::generate();
        let key = UnlockKey::from_material(b"recovery key bytes");
        let to = key.recipient();
        assert_eq!(Recipient::from_hex(&to.to_hex()), Some(to.clone()));
        let blob = to.wrap(&root);
        assert_ne!(blob, to.wrap(&root), "each wrap has its own ephemeral key");
        assert_eq!(
            key.unwrap_root(&blob).unwrap().0.as_bytes(),
            root.0.as_bytes()
        );
        let other = UnlockKey::from_material(b"another key");
        assert_eq!(
            other.unwrap_root(&blob).unwrap_err(),
            CryptoError::Authentication
        );
        let mut flipped = blob.clone();
        flipped[40] ^= 1;
        assert!(key.unwrap_root(&flipped).is_err());
        assert!(key.unwrap_root(&blob[..20]).is_err());
        assert_eq!(format!("{key:?}"), "UnlockKey([redacted])");
        // The slot tag: bound to the slot, the anchor and the key that made it.
        let mut ring = Keyring::new();
        let fp = ring.anchor(1).unwrap();
        let tag = key.slot_tag("passphrase", 1, &fp);
        assert_eq!(tag, key.slot_tag("passphrase", 1, &fp));
        assert_ne!(tag, key.slot_tag("recovery", 1, &fp));
        assert_ne!(tag, other.slot_tag("passphrase", 1, &fp));
        ring.rotate();
        assert_ne!(ring.anchor(2).unwrap(), fp);
        assert!(ring.anchor(3).is_none());
    }

    #[test]
    fn a_successor_root_keeps_derivations_but_not_the_keyring() {
        let root = RootKey::generate();
        // A keyring from before lineage keys: derivations come from the root key itself.
        let mut ring = Keyring::new();
        ring.lineage = None;
        let blind = ring.blinder(&root).blind("secrets", b"a");
        let token = ring.token_hasher(&root).hash("skt_x");
        let tag = ring.authenticator(&root, "ledger").tag(b"m");
        let next = root.successor(&mut ring);
        assert!(ring.has_lineage());
        assert_eq!(ring.active_id(), 2);
        let reopened = next.open_keyring(&next.seal_keyring(&ring)).unwrap();
        assert_eq!(reopened.blinder(&next).blind("secrets", b"a"), blind);
        assert_eq!(reopened.token_hasher(&next).hash("skt_x"), token);
        assert!(reopened.authenticator(&next, "ledger").verify(b"m", &tag));
        assert!(root.open_keyring(&next.seal_keyring(&ring)).is_err());
        assert!(
            !next
                .authenticator("header")
                .verify(b"m", &root.authenticator("header").tag(b"m"))
        );
        // The lineage survives a second rotation unchanged.
        let third = next.successor(&mut ring);
        assert_eq!(ring.blinder(&third).blind("secrets", b"a"), blind);
    }

    #[test]
    fn blinding_and_token_hashing() {
        let root = RootKey::generate();
        let ring = Keyring::new();
        let b = ring.blinder(&root);
        assert_eq!(b.blind("secret", b"a/b"), b.blind("secret", b"a/b"));
        assert_ne!(b.blind("secret", b"a/b"), b.blind("policy", b"a/b"));
        let h = ring.token_hasher(&root);
        let stored = h.hash("skt_abc");
        assert!(h.verify("skt_abc", &stored));
        assert!(!h.verify("skt_abd", &stored));
    }
}
