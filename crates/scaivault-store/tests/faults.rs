//! Fault tests on real vault files: wrong passphrase, truncation, tampering, moved and replayed
//! records. Each must give a clean error, never a panic and never wrong plaintext.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use common::*;
use scaivault_crypto::KdfParams;
use scaivault_store::{StoreError, Table, Unlock, Vault};

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Secrets, b"a/b", b"value-1");
    drop(v);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    assert_eq!(
        v.get(Table::Secrets, b"a/b").unwrap().unwrap().as_bytes(),
        b"value-1"
    );
    assert!(v.get(Table::Secrets, b"a/c").unwrap().is_none());
}

#[test]
fn wrong_passphrase_is_generic_and_leaves_the_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Secrets, b"a/b", b"value-1");
    v.shutdown();
    drop(v);
    let before = std::fs::read(&path).unwrap();
    let err = Vault::open(&path, Unlock::Passphrase(b"wrong"))
        .err()
        .unwrap();
    assert_eq!(err, StoreError::WrongPassphrase);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a failed unseal changed the file"
    );
    let err = Vault::open(&path, Unlock::KeyFile(b"no key file was set"))
        .err()
        .unwrap();
    assert_eq!(err, StoreError::WrongPassphrase);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn truncated_and_garbage_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    for i in 0..50u32 {
        put(&v, Table::Secrets, format!("k{i}").as_bytes(), &[7u8; 300]);
    }
    drop(v);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0usize, 10, 100, 511, 4096, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.path().join(format!("cut-{cut}.db"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let r = Vault::open(&p, Unlock::Passphrase(PASS));
        match r {
            Err(StoreError::Corrupt(_))
            | Err(StoreError::Io(_))
            | Err(StoreError::Integrity { .. }) => {}
            Ok(v) => {
                // A cut past the live data may still open; then every read must authenticate.
                for i in 0..50u32 {
                    if let Ok(Some(p)) = v.get(Table::Secrets, format!("k{i}").as_bytes()) {
                        assert_eq!(p.as_bytes(), &[7u8; 300]);
                    }
                }
            }
            Err(other) => panic!("cut at {cut}: unexpected {other:?}"),
        }
    }
    let p = dir.path().join("garbage.db");
    std::fs::write(&p, vec![0x5a; 8192]).unwrap();
    let r = Vault::open(&p, Unlock::Passphrase(PASS));
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{:?}", r.err());
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        Vault::open(&missing, Unlock::Passphrase(PASS)),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn a_flipped_byte_in_a_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Secrets, b"target", &[1u8; 200]);
    let sealed = v.raw_record(Table::Secrets, b"target").unwrap().unwrap();
    drop(v);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = find(&bytes, &sealed).expect("sealed record is in the file");
    bytes[at + sealed.len() / 2] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    match v.get(Table::Secrets, b"target") {
        Err(StoreError::Integrity { table, .. }) => assert_eq!(table, "secrets"),
        other => panic!("tampering not detected: {other:?}"),
    }
}

#[test]
fn a_record_copied_over_another_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Secrets, b"alpha", &[1u8; 120]);
    put(&v, Table::Secrets, b"bravo", &[2u8; 120]);
    let a = v.raw_record(Table::Secrets, b"alpha").unwrap().unwrap();
    let b = v.raw_record(Table::Secrets, b"bravo").unwrap().unwrap();
    drop(v);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = find(&bytes, &b).unwrap();
    bytes[at..at + a.len()].copy_from_slice(&a);
    std::fs::write(&path, &bytes).unwrap();
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    assert!(matches!(
        v.get(Table::Secrets, b"bravo"),
        Err(StoreError::Integrity { .. })
    ));
    assert_eq!(
        v.get(Table::Secrets, b"alpha").unwrap().unwrap().as_bytes(),
        &[1u8; 120]
    );
}

#[test]
fn failed_jobs_leave_no_trace_and_batches_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, v) = new_vault(dir.path());
    let v = std::sync::Arc::new(v);
    rt().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let v = v.clone();
            tasks.push(tokio::spawn(async move {
                v.write(move |tx| {
                    tx.put(Table::Secrets, format!("k{i}").as_bytes(), b"x");
                    if i % 2 == 1 {
                        Err(StoreError::Io("refused".into()))
                    } else {
                        Ok(())
                    }
                })
                .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().is_ok(), i % 2 == 0);
        }
    });
    for i in 0..64u32 {
        assert_eq!(
            v.get(Table::Secrets, format!("k{i}").as_bytes())
                .unwrap()
                .is_some(),
            i % 2 == 0,
            "k{i}"
        );
    }
}

#[test]
fn passphrase_change_and_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Secrets, b"old", b"sealed with key 1");
    rt().block_on(async {
        let change = v
            .change_passphrase(
                zeroize::Zeroizing::new(b"new passphrase".to_vec()),
                Some(KdfParams::FLOOR),
            )
            .await
            .unwrap();
        // Replacing the root key brings a data key the old root key never saw.
        assert_eq!(change.active_data_key, 2);
        assert!(change.dropped.is_empty());
        assert_eq!(v.rotate_data_key().await.unwrap().active_data_key, 3);
    });
    put(&v, Table::Secrets, b"new", b"sealed with key 3");
    let sealed = v.raw_record(Table::Secrets, b"new").unwrap().unwrap();
    assert_eq!(scaivault_crypto::Keyring::key_id_of(&sealed).unwrap(), 3);
    drop(v);
    assert_eq!(
        Vault::open(&path, Unlock::Passphrase(PASS)).err(),
        Some(StoreError::WrongPassphrase)
    );
    let v = Vault::open(&path, Unlock::Passphrase(b"new passphrase")).unwrap();
    assert_eq!(
        v.get(Table::Secrets, b"old").unwrap().unwrap().as_bytes(),
        b"sealed with key 1"
    );
    assert_eq!(
        v.get(Table::Secrets, b"new").unwrap().unwrap().as_bytes(),
        b"sealed with key 3"
    );
    assert_eq!(v.stats().unwrap().data_keys, 3);
}

/// Records are sealed when their batch commits: jobs of one batch that rewrite a record see
/// each other's plaintext, a failed job's rewrite vanishes, and nothing readable reaches the
/// file.
#[test]
fn records_rewritten_within_a_batch_are_sealed_once_and_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    let v = std::sync::Arc::new(v);
    rt().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let v = v.clone();
            tasks.push(tokio::spawn(async move {
                v.write(move |tx| {
                    let n: u32 = match tx.get(Table::Secrets, b"counter")? {
                        Some(p) => std::str::from_utf8(p.as_bytes()).unwrap().parse().unwrap(),
                        None => 0,
                    };
                    let next = format!("plaintext-counter-{}", n + 1);
                    tx.put(Table::Secrets, b"counter", (n + 1).to_string().as_bytes());
                    tx.put(Table::Secrets, b"marker", next.as_bytes());
                    // Every fifth job fails after writing: its increment must vanish.
                    if i % 5 == 4 {
                        Err(StoreError::Io("refused".into()))
                    } else {
                        Ok(())
                    }
                })
                .await
            }));
        }
        for t in tasks {
            let _ = t.await.unwrap();
        }
    });
    let counter = v.get(Table::Secrets, b"counter").unwrap().unwrap();
    assert_eq!(counter.as_bytes(), b"160");
    let marker = v.get(Table::Secrets, b"marker").unwrap().unwrap();
    assert_eq!(marker.as_bytes(), b"plaintext-counter-160");
    drop(v);
    let file = std::fs::read(&path).unwrap();
    assert!(find(&file, b"plaintext-counter").is_none());
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    assert_eq!(
        v.get(Table::Secrets, b"counter")
            .unwrap()
            .unwrap()
            .as_bytes(),
        b"160"
    );
}

/// A data key rotated while other writes are queued: every record reopens after a restart,
/// whichever batch it landed in and whichever key sealed it.
#[test]
fn key_rotation_amid_concurrent_writes_leaves_every_record_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    let v = std::sync::Arc::new(v);
    rt().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..300u32 {
            let v = v.clone();
            tasks.push(tokio::spawn(async move {
                if i == 150 {
                    v.rotate_data_key().await.map(|_| ())
                } else {
                    v.write(move |tx| {
                        tx.put(Table::Secrets, format!("k{i}").as_bytes(), b"v");
                        Ok::<_, StoreError>(())
                    })
                    .await
                }
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    drop(v);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    assert_eq!(v.stats().unwrap().data_keys, 2);
    for i in (0..300u32).filter(|i| *i != 150) {
        assert_eq!(
            v.get(Table::Secrets, format!("k{i}").as_bytes())
                .unwrap()
                .unwrap()
                .as_bytes(),
            b"v"
        );
    }
}

/// Issue #17, item 4: the backup's trailer is authenticated whole. Every single-bit flip of
/// every trailer byte (its JSON, its length and its magic) is refused — by the structural
/// check, the checksum, or the trailer's MAC under the vault's key — and a backup of another
/// vault is refused by this one.
#[test]
fn every_flip_of_a_backup_trailer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, vault) = new_vault(dir.path());
    put(&vault, Table::Secrets, b"app/db", b"v1");
    let backup = dir.path().join("b.svbak");
    let trailer = vault
        .backup_to(&backup, (7, "ab".repeat(32)), "2026-12-02T00:00:00Z".into())
        .unwrap();
    assert!(trailer.mac.is_some());
    let good = std::fs::read(&backup).unwrap();
    let checked = |bytes: &[u8]| {
        let f = dir.path().join("flipped.svbak");
        std::fs::write(&f, bytes).unwrap();
        scaivault_store::inspect_backup(&f).and_then(|t| vault.check_backup_trailer(&t))
    };
    assert!(checked(&good).is_ok());
    let region = good.len() - trailer.vault_bytes as usize;
    let mut accepted = Vec::new();
    for at in trailer.vault_bytes as usize..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut bytes = good.clone();
            bytes[at] ^= bit;
            if checked(&bytes).is_ok() {
                accepted.push((at, bit));
            }
        }
    }
    assert!(region > 200, "{region}");
    assert!(accepted.is_empty(), "flips accepted: {accepted:?}");
    // Another vault's key does not accept this vault's backup.
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other) = new_vault(other_dir.path());
    let t = scaivault_store::inspect_backup(&backup).unwrap();
    assert!(other.check_backup_trailer(&t).is_err());
    // Nor does a trailer rewritten as the older, unauthenticated format.
    let mut old = t.clone();
    old.backup_format = 1;
    old.mac = None;
    assert!(vault.check_backup_trailer(&old).is_err());
}
