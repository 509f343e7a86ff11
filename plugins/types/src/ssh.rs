//! The `ssh_key` type: an OpenSSH public key line (`public_key`) and/or a private key
//! (`private_key`, OpenSSH's own format or PEM). When both are given, the public key embedded in
//! the private key must be the one in `public_key`.

use crate::der;
use base64::Engine as _;
use scaivault_plugin_sdk::{input, Error, Map, Result, Value};

pub fn validate(data: &Map<String, Value>) -> Result<()> {
    let public = input::opt_str(data, "public_key")?;
    let private = input::opt_str(data, "private_key")?;
    if public.is_none() && private.is_none() {
        return Err(Error::validation("private_key", "an ssh_key needs private_key, public_key or both")
            .field("public_key", "an ssh_key needs private_key, public_key or both"));
    }
    let public_blob = match public {
        Some(line) => Some(parse_public(line).map_err(|e| Error::validation("public_key", e))?),
        None => None,
    };
    if let Some(text) = private {
        let embedded = parse_private(text).map_err(|e| Error::validation("private_key", e))?;
        if let (Some(embedded), Some(public)) = (embedded, &public_blob) {
            if &embedded != public {
                return Err(Error::validation(
                    "private_key",
                    "the private key does not belong to public_key",
                ));
            }
        }
    }
    Ok(())
}

/// Parses `TYPE BASE64 [COMMENT]` and returns the key blob.
fn parse_public(line: &str) -> core::result::Result<Vec<u8>, String> {
    let mut parts = line.split_whitespace();
    let kind = parts.next().ok_or("is empty")?;
    let b64 = parts.next().ok_or("has no key after its type (expected `TYPE BASE64 [COMMENT]`)")?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "key is not valid base64".to_string())?;
    let mut w = Wire::new(&blob);
    let inner = w.string()?;
    if inner != kind.as_bytes() {
        return Err(format!("says {} but the key inside is of another type", kind));
    }
    match kind {
        "ssh-ed25519" => {
            if w.string()?.len() != 32 {
                return Err("an ssh-ed25519 key is 32 bytes".into());
            }
        }
        "ssh-rsa" => {
            w.string()?;
            let n = w.string()?;
            if n.len() < 128 {
                return Err("RSA keys shorter than 1024 bits are refused".into());
            }
        }
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => {
            let curve = w.string()?;
            if kind.as_bytes().ends_with(curve) {
                w.string()?;
            } else {
                return Err("ECDSA curve does not match the key type".into());
            }
        }
        "sk-ssh-ed25519@openssh.com" | "sk-ecdsa-sha2-nistp256@openssh.com" => return Ok(blob),
        other => return Err(format!("unsupported key type {}", other)),
    }
    if !w.is_empty() {
        return Err("trailing bytes after the key".into());
    }
    Ok(blob)
}

/// Checks a private key; for OpenSSH's format returns the public key blob it embeds.
fn parse_private(text: &str) -> core::result::Result<Option<Vec<u8>>, String> {
    let blocks = der::pem_blocks(text)?;
    let block = match blocks.as_slice() {
        [one] => one,
        [] => return Err("no private key block found".into()),
        _ => return Err("holds more than one block".into()),
    };
    match block.label.as_str() {
        "OPENSSH PRIVATE KEY" => openssh_private(&block.der).map(Some),
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" => {
            der::single(&block.der, der::SEQUENCE, "is not a valid key").map_err(String::from)?;
            Ok(None)
        }
        other => Err(format!("{} is not an SSH private key", other)),
    }
}

fn openssh_private(bytes: &[u8]) -> core::result::Result<Vec<u8>, String> {
    const MAGIC: &[u8] = b"openssh-key-v1\0";
    let body = bytes.strip_prefix(MAGIC).ok_or("is not an openssh-key-v1 key")?;
    let mut w = Wire::new(body);
    let cipher = w.string()?.to_vec();
    let _kdf = w.string()?;
    let _kdf_options = w.string()?;
    if w.u32()? != 1 {
        return Err("holds more than one key".into());
    }
    let public = w.string()?.to_vec();
    let private = w.string()?;
    if !w.is_empty() {
        return Err("trailing bytes after the key".into());
    }
    if cipher == b"none" {
        let mut p = Wire::new(private);
        if p.u32()? != p.u32()? {
            return Err("is corrupt (check bytes differ)".into());
        }
        let kind = p.string()?;
        if !public.starts_with(&(kind.len() as u32).to_be_bytes()) || &public[4..4 + kind.len().min(public.len() - 4)] != kind {
            return Err("private and public parts are of different types".into());
        }
    } else if private.len() % 8 != 0 {
        return Err("encrypted section has a bad length".into());
    }
    Ok(public)
}

/// SSH wire format: big-endian u32 lengths before byte strings.
struct Wire<'a> {
    rest: &'a [u8],
}

impl<'a> Wire<'a> {
    fn new(data: &'a [u8]) -> Self {
        Wire { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn u32(&mut self) -> core::result::Result<u32, String> {
        if self.rest.len() < 4 {
            return Err("is truncated".into());
        }
        let (n, rest) = self.rest.split_at(4);
        self.rest = rest;
        Ok(u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
    }

    fn string(&mut self) -> core::result::Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        if len > self.rest.len() {
            return Err("is truncated".into());
        }
        let (s, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(s)
    }
}
