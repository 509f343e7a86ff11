//! Key pairs and password hashes: RSA and EC (P-256, P-384) as PKCS#8 private and SPKI public
//! PEM — what OpenSSL, Java, Go and every TLS library read — and bcrypt (`$2b$`) hashes.
//! Randomness is the host's CSPRNG (the `random` capability): nothing here seeds itself.

use base64::Engine as _;
use rand_core::{CryptoRng, RngCore};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use scaivault_plugin_sdk::{host, Error, Result};

/// The host's CSPRNG as the `rand_core` generator the key crates take.
pub struct HostRng;

impl RngCore for HostRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        host::random_bytes(dest)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> core::result::Result<(), rand_core::Error> {
        host::random_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for HostRng {}

fn failed(what: &str) -> Error {
    // The crates' errors say nothing a caller could act on (and must not echo key material).
    Error::new("plugin_failed", format!("could not {}", what))
}

/// The RSA sizes offered: 2048 (the least current guidance accepts) and 3072 (NIST's 128-bit
/// level, OpenSSH's default). Not 4096: its prime search takes 20 to 60 seconds in the sandbox
/// (measured; the arithmetic is portable Rust without the native code OpenSSL has), too close
/// to the sandbox's 60-second deadline to be dependable.
pub fn rsa_bits(bits: Option<u64>, default: u64) -> Result<usize> {
    match bits.unwrap_or(default) {
        b @ (2048 | 3072) => Ok(b as usize),
        4096 => Err(Error::validation(
            "bits",
            "4096-bit keys take 20 to 60 s to generate in the WebAssembly sandbox, too close to its deadline; use 2048 or 3072, or generate one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096` and store it",
        )),
        _ => Err(Error::validation("bits", "must be 2048 or 3072")),
    }
}

pub fn rsa_key(bits: usize) -> Result<rsa::RsaPrivateKey> {
    rsa::RsaPrivateKey::new(&mut HostRng, bits).map_err(|_| failed("generate an RSA key"))
}

/// (PKCS#8 private key PEM, SPKI public key PEM).
pub fn rsa_pem(bits: usize) -> Result<(String, String)> {
    let key = rsa_key(bits)?;
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| failed("encode the RSA key"))?;
    let public = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|_| failed("encode the RSA public key"))?;
    Ok((private.to_string(), public))
}

/// (PKCS#8 private key PEM, SPKI public key PEM) on `curve` (`P-256` or `P-384`).
pub fn ec_pem(curve: &str) -> Result<(String, String)> {
    macro_rules! pair {
        ($c:ident) => {{
            let key = $c::SecretKey::random(&mut HostRng);
            let private = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| failed("encode the EC key"))?;
            let public = key
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|_| failed("encode the EC public key"))?;
            Ok((private.to_string(), public))
        }};
    }
    match curve {
        "P-256" | "p256" | "prime256v1" | "secp256r1" => pair!(p256),
        "P-384" | "p384" | "secp384r1" => pair!(p384),
        _ => Err(Error::validation(
            "curve",
            "must be P-256 (also prime256v1, secp256r1) or P-384 (also secp384r1)",
        )),
    }
}

/// bcrypt's work factors offered: 10 is the common default; each step doubles the cost.
pub const BCRYPT_ROUNDS: core::ops::RangeInclusive<u64> = 10..=14;

/// The `$2b$` hash of `password` (which must be 1 to 72 bytes: bcrypt ignores the rest, so a
/// longer one would hash like its prefix).
pub fn bcrypt_hash(password: &str, rounds: u32) -> String {
    let mut salt = [0u8; 16];
    host::random_bytes(&mut salt);
    let mut input = password.as_bytes().to_vec();
    input.push(0);
    input.truncate(72);
    let raw = bcrypt::bcrypt(rounds, salt, &input);
    input.iter_mut().for_each(|b| *b = 0);
    format!(
        "$2b${:02}${}{}",
        rounds,
        bcrypt::BASE_64.encode(salt),
        bcrypt::BASE_64.encode(&raw[..23])
    )
}
