//! Sealing: `[format 0x01][data key id: u32 BE][nonce: 24][ciphertext ‖ tag: 16]`.
//! XChaCha20's 192-bit nonce makes random nonces safe for any number of records.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::CryptoError;
use crate::material::{Key32, SecretBytes};

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + 24;

/// Bytes a sealed record adds to its plaintext.
pub(crate) const SEAL_OVERHEAD: usize = HEADER + 16;

/// Seals `plaintext` under `key`, recording `key_id` so the right key opens it later.
#[allow(clippy::disallowed_methods)] // the nonce generator, where it belongs
pub(crate) fn seal_with(key: &Key32, key_id: u32, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    // Nonces come from the thread-local CSPRNG (ChaCha, seeded and periodically reseeded from
    // the OS): 192 random bits make collisions negligible, and a syscall per sealed record
    // showed up in the writer thread's profile. Keys keep coming straight from the OS.
    use rand::RngCore;
    let mut nonce = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut nonce);
    seal_with_nonce(key, key_id, &nonce, aad, plaintext)
}

pub(crate) fn seal_with_nonce(
    key: &Key32,
    key_id: u32,
    nonce: &[u8; 24],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.push(FORMAT);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(nonce);
    let header = out.clone();
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: &full_aad(&header, aad),
            },
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    out.extend_from_slice(&ct);
    out
}

/// What identifies one sealing of a record, without its ciphertext: the header (format, key
/// id, the random nonce) and the tag. No two sealings share a nonce, and no other ciphertext
/// authenticates under the same nonce and tag without the key, so a digest over these two
/// tells sealings apart as well as one over the whole blob, at a fixed cost whatever the
/// record's size. `None` for a blob too short to be sealed.
pub fn sealing_fingerprint(blob: &[u8]) -> Option<(&[u8], &[u8])> {
    (blob.len() >= SEAL_OVERHEAD && blob[0] == FORMAT)
        .then(|| (&blob[..HEADER], &blob[blob.len() - 16..]))
}

/// The key id a sealed blob names, so a keyring can pick the key.
pub(crate) fn key_id_of(blob: &[u8]) -> Result<u32, CryptoError> {
    if blob.len() < SEAL_OVERHEAD || blob[0] != FORMAT {
        return Err(CryptoError::Malformed);
    }
    Ok(u32::from_be_bytes(
        blob[1..5].try_into().expect("length checked"),
    ))
}

/// Opens a blob sealed by [`seal_with`] with the same key and AAD.
pub(crate) fn open_with(key: &Key32, aad: &[u8], blob: &[u8]) -> Result<SecretBytes, CryptoError> {
    key_id_of(blob)?;
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let (header, ct) = blob.split_at(HEADER);
    let nonce = XNonce::from_slice(&header[5..]);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: ct,
                aad: &full_aad(header, aad),
            },
        )
        .map(SecretBytes::from_vec)
        .map_err(|_| CryptoError::Authentication)
}

/// The header (format, key id, nonce) is authenticated too, so a key id cannot be swapped.
fn full_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(header.len() + aad.len());
    v.extend_from_slice(header);
    v.extend_from_slice(aad);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = Key32::from_bytes([7u8; 32]);
        let blob = seal_with(&key, 3, b"table/key", b"hunter2");
        assert_eq!(blob.len(), 7 + SEAL_OVERHEAD);
        assert_eq!(
            open_with(&key, b"table/key", &blob).unwrap().as_bytes(),
            b"hunter2"
        );
        assert_eq!(
            open_with(&key, b"table/other", &blob).unwrap_err(),
            CryptoError::Authentication
        );
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x40;
            assert!(
                open_with(&key, b"table/key", &bad).is_err(),
                "flip at {i} undetected"
            );
        }
        assert_eq!(
            open_with(&key, b"x", &blob[..10]).unwrap_err(),
            CryptoError::Malformed
        );
        let other = Key32::from_bytes([8u8; 32]);
        assert_eq!(
            open_with(&other, b"table/key", &blob).unwrap_err(),
            CryptoError::Authentication
        );
    }

    /// A checked-in vector: the on-disk record format must not change by accident.
    #[test]
    fn format_vector() {
        let key = Key32::from_bytes([0x42; 32]);
        let blob = seal_with_nonce(&key, 1, &[0x24; 24], b"aad", b"scaivault");
        assert_eq!(
            hex::encode(&blob),
            FORMAT_VECTOR,
            "the sealed-record format changed; this breaks every existing vault file"
        );
    }

    const FORMAT_VECTOR: &str = include_str!("../vectors/seal-v1.hex");
}
