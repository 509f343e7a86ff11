//! Plugin use cases: the catalogue of installed external plugins lives in the vault file (its
//! manifests and pinned SHA-256s); the `.wasm` files live in the plugin directory beside it.
//! A file that no longer matches its pin is refused at load, and `verify` says so at any time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scaivault_core::scope::Scope;
use scaivault_core::time::Timestamp;
use scaivault_plugin_host::{
    Capability, HostServices, Manifest, PluginHost, PluginInfo, sha256_hex,
};
use scaivault_store::{Table, Vault};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Caller, Clock, Engine, Error, ErrorCode, Result, decode, encode, load_all};

/// How an engine runs plugins. The operator decides both.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Where installed `.wasm` files are kept; default `<vault file>.plugins/`.
    pub dir: Option<PathBuf>,
    /// Capabilities external plugins may be granted.
    pub allow: BTreeSet<Capability>,
    /// Hosts (`host` or `host:port`) that plugins' `http` and `postgres` calls may reach.
    pub allow_hosts: Vec<String>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            dir: None,
            allow: Capability::default_allowed(),
            allow_hosts: Vec::new(),
        }
    }
}

/// The catalogue record of one installed plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PluginRecord {
    manifest: Manifest,
    /// File name inside the plugin directory.
    file: String,
    installed_at: Timestamp,
    installed_by: String,
}

/// What plugins may ask of the engine. Only the clock so far; the rotation backends add
/// their network capabilities through their own services.
pub(crate) struct EngineServices {
    pub(crate) clock: Arc<dyn Clock>,
}

impl HostServices for EngineServices {
    fn now_ms(&self) -> i64 {
        self.clock.now().0 / 1000
    }
}

pub(crate) fn plugin_dir(vault: &Vault, settings: &PluginSettings) -> PathBuf {
    settings.dir.clone().unwrap_or_else(|| {
        if scaivault_store::database_url(vault.path()).is_some() {
            // A vault on a database has no file to sit beside: each node keeps its plugins'
            // bytes in its own directory (the catalogue, with their pinned hashes, is shared).
            let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
            return PathBuf::from(home).join(".scaivault").join("plugins");
        }
        let mut p = vault.path().as_os_str().to_owned();
        p.push(".plugins");
        PathBuf::from(p)
    })
}

/// Loads the catalogue: each plugin whose file matches its pin is checked and added; any
/// other is listed as refused with the reason, and its calls fail with it.
pub(crate) fn load_catalogue(vault: &Vault, host: &PluginHost, dir: &Path) -> Result<()> {
    let records = load_all(vault, Table::Plugins, |b| {
        decode::<PluginRecord>(Table::Plugins, b)
    })?;
    for r in records {
        let path = dir.join(&r.file);
        let refusal = match std::fs::read(&path) {
            Err(e) => Some(format!("its file {} cannot be read ({e})", path.display())),
            Ok(bytes) => {
                let actual = sha256_hex(&bytes);
                if actual != r.manifest.wasm_sha256 {
                    Some(format!(
                        "its file {} does not match the pinned SHA-256 (pinned {}, file {actual})",
                        path.display(),
                        r.manifest.wasm_sha256
                    ))
                } else {
                    match host.check_external(r.manifest.clone(), bytes) {
                        Ok(checked) => {
                            host.insert(checked);
                            None
                        }
                        Err(e) => Some(e.message),
                    }
                }
            }
        };
        if let Some(why) = refusal {
            tracing::warn!(plugin = %r.manifest.name, "plugin refused: {why}");
            host.add_refused(r.manifest, why);
        }
    }
    Ok(())
}

/// One row of `plugins verify`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PluginCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// `POST /v1/plugins/verify`: every plugin file checked against its pin.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PluginVerification {
    pub ok: bool,
    pub plugins: Vec<PluginCheck>,
}

impl Engine {
    pub fn plugin_host(&self) -> &Arc<PluginHost> {
        &self.plugins
    }

    pub(crate) fn services(&self) -> Arc<dyn HostServices> {
        Arc::new(EngineServices {
            clock: self.clock.clone(),
        })
    }

    pub fn list_plugins(&self, caller: &Caller) -> Result<Vec<PluginInfo>> {
        self.authorize(caller, Scope::Admin, None)?;
        Ok(self.plugins.list())
    }

    pub fn get_plugin(&self, caller: &Caller, name: &str) -> Result<PluginInfo> {
        self.authorize(caller, Scope::Admin, None)?;
        self.plugins.get(name)
    }

    /// Installs (or upgrades) an external plugin: checks it, writes its file under a name that
    /// includes its hash, pins the hash in the vault, then makes it available. Nothing changes
    /// if any step fails.
    pub async fn install_plugin(
        &self,
        caller: &Caller,
        manifest: &[u8],
        wasm: Vec<u8>,
    ) -> Result<PluginInfo> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let manifest = Manifest::parse(manifest)?;
        let name = manifest.name.clone();
        let host = self.plugins.clone();
        let checked = {
            let m = manifest.clone();
            tokio::task::spawn_blocking(move || {
                host.check_external(m, wasm.clone()).map(|c| (c, wasm))
            })
            .await
            .map_err(|_| Error::internal("plugin check panicked"))??
        };
        let (checked, wasm) = checked;
        let file = format!("{name}-{}.wasm", &manifest.wasm_sha256[..16]);
        scaivault_store::private_fs::create_dir_all(&self.plugin_dir)
            .map_err(|e| io_error(&self.plugin_dir, e))?;
        let path = self.plugin_dir.join(&file);
        write_atomically(&path, &wasm)?;
        let previous = self.plugin_record(&name)?;
        let record = PluginRecord {
            manifest,
            file: file.clone(),
            installed_at: self.now(),
            installed_by: caller.identity_id.to_string(),
        };
        let key = name.clone();
        let saved = self
            .vault
            .write(move |tx| {
                tx.put(Table::Plugins, key.as_bytes(), &encode(&record));
                Ok::<_, Error>(())
            })
            .await;
        if let Err(e) = saved {
            if previous.as_ref().map(|p| &p.file) != Some(&file) {
                let _ = std::fs::remove_file(&path);
            }
            return Err(e);
        }
        self.plugins.insert(checked);
        if let Some(old) = previous
            && old.file != file
        {
            let _ = std::fs::remove_file(self.plugin_dir.join(old.file));
        }
        self.plugins.get(&name)
    }

    fn plugin_record(&self, name: &str) -> Result<Option<PluginRecord>> {
        match self
            .vault
            .get(Table::Plugins, name.as_bytes())
            .map_err(crate::store_err)?
        {
            Some(p) => decode(Table::Plugins, p.as_bytes()).map(Some),
            None => Ok(None),
        }
    }

    pub async fn remove_plugin(&self, caller: &Caller, name: &str) -> Result<()> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let Some(record) = self.plugin_record(name)? else {
            // Built-ins are not in the catalogue: let the host say why they cannot go.
            return self.plugins.remove(name);
        };
        let key = name.to_owned();
        self.vault
            .write(move |tx| {
                tx.delete(Table::Plugins, key.as_bytes());
                Ok::<_, Error>(())
            })
            .await?;
        let _ = self.plugins.remove(name);
        let _ = std::fs::remove_file(self.plugin_dir.join(record.file));
        Ok(())
    }

    /// Re-reads every installed plugin's file and compares it with its pin; the built-ins are
    /// checked against the hashes in their embedded manifests.
    pub fn verify_plugins(&self, caller: &Caller) -> Result<Vec<PluginCheck>> {
        self.authorize(caller, Scope::Admin, None)?;
        let records = load_all(&self.vault, Table::Plugins, |b| {
            decode::<PluginRecord>(Table::Plugins, b)
        })?;
        let mut out: Vec<PluginCheck> = self
            .plugins
            .list()
            .into_iter()
            .filter(|p| p.origin == scaivault_plugin_host::Origin::Builtin)
            .map(|p| PluginCheck {
                ok: p.problem.is_none(),
                detail: p
                    .problem
                    .unwrap_or_else(|| "built in; embedded bytes match".into()),
                name: p.name,
            })
            .collect();
        for r in records {
            let path = self.plugin_dir.join(&r.file);
            let (ok, detail) = match std::fs::read(&path) {
                Err(e) => (false, format!("{} cannot be read: {e}", path.display())),
                Ok(b) => {
                    let actual = sha256_hex(&b);
                    if actual == r.manifest.wasm_sha256 {
                        (
                            true,
                            format!("{} matches its pinned SHA-256", path.display()),
                        )
                    } else {
                        (
                            false,
                            format!(
                                "{} does not match its pinned SHA-256 (pinned {}, file {actual})",
                                path.display(),
                                r.manifest.wasm_sha256
                            ),
                        )
                    }
                }
            };
            out.push(PluginCheck {
                name: r.manifest.name,
                ok,
                detail,
            });
        }
        Ok(out)
    }

    /// Runs a generator without storing anything (secret-policy previews, CLI `generate`).
    pub async fn generate_value(
        &self,
        caller: &Caller,
        generator: &str,
        config: Value,
    ) -> Result<Value> {
        self.authorize(caller, Scope::SecretsWrite, None)?;
        let host = self.plugins.clone();
        let services = self.services();
        let g = generator.to_owned();
        tokio::task::spawn_blocking(move || host.generate(&g, &config, services))
            .await
            .map_err(|_| Error::internal("generator panicked"))?
    }

    /// Validates `data` for each write's type in the sandbox, off the async workers (a plugin
    /// may use its whole deadline). Returns the `expires_at` each type implies.
    pub(crate) async fn validate_types(
        &self,
        items: Vec<(String, String, crate::records::SecretData)>,
    ) -> Result<Vec<Option<Timestamp>>> {
        let host = self.plugins.clone();
        let services = self.services();
        let run = move || -> Result<Vec<Option<Timestamp>>> {
            // The data goes to the sandbox as the JSON text it arrived as, never parsed here.
            let pairs: Vec<(&str, &str)> = items
                .iter()
                .map(|(_, t, d)| (t.as_str(), d.as_json_text()))
                .collect();
            let results = if pairs.len() == 1 {
                vec![host.validate_secret(pairs[0].0, pairs[0].1, services)]
            } else {
                host.validate_secrets(&pairs, services)
            };
            items
                .iter()
                .zip(results)
                .map(|((path, t, _), r)| {
                    let exp = r.map_err(|e| e.with("path", path.as_str()))?;
                    exp.map(|e| {
                        Timestamp::parse_rfc3339(&e).map_err(|_| {
                            Error::new(
                                ErrorCode::PluginFailed,
                                format!("the {t} type returned an expires_at that is not RFC 3339"),
                            )
                        })
                    })
                    .transpose()
                })
                .collect()
        };
        // A plugin call usually takes tens of microseconds but may use its whole deadline, so
        // it runs on the blocking pool, never on an async worker.
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|_| Error::internal("validation panicked"))?
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::InternalError,
        format!("cannot write the plugin directory {}: {e}", path.display()),
    )
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("wasm.tmp");
    let mut f = scaivault_store::private_fs::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// `GET /v1/plugins`: the catalogue.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PluginList {
    pub data: Vec<PluginInfo>,
}
