//! When the audit entry cannot be made durable, the request fails and returns nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::Request;
use scaivault_crypto::KdfParams;
use scaivault_engine::{Engine, SystemClock};
use scaivault_server::{AppState, ServerConfig, router};
use scaivault_store::testing::FaultyBackend;
use scaivault_store::{RedbBackend, Vault};
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body.unwrap_or("").to_owned())).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

struct Setup {
    _dir: tempfile::TempDir,
    app: axum::Router,
    root: String,
    fail: Arc<AtomicBool>,
    commits: Arc<AtomicUsize>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let backend = FaultyBackend::new(RedbBackend::create(&path).unwrap());
    let (fail, commits) = (backend.fail.clone(), backend.commits.clone());
    let backend = Arc::new(backend);
    let vault = Vault::create_with_backend(&path, backend, b"pw", KdfParams::FLOOR).unwrap();
    let engine = Engine::load(Arc::new(vault), Arc::new(SystemClock)).unwrap();
    let root = engine.create_root_token(None).await.unwrap().token.clone();
    let state = AppState::new(
        path,
        Some(engine),
        Arc::new(SystemClock),
        ServerConfig::default(),
    );
    Setup {
        _dir: dir,
        app: router(state),
        root,
        fail,
        commits,
    }
}

#[tokio::test]
async fn a_read_whose_audit_entry_fails_returns_nothing() {
    let Setup {
        app, root, fail, ..
    } = setup().await;

    let body = r#"{"data":{"password":"tops3cret-value"}}"#;
    let (s, _) = call(&app, "PUT", "/v1/secrets/app/db", &root, Some(body)).await;
    assert_eq!(s, 201);
    let (s, body) = call(&app, "GET", "/v1/secrets/app/db", &root, None).await;
    assert_eq!(s, 200);
    assert!(body.contains("tops3cret-value"));

    fail.store(true, Ordering::SeqCst);
    let (s, body) = call(&app, "GET", "/v1/secrets/app/db", &root, None).await;
    assert_eq!(s, 500, "{body}");
    assert!(
        !body.contains("tops3cret-value"),
        "the value was returned although its read was not audited"
    );
    assert!(body.contains("audit"), "{body}");
    let batch = r#"{"paths":["app/db"]}"#;
    let (s, body) = call(&app, "POST", "/v1/secrets/batch", &root, Some(batch)).await;
    assert_eq!(s, 500, "{body}");
    assert!(
        !body.contains("tops3cret-value"),
        "a batch read returned a value unaudited"
    );
    assert!(body.contains("audit"), "{body}");

    fail.store(false, Ordering::SeqCst);
    let (s, _) = call(&app, "GET", "/v1/secrets/app/db", &root, None).await;
    assert_eq!(s, 200, "the vault recovers once the disk does");
}

/// A write and its audit entry are one commit: both durable, or neither.
#[tokio::test]
async fn a_write_commits_with_its_audit_entry() {
    let Setup {
        app,
        root,
        fail,
        commits,
        ..
    } = setup().await;
    let body = r#"{"data":{"password":"first-value"}}"#;
    let before = commits.load(Ordering::SeqCst);
    let (s, _) = call(&app, "PUT", "/v1/secrets/app/db", &root, Some(body)).await;
    assert_eq!(s, 201);
    assert_eq!(
        commits.load(Ordering::SeqCst) - before,
        1,
        "the write and its audit entry took more than one commit"
    );
    let (_, logs) = call(&app, "GET", "/v1/audit/logs?action=write", &root, None).await;
    let logs: serde_json::Value = serde_json::from_str(&logs).unwrap();
    let entry = &logs["logs"][0];
    assert_eq!(entry["secret_path"], "app/db");
    assert_eq!(entry["success"], true);
    assert_eq!(entry["identity_id"], "user:root");
    assert_eq!(entry["extra_data"]["status"], 201);
    assert_eq!(entry["extra_data"]["version"], 1);
    assert!(!logs.to_string().contains("first-value"));

    // The disk fails: the write is refused, and neither it nor a success entry is left.
    fail.store(true, Ordering::SeqCst);
    let body = r#"{"data":{"password":"second-value"}}"#;
    let (s, resp) = call(&app, "PUT", "/v1/secrets/app/db", &root, Some(body)).await;
    assert_eq!(s, 500, "{resp}");
    fail.store(false, Ordering::SeqCst);
    let (s, read) = call(&app, "GET", "/v1/secrets/app/db", &root, None).await;
    assert_eq!(s, 200);
    assert!(read.contains("first-value"), "{read}");
    let (_, logs) = call(&app, "GET", "/v1/audit/logs?action=write", &root, None).await;
    let logs: serde_json::Value = serde_json::from_str(&logs).unwrap();
    let writes = logs["logs"].as_array().unwrap();
    assert_eq!(writes.len(), 1, "{logs:#}");
    assert_eq!(writes[0]["extra_data"]["version"], 1);

    // A refused write (check-and-set mismatch) is recorded by the middleware, as a failure.
    let body = r#"{"data":{"password":"third-value"},"options":{"cas":7}}"#;
    let (s, _) = call(&app, "PUT", "/v1/secrets/app/db", &root, Some(body)).await;
    assert_eq!(s, 409);
    let (_, logs) = call(&app, "GET", "/v1/audit/logs?action=write", &root, None).await;
    let logs: serde_json::Value = serde_json::from_str(&logs).unwrap();
    let newest = &logs["logs"][0];
    assert_eq!(newest["success"], false);
    assert_eq!(newest["extra_data"]["status"], 409);
    assert_eq!(logs["logs"].as_array().unwrap().len(), 2);
}
