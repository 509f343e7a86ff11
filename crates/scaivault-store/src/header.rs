//! The file header, the only plaintext record: enough to derive the key-encryption key and
//! nothing else. Stored in the meta table under the key `header`.

use scaivault_crypto::KdfParams;
use serde::{Deserialize, Serialize};

/// The file-format version this binary writes. A change that older binaries cannot read bumps
/// it; migrations run at unseal. Version 2 added the header tag, recipient-wrapped root keys,
/// the keyring's lineage key and the ledger; a version-1 file is upgraded at its first unseal.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format this binary upgrades.
pub const OLDEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u32,
    pub kdf: KdfParams,
    /// Hex of the 16-byte Argon2id salt.
    pub salt: String,
    /// The root key wrapped for the passphrase (hex): to `passphrase_recipient` when that is
    /// set, else (a version-1 file) sealed under the passphrase-derived KEK.
    pub wrapped_root: String,
    /// The X25519 recipient the passphrase's KEK derives (hex). Being public, it lets the
    /// root key be replaced without the passphrase at hand (a key-file change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_recipient: Option<String>,
    /// `<anchor data key id>:<tag hex>`: proof that the holder of the slot's key set it up
    /// (see `UnlockKey::slot_tag`); every recipient slot has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_proof: Option<String>,
    /// The root key wrapped for a key file, when one was set up (hex).
    #[serde(default)]
    pub wrapped_root_keyfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile_recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile_proof: Option<String>,
    /// The root key wrapped for the offline recovery key (hex).
    #[serde(default)]
    pub wrapped_root_recovery: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_proof: Option<String>,
    /// The keyring sealed under a key derived from the root key (hex).
    pub keyring: String,
    /// Unix seconds; coarse on purpose.
    pub created_at: i64,
    /// HMAC of every other field under a key derived from the root key (hex): a changed byte
    /// anywhere in the header is refused at unseal. Absent only in version-1 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Header {
    /// Parses the header record: the format version first (a newer file is refused with
    /// its version named), then the fields, then the ranges that Argon2id will be run with.
    pub fn parse(raw: &[u8]) -> Result<Header, crate::StoreError> {
        use crate::StoreError;
        let unreadable = || StoreError::Corrupt("the vault header is unreadable".into());
        let probe: serde_json::Value = serde_json::from_slice(raw).map_err(|_| unreadable())?;
        let version = probe
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        if !(u64::from(OLDEST_FORMAT)..=u64::from(FORMAT_VERSION)).contains(&version) {
            return Err(StoreError::UnsupportedFormat(
                version.min(u64::from(u32::MAX)) as u32,
            ));
        }
        let header: Header = serde_json::from_value(probe).map_err(|_| unreadable())?;
        // Format 1 never wrote a recipient or a tag: a format-1 header with one was made by
        // someone planting a way in for the upgrade to keep.
        if header.format_version == 1
            && (header.passphrase_recipient.is_some()
                || header.keyfile_recipient.is_some()
                || header.recovery_recipient.is_some()
                || header.passphrase_proof.is_some()
                || header.keyfile_proof.is_some()
                || header.recovery_proof.is_some()
                || header.mac.is_some())
        {
            return Err(StoreError::Integrity {
                table: "meta",
                detail: "a format-1 header carries fields only format 2 writes".into(),
            });
        }
        if header.kdf.check().is_err() {
            return Err(StoreError::Corrupt(
                "the header's KDF parameters are out of range".into(),
            ));
        }
        if header.salt_bytes().is_none() {
            return Err(unreadable());
        }
        Ok(header)
    }

    pub fn salt_bytes(&self) -> Option<[u8; 16]> {
        hex::decode(&self.salt).ok()?.try_into().ok()
    }

    /// The bytes the header's tag covers: every field but the tag, in declaration order.
    pub(crate) fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.mac = None;
        serde_json::to_vec(&unsigned).expect("header serializes")
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("header serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "format_version": 1, "kdf": {"m_cost_kib": 19456, "t_cost": 2, "p_cost": 1},
            "salt": "00112233445566778899aabbccddeeff", "wrapped_root": "00", "keyring": "00", "created_at": 0
        })
    }

    #[test]
    fn parses_and_refuses() {
        assert!(Header::parse(valid().to_string().as_bytes()).is_ok());
        let mut newer = valid();
        newer["format_version"] = 3.into();
        assert_eq!(
            Header::parse(newer.to_string().as_bytes()).unwrap_err(),
            StoreError::UnsupportedFormat(3)
        );
        let mut current = valid();
        current["format_version"] = 2.into();
        assert!(Header::parse(current.to_string().as_bytes()).is_ok());
        let mut weak = valid();
        weak["kdf"]["m_cost_kib"] = 8.into();
        assert!(matches!(
            Header::parse(weak.to_string().as_bytes()),
            Err(StoreError::Corrupt(_))
        ));
        let mut bad_salt = valid();
        bad_salt["salt"] = "zz".into();
        assert!(matches!(
            Header::parse(bad_salt.to_string().as_bytes()),
            Err(StoreError::Corrupt(_))
        ));
        for garbage in [
            &b""[..],
            b"{",
            b"[]",
            b"\xff\xfe",
            b"{\"format_version\": 1}",
        ] {
            assert!(Header::parse(garbage).is_err());
        }
    }
}
