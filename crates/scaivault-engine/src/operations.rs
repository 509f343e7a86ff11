//! Operations: backups, per-secret restore from a backup, and whole-vault verification.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use scaivault_core::scope::{Permission, Scope};
use scaivault_core::{Error, Result};
use scaivault_store::{BackupTrailer, StoreError, Table, Vault, extract_backup};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::records::{IdentityRecord, PathRecord, SecretHead, TokenRecord};
use crate::secrets::version_key;
use crate::{Caller, Engine, SystemClock, WriteOutcome, WriteRequest, decode, store_err, unpack};

impl Engine {
    /// Writes a backup of the whole vault (still encrypted) to `out`, while serving.
    pub fn backup(&self, caller: &Caller, out: &Path) -> Result<BackupTrailer> {
        self.authorize(caller, Scope::Admin, None)?;
        let head = self.verify_audit(caller, true)?;
        self.vault
            .backup_to(
                out,
                (head.head_seq, head.head_hash),
                self.now().to_rfc3339(),
            )
            .map_err(store_err)
    }

    /// Reads `path` (at `version`, or its current version) from a backup and writes it back
    /// as a new version: point-in-time restore of one secret. `entry` is the transport's
    /// audit entry for the request (who, from where, which request); it commits in the
    /// write's own transaction as `restore_from_backup`, naming the path, the version restored
    /// and the version written, so a query by path finds it and no crash separates the two.
    pub async fn restore_from_backup(
        &self,
        caller: &Caller,
        backup: &Path,
        path: &str,
        version: Option<u64>,
        mut entry: crate::AuditInput,
    ) -> Result<WriteOutcome> {
        // A whole backup is every secret of the vault: only an admin may hand one in, and
        // the path must still be writable for the caller (a root token passes both).
        self.authorize(caller, Scope::Admin, None)?;
        self.authorize(caller, Scope::SecretsWrite, Some((path, Permission::Write)))?;
        let dir = tempfile::tempdir().map_err(|e| Error::internal(format!("no temp dir: {e}")))?;
        let copy = dir.path().join("snapshot.db");
        // Whatever is wrong with the upload is the upload's fault, not the vault's: a 400
        // naming the backup, never an `integrity_error` that reads as damage to the vault.
        let unusable = |e: Error| {
            Error::invalid_request(format!(
                "the backup cannot be used (nothing was changed): {}",
                e.message
            ))
        };
        let trailer = extract_backup(backup, &copy)
            .map_err(store_err)
            .map_err(unusable)?;
        self.vault
            .check_backup_trailer(&trailer)
            .map_err(store_err)
            .map_err(unusable)?;
        let snapshot = Arc::new(
            self.vault
                .open_sibling(&copy)
                .map_err(store_err)
                .map_err(unusable)?,
        );
        let old = Engine::load(snapshot, Arc::new(SystemClock)).map_err(unusable)?;
        entry.action = crate::AuditAction::RestoreFromBackup.into();
        entry.success = true;
        // A damaged secret gets its records back from the backup (its whole history there);
        // a version asked for beyond that one is then written on top, as for an intact one.
        let path = scaivault_core::path::SecretPath::parse(path)?;
        let path = path.as_str();
        if self.is_damaged(path)? {
            // The version asked for must be in the backup before anything is put back.
            if let Some(v) = version {
                old.read_secret(&Caller::local_operator(), path, Some(v))?;
            }
            entry.secret_path = Some(path.to_owned());
            let head = self.restore_damaged(&old, path, entry.clone()).await?;
            if version.is_none_or(|v| v == head.current_version) {
                return Ok(WriteOutcome {
                    path: head.path.clone(),
                    version: head.current_version,
                    created: false,
                    secret_type: head.secret_type.clone(),
                    created_at: head
                        .versions
                        .last()
                        .map_or(head.updated_at, |v| v.created_at),
                    updated_at: head.updated_at,
                    expires_at: head.expires_at,
                });
            }
        }
        let view = old.read_secret(&Caller::local_operator(), path, version)?;
        let req: WriteRequest = serde_json::from_value(json!({
            "data": view.data,
            "secret_type": view.secret_type,
            "metadata": view.metadata,
        }))
        .map_err(|_| Error::internal("could not rebuild the write"))?;
        drop(old);
        let restored = view.version;
        entry.secret_path = Some(view.path.clone());
        self.write_secret_audited(caller, path, req, move |out| {
            entry
                .extra_data
                .insert("restored_version".into(), restored.into());
            entry
                .extra_data
                .insert("version".into(), out.version.into());
            entry
        })
        .await
    }

    /// Checks that every record opens and decodes, that the indexes agree with the tables,
    /// and that the audit chain is whole. Names every problem it finds.
    pub fn verify_vault(&self, caller: &Caller) -> Result<VaultReport> {
        self.authorize(caller, Scope::Admin, None)?;
        let mut problems: Vec<String> = Vec::new();
        let mut counts = BTreeMap::new();
        let v = &self.vault;

        let mut indexed = BTreeSet::new();
        let mut n = 0u64;
        scan(v, Table::Paths, &mut problems, &mut |b| {
            n += 1;
            let r: PathRecord = unpack(Table::Paths, b)?;
            indexed.insert(r.path);
            Ok(())
        })?;
        counts.insert("paths".into(), n);

        let mut heads = Vec::new();
        let mut n = 0u64;
        scan(v, Table::Secrets, &mut problems, &mut |b| {
            n += 1;
            heads.push(unpack::<SecretHead>(Table::Secrets, b)?);
            Ok(())
        })?;
        counts.insert("secrets".into(), n);
        let mut referenced = 0u64;
        for h in &heads {
            if !indexed.remove(&h.path) {
                problems.push(format!("secret {} is missing from the path index", h.path));
            }
            for info in &h.versions {
                referenced += 1;
                match v.get(Table::Versions, &version_key(&h.path, info.version)) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        problems.push(format!("version {} of {} is missing", info.version, h.path))
                    }
                    Err(e) => problems.push(format!("version {} of {}: {e}", info.version, h.path)),
                }
            }
        }
        for orphan in indexed {
            problems.push(format!(
                "the path index names {orphan}, which has no secret record"
            ));
        }
        let mut stored = 0u64;
        scan(v, Table::Versions, &mut problems, &mut |_| {
            stored += 1;
            Ok(())
        })?;
        if stored != referenced {
            problems.push(format!(
                "{stored} version records, but secrets reference {referenced}"
            ));
        }
        counts.insert("versions".into(), stored);

        // Identities, tokens, policies; rotation policies, assignments, jobs, notices and
        // recipes; the plugin catalogue; webhooks and their deliveries: each record opens and
        // decodes.
        let p = &mut problems;
        let checked = [
            (
                "identities",
                decoded::<IdentityRecord>(v, Table::Identities, p)?,
            ),
            ("tokens", decoded::<TokenRecord>(v, Table::Tokens, p)?),
            (
                "policies",
                decoded::<scaivault_core::policy::Policy>(v, Table::Policies, p)?,
            ),
            (
                "rotation_records",
                decoded::<crate::rotation_state::RotationRecord>(v, Table::Rotation, p)?,
            ),
            (
                "plugins",
                decoded::<crate::plugins::PluginRecord>(v, Table::Plugins, p)?,
            ),
            (
                "webhook_records",
                decoded::<crate::webhook_records::WebhookItem>(v, Table::Webhooks, p)?,
            ),
        ];
        for (name, n) in checked {
            counts.insert(name.into(), n);
        }
        for check in self.verify_plugins(caller)? {
            if !check.ok {
                problems.push(format!("plugin {}: {}", check.name, check.detail));
            }
        }

        // The ledger: every table's records are the ones the vault wrote (nothing rolled
        // back, removed or added by editing the file), checked in one consistent view.
        match v.verify_ledger() {
            Ok(found) => problems.extend(found.into_iter().map(|e| e.to_string())),
            Err(e) => problems.push(e.to_string()),
        }

        let audit = self.verify_audit(caller, false)?;
        counts.insert("audit_entries".into(), audit.verified);
        if let Some(p) = &audit.problem {
            problems.push(format!("audit log: {p}"));
        }
        Ok(VaultReport {
            ok: problems.is_empty(),
            checked: counts,
            audit_head: AuditHead {
                seq: audit.head_seq,
                hash: audit.head_hash,
            },
            problems,
        })
    }
}

/// `POST /v1/sys/verify`: what `operator verify` checked and every problem it found.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VaultReport {
    pub ok: bool,
    /// Records checked, by table (and audit entries verified).
    pub checked: BTreeMap<String, u64>,
    pub audit_head: AuditHead,
    /// Each problem, named: the table and record, or the audit entry.
    pub problems: Vec<String>,
}

/// The audit chain's head: the value to anchor outside the vault.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// Opens every record of `table`, collecting a problem per record that fails.
/// Opens and decodes every record of a JSON-encoded table as `T`; returns how many there are.
fn decoded<T: serde::de::DeserializeOwned>(
    v: &Vault,
    table: Table,
    problems: &mut Vec<String>,
) -> Result<u64> {
    let mut n = 0u64;
    scan(v, table, problems, &mut |b| {
        n += 1;
        decode::<T>(table, b).map(|_| ())
    })?;
    Ok(n)
}

fn scan(
    v: &Vault,
    table: Table,
    problems: &mut Vec<String>,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut i = 0u64;
    v.scan_checked(table, &mut |r: std::result::Result<_, StoreError>| {
        i += 1;
        match r {
            Ok(plain) => {
                if let Err(e) = each(plain.as_bytes()) {
                    problems.push(format!("{} record #{i}: {}", table.name(), e.message));
                }
            }
            Err(e) => problems.push(format!("{} record #{i}: {e}", table.name())),
        }
        true
    })
    .map_err(store_err)
}
