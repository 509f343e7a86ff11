//! OpenSSH's key formats (PROTOCOL.key) for Ed25519 and RSA key pairs, unencrypted: the vault
//! encrypts what it stores.

use base64::Engine as _;

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// An SSH `mpint`: big-endian, no leading zeros, a zero byte first if the top bit is set.
fn put_mpint(out: &mut Vec<u8>, be: &[u8]) {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    let digits = &be[start..];
    if digits.first().map_or(false, |b| b & 0x80 != 0) {
        let mut padded = Vec::with_capacity(digits.len() + 1);
        padded.push(0);
        padded.extend_from_slice(digits);
        put_string(out, &padded);
        padded.iter_mut().for_each(|b| *b = 0);
    } else {
        put_string(out, digits);
    }
}

/// Returns (private key PEM, public key line).
pub fn ed25519_openssh(seed: &[u8; 32], check: u32, comment: &str) -> (String, String) {
    let public = ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes();
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-ed25519");
    put_string(&mut blob, &public);

    let mut private = Vec::new();
    put_string(&mut private, b"ssh-ed25519");
    put_string(&mut private, &public);
    let mut pair = Vec::with_capacity(64);
    pair.extend_from_slice(seed);
    pair.extend_from_slice(&public);
    put_string(&mut private, &pair);
    pair.iter_mut().for_each(|b| *b = 0);
    envelope("ssh-ed25519", &blob, private, check, comment)
}

/// Returns (private key PEM, public key line) of an RSA key.
pub fn rsa_openssh(key: &rsa::RsaPrivateKey, check: u32, comment: &str) -> (String, String) {
    use rsa::PublicKeyParts;
    let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-rsa");
    put_mpint(&mut blob, &e);
    put_mpint(&mut blob, &n);

    // PROTOCOL.key's order: n, e, d, iqmp (q⁻¹ mod p), p, q.
    let primes = key.primes();
    let mut secrets = [
        key.d().to_bytes_be(),
        key.crt_coefficient().map(|c| c.to_bytes_be()).unwrap_or_default(),
        primes[0].to_bytes_be(),
        primes[1].to_bytes_be(),
    ];
    let mut private = Vec::new();
    put_string(&mut private, b"ssh-rsa");
    put_mpint(&mut private, &n);
    put_mpint(&mut private, &e);
    for s in &secrets {
        put_mpint(&mut private, s);
    }
    secrets.iter_mut().flatten().for_each(|b| *b = 0);
    envelope("ssh-rsa", &blob, private, check, comment)
}

/// Wraps a key's public blob and private fields in the `openssh-key-v1` container.
fn envelope(
    name: &str,
    blob: &[u8],
    fields: Vec<u8>,
    check: u32,
    comment: &str,
) -> (String, String) {
    let mut private = Vec::with_capacity(fields.len() + 64);
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&fields);
    let mut fields = fields;
    fields.iter_mut().for_each(|b| *b = 0);
    put_string(&mut private, comment.as_bytes());
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }

    let mut key = b"openssh-key-v1\0".to_vec();
    put_string(&mut key, b"none");
    put_string(&mut key, b"none");
    put_string(&mut key, b"");
    key.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut key, blob);
    put_string(&mut key, &private);

    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.encode(&key);
    let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(70) {
        pem.push_str(core::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    private.iter_mut().for_each(|b| *b = 0);
    key.iter_mut().for_each(|b| *b = 0);

    let mut line = format!("{} {}", name, b64.encode(blob));
    if !comment.is_empty() {
        line.push(' ');
        line.push_str(comment);
    }
    (pem, line)
}
