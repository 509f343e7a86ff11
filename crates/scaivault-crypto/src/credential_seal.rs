//! Sealing a client-side file to a bearer credential: the key is derived (HKDF-SHA256) from
//! the credential and a purpose, so only a holder of that credential opens it. For files a
//! client keeps about what the vault gave it (`scaivault run`'s last-known-good snapshot).
//! The credential must be high-entropy (a vault token's body is 256 random bits): there is no
//! password hashing here.

use hkdf::Hkdf;
use sha2::Sha256;

use crate::aead::{open_with, seal_with};
use crate::error::CryptoError;
use crate::material::{Key32, SecretBytes};

/// The key id recorded in the sealing (one key per credential and purpose).
const KEY_ID: u32 = 0;

fn key_for(credential: &[u8], purpose: &str) -> Key32 {
    let hk = Hkdf::<Sha256>::new(Some(b"scaivault/v1/credential-seal"), credential);
    let mut out = [0u8; 32];
    hk.expand(purpose.as_bytes(), &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Key32::from_bytes(out)
}

/// Seals `plaintext` to `credential` for `purpose` (which also binds the sealing: a blob
/// sealed for one purpose does not open for another).
pub fn seal_to_credential(credential: &[u8], purpose: &str, plaintext: &[u8]) -> Vec<u8> {
    seal_with(
        &key_for(credential, purpose),
        KEY_ID,
        purpose.as_bytes(),
        plaintext,
    )
}

/// Opens what [`seal_to_credential`] sealed; a wrong credential or purpose, or a changed
/// byte, is [`CryptoError::Authentication`].
pub fn open_with_credential(
    credential: &[u8],
    purpose: &str,
    blob: &[u8],
) -> Result<SecretBytes, CryptoError> {
    open_with(&key_for(credential, purpose), purpose.as_bytes(), blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_credential_and_purpose_it_was_sealed_to_open_it() {
        let blob = seal_to_credential(b"skt_one", "run snapshot a", b"STRIPE=sk_live");
        assert_eq!(
            open_with_credential(b"skt_one", "run snapshot a", &blob)
                .unwrap()
                .as_bytes(),
            b"STRIPE=sk_live"
        );
        assert!(!blob.windows(7).any(|w| w == b"sk_live"));
        for (cred, purpose) in [
            (&b"skt_two"[..], "run snapshot a"),
            (b"skt_one", "run snapshot b"),
        ] {
            assert_eq!(
                open_with_credential(cred, purpose, &blob).unwrap_err(),
                CryptoError::Authentication
            );
        }
        let mut changed = blob.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(open_with_credential(b"skt_one", "run snapshot a", &changed).is_err());
    }
}
