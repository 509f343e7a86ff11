//! The secrets lifecycle and access control through the engine, on real vault files.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

use std::sync::Arc;
use std::time::Duration;

use scaivault_core::ErrorCode;
use scaivault_core::time::Timestamp;
use scaivault_crypto::KdfParams;
use scaivault_engine::{
    BindingRequest, Caller, CreateIdentity, CreateToken, Engine, ManualClock, PolicyRequest,
    PolicyTestRequest, WriteRequest,
};
use scaivault_store::{Unlock, Vault};

const PASS: &[u8] = b"test passphrase";

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    engine: Engine,
    clock: Arc<ManualClock>,
    root: Caller,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let vault = Arc::new(Vault::create(&path, PASS, KdfParams::FLOOR).unwrap());
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let engine = Engine::load(vault, clock.clone()).unwrap();
    Fixture {
        _dir: dir,
        path,
        engine,
        clock,
        root: Caller::local_operator(),
    }
}

fn req(json: serde_json::Value) -> WriteRequest {
    serde_json::from_value(json).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn versions_metadata_and_check_and_set() {
    let f = fixture();
    rt().block_on(async {
        let e = &f.engine;
        let w = e
            .write_secret(&f.root, "app/db", req(serde_json::json!({
                "data": {"password": "v1"}, "secret_type": "kv",
                "metadata": {"description": "db", "tags": ["a", "b"], "owner": "team:x", "cost_center": "42"}
            })))
            .await
            .unwrap();
        assert_eq!((w.version, w.created), (1, true));
        let w = e.write_secret(&f.root, "app/db", req(serde_json::json!({"data": {"password": "v2"}}))).await.unwrap();
        assert_eq!((w.version, w.created), (2, false));
        let cur = e.read_secret(&f.root, "app/db", None).unwrap();
        assert_eq!(cur.version, 2);
        assert_eq!(cur.data.to_value()["password"], "v2");
        assert_eq!(cur.metadata["cost_center"], "42", "metadata survives a write without metadata");
        assert_eq!(e.read_secret(&f.root, "app/db", Some(1)).unwrap().data.to_value()["password"], "v1");
        assert_eq!(e.read_secret(&f.root, "app/db", Some(9)).unwrap_err().code, ErrorCode::VersionNotFound);

        let err = e
            .write_secret(&f.root, "app/db", req(serde_json::json!({"data": {"p": "x"}, "options": {"cas": 1}})))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::VersionConflict);
        e.write_secret(&f.root, "app/db", req(serde_json::json!({"data": {"p": "x"}, "options": {"cas": 2}})))
            .await
            .unwrap();
        let err = e
            .write_secret(&f.root, "app/new", req(serde_json::json!({"data": {"p": "x"}, "cas": 1})))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::VersionConflict);

        let mut patch = serde_json::Map::new();
        patch.insert("owner".into(), "team:y".into());
        patch.insert("cost_center".into(), serde_json::Value::Null);
        let s = e.update_metadata(&f.root, "app/db", patch).await.unwrap();
        assert_eq!(s.version, 3, "metadata updates add no version");
        assert_eq!(s.metadata["owner"], "team:y");
        assert!(s.metadata.get("cost_center").is_none());
        assert_eq!(e.secret_versions(&f.root, "app/db").unwrap().len(), 3);
    });
}

#[test]
fn max_versions_prunes_the_oldest() {
    let f = fixture();
    rt().block_on(async {
        for i in 1..=5 {
            f.engine
                .write_secret(
                    &f.root,
                    "a/b",
                    req(serde_json::json!({"data": {"v": i}, "options": {"max_versions": 3}})),
                )
                .await
                .unwrap();
        }
        let versions: Vec<u64> = f
            .engine
            .secret_versions(&f.root, "a/b")
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, vec![3, 4, 5]);
        assert_eq!(
            f.engine
                .read_secret(&f.root, "a/b", Some(2))
                .unwrap_err()
                .code,
            ErrorCode::VersionNotFound
        );
    });
}

#[test]
fn expiry_soft_delete_restore_and_hard_delete() {
    let f = fixture();
    rt().block_on(async {
        let e = &f.engine;
        let w = e
            .write_secret(
                &f.root,
                "t/exp",
                req(serde_json::json!({"data": {"k": "v"}, "options": {"expires_in": "1h"}})),
            )
            .await
            .unwrap();
        assert!(w.expires_at.is_some());
        assert!(e.read_secret(&f.root, "t/exp", None).is_ok());
        f.clock.advance(Duration::from_secs(3601));
        assert_eq!(
            e.read_secret(&f.root, "t/exp", None).unwrap_err().code,
            ErrorCode::SecretExpired
        );
        assert!(
            e.secret_metadata(&f.root, "t/exp").is_ok(),
            "metadata of an expired secret stays readable"
        );

        e.write_secret(
            &f.root,
            "t/del",
            req(serde_json::json!({"data": {"k": "v"}})),
        )
        .await
        .unwrap();
        let s = e.delete_secret(&f.root, "t/del", false).await.unwrap();
        assert!(s.recoverable_until.is_some());
        assert_eq!(
            e.read_secret(&f.root, "t/del", None).unwrap_err().code,
            ErrorCode::SecretNotFound
        );
        assert!(
            e.list_secrets(&f.root, "t/", None, None)
                .unwrap()
                .secrets
                .iter()
                .all(|s| s.path != "t/del")
        );
        let err = e
            .write_secret(
                &f.root,
                "t/del",
                req(serde_json::json!({"data": {"k": "w"}})),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::SecretExists);
        e.restore_secret(&f.root, "t/del").await.unwrap();
        assert_eq!(
            e.read_secret(&f.root, "t/del", None)
                .unwrap()
                .data
                .to_value()["k"],
            "v"
        );

        e.delete_secret(&f.root, "t/del", true).await.unwrap();
        assert_eq!(
            e.restore_secret(&f.root, "t/del").await.unwrap_err().code,
            ErrorCode::SecretNotFound
        );
        let w = e
            .write_secret(
                &f.root,
                "t/del",
                req(serde_json::json!({"data": {"k": "fresh"}})),
            )
            .await
            .unwrap();
        assert_eq!((w.version, w.created), (1, true));
    });
}

#[test]
fn listing_paginates_by_prefix() {
    let f = fixture();
    rt().block_on(async {
        for i in 0..25 {
            f.engine
                .write_secret(
                    &f.root,
                    &format!("env/prod/svc-{i:02}"),
                    req(serde_json::json!({"data": {"k": "v"}})),
                )
                .await
                .unwrap();
        }
        f.engine
            .write_secret(
                &f.root,
                "env/staging/x",
                req(serde_json::json!({"data": {"k": "v"}})),
            )
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = f
                .engine
                .list_secrets(&f.root, "env/prod/", Some(10), cursor.as_deref())
                .unwrap();
            seen.extend(page.secrets.iter().map(|s| s.path.clone()));
            if !page.has_more {
                assert!(page.cursor.is_none());
                break;
            }
            cursor = page.cursor;
        }
        assert_eq!(seen.len(), 25);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            f.engine
                .list_secrets(&f.root, "env/", None, Some("garbage"))
                .unwrap_err()
                .code,
            ErrorCode::InvalidCursor
        );
        assert_eq!(
            f.engine
                .list_secrets(&f.root, "/env", None, None)
                .unwrap_err()
                .code,
            ErrorCode::InvalidPath
        );
    });
}

#[test]
fn bad_input_is_rejected_with_codes() {
    let f = fixture();
    rt().block_on(async {
        let e = &f.engine;
        let cases = [
            (
                "Upper/case",
                serde_json::json!({"data": {"k": "v"}}),
                ErrorCode::InvalidPath,
            ),
            (
                "a/b",
                serde_json::json!({"data": {"k": "v"}, "secret_type": "password"}),
                ErrorCode::InvalidSecretType,
            ),
            (
                "a/b",
                serde_json::json!({"data": ["x"]}),
                ErrorCode::ValidationError,
            ),
            (
                "a/b",
                serde_json::json!({"data": {}}),
                ErrorCode::ValidationError,
            ),
            (
                "a/b",
                // `kv` is flat when asked for (without a type, nested data is `json`).
                serde_json::json!({"data": {"k": {"nested": 1}}, "secret_type": "kv"}),
                ErrorCode::ValidationError,
            ),
            (
                "a/b",
                serde_json::json!({"data": {"k": "v"}, "options": {"expires_in": "soon"}}),
                ErrorCode::InvalidDuration,
            ),
            (
                "a/b",
                serde_json::json!({"data": {"k": "v"}, "options": {"max_versions": 0}}),
                ErrorCode::ValidationError,
            ),
            (
                "a/b",
                serde_json::json!({"data": {"k": "v"}, "metadata": {"tags": "x"}}),
                ErrorCode::ValidationError,
            ),
        ];
        for (path, body, code) in cases {
            assert_eq!(
                e.write_secret(&f.root, path, req(body.clone()))
                    .await
                    .unwrap_err()
                    .code,
                code,
                "{body}"
            );
        }
        // Value size at the limit and one past it: the JSON text is what counts.
        let overhead = r#"{"k":""}"#.len();
        let at = "x".repeat(scaivault_engine::limits::MAX_DATA_BYTES - overhead);
        e.write_secret(
            &f.root,
            "a/big",
            req(serde_json::json!({"data": {"k": at}})),
        )
        .await
        .unwrap();
        let below = "x".repeat(scaivault_engine::limits::MAX_DATA_BYTES - overhead - 1);
        e.write_secret(
            &f.root,
            "a/big",
            req(serde_json::json!({"data": {"k": below}})),
        )
        .await
        .unwrap();
        let over = "x".repeat(scaivault_engine::limits::MAX_DATA_BYTES - overhead + 1);
        let err = e
            .write_secret(
                &f.root,
                "a/big",
                req(serde_json::json!({"data": {"k": over}})),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationError);
        assert!(!err.message.contains("xxxx"), "error echoes the value");
        assert_eq!(
            e.secret_versions(&f.root, "a/big").unwrap().len(),
            2,
            "the rejected write added nothing"
        );
    });
}

#[test]
fn tokens_scopes_and_policies() {
    let f = fixture();
    rt().block_on(async {
        let e = &f.engine;
        for p in ["stripe", "database", "sendgrid"] {
            e.write_secret(&f.root, &format!("environments/production/billing/{p}"), req(serde_json::json!({"data": {"k": "v"}})))
                .await
                .unwrap();
        }
        e.write_secret(&f.root, "environments/production/reporting/database", req(serde_json::json!({"data": {"k": "v"}})))
            .await
            .unwrap();
        e.create_identity(&f.root, CreateIdentity { identity_id: "sa:billing-prod".into(), display_name: None }).await.unwrap();
        let token = e
            .create_token(&f.root, CreateToken {
                identity_id: "sa:billing-prod".into(),
                scopes: vec!["secrets:read".into(), "secrets:list".into()],
                ttl: Some("1h".into()),
                name: None,
            })
            .await
            .unwrap();
        let sa = e.authenticate(&token.token, None).unwrap();
        let billing = "environments/production/billing/stripe";
        assert_eq!(e.read_secret(&sa, billing, None).unwrap_err().code, ErrorCode::AccessDenied, "no policy yet");

        let pol = e
            .create_policy(&f.root, serde_json::from_value::<PolicyRequest>(serde_json::json!({
                "name": "billing-prod-reader",
                "rules": [{"path_pattern": "environments/production/billing/**", "permissions": ["read", "list"]}]
            })).unwrap())
            .await
            .unwrap();
        e.create_binding(&f.root, &pol.id, BindingRequest { identity_type: None, identity_id: "sa:billing-prod".into(), expires_at: None })
            .await
            .unwrap();
        assert!(e.read_secret(&sa, billing, None).is_ok());
        assert_eq!(
            e.read_secret(&sa, "environments/production/reporting/database", None).unwrap_err().code,
            ErrorCode::AccessDenied
        );
        let err = e.write_secret(&sa, billing, req(serde_json::json!({"data": {"k": "x"}}))).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::InsufficientScope);
        let listed = e.list_secrets(&sa, "environments/production/", None, None).unwrap();
        assert_eq!(listed.secrets.len(), 3, "listing shows only what the policy lets it list");

        let d = e
            .test_policy(&f.root, PolicyTestRequest {
                identity_id: "sa:billing-prod".into(),
                path: billing.into(),
                permission: "read".into(),
                context: Default::default(),
            })
            .unwrap();
        assert!(d.allowed);
        assert_eq!(d.policy_id.as_deref(), Some(pol.id.as_str()));

        assert_eq!(e.delete_policy(&f.root, &pol.id, false).await.unwrap_err().code, ErrorCode::PolicyInUse);

        e.revoke_token(&f.root, &token.token_id).await.unwrap();
        assert_eq!(e.authenticate(&token.token, None).unwrap_err().code, ErrorCode::TokenRevoked);
        let expiring = e
            .create_token(&f.root, CreateToken { identity_id: "sa:billing-prod".into(), scopes: vec!["secrets:read".into()], ttl: Some("1m".into()), name: None })
            .await
            .unwrap();
        f.clock.advance(Duration::from_secs(61));
        assert_eq!(e.authenticate(&expiring.token, None).unwrap_err().code, ErrorCode::TokenExpired);
        assert_eq!(e.authenticate("skt_nope", None).unwrap_err().code, ErrorCode::TokenInvalid);
        assert!(!format!("{expiring:?}").contains(&expiring.token));

        // Expired tokens are deleted a day after they expire, from the file as from memory;
        // live ones stay.
        let lasting = e
            .create_token(&f.root, CreateToken { identity_id: "sa:billing-prod".into(), scopes: vec!["secrets:read".into()], ttl: Some("30d".into()), name: None })
            .await
            .unwrap();
        assert_eq!(e.prune_expired_tokens().await.unwrap(), 0, "expired less than a day ago");
        f.clock.advance(Duration::from_secs(24 * 3600));
        let listed = |e: &Engine| e.list_tokens(&f.root, None).unwrap().tokens.len();
        let before = listed(e);
        assert_eq!(e.prune_expired_tokens().await.unwrap(), 1);
        assert_eq!(listed(e), before - 1);
        assert_eq!(e.authenticate(&expiring.token, None).unwrap_err().code, ErrorCode::TokenInvalid);
        assert!(e.authenticate(&lasting.token, None).is_ok());
        // Gone from the file too, not only from the in-memory map.
        let raw = |id: &str| e.vault().raw_record(scaivault_store::Table::Tokens, id.as_bytes()).unwrap();
        assert!(raw(&expiring.token_id).is_none());
        assert!(raw(&lasting.token_id).is_some());
    });
}

#[test]
fn group_membership_grants_through_bindings() {
    let f = fixture();
    rt().block_on(async {
        let e = &f.engine;
        e.write_secret(
            &f.root,
            "infra/dns/key",
            req(serde_json::json!({"data": {"k": "v"}})),
        )
        .await
        .unwrap();
        for id in ["group:sre", "user:bob@acme.example"] {
            e.create_identity(
                &f.root,
                CreateIdentity {
                    identity_id: id.into(),
                    display_name: None,
                },
            )
            .await
            .unwrap();
        }
        let pol = e
            .create_policy(
                &f.root,
                serde_json::from_value(serde_json::json!({
                    "name": "sre", "rules": [{"path_pattern": "infra/**", "permissions": ["admin"]}]
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        e.create_binding(
            &f.root,
            &pol.id,
            BindingRequest {
                identity_type: Some("group".into()),
                identity_id: "group:sre".into(),
                expires_at: None,
            },
        )
        .await
        .unwrap();
        let t = e
            .create_token(
                &f.root,
                CreateToken {
                    identity_id: "user:bob@acme.example".into(),
                    scopes: vec!["secrets:read".into()],
                    ttl: None,
                    name: None,
                },
            )
            .await
            .unwrap();
        let bob = e.authenticate(&t.token, None).unwrap();
        assert_eq!(
            e.read_secret(&bob, "infra/dns/key", None).unwrap_err().code,
            ErrorCode::AccessDenied
        );
        e.set_membership(&f.root, "group:sre", "user:bob@acme.example", true)
            .await
            .unwrap();
        let bob = e.authenticate(&t.token, None).unwrap();
        assert!(e.read_secret(&bob, "infra/dns/key", None).is_ok());
    });
}

/// The file alone reveals no path, tag, description, owner, identity or value.
#[test]
fn the_file_reveals_nothing() {
    let f = fixture();
    let needles = [
        "zebra-unicorn-path",
        "tag-marmalade-7731",
        "description-quokka-9182",
        "owner-narwhal-4410",
        "value-xylophone-secret-5521",
        "sa:ocelot-service",
        "policy-capybara-reader",
    ];
    rt().block_on(async {
        let e = &f.engine;
        for i in 0..20 {
            e.write_secret(&f.root, &format!("environments/zebra-unicorn-path/svc-{i}"), req(serde_json::json!({
                "data": {"password": format!("value-xylophone-secret-5521-{i}")},
                "metadata": {"tags": ["tag-marmalade-7731"], "description": "description-quokka-9182", "owner": "owner-narwhal-4410"}
            })))
            .await
            .unwrap();
        }
        e.create_identity(&f.root, CreateIdentity { identity_id: "sa:ocelot-service".into(), display_name: None }).await.unwrap();
        e.create_policy(&f.root, serde_json::from_value(serde_json::json!({
            "name": "policy-capybara-reader", "rules": [{"path_pattern": "environments/zebra-unicorn-path/**", "permissions": ["read"]}]
        })).unwrap())
        .await
        .unwrap();
    });
    let path = f.path.clone();
    drop(f.engine);
    let bytes = std::fs::read(&path).unwrap();
    for n in needles {
        assert!(
            bytes.windows(n.len()).all(|w| w != n.as_bytes()),
            "{n} found in the vault file"
        );
    }
    // And the vault reopens with everything in it.
    let vault = Arc::new(Vault::open(&path, Unlock::Passphrase(PASS)).unwrap());
    let e = Engine::load(vault, Arc::new(scaivault_engine::SystemClock)).unwrap();
    assert_eq!(
        e.list_secrets(&Caller::local_operator(), "environments/", None, None)
            .unwrap()
            .secrets
            .len(),
        20
    );
}

/// Putting an older version's sealed record back in place of the current one is detected:
/// the AAD binds the version number, so the old ciphertext does not open in the new slot.
#[test]
fn an_old_version_replayed_over_the_current_one_is_detected() {
    let f = fixture();
    rt().block_on(async {
        f.engine
            .write_secret(
                &f.root,
                "app/db",
                req(serde_json::json!({"data": {"password": "old-0001"}})),
            )
            .await
            .unwrap();
        f.engine
            .write_secret(
                &f.root,
                "app/db",
                req(serde_json::json!({"data": {"password": "new-0002"}})),
            )
            .await
            .unwrap();
    });
    let key = |v: u64| {
        let mut k = b"app/db".to_vec();
        k.push(0);
        k.extend_from_slice(&v.to_be_bytes());
        k
    };
    let v1 = f
        .engine
        .vault()
        .raw_record(scaivault_store::Table::Versions, &key(1))
        .unwrap()
        .unwrap();
    let v2 = f
        .engine
        .vault()
        .raw_record(scaivault_store::Table::Versions, &key(2))
        .unwrap()
        .unwrap();
    assert_eq!(v1.len(), v2.len());
    let path = f.path.clone();
    drop(f.engine);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(v2.len())
        .position(|w| w == v2.as_slice())
        .expect("current version is in the file");
    bytes[at..at + v1.len()].copy_from_slice(&v1);
    std::fs::write(&path, &bytes).unwrap();

    let vault = Arc::new(Vault::open(&path, Unlock::Passphrase(PASS)).unwrap());
    let e = Engine::load(vault, Arc::new(scaivault_engine::SystemClock)).unwrap();
    let err = e
        .read_secret(&Caller::local_operator(), "app/db", None)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::IntegrityError, "{err:?}");
    assert!(!err.message.contains("old-0001"));
    assert_eq!(
        e.read_secret(&Caller::local_operator(), "app/db", Some(1))
            .unwrap()
            .data
            .to_value()["password"],
        "old-0001"
    );
}

/// Soft-deleted secrets are destroyed once their restore window has passed: versions, head
/// and listing entry, each purge audited; those still in their window are untouched.
#[test]
fn soft_deletes_are_purged_after_their_window() {
    let f = fixture();
    let e = &f.engine;
    rt().block_on(async {
        for p in ["old/a", "old/b", "recent/c", "live/d"] {
            for v in 0..3 {
                e.write_secret(
                    &f.root,
                    p,
                    req(serde_json::json!({"data": {"v": v.to_string()}})),
                )
                .await
                .unwrap();
            }
        }
        e.delete_secret(&f.root, "old/a", false).await.unwrap();
        e.delete_secret(&f.root, "old/b", false).await.unwrap();
        f.clock.advance(Duration::from_secs(20 * 86_400));
        e.delete_secret(&f.root, "recent/c", false).await.unwrap();
        let versions = |e: &Engine| e.vault().stats().unwrap().records["versions"];
        assert_eq!(versions(e), 12);

        assert_eq!(
            e.purge_deleted().await.unwrap(),
            0,
            "nothing is past its window yet"
        );
        f.clock.advance(Duration::from_secs(11 * 86_400));
        assert_eq!(e.purge_deleted().await.unwrap(), 2);
        assert_eq!(versions(e), 6, "the purged secrets' versions are gone");
        for p in ["old/a", "old/b"] {
            let err = e.restore_secret(&f.root, p).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::SecretNotFound);
            assert!(err.details.get("reason").is_none(), "{err:?}");
        }
        e.restore_secret(&f.root, "recent/c").await.unwrap();
        assert_eq!(e.purge_deleted().await.unwrap(), 0);

        let q: scaivault_engine::AuditQuery =
            serde_json::from_value(serde_json::json!({"action": "purge"})).unwrap();
        let logs = e.query_audit(&f.root, &q).unwrap();
        let mut purged: Vec<&str> = logs
            .logs
            .iter()
            .map(|l| l.secret_path.as_deref().unwrap())
            .collect();
        purged.sort();
        assert_eq!(purged, ["old/a", "old/b"]);
        assert_eq!(
            logs.logs[0].identity_id.as_deref(),
            Some("system:scheduler")
        );
        assert_eq!(logs.logs[0].extra_data["version_count"], 3);
    });
    // Reopened, the file agrees: the purged paths are not listed.
    let Fixture {
        _dir, path, engine, ..
    } = f;
    drop(engine);
    let vault = Arc::new(Vault::open(&path, Unlock::Passphrase(PASS)).unwrap());
    let e = Engine::load(vault, Arc::new(ManualClock::new(Timestamp::now()))).unwrap();
    let page = e
        .list_secrets(&Caller::local_operator(), "", None, None)
        .unwrap();
    let listed: Vec<&str> = page.secrets.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(listed, ["live/d", "recent/c"]);
}

/// Bindings and edits of one policy made at the same time all land: each is applied to the
/// policy as the writer holds it, not to a copy read before another change committed.
#[test]
fn concurrent_changes_to_one_policy_are_not_lost() {
    let f = fixture();
    let e = Arc::new(f.engine);
    let root = f.root.clone();
    rt().block_on(async {
        let p = e
            .create_policy(
                &root,
                serde_json::from_value(serde_json::json!({
                    "name": "shared", "rules": [{"path_pattern": "app/**", "permissions": ["read"]}]
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..24 {
            let (e, root, id) = (e.clone(), root.clone(), p.id.clone());
            tasks.push(tokio::spawn(async move {
                let b: BindingRequest = serde_json::from_value(
                    serde_json::json!({ "identity_id": format!("sa:svc-{i}") }),
                )
                .unwrap();
                e.create_binding(&root, &id, b).await.map(drop)
            }));
        }
        let (e2, root2, id2) = (e.clone(), root.clone(), p.id.clone());
        tasks.push(tokio::spawn(async move {
            let edit: PolicyRequest =
                serde_json::from_value(serde_json::json!({ "description": "edited meanwhile" }))
                    .unwrap();
            e2.update_policy(&root2, &id2, edit, false).await.map(drop)
        }));
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let after = e.get_policy(&root, &p.id).unwrap();
        assert_eq!(after.bindings.len(), 24, "bindings were lost");
        assert_eq!(after.description, "edited meanwhile");
        e.delete_binding(&root, &p.id, "sa:svc-3").await.unwrap();
        assert_eq!(e.get_policy(&root, &p.id).unwrap().bindings.len(), 23);
    });
}
