//! `~/.scaivault/config.json`: the CLI's saved settings (`url`, `token`, `ca_cert`), each
//! named as its flag is, written with owner-only permissions.

use std::path::{Path, PathBuf};

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

/// The settings, by the name of the flag each stands for.
pub const KEYS: &[&str] = &["url", "token", "ca_cert"];

/// A setting's one name: `base_url`, its old name, is `url`.
pub fn key(name: &str) -> Result<&'static str, String> {
    match name {
        "base_url" => Ok("url"),
        k => KEYS
            .iter()
            .find(|known| **known == k)
            .copied()
            .ok_or_else(|| format!("unknown setting {name:?} ({})", KEYS.join(", "))),
    }
}

pub fn get(name: &str) -> Option<String> {
    let cfg = load();
    let k = key(name).ok()?;
    cfg.get(k)
        // Files written before `url` was the name.
        .or_else(|| (k == "url").then(|| cfg.get("base_url")).flatten())
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

pub fn set(name: &str, value: &str) -> Result<(), String> {
    let k = key(name)?;
    // A file is saved by its absolute path: the next command may run from anywhere.
    let absolute;
    let value = if k == "ca_cert" {
        absolute = std::fs::canonicalize(value)
            .map_err(|e| format!("cannot find {value}: {e}"))?
            .to_string_lossy()
            .into_owned();
        absolute.as_str()
    } else {
        value
    };
    let mut cfg = load();
    if k == "url" {
        cfg.remove("base_url");
    }
    cfg.insert(k.to_owned(), Value::String(value.to_owned()));
    save(cfg)
}

pub fn unset(name: &str) -> Result<bool, String> {
    let k = key(name)?;
    let mut cfg = load();
    let mut had = cfg.remove(k).is_some();
    if k == "url" {
        had |= cfg.remove("base_url").is_some();
    }
    save(cfg)?;
    Ok(had)
}

fn save(cfg: Map<String, Value>) -> Result<(), String> {
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

/// Writes `bytes` next to `path`, then renames it over `path`: created owner-only, whole.
pub fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut staged = path.as_os_str().to_owned();
    staged.push(".scaivault-new");
    let staged = std::path::PathBuf::from(staged);
    let _ = std::fs::remove_file(&staged);
    let mut f = scaivault_store::private_fs::create_new(&staged)?;
    let written = std::io::Write::write_all(&mut f, bytes).and_then(|()| f.sync_all());
    drop(f);
    written
        .and_then(|()| std::fs::rename(&staged, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&staged);
        })
}
