//! SCRAM-SHA-256 (RFC 5802, RFC 7677): the keys a PostgreSQL role's password verifier stores,
//! so a rotation backend can set a password without sending it in clear to the server.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What a SCRAM verifier holds besides the salt and iteration count.
pub struct ScramKeys {
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

/// `StoredKey = H(HMAC(SaltedPassword, "Client Key"))`, `ServerKey = HMAC(SaltedPassword,
/// "Server Key")`, with `SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)`.
#[allow(clippy::disallowed_methods)] // PBKDF2 lives here
pub fn scram_sha256_keys(password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut *salted);
    let hmac = |msg: &[u8]| -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&*salted).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    };
    let client_key = Zeroizing::new(hmac(b"Client Key"));
    ScramKeys {
        stored_key: Sha256::digest(*client_key).into(),
        server_key: hmac(b"Server Key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// RFC 7677, section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_vector() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = scram_sha256_keys(b"pencil", &salt, 4096);
        // ServerSignature = HMAC(ServerKey, AuthMessage) from the RFC's exchange.
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = crate::hmac_sha256(&keys.server_key, auth.as_bytes());
        assert_eq!(
            b64.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
