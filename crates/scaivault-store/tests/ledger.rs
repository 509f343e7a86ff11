//! Issue #17, items 2 and 3: someone with write access to the file (and older copies of it)
//! edits records directly, with redb, as a small tool would. A record rolled back, removed or
//! added is refused at unseal (tables that decide access) or reported by verify (the rest); a
//! header field changed or grafted from an older copy is refused; and after a passphrase or
//! recovery-key change, the old one opens nothing written since.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use std::path::Path;

use common::*;
use scaivault_crypto::{KdfParams, Keyring};
use scaivault_store::testing::FaultyBackend;
use scaivault_store::{Backend, Mutation, RedbBackend, StoreError, Table, Unlock, Vault};
use zeroize::Zeroizing;

/// Every record of the file as stored (sealed), by table and stored key.
fn raw_copy(path: &Path) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
    let b = RedbBackend::open_read_only(path).unwrap();
    let mut out = Vec::new();
    for t in Table::ALL {
        b.scan(*t, &mut |k, v| {
            out.push((*t, k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    }
    out
}

fn stored(copy: &[(Table, Vec<u8>, Vec<u8>)], table: Table, key: &[u8]) -> Vec<u8> {
    copy.iter()
        .find(|(t, k, _)| *t == table && k == key)
        .map(|(_, _, v)| v.clone())
        .expect("the record is in the copy")
}

/// Puts a record back as an older copy of the file held it.
fn back(copy: &[(Table, Vec<u8>, Vec<u8>)], table: Table, key: &[u8]) -> Mutation {
    Mutation::Put {
        table,
        key: key.to_vec(),
        value: stored(copy, table, key),
    }
}

/// Replaces the header record.
fn header_record(bytes: Vec<u8>) -> Mutation {
    Mutation::Put {
        table: Table::Meta,
        key: b"header".to_vec(),
        value: bytes,
    }
}

/// What `verify_ledger` (run by `operator verify`) reports, as text.
fn findings(v: &Vault) -> Vec<String> {
    v.verify_ledger()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

/// The small redb tool: applies raw mutations to a closed vault file.
fn edit(path: &Path, batch: Vec<Mutation>) {
    RedbBackend::open(path).unwrap().commit(&batch).unwrap();
}

fn integrity_table(r: Result<Vault, StoreError>) -> &'static str {
    match r {
        Err(StoreError::Integrity { table, .. }) => table,
        Err(other) => panic!("expected an integrity error, got {other:?}"),
        Ok(_) => panic!("the tampered file opened"),
    }
}

#[test]
fn a_record_rolled_back_removed_or_added_is_refused_at_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Tokens, b"tok_1", b"live");
    put(&v, Table::Tokens, b"tok_2", b"live");
    put(&v, Table::Tokens, b"tok_3", b"live");
    let (k1, k2, k3) = (
        v.blinded_key_for_tests(Table::Tokens, b"tok_1"),
        v.blinded_key_for_tests(Table::Tokens, b"tok_2"),
        v.blinded_key_for_tests(Table::Tokens, b"tok_3"),
    );
    drop(v);
    let old = raw_copy(&path);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    put(&v, Table::Tokens, b"tok_1", b"revoked");
    delete(&v, Table::Tokens, b"tok_3");
    drop(v);
    let current = std::fs::read(&path).unwrap();

    // Each edit on its own: the revoked token's older record, the removed token brought
    // back, a live token removed.
    let edits = [
        back(&old, Table::Tokens, &k1),
        back(&old, Table::Tokens, &k3),
        Mutation::Delete {
            table: Table::Tokens,
            key: k2.clone(),
        },
    ];
    for e in edits {
        std::fs::write(&path, &current).unwrap();
        edit(&path, vec![e.clone()]);
        assert_eq!(
            integrity_table(Vault::open(&path, Unlock::Passphrase(PASS))),
            "tokens",
            "{e:?}"
        );
    }
    std::fs::write(&path, &current).unwrap();
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    assert_eq!(
        v.get(Table::Tokens, b"tok_1").unwrap().unwrap().as_bytes(),
        b"revoked"
    );
    assert!(v.verify_ledger().unwrap().is_empty());
}

/// Rolling the ledger record back together with the record does not help: the ledger also
/// pins the audit chain's state, which moved on. Only a rollback of that too (which truncates
/// the audit log, and which an anchored audit head shows) opens: the documented limit.
#[test]
fn a_ledger_rolled_back_with_the_record_is_caught_by_the_audit_state() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Tokens, b"tok_1", b"live");
    put(&v, Table::AuditState, b"head", b"seq 1");
    let (k1, head) = (
        v.blinded_key_for_tests(Table::Tokens, b"tok_1"),
        v.blinded_key_for_tests(Table::AuditState, b"head"),
    );
    drop(v);
    let old = raw_copy(&path);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    put(&v, Table::Tokens, b"tok_1", b"revoked");
    put(&v, Table::AuditState, b"head", b"seq 2");
    drop(v);
    let ledger = |copy: &[(Table, Vec<u8>, Vec<u8>)]| Mutation::Put {
        table: Table::Integrity,
        key: b"ledger".to_vec(),
        value: stored(copy, Table::Integrity, b"ledger"),
    };
    let token = back(&old, Table::Tokens, &k1);
    let current = std::fs::read(&path).unwrap();
    edit(&path, vec![token.clone(), ledger(&old)]);
    assert_eq!(
        integrity_table(Vault::open(&path, Unlock::Passphrase(PASS))),
        "audit_state"
    );
    // The ledger record removed outright.
    std::fs::write(&path, &current).unwrap();
    edit(
        &path,
        vec![Mutation::Delete {
            table: Table::Integrity,
            key: b"ledger".to_vec(),
        }],
    );
    assert_eq!(
        integrity_table(Vault::open(&path, Unlock::Passphrase(PASS))),
        "integrity"
    );
    // Everything that decides access rolled back together, the audit head with it.
    std::fs::write(&path, &current).unwrap();
    edit(
        &path,
        vec![token, ledger(&old), back(&old, Table::AuditState, &head)],
    );
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    assert_eq!(
        v.get(Table::AuditState, b"head")
            .unwrap()
            .unwrap()
            .as_bytes(),
        b"seq 1"
    );
}

/// Secrets are not rehashed at unseal (an open with a million secrets stays fast): a secret
/// rolled back in the file opens, and `verify_ledger` (what `operator verify` runs) names its
/// table.
#[test]
fn a_secret_rolled_back_is_reported_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Secrets, b"app/db", b"v1");
    put(&v, Table::Versions, b"app/db#1", b"v1");
    let k = v.blinded_key_for_tests(Table::Secrets, b"app/db");
    let kv = v.blinded_key_for_tests(Table::Versions, b"app/db#1");
    drop(v);
    let old = raw_copy(&path);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    put(&v, Table::Secrets, b"app/db", b"v2");
    delete(&v, Table::Versions, b"app/db#1");
    drop(v);
    edit(
        &path,
        vec![
            back(&old, Table::Secrets, &k),
            back(&old, Table::Versions, &kv),
        ],
    );
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    let found = findings(&v);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("'secrets'"), "{found:?}");
    assert!(found[1].contains("'versions'"), "{found:?}");
}

/// After `operator passphrase`, the old header (wrapped root key, salt, KDF parameters)
/// grafted onto a later copy of the file gives the old passphrase nothing: the root key was
/// replaced and everything since is sealed with a data key the old keyring never held.
#[test]
fn an_old_header_grafted_after_a_passphrase_change_reveals_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(
        &v,
        Table::Secrets,
        b"before",
        b"known to the old passphrase",
    );
    drop(v);
    let old = raw_copy(&path);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    rt().block_on(
        v.change_passphrase(Zeroizing::new(b"new pass".to_vec()), Some(KdfParams::FLOOR)),
    )
    .unwrap();
    put(&v, Table::Secrets, b"after", b"written after the change");
    let after = v.raw_record(Table::Secrets, b"after").unwrap().unwrap();
    drop(v);
    assert_eq!(Keyring::key_id_of(&after).unwrap(), 2);
    edit(
        &path,
        vec![header_record(stored(&old, Table::Meta, b"header"))],
    );
    // The old header opens the old root key, whose keyring cannot open the ledger (sealed
    // with the new data key) — nor the record written after the change.
    assert_eq!(
        integrity_table(Vault::open(&path, Unlock::Passphrase(PASS))),
        "integrity"
    );
    assert_eq!(
        Vault::open(&path, Unlock::Passphrase(b"new pass")).err(),
        Some(StoreError::WrongPassphrase)
    );
}

/// A replaced recovery key, with a later copy of the file, opens nothing; the current one and
/// the key file keep working across passphrase changes (they are re-wrapped to, not with).
#[test]
fn recovery_key_and_key_file_survive_root_changes_and_a_replaced_one_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    rt().block_on(async {
        v.set_recovery_key(Zeroizing::new(b"recovery one".to_vec()))
            .await
            .unwrap();
        v.set_key_file(Zeroizing::new(b"key file".to_vec()))
            .await
            .unwrap();
        v.change_passphrase(Zeroizing::new(b"second".to_vec()), Some(KdfParams::FLOOR))
            .await
            .unwrap();
    });
    put(&v, Table::Secrets, b"s", b"x");
    drop(v);
    for unlock in [
        Unlock::RecoveryKey(b"recovery one"),
        Unlock::KeyFile(b"key file"),
        Unlock::Passphrase(b"second"),
    ] {
        let v = Vault::open(&path, unlock).unwrap();
        assert_eq!(
            v.get(Table::Secrets, b"s").unwrap().unwrap().as_bytes(),
            b"x"
        );
    }
    let v = Vault::open(&path, Unlock::Passphrase(b"second")).unwrap();
    let old_header = v.raw_header_for_tests();
    rt().block_on(v.set_recovery_key(Zeroizing::new(b"recovery two".to_vec())))
        .unwrap();
    put(&v, Table::Secrets, b"later", b"y");
    drop(v);
    assert_eq!(
        Vault::open(&path, Unlock::RecoveryKey(b"recovery one")).err(),
        Some(StoreError::WrongPassphrase)
    );
    Vault::open(&path, Unlock::RecoveryKey(b"recovery two")).unwrap();
    // The header from before the replacement, grafted: the old recovery key opens the old
    // root key, which opens nothing of the file as it is now.
    edit(&path, vec![header_record(old_header)]);
    assert_eq!(
        integrity_table(Vault::open(&path, Unlock::RecoveryKey(b"recovery one"))),
        "integrity"
    );
}

/// Every field of the header is authenticated: changing any one of them (a flipped hex digit
/// of the recovery wrap, the creation time, the KDF cost) is refused, never opened.
#[test]
fn a_change_to_any_header_field_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    rt().block_on(v.set_recovery_key(Zeroizing::new(b"rk".to_vec())))
        .unwrap();
    let raw = v.raw_header_for_tests();
    drop(v);
    let header: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let fields: Vec<String> = header.as_object().unwrap().keys().cloned().collect();
    assert!(fields.len() >= 10, "{fields:?}");
    for field in &fields {
        let mut h = header.clone();
        match &mut h[field] {
            serde_json::Value::String(s) => {
                let c = if s.ends_with('0') { '1' } else { '0' };
                s.pop();
                s.push(c);
            }
            serde_json::Value::Number(n) => {
                *n = (n.as_u64().unwrap_or(0) + 1).into();
            }
            serde_json::Value::Null => h[field] = "00".into(),
            serde_json::Value::Object(o) => {
                let t = o["t_cost"].as_u64().unwrap();
                o.insert("t_cost".into(), (t + 1).into());
            }
            other => panic!("{field}: {other}"),
        }
        edit(&path, vec![header_record(serde_json::to_vec(&h).unwrap())]);
        let r = Vault::open(&path, Unlock::Passphrase(PASS));
        match field.as_str() {
            // What derives or unwraps the key: the key simply does not open.
            "salt" | "kdf" | "wrapped_root" => {
                assert_eq!(r.err(), Some(StoreError::WrongPassphrase), "{field}")
            }
            "format_version" => {
                assert_eq!(r.err(), Some(StoreError::UnsupportedFormat(3)), "{field}")
            }
            _ => assert_eq!(integrity_table(r), "meta", "{field}"),
        }
    }
    // The tag itself removed: not an old file, tampering.
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("mac");
    edit(&path, vec![header_record(serde_json::to_vec(&h).unwrap())]);
    assert_eq!(
        integrity_table(Vault::open(&path, Unlock::Passphrase(PASS))),
        "meta"
    );
}

/// A root-key change whose commit fails leaves the keys in memory ahead of the file's: the
/// writer refuses every later write (nothing may be sealed with a key the file does not
/// hold) until the vault is reopened, which finds every acknowledged write.
#[test]
fn a_failed_root_key_change_stops_writes_until_the_vault_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let backend = FaultyBackend::new(RedbBackend::create(&path).unwrap());
    let fail = backend.fail.clone();
    let v = Vault::create_with_backend(&path, std::sync::Arc::new(backend), PASS, KdfParams::FLOOR)
        .unwrap();
    put(&v, Table::Secrets, b"before", b"1");
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(rt().block_on(v.rotate_data_key()).is_err());
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let refused = v.write_blocking(|tx| {
        tx.put(Table::Secrets, b"after", b"2");
        Ok::<_, StoreError>(())
    });
    assert!(
        matches!(refused, Err(StoreError::Refused(_))),
        "{refused:?}"
    );
    drop(v);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    assert_eq!(
        v.get(Table::Secrets, b"before")
            .unwrap()
            .unwrap()
            .as_bytes(),
        b"1"
    );
    assert!(v.get(Table::Secrets, b"after").unwrap().is_none());
    put(&v, Table::Secrets, b"after", b"2");
}

/// A root-key change moves the ledger to the new key; done over records changed outside the
/// vault, it would make a rollback or forgery look genuine. So the change first checks the
/// file against the ledger under the outgoing key, and refuses (naming the table) when they
/// differ; `verify` keeps naming the table after a restart.
#[test]
fn a_root_key_change_does_not_launder_a_changed_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = new_vault(dir.path());
    put(&v, Table::Secrets, b"app/db", b"v1");
    let k = v.blinded_key_for_tests(Table::Secrets, b"app/db");
    drop(v);
    let old = raw_copy(&path);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    put(&v, Table::Secrets, b"app/db", b"v2");
    drop(v);
    edit(&path, vec![back(&old, Table::Secrets, &k)]);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    for change in [
        rt().block_on(v.rotate_data_key()).err(),
        rt().block_on(v.change_passphrase(Zeroizing::new(b"other".to_vec()), None))
            .err(),
    ] {
        match change {
            Some(StoreError::Integrity { table, .. }) => assert_eq!(table, "secrets"),
            Some(StoreError::Refused(_)) => {} // the writer stopped after the first
            other => panic!("{other:?}"),
        }
    }
    drop(v);
    let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
    let found = findings(&v);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("'secrets'"), "{found:?}");
}
