//! The WebAssembly plugin host: ABI v1 (`plugins/ABI.md`), manifests, hash pinning, the sandbox
//! and the built-in plugins. It knows nothing of storage: the engine keeps the catalogue of
//! installed plugins in the vault file and hands this crate verified bytes.

pub mod abi;
mod builtin;
mod error;
pub mod manifest;
mod redact;
mod sandbox;
mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use scaivault_core::{Error, ErrorCode, Result};
use serde::Serialize;
use serde_json::{Value, json};

pub use error::{Failure, PluginError};

/// One `{"type": <t>, "data": <data>}` of a plugin's input, checked: `data` must be the JSON
/// text of an object (checked without building values), so no text can change the envelope
/// around it. Returns the quoted type and the item's length.
fn item_parts(secret_type: &str, data: &str) -> Result<(String, usize)> {
    let is_object = data.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok();
    if !is_object {
        return Err(Error::new(
            ErrorCode::ValidationError,
            "data must be a JSON object",
        ));
    }
    let quoted = serde_json::to_string(secret_type).map_err(|_| Error::internal("plugin input"))?;
    let len = ITEM_FRAME.len() + quoted.len() + data.len();
    Ok((quoted, len))
}

const ITEM_FRAME: &str = r#"{"type":,"data":}"#;

fn push_item(out: &mut Vec<u8>, quoted_type: &str, data: &str) {
    out.extend_from_slice(b"{\"type\":");
    out.extend_from_slice(quoted_type.as_bytes());
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
}

/// The input of a plugin call over secrets' data: one item (`validate`) or `{"items": […]}`
/// (`validate_batch`). The buffer is sized before anything is copied in, so it never
/// reallocates (a reallocation would free an unwiped copy), and is wiped on drop.
fn data_input<'a>(
    items: impl Iterator<Item = (&'a str, &'a str)>,
    batch: bool,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let parts: Vec<(String, &str, usize)> = items
        .map(|(t, data)| item_parts(t, data).map(|(q, len)| (q, data, len)))
        .collect::<Result<_>>()?;
    let total: usize = parts.iter().map(|(_, _, len)| len + 1).sum::<usize>() + 16;
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(total));
    if batch {
        out.extend_from_slice(b"{\"items\":[");
    }
    for (n, (quoted, data, _)) in parts.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        push_item(&mut out, quoted, data);
    }
    if batch {
        out.extend_from_slice(b"]}");
    }
    debug_assert!(out.len() <= total, "the input buffer grew");
    Ok(out)
}
pub use manifest::{Capability, Kind, Limits, Manifest};
pub use services::{HostCallError, HostServices, NoServices};

use redact::Redactor;
use sandbox::{Loaded, Sandbox};

/// Lowercase hex SHA-256, the form manifests pin.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(scaivault_crypto::sha256(bytes))
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Builtin,
    External,
}

/// One plugin in the catalogue, compiled on first use.
struct Entry {
    manifest: Manifest,
    origin: Origin,
    bytes: Arc<[u8]>,
    /// Set when the plugin cannot be used at all (its file no longer matches its pin).
    refused: Option<String>,
    loaded: OnceLock<std::result::Result<Arc<Loaded>, PluginError>>,
    slots: Slots,
}

/// Bounds how many calls of one external plugin run at once, so a plugin that burns its whole
/// deadline on every call can occupy at most half the cores: everything else keeps running.
/// A call that cannot get a slot within the plugin's own deadline fails as busy.
struct Slots {
    limit: usize,
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn new(origin: &Origin) -> Slots {
        Slots::with_limit(match origin {
            // Built-ins are ours and run on every write: bounded only by the sandbox pool.
            Origin::Builtin => usize::MAX,
            Origin::External => half_the_cores(),
        })
    }

    fn with_limit(limit: usize) -> Slots {
        Slots {
            limit,
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    fn acquire(&self, wait: Duration) -> Option<SlotGuard<'_>> {
        let deadline = Instant::now() + wait;
        let mut used = lock(&self.used);
        while *used >= self.limit {
            let left = deadline.checked_duration_since(Instant::now())?;
            used = self
                .freed
                .wait_timeout(used, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *used += 1;
        Some(SlotGuard(self))
    }
}

fn half_the_cores() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores / 2).max(1)
}

/// Generators that take seconds of CPU (an RSA prime search, a bcrypt hash at a high cost):
/// a token that may generate values must not be able to occupy every core with them.
fn costly(generator: &str, config: &Value) -> bool {
    match generator {
        "rsa_keypair" | "bcrypt_hash" => true,
        "ssh_keypair" => config.get("key_type").and_then(Value::as_str) == Some("rsa"),
        _ => false,
    }
}

/// How long a costly generator waits for its turn before it answers busy (retryable).
const COSTLY_WAIT: Duration = Duration::from_secs(30);

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.used) -= 1;
        self.0.freed.notify_one();
    }
}

/// An external plugin that passed every check, ready to be inserted.
pub struct Checked(Entry);

impl Checked {
    pub fn manifest(&self) -> &Manifest {
        &self.0.manifest
    }
}

fn sandbox() -> Result<&'static Sandbox> {
    static SANDBOX: OnceLock<std::result::Result<Sandbox, String>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| Sandbox::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| {
            Error::new(
                ErrorCode::InternalError,
                format!("cannot start the plugin sandbox: {e}"),
            )
        })
}

type Compiled = std::sync::Mutex<std::collections::HashMap<String, Arc<Loaded>>>;

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(Default::default)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A row of `plugins list`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub origin: Origin,
    pub abi: String,
    pub wasm_sha256: String,
    pub capabilities: Vec<Capability>,
    pub provides: manifest::Provides,
    pub limits: Limits,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

pub struct PluginHost {
    sandbox: &'static Sandbox,
    granted: BTreeSet<Capability>,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
    /// Costly generator calls running at once: at most half the cores.
    costly: Slots,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl PluginHost {
    /// A host with the built-in plugins. `granted` is what the operator allows external plugins
    /// to use (built-ins get what their manifests declare).
    pub fn new(granted: BTreeSet<Capability>) -> Result<Self> {
        let sandbox = sandbox()?;
        let mut entries = BTreeMap::new();
        for b in builtin::BUILTINS {
            let manifest = Manifest::parse(b.manifest.as_bytes())
                .map_err(|e| Error::internal(format!("built-in plugin manifest: {}", e.message)))?;
            let refused = (sha256_hex(b.wasm) != manifest.wasm_sha256)
                .then(|| "does not match the SHA-256 in its manifest".to_string());
            entries.insert(
                manifest.name.clone(),
                Arc::new(Entry {
                    manifest,
                    origin: Origin::Builtin,
                    bytes: Arc::from(b.wasm),
                    refused,
                    loaded: OnceLock::new(),
                    slots: Slots::new(&Origin::Builtin),
                }),
            );
        }
        Ok(PluginHost {
            sandbox,
            granted,
            entries: RwLock::new(entries),
            costly: Slots::with_limit(half_the_cores()),
        })
    }

    fn grants(&self, e: &Entry) -> BTreeSet<Capability> {
        match e.origin {
            Origin::Builtin => e.manifest.capabilities.clone(),
            Origin::External => self.granted.clone(),
        }
    }

    fn loaded(&self, e: &Entry) -> std::result::Result<Arc<Loaded>, PluginError> {
        if let Some(why) = &e.refused {
            return Err(PluginError::Refused(why.clone()));
        }
        e.loaded
            .get_or_init(|| {
                let granted = self.grants(e);
                // Modules are compiled once per process: reloading an engine (unseal, restore)
                // or a second vault reuses what this binary already compiled.
                let key = format!(
                    "{}|{}|{:?}",
                    e.manifest.wasm_sha256,
                    serde_json::to_string(&e.manifest).unwrap_or_default(),
                    granted
                );
                if let Some(l) = lock(compiled()).get(&key) {
                    return Ok(l.clone());
                }
                let l = Arc::new(self.sandbox.load(&e.manifest, &e.bytes, &granted)?);
                lock(compiled()).insert(key, l.clone());
                Ok(l)
            })
            .clone()
    }

    /// Compiles every plugin not compiled yet, so the first request does not pay for it.
    /// Returns how long each took.
    pub fn precompile(&self) -> Vec<(String, Duration)> {
        self.precompile_kinds(&[Kind::SecretTypes, Kind::Generators, Kind::RotationBackend])
    }

    /// Compiles the plugins of the given kinds not compiled yet. A server compiles the secret
    /// types at start (every write runs one); the rest compile on first use.
    pub fn precompile_kinds(&self, kinds: &[Kind]) -> Vec<(String, Duration)> {
        let entries: Vec<Arc<Entry>> = read(&self.entries)
            .values()
            .filter(|e| kinds.contains(&e.manifest.kind))
            .cloned()
            .collect();
        entries
            .iter()
            .map(|e| {
                let t = Instant::now();
                let _ = self.loaded(e);
                (e.manifest.name.clone(), t.elapsed())
            })
            .collect()
    }

    /// Checks an external plugin's bytes against its manifest's pin and the ABI, and adds it
    /// (or replaces an external one of the same name). Nothing is added on any failure.
    pub fn add_external(&self, manifest: Manifest, bytes: Vec<u8>) -> Result<()> {
        let checked = self.check_external(manifest, bytes)?;
        self.insert(checked);
        Ok(())
    }

    /// Adds a plugin [`PluginHost::check_external`] accepted.
    pub fn insert(&self, checked: Checked) {
        let entry = checked.0;
        write(&self.entries).insert(entry.manifest.name.clone(), Arc::new(entry));
    }

    /// Everything `add_external` checks, without adding: so the caller can persist first.
    pub fn check_external(&self, manifest: Manifest, bytes: Vec<u8>) -> Result<Checked> {
        manifest.check()?;
        let name = manifest.name.clone();
        if let Some(existing) = read(&self.entries).get(&name)
            && existing.origin == Origin::Builtin
        {
            return Err(Error::new(
                ErrorCode::PluginExists,
                format!("{name} is a built-in plugin's name"),
            ));
        }
        self.check_conflicts(&manifest)?;
        let actual = sha256_hex(&bytes);
        if actual != manifest.wasm_sha256 {
            return Err(Error::new(
                ErrorCode::InvalidPlugin,
                format!("the file's SHA-256 {actual} does not match the manifest's wasm_sha256"),
            ));
        }
        let entry = Entry {
            manifest,
            origin: Origin::External,
            bytes: Arc::from(bytes),
            refused: None,
            loaded: OnceLock::new(),
            slots: Slots::new(&Origin::External),
        };
        self.loaded(&entry).map_err(|e| match e {
            PluginError::Refused(m) => Error::new(
                ErrorCode::InvalidPlugin,
                format!("plugin {name} is refused: it {m}"),
            ),
            other => other.into_error(&name),
        })?;
        Ok(Checked(entry))
    }

    /// Records an installed plugin that cannot be loaded (its file is gone or changed), so
    /// that `list` shows it and calls fail with the reason.
    pub fn add_refused(&self, manifest: Manifest, why: String) {
        let name = manifest.name.clone();
        write(&self.entries).insert(
            name,
            Arc::new(Entry {
                manifest,
                origin: Origin::External,
                bytes: Arc::from(Vec::new()),
                refused: Some(why),
                loaded: OnceLock::new(),
                slots: Slots::new(&Origin::External),
            }),
        );
    }

    fn check_conflicts(&self, m: &Manifest) -> Result<()> {
        for e in read(&self.entries).values() {
            if e.manifest.name == m.name {
                continue;
            }
            let theirs = &e.manifest.provides;
            let clash = m
                .provides
                .secret_types
                .iter()
                .find(|t| theirs.secret_types.contains(t))
                .or_else(|| {
                    m.provides
                        .generators
                        .iter()
                        .find(|g| theirs.generators.contains(g))
                })
                .or_else(|| {
                    m.provides
                        .rotation_backends
                        .iter()
                        .find(|b| theirs.rotation_backends.contains(b))
                });
            if let Some(n) = clash {
                return Err(Error::new(
                    ErrorCode::PluginExists,
                    format!("{n:?} is already provided by plugin {}", e.manifest.name),
                ));
            }
        }
        Ok(())
    }

    /// Removes an external plugin. Built-ins cannot be removed.
    pub fn remove(&self, name: &str) -> Result<()> {
        let mut entries = write(&self.entries);
        match entries.get(name) {
            None => Err(not_found(name)),
            Some(e) if e.origin == Origin::Builtin => Err(Error::new(
                ErrorCode::Forbidden,
                format!("{name} is built in and cannot be removed"),
            )),
            Some(_) => {
                entries.remove(name);
                Ok(())
            }
        }
    }

    pub fn list(&self) -> Vec<PluginInfo> {
        let entries: Vec<Arc<Entry>> = read(&self.entries).values().cloned().collect();
        entries.iter().map(|e| self.info(e)).collect()
    }

    pub fn get(&self, name: &str) -> Result<PluginInfo> {
        let e = read(&self.entries)
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        Ok(self.info(&e))
    }

    fn info(&self, e: &Entry) -> PluginInfo {
        let problem = match (&e.refused, e.loaded.get()) {
            (Some(why), _) => Some(why.clone()),
            (None, Some(Err(err))) => Some(err.clone().into_error(&e.manifest.name).message),
            _ => None,
        };
        PluginInfo {
            name: e.manifest.name.clone(),
            version: e.manifest.version.clone(),
            kind: e.manifest.kind,
            origin: e.origin.clone(),
            abi: e.manifest.abi.clone(),
            wasm_sha256: e.manifest.wasm_sha256.clone(),
            capabilities: e.manifest.capabilities.iter().copied().collect(),
            provides: e.manifest.provides.clone(),
            limits: e.manifest.limits,
            status: if problem.is_some() { "refused" } else { "ok" }.into(),
            problem,
        }
    }

    /// Which plugin provides a secret type, a generator or a rotation backend.
    fn provider(&self, what: impl Fn(&manifest::Provides) -> bool) -> Option<Arc<Entry>> {
        read(&self.entries)
            .values()
            .find(|e| what(&e.manifest.provides))
            .cloned()
    }

    /// Every secret type some plugin provides.
    pub fn secret_types(&self) -> Vec<String> {
        let mut v: Vec<String> = read(&self.entries)
            .values()
            .flat_map(|e| e.manifest.provides.secret_types.clone())
            .collect();
        v.sort();
        v
    }

    pub fn has_secret_type(&self, t: &str) -> bool {
        self.provider(|p| p.secret_types.iter().any(|x| x == t))
            .is_some()
    }

    /// Runs `op` of plugin `name` in a fresh sandbox.
    pub fn call(
        &self,
        name: &str,
        op: &str,
        input: &Value,
        services: Arc<dyn HostServices>,
    ) -> Result<Value> {
        let e = read(&self.entries)
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        self.call_entry(&e, op, input, services)
    }

    fn call_entry(
        &self,
        e: &Entry,
        op: &str,
        input: &Value,
        services: Arc<dyn HostServices>,
    ) -> Result<Value> {
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec(input).map_err(|_| Error::internal("plugin input"))?,
        );
        self.call_entry_bytes(e, op, &bytes, services)
    }

    fn call_entry_bytes(
        &self,
        e: &Entry,
        op: &str,
        input: &[u8],
        services: Arc<dyn HostServices>,
    ) -> Result<Value> {
        let name = &e.manifest.name;
        let loaded = self.loaded(e).map_err(|err| err.into_error(name))?;
        let _slot = e
            .slots
            .acquire(Duration::from_millis(e.manifest.limits.timeout_ms))
            .ok_or_else(|| PluginError::Busy.into_error(name))?;
        loaded
            .call(op, input, services)
            .map_err(|err| err.into_error(name))
    }

    /// Validates `data` — the JSON text of an object — for `secret_type`. Returns the
    /// `expires_at` the type implies, if any (a certificate's notAfter). The text goes to the
    /// sandbox as it is, in a buffer wiped after the call: a secret's value is never parsed
    /// into values that would outlive the call unwiped.
    pub fn validate_secret(
        &self,
        secret_type: &str,
        data: &str,
        services: Arc<dyn HostServices>,
    ) -> Result<Option<String>> {
        let e = self
            .provider(|p| p.secret_types.iter().any(|x| x == secret_type))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidSecretType,
                    format!("unknown secret_type {secret_type:?}"),
                )
                .with("allowed", self.secret_types())
            })?;
        let input = data_input(std::iter::once((secret_type, data)), false)?;
        let out = self.call_entry_bytes(&e, "validate", &input, services)?;
        Ok(out
            .get("expires_at")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// Validates many writes at once (bulk imports): items whose types one plugin provides go
    /// to it in batches, one instance per batch, if it has `validate_batch`, else one call each.
    /// Results are in the order of `items`.
    pub fn validate_secrets(
        &self,
        items: &[(&str, &str)],
        services: Arc<dyn HostServices>,
    ) -> Vec<Result<Option<String>>> {
        const BATCH_ITEMS: usize = 256;
        const BATCH_BYTES: usize = 2 * 1024 * 1024;
        let mut out: Vec<Option<Result<Option<String>>>> = (0..items.len()).map(|_| None).collect();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (t, _)) in items.iter().enumerate() {
            match self.provider(|p| p.secret_types.iter().any(|x| x == t)) {
                Some(e) => groups.entry(e.manifest.name.clone()).or_default().push(i),
                None => out[i] = Some(self.validate_secret(t, items[i].1, services.clone())),
            }
        }
        for (plugin, idx) in groups {
            let Some(e) = read(&self.entries).get(&plugin).cloned() else {
                continue;
            };
            let mut start = 0;
            while start < idx.len() {
                let mut end = start;
                let mut bytes = 0;
                while end < idx.len()
                    && end - start < BATCH_ITEMS
                    && (bytes < BATCH_BYTES || end == start)
                {
                    bytes += items[idx[end]].1.len();
                    end += 1;
                }
                let chunk = &idx[start..end];
                let batch = data_input(chunk.iter().map(|&i| items[i]), true);
                let called = batch.and_then(|input| {
                    self.call_entry_bytes(&e, "validate_batch", &input, services.clone())
                });
                match called {
                    Ok(v)
                        if v["results"]
                            .as_array()
                            .is_some_and(|r| r.len() == chunk.len()) =>
                    {
                        let mut redactor: Option<Redactor> = None;
                        for (k, &i) in chunk.iter().enumerate() {
                            let r = &v["results"][k];
                            out[i] = Some(match r.get("error") {
                                Some(err) => {
                                    let mut message: String = err["message"]
                                        .as_str()
                                        .unwrap_or("invalid")
                                        .chars()
                                        .take(1024)
                                        .collect();
                                    let mut fields =
                                        err.get("fields").cloned().filter(Value::is_object);
                                    // No value of the batch leaves in an error.
                                    let redactor = redactor.get_or_insert_with(|| {
                                        let mut r = Redactor::default();
                                        chunk
                                            .iter()
                                            .for_each(|&i| r.add_json(items[i].1.as_bytes()));
                                        r
                                    });
                                    redactor.apply_all(&mut [&mut message]);
                                    if let Some(f) = &mut fields {
                                        redactor.apply_value(f);
                                    }
                                    Err(PluginError::Guest {
                                        code: err["code"]
                                            .as_str()
                                            .unwrap_or("plugin_error")
                                            .chars()
                                            .take(64)
                                            .collect(),
                                        message,
                                        fields,
                                        retryable: false,
                                    }
                                    .into_error(&plugin))
                                }
                                None => Ok(r
                                    .get("expires_at")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned)),
                            });
                        }
                    }
                    // No batch operation (an older or external plugin): one call each.
                    _ => {
                        for &i in chunk {
                            out[i] = Some(self.validate_secret(
                                items[i].0,
                                items[i].1,
                                services.clone(),
                            ));
                        }
                    }
                }
                start = end;
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("validation result missing"))))
            .collect()
    }

    /// Runs a generator with its config. Returns `{"value": ...}` or `{"values": {...}}`.
    pub fn generate(
        &self,
        generator: &str,
        config: &Value,
        services: Arc<dyn HostServices>,
    ) -> Result<Value> {
        let e = self
            .provider(|p| p.generators.iter().any(|x| x == generator))
            .ok_or_else(|| {
                let known: Vec<String> = read(&self.entries)
                    .values()
                    .flat_map(|e| e.manifest.provides.generators.clone())
                    .collect();
                Error::new(
                    ErrorCode::ValidationError,
                    format!("unknown generator {generator:?}"),
                )
                .with("fields", json!({ "generator": "unknown generator" }))
                .with("allowed", known)
            })?;
        let _turn = if costly(generator, config) {
            Some(
                self.costly
                    .acquire(COSTLY_WAIT)
                    .ok_or_else(|| PluginError::Busy.into_error(&e.manifest.name))?,
            )
        } else {
            None
        };
        self.call_entry(
            &e,
            "generate",
            &json!({ "generator": generator, "config": config }),
            services,
        )
    }

    /// The plugin that provides rotation backend `backend`.
    pub fn rotation_backend(&self, backend: &str) -> Option<String> {
        self.provider(|p| p.rotation_backends.iter().any(|x| x == backend))
            .map(|e| e.manifest.name.clone())
    }
}

fn not_found(name: &str) -> Error {
    Error::new(
        ErrorCode::PluginNotFound,
        format!("no plugin named {name:?} is installed"),
    )
    .with("plugin", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costly_generators_wait_for_a_turn_and_give_up_as_busy() {
        for (g, config, heavy) in [
            ("rsa_keypair", json!({}), true),
            ("bcrypt_hash", json!({}), true),
            ("ssh_keypair", json!({"key_type": "rsa"}), true),
            ("ssh_keypair", json!({}), false),
            ("ec_keypair", json!({}), false),
            ("random", json!({}), false),
        ] {
            assert_eq!(costly(g, &config), heavy, "{g} {config}");
        }
        let slots = Slots::with_limit(1);
        let first = slots
            .acquire(Duration::from_millis(10))
            .expect("a free turn");
        assert!(
            slots.acquire(Duration::from_millis(10)).is_none(),
            "the second waits, then gives up"
        );
        drop(first);
        assert!(slots.acquire(Duration::from_millis(10)).is_some());
    }
}
