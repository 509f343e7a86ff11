//! Files and directories the vault creates: owner-only, whatever the umask.
//!
//! Every file ScaiVault writes — the vault file, backups, audit exports, `.env` exports,
//! downloaded backups, plugin files, recovery keys, the CLI's config — holds secrets or the
//! means to reach them, so it is created `0600` (directories `0700`) here and nowhere else.
//! `clippy.toml` forbids the other ways of creating files in the workspace, so a new writer
//! cannot forget. A file that already exists is narrowed to `0600` when it is rewritten.

#![allow(clippy::disallowed_methods)] // the one place allowed to create files

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    o.mode(FILE_MODE);
    o
}

/// Makes an open file owner-only (it may have existed with a wider mode).
fn narrow(f: &File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mode = f.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

/// Creates `path`, which must not exist, for reading and writing.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    let f = options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    narrow(&f)?;
    Ok(f)
}

/// Creates or truncates `path` for writing.
pub fn create(path: &Path) -> std::io::Result<File> {
    let f = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    narrow(&f)?;
    Ok(f)
}

/// Opens an existing file of ours to append to it.
pub fn append(path: &Path) -> std::io::Result<File> {
    let f = options().read(true).append(true).open(path)?;
    narrow(&f)?;
    Ok(f)
}

/// Writes `bytes` to `path` (created or truncated) and makes them durable.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates `path` and its missing parents, each new one `0700`.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    b.mode(DIR_MODE);
    b.create(path)
}

/// Why a vault file is exposed to other local users, if it is: a file others can read can be
/// copied and attacked offline at the key derivation's cost.
pub fn exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} can be read by other users (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
    let _ = path;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_directories_are_owner_only_whatever_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir_all(&sub).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&sub), 0o700);
        let f = sub.join("new");
        create_new(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert!(create_new(&f).is_err(), "create_new never overwrites");
        // A file that was world-readable is narrowed when rewritten.
        let old = sub.join("old");
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(exposure(&old).unwrap().contains("chmod 600"));
        write(&old, b"y").unwrap();
        assert_eq!(mode(&old), 0o600);
        assert!(exposure(&old).is_none());
        append(&old).unwrap();
        assert_eq!(std::fs::read(&old).unwrap(), b"y");
    }
}
