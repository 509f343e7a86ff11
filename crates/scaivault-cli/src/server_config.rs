//! `scaivault server --config FILE`: every server flag in a TOML file.
//!
//! ```toml
//! vault = "/var/lib/scaivault/vault.db"
//! listen = "127.0.0.1:8200"
//! key_file = "/etc/scaivault/vault.key"      # or passphrase_file, recovery_key_file, sealed = true
//! tls_cert = "/etc/scaivault/tls.crt"
//! tls_key = "/etc/scaivault/tls.key"
//! insecure_listen = false
//! max_body_bytes = 1048576
//! rate_limit_multiplier = 1.0                # or no_rate_limit = true
//! audit_retention = "365d"
//! backup_dir = "/var/backups/scaivault"
//! backup_interval = "24h"
//! backup_keep = 14
//! plugin_dir = "/var/lib/scaivault/plugins"
//! plugin_capabilities = ["http"]              # random and clock are always granted
//! allow_hosts = ["db.internal:5432", "hooks.example.com"]
//! ```
//!
//! A value from the command line wins over the file when it differs from the flag's default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use scaivault_core::{Error, ErrorCode};
use serde::Deserialize;

use crate::args::{Global, ServerArgs};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    vault: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    key_file: Option<PathBuf>,
    recovery_key_file: Option<PathBuf>,
    sealed: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_listen: Option<bool>,
    max_body_bytes: Option<usize>,
    rate_limit_multiplier: Option<f64>,
    no_rate_limit: Option<bool>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    auth_failures_per_minute: Option<u32>,
    cache_mib: Option<u16>,
    audit_retention: Option<String>,
    backup_dir: Option<PathBuf>,
    backup_interval: Option<String>,
    backup_keep: Option<usize>,
    plugin_dir: Option<PathBuf>,
    plugin_capabilities: Option<Vec<String>>,
    allow_hosts: Option<Vec<String>>,
}

pub fn load(path: &Path) -> Result<ServerFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("{}: {}", path.display(), e.message()),
        )
    })
}

/// Fills every setting the command line left at its default from the file.
pub fn apply(f: ServerFile, g: &mut Global, a: &mut ServerArgs) {
    fn fill<T>(slot: &mut Option<T>, v: Option<T>) {
        if slot.is_none() {
            *slot = v;
        }
    }
    fill(&mut g.vault, f.vault);
    fill(&mut g.passphrase_file, f.passphrase_file);
    fill(&mut g.plugin_dir, f.plugin_dir);
    if g.plugin_capabilities.is_empty() {
        g.plugin_capabilities = f.plugin_capabilities.unwrap_or_default();
    }
    if g.allow_hosts.is_empty() {
        g.allow_hosts = f.allow_hosts.unwrap_or_default();
    }
    if let Some(l) = f.listen
        && a.listen == "127.0.0.1:8200".parse::<SocketAddr>().expect("valid")
    {
        a.listen = l;
    }
    fill(&mut a.key_file, f.key_file);
    fill(&mut a.recovery_key_file, f.recovery_key_file);
    a.sealed |= f.sealed.unwrap_or(false);
    fill(&mut a.tls_cert, f.tls_cert);
    fill(&mut a.tls_key, f.tls_key);
    a.insecure_listen |= f.insecure_listen.unwrap_or(false);
    if let Some(m) = f.max_body_bytes
        && a.limits.max_body_bytes == 1024 * 1024
    {
        a.limits.max_body_bytes = m;
    }
    fill(&mut a.limits.rate_limit_multiplier, f.rate_limit_multiplier);
    a.limits.no_rate_limit |= f.no_rate_limit.unwrap_or(false);
    fill(&mut a.limits.max_connections, f.max_connections);
    fill(
        &mut a.limits.max_connections_per_address,
        f.max_connections_per_address,
    );
    fill(&mut a.limits.header_timeout, f.header_timeout);
    fill(&mut a.limits.idle_timeout, f.idle_timeout);
    fill(
        &mut a.limits.auth_failures_per_minute,
        f.auth_failures_per_minute,
    );
    fill(&mut a.limits.cache_mib, f.cache_mib);
    fill(&mut a.audit_retention, f.audit_retention);
    fill(&mut a.backup_dir, f.backup_dir);
    if let Some(i) = f.backup_interval
        && a.backup_interval == "24h"
    {
        a.backup_interval = i;
    }
    if let Some(k) = f.backup_keep
        && a.backup_keep == 7
    {
        a.backup_keep = k;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixture files
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:9000\"\nbogus = 1\n").unwrap();
        assert_eq!(load(&p).unwrap_err().code, ErrorCode::InvalidConfig);
        std::fs::write(&p, "listen = \"not an address\"\n").unwrap();
        assert_eq!(load(&p).unwrap_err().code, ErrorCode::InvalidConfig);
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:9000\"\nbackup_keep = 3\naudit_retention = \"30d\"\n",
        )
        .unwrap();
        assert!(load(&p).is_ok());
    }
}
