//! The `certificate` type: a PEM leaf certificate (`cert_pem`), optionally its chain
//! (`chain_pem`, or more certificates after the leaf in `cert_pem`) and its private key
//! (`key_pem`). Checks that every certificate parses, that the chain is in issuing order, that the
//! leaf has not expired and that the key belongs to the leaf; returns the leaf's notAfter.

use crate::der::{self, Reader, Tlv};
use crate::time;
use scaivault_plugin_sdk::{input, Error, Map, Result, Value};

struct Cert<'a> {
    issuer: &'a [u8],
    subject: &'a [u8],
    not_after: String,
    key: PublicKey,
}

#[derive(PartialEq, Eq)]
enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { point: Vec<u8>, curve: Option<Vec<u8>> },
    Ed25519(Vec<u8>),
    Other,
}

impl PublicKey {
    fn kind(&self) -> &'static str {
        match self {
            PublicKey::Rsa { .. } => "RSA",
            PublicKey::Ec { .. } => "EC",
            PublicKey::Ed25519(_) => "Ed25519",
            PublicKey::Other => "unsupported",
        }
    }
}

/// Returns the leaf's notAfter (RFC 3339).
pub fn validate(data: &Map<String, Value>, now_ms: i64) -> Result<String> {
    let cert_pem = input::str_field(data, "cert_pem")?;
    let blocks = der::pem_blocks(cert_pem).map_err(|e| Error::validation("cert_pem", e))?;
    if let Some(b) = blocks.iter().find(|b| b.label != "CERTIFICATE") {
        return Err(Error::validation(
            "cert_pem",
            format!("holds a {} block; cert_pem takes certificates only (the key goes in key_pem)", b.label),
        ));
    }
    if blocks.is_empty() {
        return Err(Error::validation("cert_pem", "no CERTIFICATE block found"));
    }
    let mut ders: Vec<(&str, &[u8])> = blocks.iter().map(|b| ("cert_pem", &b.der[..])).collect();
    let chain_blocks = match input::opt_str(data, "chain_pem")? {
        Some(text) => der::pem_blocks(text).map_err(|e| Error::validation("chain_pem", e))?,
        None => Vec::new(),
    };
    if let Some(b) = chain_blocks.iter().find(|b| b.label != "CERTIFICATE") {
        return Err(Error::validation(
            "chain_pem",
            format!("holds a {} block; chain_pem takes certificates only", b.label),
        ));
    }
    ders.extend(chain_blocks.iter().map(|b| ("chain_pem", &b.der[..])));

    let mut certs = Vec::with_capacity(ders.len());
    for (i, (field, bytes)) in ders.iter().enumerate() {
        let cert = parse_cert(bytes).map_err(|e| {
            Error::validation(field, format!("certificate {} does not parse: {}", i + 1, e))
        })?;
        certs.push((*field, cert));
    }
    for pair in certs.windows(2) {
        let (_, child) = &pair[0];
        let (field, parent) = &pair[1];
        if child.issuer != parent.subject {
            return Err(Error::validation(
                field,
                "the chain is not in issuing order: each certificate must be issued by the next",
            ));
        }
    }

    let leaf = &certs[0].1;
    let expires = time::rfc3339_to_unix(&leaf.not_after)
        .ok_or_else(|| Error::validation("cert_pem", "the certificate's notAfter is not a valid date"))?;
    if expires * 1000 <= now_ms {
        return Err(Error::validation(
            "cert_pem",
            format!("the certificate expired at {}", leaf.not_after),
        ));
    }

    if let Some(key_pem) = input::opt_str(data, "key_pem")? {
        let key = private_key_public_part(key_pem).map_err(|e| Error::validation("key_pem", e))?;
        if key.kind() != leaf.key.kind() {
            return Err(Error::validation(
                "key_pem",
                format!(
                    "an {} private key cannot belong to a certificate for an {} key",
                    key.kind(),
                    leaf.key.kind()
                ),
            ));
        }
        let matches = match (&key, &leaf.key) {
            (PublicKey::Ec { point: a, curve: ca }, PublicKey::Ec { point: b, curve: cb }) => {
                a == b && (ca.is_none() || cb.is_none() || ca == cb)
            }
            (PublicKey::Other, _) => false,
            (a, b) => a == b,
        };
        if !matches {
            return Err(Error::validation(
                "key_pem",
                "the private key does not match the certificate's public key",
            ));
        }
    }
    Ok(leaf.not_after.clone())
}

fn parse_cert(bytes: &[u8]) -> core::result::Result<Cert<'_>, &'static str> {
    let cert = der::single(bytes, der::SEQUENCE, "not a certificate")?;
    let mut outer = Reader::new(cert.content);
    let tbs = outer.expect(der::SEQUENCE, "no tbsCertificate")?;
    outer.expect(der::SEQUENCE, "no signature algorithm")?;
    outer.expect(der::BIT_STRING, "no signature")?;
    let mut t = Reader::new(tbs.content);
    let mut serial = t.next()?;
    if serial.tag == 0xa0 {
        serial = t.next()?;
    }
    if serial.tag != der::INTEGER {
        return Err("no serial number");
    }
    t.expect(der::SEQUENCE, "no signature algorithm")?;
    let issuer = t.expect(der::SEQUENCE, "no issuer")?;
    let validity = t.expect(der::SEQUENCE, "no validity")?;
    let subject = t.expect(der::SEQUENCE, "no subject")?;
    let spki = t.expect(der::SEQUENCE, "no public key")?;
    let mut v = Reader::new(validity.content);
    v.next()?;
    let not_after = der::time_rfc3339(&v.next()?)?;
    Ok(Cert {
        issuer: issuer.raw,
        subject: subject.raw,
        not_after,
        key: spki_key(&spki)?,
    })
}

fn spki_key(spki: &Tlv<'_>) -> core::result::Result<PublicKey, &'static str> {
    let mut s = Reader::new(spki.content);
    let alg = s.expect(der::SEQUENCE, "no key algorithm")?;
    let key = der::bits(s.expect(der::BIT_STRING, "no public key bits")?.content)?;
    let mut a = Reader::new(alg.content);
    let oid = a.expect(der::OID, "no key algorithm OID")?;
    let params = if a.is_empty() { None } else { Some(a.next()?.raw.to_vec()) };
    Ok(match oid.content {
        der::OID_RSA => {
            let seq = der::single(key, der::SEQUENCE, "bad RSA public key")?;
            let mut r = Reader::new(seq.content);
            let n = r.expect(der::INTEGER, "bad RSA modulus")?;
            let e = r.expect(der::INTEGER, "bad RSA exponent")?;
            PublicKey::Rsa {
                n: der::unsigned(n.content).to_vec(),
                e: der::unsigned(e.content).to_vec(),
            }
        }
        der::OID_EC => PublicKey::Ec {
            point: key.to_vec(),
            curve: params,
        },
        der::OID_ED25519 if key.len() == 32 => PublicKey::Ed25519(key.to_vec()),
        _ => PublicKey::Other,
    })
}

/// The public half of a PEM private key, to compare with the certificate's.
fn private_key_public_part(key_pem: &str) -> core::result::Result<PublicKey, String> {
    let blocks = der::pem_blocks(key_pem)?;
    let keys: Vec<_> = blocks.iter().filter(|b| b.label.ends_with("PRIVATE KEY")).collect();
    let block = match keys.as_slice() {
        [one] => *one,
        [] => return Err("no PRIVATE KEY block found".into()),
        _ => return Err("holds more than one private key".into()),
    };
    match block.label.as_str() {
        "ENCRYPTED PRIVATE KEY" => Err(
            "is encrypted; store it unencrypted (the vault encrypts everything it stores)".into(),
        ),
        "RSA PRIVATE KEY" => rsa_private(&block.der).map_err(String::from),
        "EC PRIVATE KEY" => sec1_private(&block.der, None),
        "PRIVATE KEY" => pkcs8_private(&block.der),
        other => Err(format!("{} keys are not supported", other)),
    }
}

fn rsa_private(bytes: &[u8]) -> core::result::Result<PublicKey, &'static str> {
    let seq = der::single(bytes, der::SEQUENCE, "bad RSA private key")?;
    let mut r = Reader::new(seq.content);
    r.expect(der::INTEGER, "bad RSA private key version")?;
    let n = r.expect(der::INTEGER, "bad RSA modulus")?;
    let e = r.expect(der::INTEGER, "bad RSA exponent")?;
    Ok(PublicKey::Rsa {
        n: der::unsigned(n.content).to_vec(),
        e: der::unsigned(e.content).to_vec(),
    })
}

fn sec1_private(bytes: &[u8], curve: Option<Vec<u8>>) -> core::result::Result<PublicKey, String> {
    let seq = der::single(bytes, der::SEQUENCE, "bad EC private key")?;
    let mut r = Reader::new(seq.content);
    r.expect(der::INTEGER, "bad EC private key version")?;
    r.expect(der::OCTET_STRING, "bad EC private key")?;
    let mut curve = curve;
    let mut point = None;
    while !r.is_empty() {
        let t = r.next()?;
        match t.tag {
            0xa0 => curve = Some(der::single(t.content, der::OID, "bad EC curve")?.raw.to_vec()),
            0xa1 => {
                let bits = der::single(t.content, der::BIT_STRING, "bad EC public key")?;
                point = Some(der::bits(bits.content)?.to_vec());
            }
            _ => {}
        }
    }
    match point {
        Some(point) => Ok(PublicKey::Ec { point, curve }),
        None => Err("the EC key does not embed its public key, so it cannot be matched to the certificate (re-export it with `openssl ec`)".into()),
    }
}

fn pkcs8_private(bytes: &[u8]) -> core::result::Result<PublicKey, String> {
    let seq = der::single(bytes, der::SEQUENCE, "bad PKCS#8 private key")?;
    let mut r = Reader::new(seq.content);
    r.expect(der::INTEGER, "bad PKCS#8 version")?;
    let alg = r.expect(der::SEQUENCE, "bad PKCS#8 algorithm")?;
    let key = r.expect(der::OCTET_STRING, "bad PKCS#8 key")?;
    let mut a = Reader::new(alg.content);
    let oid = a.expect(der::OID, "bad PKCS#8 algorithm")?;
    let params = if a.is_empty() { None } else { Some(a.next()?.raw.to_vec()) };
    match oid.content {
        der::OID_RSA => rsa_private(key.content).map_err(String::from),
        der::OID_EC => sec1_private(key.content, params),
        der::OID_ED25519 => {
            let seed = der::single(key.content, der::OCTET_STRING, "bad Ed25519 key")?;
            let seed: [u8; 32] = seed
                .content
                .try_into()
                .map_err(|_| "an Ed25519 key is 32 bytes".to_string())?;
            let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            Ok(PublicKey::Ed25519(public.to_bytes().to_vec()))
        }
        _ => Err("unsupported private key algorithm".into()),
    }
}
