//! `~/.scaivault/config.json`: base_url and token, written with owner-only permissions.

use std::path::PathBuf;

use serde_json::{Map, Value};

pub fn path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".scaivault").join("config.json")
}

pub fn load() -> Map<String, Value> {
    std::fs::read_to_string(path())
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

pub fn get(key: &str) -> Option<String> {
    load().get(key).and_then(|v| v.as_str()).map(str::to_owned)
}

pub fn set(key: &str, value: &str) -> Result<(), String> {
    if !matches!(key, "base_url" | "token" | "ca_cert") {
        return Err(format!(
            "unknown config key {key:?} (base_url, token, ca_cert)"
        ));
    }
    let mut cfg = load();
    cfg.insert(key.to_owned(), Value::String(value.to_owned()));
    let p = path();
    if let Some(dir) = p.parent() {
        scaivault_store::private_fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(cfg)).expect("serializes");
    write_private(&p, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", p.display()))
}

/// Writes a file readable only by its owner (it may hold a token or key).
pub fn write_private(p: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    scaivault_store::private_fs::write(p, bytes)
}
