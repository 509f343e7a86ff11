//! Backup files: a consistent, still-encrypted copy of the vault followed by a trailer.
//!
//! Layout: `[vault file bytes][trailer JSON][trailer length: u64 LE]["SVBAK001"]`. The trailer
//! names the audit chain's head at snapshot time and carries the SHA-256 of the vault bytes,
//! so a damaged or truncated backup is refused before anything is restored from it. Since
//! backup format 2 the trailer also carries `mac`, an HMAC-SHA256 of every other trailer field
//! under a key derived from the vault's root key: with the SHA-256 it covers every byte of the
//! backup, and only someone holding the vault's key can make or check it. Restores check it
//! (`Vault::check_backup_trailer`); `inspect_backup` alone, without a key, checks structure
//! and checksum only.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{StoreError, io_error};
use crate::vault::Vault;

const MAGIC: &[u8; 8] = b"SVBAK001";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupTrailer {
    pub backup_format: u32,
    pub vault_format_version: u32,
    pub created_at: String,
    pub vault_bytes: u64,
    pub sha256: String,
    pub audit_head_seq: u64,
    pub audit_head_hash: String,
    /// Hex HMAC-SHA256 of the trailer without this field (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The trailer format this build writes; restores refuse an older one, whose trailer is not
/// authenticated (an attacker could turn a new trailer into an old, unchecked one).
const BACKUP_FORMAT: u32 = 2;

impl BackupTrailer {
    /// The bytes the MAC covers: the trailer's JSON without `mac`.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.mac = None;
        serde_json::to_vec(&unsigned).expect("trailer serializes")
    }
}

fn corrupt(why: &str) -> StoreError {
    StoreError::Corrupt(format!("not a usable ScaiVault backup: {why}"))
}

fn sha256_prefix(f: &mut std::fs::File, len: u64) -> Result<String, StoreError> {
    f.seek(SeekFrom::Start(0)).map_err(|e| io_error(&e))?;
    let mut h = scaivault_crypto::Sha256Stream::new();
    let mut left = len;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = (left as usize).min(buf.len());
        f.read_exact(&mut buf[..n])
            .map_err(|_| corrupt("truncated"))?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex::encode(h.finish()))
}

impl Vault {
    /// Writes a backup of the vault as of one read transaction, while it keeps serving.
    pub fn backup_to(
        &self,
        out: &Path,
        audit_head: (u64, String),
        now_rfc3339: String,
    ) -> Result<BackupTrailer, StoreError> {
        if out.exists() {
            return Err(StoreError::AlreadyExists(out.display().to_string()));
        }
        let tmp = out.with_extension("partial");
        let _ = std::fs::remove_file(&tmp);
        self.copy_to(&tmp)?;
        let result = (|| {
            let mut f = crate::private_fs::append(&tmp).map_err(|e| io_error(&e))?;
            let len = f.metadata().map_err(|e| io_error(&e))?.len();
            let mut trailer = BackupTrailer {
                backup_format: BACKUP_FORMAT,
                vault_format_version: crate::FORMAT_VERSION,
                created_at: now_rfc3339,
                vault_bytes: len,
                sha256: sha256_prefix(&mut f, len)?,
                audit_head_seq: audit_head.0,
                audit_head_hash: audit_head.1,
                mac: None,
            };
            let tag = self.trailer_authenticator().tag(&trailer.signed_bytes());
            trailer.mac = Some(hex::encode(tag));
            let json = serde_json::to_vec(&trailer).expect("trailer serializes");
            f.write_all(&json).map_err(|e| io_error(&e))?;
            f.write_all(&(json.len() as u64).to_le_bytes())
                .map_err(|e| io_error(&e))?;
            f.write_all(MAGIC).map_err(|e| io_error(&e))?;
            f.sync_all().map_err(|e| io_error(&e))?;
            Ok(trailer)
        })();
        match result {
            Ok(t) => {
                std::fs::rename(&tmp, out).map_err(|e| io_error(&e))?;
                Ok(t)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

impl Vault {
    fn trailer_authenticator(&self) -> scaivault_crypto::Authenticator {
        self.durable_authenticator("backup-trailer")
    }

    /// Checks that a backup's trailer was written by this vault (or an earlier copy of it)
    /// and not changed since: every field, including the checksum of the vault bytes.
    pub fn check_backup_trailer(&self, trailer: &BackupTrailer) -> Result<(), StoreError> {
        let bad = |why: &str| StoreError::Integrity {
            table: "backup",
            detail: format!("the backup's trailer {why}"),
        };
        if trailer.backup_format < BACKUP_FORMAT {
            return Err(bad(
                "is of a format whose trailer is not authenticated (made before this version); restore the whole file with `operator restore --into`",
            ));
        }
        let tag = trailer
            .mac
            .as_deref()
            .and_then(|m| hex::decode(m).ok())
            .ok_or_else(|| bad("carries no authentication tag"))?;
        if !self
            .trailer_authenticator()
            .verify(&trailer.signed_bytes(), &tag)
        {
            return Err(bad(
                "failed to authenticate: it was changed, or the backup is of another vault",
            ));
        }
        Ok(())
    }
}

/// Reads and checks a backup's trailer and checksum.
pub fn inspect_backup(path: &Path) -> Result<BackupTrailer, StoreError> {
    let mut f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotFound(path.display().to_string()),
        _ => io_error(&e),
    })?;
    let total = f.metadata().map_err(|e| io_error(&e))?.len();
    if total < 16 {
        return Err(corrupt("too short"));
    }
    let mut tail = [0u8; 16];
    f.seek(SeekFrom::Start(total - 16))
        .map_err(|e| io_error(&e))?;
    f.read_exact(&mut tail).map_err(|e| io_error(&e))?;
    if &tail[8..] != MAGIC {
        return Err(corrupt("no backup trailer (truncated, or not a backup)"));
    }
    let tlen = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
    if tlen > 64 * 1024 || tlen + 16 > total {
        return Err(corrupt("bad trailer length"));
    }
    let mut json = vec![0u8; tlen as usize];
    f.seek(SeekFrom::Start(total - 16 - tlen))
        .map_err(|e| io_error(&e))?;
    f.read_exact(&mut json).map_err(|e| io_error(&e))?;
    let trailer: BackupTrailer =
        serde_json::from_slice(&json).map_err(|_| corrupt("unreadable trailer"))?;
    if trailer.vault_bytes != total - 16 - tlen {
        return Err(corrupt("size does not match the trailer"));
    }
    if trailer.backup_format > BACKUP_FORMAT {
        return Err(corrupt("made by a newer version of ScaiVault"));
    }
    // An older vault format is upgraded when the restored file is first unsealed.
    if !(crate::header::OLDEST_FORMAT..=crate::FORMAT_VERSION)
        .contains(&trailer.vault_format_version)
    {
        return Err(StoreError::UnsupportedFormat(trailer.vault_format_version));
    }
    if sha256_prefix(&mut f, trailer.vault_bytes)? != trailer.sha256 {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(trailer)
}

/// Writes the vault inside a checked backup to `to` (which must not exist).
pub fn extract_backup(backup: &Path, to: &Path) -> Result<BackupTrailer, StoreError> {
    let trailer = inspect_backup(backup)?;
    let mut src = std::fs::File::open(backup).map_err(|e| io_error(&e))?;
    let mut dst = crate::private_fs::create_new(to).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => StoreError::AlreadyExists(to.display().to_string()),
        _ => io_error(&e),
    })?;
    std::io::copy(&mut (&mut src).take(trailer.vault_bytes), &mut dst).map_err(|e| io_error(&e))?;
    dst.sync_all().map_err(|e| io_error(&e))?;
    Ok(trailer)
}
