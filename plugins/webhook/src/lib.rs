//! The `webhook` rotation backend. `set` POSTs a `rotation.apply` event carrying the pending
//! value to the configured URL; `test` POSTs `rotation.test` so the receiver can prove the new
//! value works. Both are signed exactly like ScaiVault's webhooks (spec §1.9): HMAC-SHA256 with
//! the configured signing secret over `"<timestamp>.<body>"`, in `X-ScaiVault-Signature`.
//! A 2xx answer is success; 408, 429, 5xx and network failures are retryable; anything else
//! fails the step. The host only lets the request through to hosts on the operator's allow-list.

use hmac::{Hmac, Mac};
use scaivault_plugin_sdk::{host, input, json, plugin, Error, Map, Result, Value};
use sha2::Sha256;

plugin! {
    "describe" => describe,
    "set" => set,
    "test" => test,
}

fn describe(_: Value) -> Result<Value> {
    Ok(json!({"rotation_backends": [{
        "name": "webhook",
        "config": {
            "url": "where to POST (its host must be on the operator's allow-list)",
            "signing_secret": "HMAC key shared with the receiver (at least 16 characters)"
        },
        "events": ["rotation.apply", "rotation.test"]
    }]}))
}

fn config(req: &Map<String, Value>) -> Result<(String, String)> {
    let cfg = match req.get("config") {
        Some(Value::Object(m)) => m,
        _ => return Err(Error::validation("backend_config", "is required for the webhook backend")),
    };
    let url = input::str_field(cfg, "url").map_err(|_| Error::validation("backend_config.url", "is required"))?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::validation("backend_config.url", "must be an http(s) URL"));
    }
    let secret = input::str_field(cfg, "signing_secret")
        .map_err(|_| Error::validation("backend_config.signing_secret", "is required"))?;
    if secret.len() < 16 {
        return Err(Error::validation("backend_config.signing_secret", "must be at least 16 characters"));
    }
    Ok((url.to_string(), secret.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{:02x}", b)).collect()
}

fn deliver(request: Value, event_type: &str) -> Result<Value> {
    let req = input::object(&request, "request")?;
    let (url, secret) = config(req)?;
    let mut id = [0u8; 12];
    host::random_bytes(&mut id);
    let event_id = format!("evt_{}", hex(&id));
    let now_ms = host::now_ms();
    let ts = (now_ms / 1000).to_string();
    let mut data = Map::new();
    for key in ["policy_id", "from_version", "attempt"] {
        if let Some(v) = req.get(key) {
            data.insert(key.into(), v.clone());
        }
    }
    data.insert("new_data".into(), req.get("pending").cloned().unwrap_or(Value::Null));
    let envelope = json!({
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": now_ms,
        "identity_id": "system:rotation-scheduler",
        "path": req.get("secret_path").cloned().unwrap_or(Value::Null),
        "data": Value::Object(data),
    });
    let body = envelope.to_string();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .map_err(|_| Error::new("internal_error", "bad HMAC key"))?;
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex(&mac.finalize().into_bytes()));
    let reply = host::http_request(&json!({
        "method": "POST",
        "url": url,
        "headers": {
            "content-type": "application/json",
            "user-agent": "ScaiVault-Webhook/1.0",
            "x-scaivault-event-id": event_id,
            "x-scaivault-event-type": event_type,
            "x-scaivault-timestamp": ts,
            "x-scaivault-signature": signature,
        },
        "body": body,
    }))?;
    let status = reply.get("status").and_then(Value::as_u64).unwrap_or(0);
    match status {
        200..=299 => Ok(json!({"status": status, "event_id": event_id})),
        408 | 429 | 500..=599 => Err(Error::retryable(
            "webhook_failed",
            format!("the receiver answered {} to {}", status, event_type),
        )),
        _ => Err(Error::new(
            "webhook_failed",
            format!("the receiver answered {} to {}", status, event_type),
        )),
    }
}

fn set(request: Value) -> Result<Value> {
    deliver(request, "rotation.apply")
}

fn test(request: Value) -> Result<Value> {
    deliver(request, "rotation.test")
}
