//! ScaiVault's built-in secret types as one plugin: `kv`, `json`, `api_key`, `certificate`,
//! `ssh_key`. Each has `validate` (422 `validation_error` with `details.fields` on bad data),
//! `redact` (which fields hold secrets) and `describe`.

mod certificate;
mod der;
mod ssh;
mod time;

use scaivault_plugin_sdk::{host, input, json, plugin, Error, Map, Result, Value};

plugin! {
    "describe" => describe,
    "validate" => validate,
    "validate_batch" => validate_batch,
    "redact" => redact,
}

struct TypeInfo {
    name: &'static str,
    description: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
    /// `None`: every field is secret.
    secret_fields: Option<&'static [&'static str]>,
}

const TYPES: &[TypeInfo] = &[
    TypeInfo {
        name: "kv",
        description: "A flat map of string, number or boolean values",
        required: &[],
        optional: &[],
        secret_fields: None,
    },
    TypeInfo {
        name: "json",
        description: "Any JSON object, nested as deep as the vault allows",
        required: &[],
        optional: &[],
        secret_fields: None,
    },
    TypeInfo {
        name: "api_key",
        description: "An API credential: a flat map with at least one credential field (`key`, or a name ending in key, token or secret, such as `secret_key`), plus descriptive fields",
        required: &[],
        optional: &["key", "secret_key", "api_key", "access_token", "key_id", "endpoint", "url", "scopes", "description"],
        // Computed per write: see `credential_field`.
        secret_fields: Some(&[]),
    },
    TypeInfo {
        name: "certificate",
        description: "An X.509 certificate in PEM (leaf first), its chain and its private key; expires_at defaults to the leaf's notAfter",
        required: &["cert_pem"],
        optional: &["key_pem", "chain_pem"],
        secret_fields: Some(&["key_pem"]),
    },
    TypeInfo {
        name: "ssh_key",
        description: "An SSH key: an OpenSSH private key and/or its public key line",
        required: &[],
        optional: &["private_key", "public_key", "passphrase", "comment"],
        secret_fields: Some(&["private_key", "passphrase"]),
    },
];

fn info(name: &str) -> Result<&'static TypeInfo> {
    TYPES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::new("invalid_secret_type", format!("this plugin has no type {:?}", name)))
}

fn describe(_: Value) -> Result<Value> {
    let types: Vec<Value> = TYPES
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "required": t.required,
                "optional": t.optional,
                "secret_fields": t.secret_fields.map(|f| f.to_vec()),
            })
        })
        .collect();
    Ok(json!({ "secret_types": types }))
}

/// Input `{"type", "data", "expires_at"}`; output `{"expires_at"}` when the type implies one.
fn validate(request: Value) -> Result<Value> {
    let req = input::object(&request, "request")?;
    let t = info(input::str_field(req, "type")?)?;
    let data = match req.get("data") {
        Some(Value::Object(m)) => m,
        _ => return Err(Error::validation("data", "must be a JSON object")),
    };
    for field in t.required {
        if !data.contains_key(*field) {
            return Err(Error::validation(field, format!("is required for a {} secret", t.name)));
        }
    }
    let mut out = Map::new();
    match t.name {
        "kv" => flat(data, "kv values must be strings, numbers or booleans; use secret_type json for nesting")?,
        "json" => {}
        "api_key" => {
            flat(data, "api_key values must be strings, numbers or booleans")?;
            let creds: Vec<&String> = data.keys().filter(|k| credential_field(k)).collect();
            if creds.is_empty() {
                return Err(Error::validation(
                    "key",
                    "an api_key needs a credential field: key, or a name ending in key, token or secret (such as secret_key)",
                ));
            }
            for k in creds {
                let v = input::str_field(data, k)?;
                if v.trim().is_empty() {
                    return Err(Error::validation(k, "must not be empty"));
                }
                if v.chars().any(char::is_control) {
                    return Err(Error::validation(k, "must not contain control characters such as newlines"));
                }
            }
        }
        "certificate" => {
            let not_after = certificate::validate(data, host::now_ms())?;
            out.insert("expires_at".into(), Value::String(not_after));
        }
        "ssh_key" => ssh::validate(data)?,
        _ => {}
    }
    Ok(Value::Object(out))
}

/// `key`, `secret`, `token`, or a name ending in one of them after `_` or `-`.
fn credential_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["key", "token", "secret"].iter().any(|w| {
        n == *w || n.ends_with(&format!("_{}", w)) || n.ends_with(&format!("-{}", w))
    })
}

/// Input `{"items": [{"type", "data"}, ...]}`; output `{"results": [...]}` with, per item,
/// `validate`'s output or `{"error": {"code", "message", "fields"}}`. One instance for many
/// writes (bulk imports) instead of one each.
fn validate_batch(request: Value) -> Result<Value> {
    let req = input::object(&request, "request")?;
    let items = match req.get("items") {
        Some(Value::Array(a)) => a,
        _ => return Err(Error::validation("items", "must be an array")),
    };
    let results: Vec<Value> = items
        .iter()
        .map(|item| match validate(item.clone()) {
            Ok(v) => v,
            Err(e) => json!({"error": {"code": e.code, "message": e.message, "fields": Value::Object(e.fields)}}),
        })
        .collect();
    Ok(json!({ "results": results }))
}

fn flat(data: &Map<String, Value>, problem: &str) -> Result<()> {
    let mut err: Option<Error> = None;
    for (k, v) in data {
        if v.is_object() || v.is_array() {
            let field = format!("data.{}", k);
            err = Some(match err {
                None => Error::new("validation_error", problem).field(&field, problem),
                Some(e) => e.field(&field, problem),
            });
        }
    }
    err.map_or(Ok(()), Err)
}

/// Input `{"type", "data"}`; output `{"secret_fields": [...]}`: the fields of `data` that hold
/// secrets, so that displays can mask them.
fn redact(request: Value) -> Result<Value> {
    let req = input::object(&request, "request")?;
    let t = info(input::str_field(req, "type")?)?;
    let keys: Vec<&String> = match req.get("data") {
        Some(Value::Object(m)) => m.keys().collect(),
        _ => Vec::new(),
    };
    let secret: Vec<&String> = match t.secret_fields {
        None => keys,
        Some(_) if t.name == "api_key" => keys.into_iter().filter(|k| credential_field(k)).collect(),
        Some(list) => keys.into_iter().filter(|k| list.contains(&k.as_str())).collect(),
    };
    Ok(json!({ "secret_fields": secret }))
}
