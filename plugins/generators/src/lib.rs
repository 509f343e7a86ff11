//! ScaiVault's built-in value generators (spec §1.7): `random`, `hex`, `uuid` (v4, v7),
//! `template`, `static`, the key pairs `rsa_keypair`, `ec_keypair` and `ssh_keypair` (Ed25519 or
//! RSA), and `bcrypt_hash`. Randomness comes from the host's CSPRNG through the `random`
//! capability, time through `clock`.
//!
//! `generate` takes `{"generator", "config"}` and returns `{"value": "..."}` for a single string
//! or `{"values": {...}}` for several: `private_key` and `public_key` for a key pair,
//! `password` and `hash` for a bcrypt hash.

mod keys;
mod ssh;

use scaivault_plugin_sdk::{host, input, json, plugin, Error, Map, Result, Value};

plugin! {
    "describe" => describe,
    "generate" => generate,
}

const MAX_LENGTH: u64 = 4096;

fn describe(_: Value) -> Result<Value> {
    Ok(json!({
        "generators": [
            {"name": "random", "config": ["length", "charset", "require_upper", "require_lower", "require_digit", "require_symbol"],
             "charsets": CHARSETS.iter().map(|(n, _)| *n).collect::<Vec<_>>()},
            {"name": "hex", "config": ["length"]},
            {"name": "uuid", "config": ["version"]},
            {"name": "template", "config": ["template"], "placeholders": ["{{random:N}}", "{{hex:N}}", "{{uuid}}", "{{timestamp}}"]},
            {"name": "static", "config": ["value"]},
            {"name": "rsa_keypair", "config": ["bits"], "outputs": ["private_key", "public_key"]},
            {"name": "ec_keypair", "config": ["curve"], "outputs": ["private_key", "public_key"]},
            {"name": "ssh_keypair", "config": ["key_type", "bits", "comment"], "outputs": ["private_key", "public_key"]},
            {"name": "bcrypt_hash", "config": ["length", "charset", "rounds"], "outputs": ["password", "hash"]},
        ]
    }))
}

fn generate(request: Value) -> Result<Value> {
    let req = input::object(&request, "request")?;
    let generator = input::str_field(req, "generator")?;
    let empty = Map::new();
    let config = match req.get("config") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Error::validation("config", "must be a JSON object")),
    };
    check_settings(generator, config)?;
    let value = match generator {
        "random" => random(config)?,
        "hex" => hex(length(config, 32)?),
        "uuid" => match input::opt_u64(config, "version")?.unwrap_or(4) {
            4 => uuid_v4(),
            7 => uuid_v7(),
            _ => return Err(Error::validation("version", "must be 4 or 7")),
        },
        "template" => template(input::str_field(config, "template")?)?,
        "static" => input::str_field(config, "value")?.to_string(),
        "ssh_keypair" => return ssh_keypair(config),
        "rsa_keypair" => {
            let bits = keys::rsa_bits(input::opt_u64(config, "bits")?, 2048)?;
            return key_pair(keys::rsa_pem(bits)?);
        }
        "ec_keypair" => {
            let curve = input::opt_str(config, "curve")?.unwrap_or("P-256");
            return key_pair(keys::ec_pem(curve)?);
        }
        "bcrypt_hash" => return bcrypt_hash(config),
        other => {
            return Err(Error::validation("generator", format!("unknown generator {:?}", other)))
        }
    };
    Ok(json!({ "value": value }))
}

const RANDOM_SETTINGS: &[&str] =
    &["length", "charset", "require_upper", "require_lower", "require_digit", "require_symbol"];

/// The settings each generator takes. Any other is refused: `{"type": "rsa"}` for `key_type`,
/// or `{"cost": 14}` for `rounds`, must not quietly give a different key or hash than the one
/// asked for.
fn settings_of(generator: &str) -> Option<Vec<&'static str>> {
    Some(match generator {
        "random" => RANDOM_SETTINGS.to_vec(),
        "hex" => vec!["length"],
        "uuid" => vec!["version"],
        "template" => vec!["template"],
        "static" => vec!["value"],
        "rsa_keypair" => vec!["bits"],
        "ec_keypair" => vec!["curve"],
        "ssh_keypair" => vec!["key_type", "bits", "comment"],
        "bcrypt_hash" => {
            let mut v = RANDOM_SETTINGS.to_vec();
            v.push("rounds");
            v
        }
        _ => return None,
    })
}

fn check_settings(generator: &str, config: &Map<String, Value>) -> Result<()> {
    let known = match settings_of(generator) {
        Some(k) => k,
        None => return Ok(()), // an unknown generator is reported as such below
    };
    match config.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Error::validation(
            k,
            format!("is not a setting of {}; it takes {}", generator, known.join(", ")),
        )),
        None => Ok(()),
    }
}

const CHARSETS: &[(&str, &str)] = &[
    ("alphanumeric", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
    ("alpha", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    ("numeric", "0123456789"),
    ("lower", "abcdefghijklmnopqrstuvwxyz"),
    ("upper", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("hex", "0123456789abcdef"),
    // Safe in URLs, shells, .env files and connection strings without quoting.
    ("safe", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"),
    ("ascii", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~"),
];

fn length(config: &Map<String, Value>, default: u64) -> Result<usize> {
    let n = input::opt_u64(config, "length")?.unwrap_or(default);
    if n == 0 || n > MAX_LENGTH {
        return Err(Error::validation("length", format!("must be between 1 and {}", MAX_LENGTH)));
    }
    Ok(n as usize)
}

fn random(config: &Map<String, Value>) -> Result<String> {
    let n = length(config, 32)?;
    let name = input::opt_str(config, "charset")?.unwrap_or("alphanumeric");
    let alphabet: Vec<char> = CHARSETS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.chars().collect())
        .ok_or_else(|| {
            let names: Vec<&str> = CHARSETS.iter().map(|(k, _)| *k).collect();
            Error::validation("charset", format!("unknown charset; one of {}", names.join(", ")))
        })?;
    let classes: [(&str, fn(&char) -> bool); 4] = [
        ("require_upper", |c| c.is_ascii_uppercase()),
        ("require_lower", |c| c.is_ascii_lowercase()),
        ("require_digit", |c| c.is_ascii_digit()),
        ("require_symbol", |c| !c.is_ascii_alphanumeric()),
    ];
    let mut required: Vec<fn(&char) -> bool> = Vec::new();
    for (flag, class) in classes.iter() {
        if input::opt_bool(config, flag)?.unwrap_or(false) {
            if !alphabet.iter().any(class) {
                return Err(Error::validation(flag, format!("charset {} has no such characters", name)));
            }
            required.push(*class);
        }
    }
    if required.len() > n {
        return Err(Error::validation("length", "is shorter than the number of required character classes"));
    }
    // Rejection sampling keeps every accepted string uniformly distributed among those that
    // meet the requirements.
    for _ in 0..10_000 {
        let s: String = (0..n)
            .map(|_| alphabet[host::random_below(alphabet.len() as u32) as usize])
            .collect();
        if required.iter().all(|class| s.chars().any(|c| class(&c))) {
            return Ok(s);
        }
    }
    Err(Error::validation("length", "too short to meet the required character classes reliably"))
}

fn hex(n: usize) -> String {
    let mut bytes = vec![0u8; (n + 1) / 2];
    host::random_bytes(&mut bytes);
    let mut s: String = bytes.iter().map(|b| format!("{:02x}", b)).collect();
    s.truncate(n);
    s
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{:02x}", x)).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    host::random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&b)
}

/// RFC 9562 v7: 48 bits of Unix milliseconds, then random bits, so ids sort by creation time.
fn uuid_v7() -> String {
    let mut b = [0u8; 16];
    host::random_bytes(&mut b);
    let ms = host::now_ms().max(0) as u64;
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&b)
}

fn template(t: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::validation("template", "a {{ placeholder is not closed"))?;
        let placeholder = after[..end].trim();
        let (name, arg) = match placeholder.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (placeholder, None),
        };
        let count = |default: u64| -> Result<usize> {
            let n = match arg {
                None => default,
                Some(a) => a.trim().parse::<u64>().map_err(|_| {
                    Error::validation("template", format!("{{{{{}}}}} needs a number", placeholder))
                })?,
            };
            let mut m = Map::new();
            m.insert("length".into(), Value::from(n));
            length(&m, default).map_err(|_| {
                Error::validation("template", format!("{{{{{}}}}}: length must be 1..={}", placeholder, MAX_LENGTH))
            })
        };
        match name {
            "random" => {
                let mut m = Map::new();
                m.insert("length".into(), Value::from(count(32)? as u64));
                out.push_str(&random(&m)?);
            }
            "hex" => out.push_str(&hex(count(32)?)),
            "uuid" => out.push_str(&uuid_v4()),
            "timestamp" => out.push_str(&(host::now_ms() / 1000).to_string()),
            _ => {
                return Err(Error::validation(
                    "template",
                    format!("unknown placeholder {{{{{}}}}}; use random:N, hex:N, uuid or timestamp", placeholder),
                ))
            }
        }
        if out.len() > MAX_LENGTH as usize * 4 {
            return Err(Error::validation("template", "the result is too long"));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn key_pair((private_key, public_key): (String, String)) -> Result<Value> {
    Ok(json!({ "values": { "private_key": private_key, "public_key": public_key } }))
}

/// A random password (the `random` generator's `length` and `charset`, 32 alphanumerics by
/// default) and its bcrypt hash: the password for whoever logs in, the hash for the system that
/// checks it (an htpasswd file, a database's users table).
fn bcrypt_hash(config: &Map<String, Value>) -> Result<Value> {
    let rounds = input::opt_u64(config, "rounds")?.unwrap_or(10);
    if !keys::BCRYPT_ROUNDS.contains(&rounds) {
        return Err(Error::validation("rounds", "must be between 10 and 14"));
    }
    if input::opt_u64(config, "length")?.unwrap_or(32) > 72 {
        return Err(Error::validation(
            "length",
            "must be at most 72: bcrypt ignores what follows",
        ));
    }
    let mut settings = config.clone();
    settings.remove("rounds");
    let password = random(&settings)?;
    let hash = keys::bcrypt_hash(&password, rounds as u32);
    Ok(json!({ "values": { "password": password, "hash": hash } }))
}

fn ssh_keypair(config: &Map<String, Value>) -> Result<Value> {
    let key_type = input::opt_str(config, "key_type")?.unwrap_or("ed25519");
    let bits = input::opt_u64(config, "bits")?;
    let comment = input::opt_str(config, "comment")?.unwrap_or("");
    if comment.chars().any(char::is_control) {
        return Err(Error::validation("comment", "must be one line"));
    }
    if comment.len() > 256 {
        return Err(Error::validation("comment", "must be at most 256 bytes"));
    }
    let mut check = [0u8; 4];
    host::random_bytes(&mut check);
    let check = u32::from_le_bytes(check);
    let (private_key, public_key) = match key_type {
        "ed25519" => {
            if bits.is_some() {
                return Err(Error::validation("bits", "only applies to key_type rsa"));
            }
            let mut seed = [0u8; 32];
            host::random_bytes(&mut seed);
            let pair = ssh::ed25519_openssh(&seed, check, comment);
            seed.iter_mut().for_each(|b| *b = 0);
            pair
        }
        "rsa" => {
            let bits = keys::rsa_bits(bits, 3072).map_err(|e| match bits {
                Some(4096) => Error::validation(
                    "bits",
                    "4096-bit keys take 20 to 60 s to generate in the WebAssembly sandbox, too close to its deadline; use 2048 or 3072, or make one with `ssh-keygen -t rsa -b 4096` and store it",
                ),
                _ => e,
            })?;
            let key = keys::rsa_key(bits)?;
            ssh::rsa_openssh(&key, check, comment)
        }
        _ => return Err(Error::validation("key_type", "must be ed25519 or rsa")),
    };
    key_pair((private_key, public_key))
}
