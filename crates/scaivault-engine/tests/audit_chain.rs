//! The audit chain: appends, queries, and detection of altered and removed entries.

use std::sync::Arc;

use scaivault_core::time::Timestamp;
use scaivault_crypto::KdfParams;
use scaivault_engine::{AuditInput, AuditQuery, Caller, Engine, ManualClock};
use scaivault_store::Vault;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let vault =
        Arc::new(Vault::create(&dir.path().join("v.db"), b"pw-audit", KdfParams::FLOOR).unwrap());
    let e = Engine::load(vault, Arc::new(ManualClock::new(Timestamp::now()))).unwrap();
    (dir, e)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn entry(i: usize, who: &str, ok: bool) -> AuditInput {
    AuditInput {
        action: "read".into(),
        identity_id: Some(who.into()),
        secret_path: Some(format!("app/s{i}")),
        success: ok,
        request_id: format!("req_{i}"),
        ..Default::default()
    }
}

#[test]
fn chain_verifies_and_queries_filter() {
    let (_d, e) = engine();
    let root = Caller::local_operator();
    rt().block_on(async {
        for i in 0..30 {
            e.record_audit(entry(
                i,
                if i % 3 == 0 { "sa:a" } else { "sa:b" },
                i % 5 != 0,
            ))
            .await
            .unwrap();
        }
    });
    let r = e.verify_audit(&root, false).unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!((r.verified, r.head_seq), (30, 30));

    let q = AuditQuery {
        identity_id: Some("sa:a".into()),
        limit: Some(4),
        ..Default::default()
    };
    let page = e.query_audit(&root, &q).unwrap();
    let logs = &page.logs;
    assert_eq!(logs.len(), 4);
    assert_eq!(
        logs[0].secret_path.as_deref(),
        Some("app/s27"),
        "newest first"
    );
    assert!(
        logs.iter()
            .all(|l| l.identity_id.as_deref() == Some("sa:a"))
    );
    assert!(page.has_more);
    let q2 = AuditQuery {
        cursor: page.cursor.clone(),
        ..q
    };
    let rest = e.query_audit(&root, &q2).unwrap();
    assert_eq!(rest.logs.len(), 4);
    assert_eq!(rest.logs[0].secret_path.as_deref(), Some("app/s15"));
    let fails = e
        .query_audit(
            &root,
            &AuditQuery {
                success: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(fails.logs.len(), 6);
}

#[test]
fn an_altered_entry_is_named() {
    let (_d, e) = engine();
    let root = Caller::local_operator();
    rt().block_on(async {
        for i in 0..10 {
            e.record_audit(entry(i, "sa:a", true)).await.unwrap();
        }
        e.tamper_audit_for_tests(6, false).await.unwrap();
    });
    let r = e.verify_audit(&root, false).unwrap();
    assert!(!r.ok);
    assert_eq!(r.broken_at, Some(6));
    assert!(r.problem.as_deref().unwrap().contains("altered"), "{r:?}");
}

#[test]
fn removed_entries_are_detected_in_the_middle_and_at_the_end() {
    let (_d, e) = engine();
    let root = Caller::local_operator();
    rt().block_on(async {
        for i in 0..10 {
            e.record_audit(entry(i, "sa:a", true)).await.unwrap();
        }
        e.tamper_audit_for_tests(10, true).await.unwrap();
        e.tamper_audit_for_tests(9, true).await.unwrap();
    });
    let r = e.verify_audit(&root, false).unwrap();
    assert!(!r.ok);
    assert_eq!(r.verified, 8);
    assert!(
        r.problem
            .as_deref()
            .unwrap()
            .contains("removed from the end"),
        "{r:?}"
    );

    let (_d, e) = engine();
    rt().block_on(async {
        for i in 0..10 {
            e.record_audit(entry(i, "sa:a", true)).await.unwrap();
        }
        e.tamper_audit_for_tests(4, true).await.unwrap();
    });
    let r = e.verify_audit(&root, false).unwrap();
    assert_eq!(r.broken_at, Some(4));
    assert!(r.problem.as_deref().unwrap().contains("missing"), "{r:?}");
}

#[test]
fn checkpoints_make_fast_verification_start_late() {
    let (_d, e) = engine();
    let root = Caller::local_operator();
    rt().block_on(async {
        let mut tasks = Vec::new();
        let e = Arc::new(e);
        for i in 0..1100 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                e.record_audit(entry(i, "sa:a", true)).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let full = e.verify_audit(&root, false).unwrap();
        assert!(full.ok && full.verified == 1100, "{full:?}");
        let fast = e.verify_audit(&root, true).unwrap();
        assert!(fast.ok, "{fast:?}");
        assert_eq!((fast.from_seq, fast.verified), (1025, 76));
    });
}

#[test]
fn pruning_keeps_the_rest_verifiable_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let vault =
        Arc::new(Vault::create(&dir.path().join("v.db"), b"pw-audit", KdfParams::FLOOR).unwrap());
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let e = Arc::new(Engine::load(vault, clock.clone()).unwrap());
    let root = Caller::local_operator();
    rt().block_on(async {
        // 2500 old entries, then a day later 100 new ones.
        let mut tasks = Vec::new();
        for i in 0..2500 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                e.record_audit(entry(i, "sa:old", true)).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        clock.advance(std::time::Duration::from_secs(86_400));
        for i in 0..100 {
            e.record_audit(entry(i, "sa:new", true)).await.unwrap();
        }
        let cutoff = e.now().minus(std::time::Duration::from_secs(3600));
        let r = e.prune_audit(&root, cutoff).await.unwrap();
        assert_eq!((r.removed, r.pruned_through), (2048, 2048), "{r:?}");
        let v = e.verify_audit(&root, false).unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!((v.from_seq, v.verified, v.head_seq), (2049, 552, 2600));
        // Old entries past the last whole checkpoint stay until the next prune.
        let old = e
            .query_audit(
                &root,
                &AuditQuery {
                    identity_id: Some("sa:old".into()),
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(old.logs.len(), 452);
        // Truncating the tail is still detected after pruning.
        e.tamper_audit_for_tests(2600, true).await.unwrap();
        assert!(!e.verify_audit(&root, false).unwrap().ok);
    });
}

/// An audit head rolled back in the file together with the ledger that pins it (an attacker
/// with an older copy of both) leaves entries past the head: the engine refuses to load
/// rather than append over them.
#[test]
fn entries_past_a_rolled_back_head_stop_the_load() {
    use scaivault_store::{Backend as _, Mutation, RedbBackend, Table, Unlock};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let open = || Arc::new(Vault::open(&path, Unlock::Passphrase(b"pw-audit")).unwrap());
    let clock = || Arc::new(ManualClock::new(Timestamp::now()));
    let vault = Arc::new(Vault::create(&path, b"pw-audit", KdfParams::FLOOR).unwrap());
    let head_key = vault.blinded_key_for_tests(Table::AuditState, b"head");
    let e = Engine::load(vault, clock()).unwrap();
    rt().block_on(async {
        for i in 0..2 {
            e.record_audit(entry(i, "user:a", true)).await.unwrap();
        }
    });
    drop(e);
    let old: Vec<Mutation> = {
        let b = RedbBackend::open_read_only(&path).unwrap();
        [
            (Table::AuditState, head_key.clone()),
            (Table::Integrity, b"ledger".to_vec()),
        ]
        .into_iter()
        .map(|(table, key)| Mutation::Put {
            value: b.get(table, &key).unwrap().unwrap(),
            table,
            key,
        })
        .collect()
    };
    let e = Engine::load(open(), clock()).unwrap();
    rt().block_on(async {
        for i in 2..4 {
            e.record_audit(entry(i, "user:a", true)).await.unwrap();
        }
    });
    drop(e);
    RedbBackend::open(&path).unwrap().commit(&old).unwrap();
    let err = Engine::load(open(), clock())
        .err()
        .expect("the load is refused");
    assert_eq!(err.code, scaivault_core::ErrorCode::IntegrityError, "{err}");
    assert!(err.message.contains("past its head"), "{err}");
}
