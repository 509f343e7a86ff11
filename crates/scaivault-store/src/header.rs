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
        if version != u64::from(FORMAT_VERSION) {
            return Err(StoreError::UnsupportedFormat(
                version.min(u64::from(u32::MAX)) as u32,
            ));
        }
        let header: Header = serde_json::from_value(probe).map_err(|_| unreadable())?;
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
        newer["format_version"] = 2.into();
        assert_eq!(
            Header::parse(newer.to_string().as_bytes()).unwrap_err(),
            StoreError::UnsupportedFormat(2)
        );
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
