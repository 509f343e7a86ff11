//! OpenSSH's key formats (PROTOCOL.key) for an Ed25519 key pair, unencrypted: the vault
//! encrypts what it stores.

use base64::Engine as _;

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Returns (private key PEM, public key line).
pub fn ed25519_openssh(seed: &[u8; 32], check: u32, comment: &str) -> (String, String) {
    let public = ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes();
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-ed25519");
    put_string(&mut blob, &public);

    let mut private = Vec::new();
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    put_string(&mut private, b"ssh-ed25519");
    put_string(&mut private, &public);
    let mut pair = Vec::with_capacity(64);
    pair.extend_from_slice(seed);
    pair.extend_from_slice(&public);
    put_string(&mut private, &pair);
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
    put_string(&mut key, &blob);
    put_string(&mut key, &private);

    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.encode(&key);
    let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(70) {
        pem.push_str(core::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    pair.iter_mut().for_each(|b| *b = 0);
    private.iter_mut().for_each(|b| *b = 0);
    key.iter_mut().for_each(|b| *b = 0);

    let mut line = format!("ssh-ed25519 {}", b64.encode(&blob));
    if !comment.is_empty() {
        line.push(' ');
        line.push_str(comment);
    }
    (pem, line)
}
