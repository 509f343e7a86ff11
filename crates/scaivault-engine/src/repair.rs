//! Repairing one damaged secret in place.
//!
//! A secret whose head is missing or fails to authenticate answers `integrity_error` and
//! refuses writes, so no write can start a new history over a damaged one. This module holds
//! the two ways an operator ends that state for just that secret, each one transaction:
//! destroy what is left of it ([`Engine::destroy_damaged`]), or put its records back from a
//! backup ([`Engine::restore_damaged`], which `restore_from_backup` uses when the live secret
//! is damaged).
//!
//! Version records are keyed by a blinded `path + version`, and a damaged head no longer says
//! which versions it had. So its versions are found among the records no intact secret refers
//! to, by recomputing this path's keys for versions 1, 2, … (up to [`MAX_VERSION_PROBE`])
//! until none is left to match: only records proven to be this secret's are removed. Any other
//! unreferenced record (another damaged secret's, or the evidence of a rolled-back head) stays,
//! counted in the answer, and `operator verify` keeps naming it.

use scaivault_core::scope::{Permission, Scope};
use scaivault_core::{Error, ErrorCode, Result};
use scaivault_store::{Table, WriteTx};
use serde::{Deserialize, Serialize};

use crate::records::SecretHead;
use crate::rotation_state::{assignment_key, job_key, notice_key};
use crate::secrets::{Indexes, forget_in, head_in, put_head, set_path_state, version_key};
use crate::{Caller, Engine, read, store_err, unpack, write};

/// `DELETE /v1/sys/damaged/{path}`: what destroying a damaged secret removed.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DamagedDestroyed {
    pub path: String,
    /// This secret's version records removed.
    pub versions_removed: usize,
    /// Version records no intact secret refers to that are not this secret's (another damaged
    /// secret's, or left by a head rolled back outside the vault): left in place for the
    /// operator to look at; `operator verify` names them.
    pub other_unreferenced: usize,
}

/// The highest version number a repair looks for a damaged secret's records under.
pub const MAX_VERSION_PROBE: u64 = 1 << 20;

impl Engine {
    /// Whether `path` is listed but its head is missing or fails to authenticate.
    pub(crate) fn is_damaged(&self, path: &str) -> Result<bool> {
        match self.load_head(path) {
            Err(e) if e.code == ErrorCode::IntegrityError => Ok(true),
            Err(e) => Err(e),
            Ok(Some(_)) => Ok(false),
            Ok(None) => Ok(self
                .vault
                .get(Table::Paths, path.as_bytes())
                .map_err(store_err)?
                .is_some()),
        }
    }

    /// Destroys what is left of a damaged secret: its head, listing entry, rotation and expiry
    /// records, and its version records. Only for a damaged secret (an intact one is destroyed
    /// with a permanent delete); an admin's act, and it needs delete on the path too.
    pub async fn destroy_damaged(&self, caller: &Caller, path: &str) -> Result<DamagedDestroyed> {
        self.authorize(caller, Scope::Admin, None)?;
        let path = self.authorize_path(caller, path, Scope::SecretsDelete, Permission::Delete)?;
        let p = path.as_str().to_owned();
        let ix = self.indexes();
        self.vault
            .write(move |tx| {
                ensure_damaged(tx, &p)?;
                let (versions_removed, other_unreferenced) = remove_remains(tx, &p, &ix, false)?;
                Ok(DamagedDestroyed {
                    path: p,
                    versions_removed,
                    other_unreferenced,
                })
            })
            .await
    }

    /// Replaces a damaged secret with its records from a backup (`snapshot`, opened under the
    /// same keys): head and every version it holds, as they were when the backup was taken.
    /// The secret keeps the rotation policy it is attached to in this vault; a rotation that
    /// was in progress is dropped. `entry` is the request's audit entry, committed in the same
    /// transaction. Returns the head put back.
    pub(crate) async fn restore_damaged(
        &self,
        snapshot: &Engine,
        path: &str,
        entry: crate::AuditInput,
    ) -> Result<SecretHead> {
        let mut head = snapshot.load_head(path)?.ok_or_else(|| {
            Error::new(
                ErrorCode::SecretNotFound,
                format!("the backup has no secret at {path}"),
            )
            .with("path", path)
        })?;
        let mut versions = Vec::with_capacity(head.versions.len());
        for info in &head.versions {
            let key = version_key(path, info.version);
            let record = snapshot
                .vault
                .get(Table::Versions, &key)
                .map_err(store_err)?
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::IntegrityError,
                        format!(
                            "version {} of {path} is missing from the backup",
                            info.version
                        ),
                    )
                    .with("path", path)
                })?;
            versions.push((key, record));
        }
        head.rotation_policy_id = read(&self.rotation).assigned.get(path).cloned();
        head.previous_version = None;
        head.grace_until = None;
        let (p, ix, clock) = (path.to_owned(), self.indexes(), self.clock.clone());
        let restored = head.current_version;
        self.vault
            .write(move |tx| {
                ensure_damaged(tx, &p)?;
                remove_remains(tx, &p, &ix, true)?;
                for (key, record) in &versions {
                    tx.put(Table::Versions, key, record.as_bytes());
                }
                put_head(tx, &ix.heads, &head);
                set_path_state(tx, &ix.paths, &p, head.deleted_at.is_some());
                let mut entry = entry;
                entry
                    .extra_data
                    .insert("restored_version".into(), restored.into());
                entry.extra_data.insert("version".into(), restored.into());
                entry
                    .extra_data
                    .insert("repaired_damage".into(), true.into());
                crate::audit::append(tx, entry, &*clock)?;
                Ok(head)
            })
            .await
    }
}

/// Refuses unless `p` is damaged as this write job sees it.
fn ensure_damaged(tx: &WriteTx<'_, '_>, p: &str) -> Result<()> {
    match head_in(tx, p) {
        Err(e) if e.code == ErrorCode::IntegrityError => Ok(()),
        Err(e) => Err(e),
        Ok(Some(_)) => Err(Error::invalid_request(format!(
            "{p} is not damaged: destroy it with `scaivault secrets delete {p} --hard`, or restore a version with `scaivault operator restore`"
        ))
        .with("path", p)),
        Ok(None) => Err(
            Error::new(ErrorCode::SecretNotFound, format!("no secret at {p}")).with("path", p),
        ),
    }
}

/// Removes a damaged secret's records (keeping its rotation attachment when `keep_rotation`),
/// its version records among those no intact secret refers to included. Returns how many
/// version records were its, and how many other unreferenced ones were left.
fn remove_remains(
    tx: &mut WriteTx<'_, '_>,
    p: &str,
    ix: &Indexes,
    keep_rotation: bool,
) -> Result<(usize, usize)> {
    forget_in(tx, p, ix);
    // The damaged head's term in the ledger is lost with it: the heads' digest is taken anew
    // from the file (the versions and the path index keep theirs, moved record by record).
    tx.reanchor(Table::Secrets);
    tx.delete(Table::Rotation, &job_key(p));
    tx.delete(Table::Rotation, &notice_key(p));
    if !keep_rotation {
        tx.delete(Table::Rotation, &assignment_key(p));
    }
    let (rotation, key) = (ix.rotation.clone(), p.to_owned());
    tx.on_commit(move || {
        let mut r = write(&rotation);
        r.jobs.remove(&key);
        r.notices.remove(&key);
        if !keep_rotation {
            r.assigned.remove(&key);
        }
    });

    // Every version an intact head refers to is kept; among the rest, this path's are found by
    // recomputing their keys. A head that does not open contributes nothing to `keep`, so its
    // versions are unreferenced too, but they never match this path's keys.
    let mut keep = Vec::new();
    tx.scan(Table::Secrets, &mut |r| {
        if let Ok(h) = r
            .map_err(store_err)
            .and_then(|b| unpack::<SecretHead>(Table::Secrets, b.as_bytes()))
        {
            keep.extend(h.versions.iter().map(|v| version_key(&h.path, v.version)));
        }
        true
    })
    .map_err(store_err)?;
    let mut loose = tx.unreferenced(Table::Versions, keep).map_err(store_err)?;
    let mut mine = 0;
    for v in 1..=MAX_VERSION_PROBE {
        if loose.is_empty() {
            break;
        }
        let k = tx.record_key(Table::Versions, &version_key(p, v));
        if loose.remove(&k) {
            tx.delete_record(Table::Versions, k);
            mine += 1;
        }
    }
    Ok((mine, loose.len()))
}
