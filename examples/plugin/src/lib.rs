//! An example secret type, `acme_token`, for a fictional payment provider whose API tokens look
//! like `acme_live_<32 hex>` or `acme_test_<32 hex>`. Writing a secret of this type with a token
//! of any other shape is refused with `validation_error` before anything is stored.
//!
//! A plugin is plain functions from JSON to JSON; `plugin!` exports them under ABI v1.

use scaivault_plugin_sdk::{input, json, plugin, Error, Result, Value};

plugin! {
    "describe" => describe,
    "validate" => validate,
    "redact" => redact,
}

fn describe(_: Value) -> Result<Value> {
    Ok(json!({"secret_types": [{
        "name": "acme_token",
        "description": "An ACME Payments API token: acme_live_ or acme_test_ followed by 32 hex digits",
        "required": ["token"],
        "optional": ["account_id"],
        "secret_fields": ["token"],
    }]}))
}

/// Input: `{"type": "acme_token", "data": {...}}`. Output: `{}` when the data is valid.
fn validate(request: Value) -> Result<Value> {
    let req = input::object(&request, "request")?;
    let data = match req.get("data") {
        Some(Value::Object(m)) => m,
        _ => return Err(Error::validation("data", "must be a JSON object")),
    };
    let token = input::str_field(data, "token")?;
    let rest = token
        .strip_prefix("acme_live_")
        .or_else(|| token.strip_prefix("acme_test_"))
        .ok_or_else(|| Error::validation("token", "must start with acme_live_ or acme_test_"))?;
    if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::validation("token", "must end with 32 hex digits"));
    }
    if let Some(id) = input::opt_str(data, "account_id")? {
        if !id.starts_with("acct_") {
            return Err(Error::validation("account_id", "must start with acct_"));
        }
    }
    Ok(json!({}))
}

fn redact(_: Value) -> Result<Value> {
    Ok(json!({"secret_fields": ["token"]}))
}
