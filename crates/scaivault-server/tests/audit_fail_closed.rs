//! When the audit entry cannot be made durable, the request fails and returns nothing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::Request;
use scaivault_crypto::KdfParams;
use scaivault_engine::{Engine, SystemClock};
use scaivault_server::{AppState, ServerConfig, router};
use scaivault_store::{Backend, Mutation, RedbBackend, Snapshot, StoreError, Table, Vault};
use tower::ServiceExt;

/// A redb backend whose durable commits can be made to fail, like a dying disk.
struct Faulty {
    inner: RedbBackend,
    fail: Arc<AtomicBool>,
}

impl Backend for Faulty {
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(t, k)
    }
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StoreError> {
        self.inner.snapshot()
    }
    fn scan(&self, t: Table, v: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        self.inner.scan(t, v)
    }
    fn scan_rev(
        &self,
        t: Table,
        b: Option<&[u8]>,
        v: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.scan_rev(t, b, v)
    }
    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io(
                "injected: the disk refused the write".into(),
            ));
        }
        self.inner.commit(batch)
    }
    fn copy_to(&self, out: &Path) -> Result<(), StoreError> {
        self.inner.copy_to(out)
    }
}

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

#[tokio::test]
async fn a_read_whose_audit_entry_fails_returns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let fail = Arc::new(AtomicBool::new(false));
    let backend = Arc::new(Faulty {
        inner: RedbBackend::create(&path).unwrap(),
        fail: fail.clone(),
    });
    let vault = Vault::create_with_backend(&path, backend, b"pw", KdfParams::FLOOR).unwrap();
    let engine = Engine::load(Arc::new(vault), Arc::new(SystemClock)).unwrap();
    let root = engine.create_root_token(None).await.unwrap().token.clone();
    let state = AppState::new(
        path,
        Some(engine),
        Arc::new(SystemClock),
        ServerConfig::default(),
    );
    let app = router(state);

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

    fail.store(false, Ordering::SeqCst);
    let (s, _) = call(&app, "GET", "/v1/secrets/app/db", &root, None).await;
    assert_eq!(s, 200, "the vault recovers once the disk does");
}
