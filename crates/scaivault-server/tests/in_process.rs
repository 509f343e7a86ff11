//! The in-process router (the CLI's `--vault FILE` mode) answers as the local operator, and
//! nothing a client sends over a socket can make the server do the same: the marker is a
//! request extension only `InProcess::call` inserts.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use scaivault_crypto::KdfParams;
use scaivault_engine::{Engine, SystemClock};
use scaivault_server::{AppState, InProcess, ServerConfig, router};
use scaivault_store::Vault;
use tower::ServiceExt;

async fn json(resp: axum::http::Response<Body>) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

fn whoami() -> axum::http::request::Builder {
    Request::builder().uri("/v1/auth/whoami")
}

#[tokio::test]
async fn only_the_in_process_router_answers_as_the_local_operator() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let vault = Vault::create(&path, b"pw", KdfParams::FLOOR).unwrap();
    let engine = Engine::load(Arc::new(vault), Arc::new(SystemClock)).unwrap();
    // One engine behind both routers: the network one, and the CLI's in-process one.
    let state = AppState::new(
        path.clone(),
        Some(engine),
        Arc::new(SystemClock),
        ServerConfig::default(),
    );
    let local = InProcess::new(path, state.engine().unwrap());
    let (status, me) = json(local.call(whoami().body(Body::empty()).unwrap()).await).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["identity_id"], "user:root");
    let (status, _) = json(
        local
            .call(
                Request::builder()
                    .uri("/v1/audit/logs?action=whoami")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200);

    // Over the network router nothing a client sends about itself makes it that caller.
    let forged = [
        ("x-request-id", "local_0001"),
        ("user-agent", "scaivault-cli/0.1.0 (local)"),
        ("x-scaivault-local", "1"),
    ];
    let mut req = whoami();
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let net = router(state.clone());
    let (status, body) = json(net.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "authentication_required");
    assert_ne!(body["error"]["request_id"], "local_0001");
    local.close().await;
}
