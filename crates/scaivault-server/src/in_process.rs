//! The API served inside this process, for the CLI's `--vault FILE` mode.
//!
//! A local command goes through the same router, guard, handlers and audit middleware as a
//! request over HTTP, so the two modes cannot drift apart: the same validation, the same
//! answers, the same audit entries (durable before any value is returned). What differs is
//! who the caller is: there is no token, and the caller is the local operator, who proved
//! itself by opening the file with its passphrase.
//!
//! That caller is a request extension only this module inserts. A request that arrives over
//! a socket is built by hyper with no extensions but the peer address, so no client can pose
//! as the local operator.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use scaivault_engine::{Engine, SystemClock};
use tower::ServiceExt as _;

use crate::ratelimit::RateLimits;
use crate::state::{AppState, ServerConfig};

/// Marks a request made inside this process by the local operator (see the module doc).
#[derive(Clone, Copy)]
pub(crate) struct LocalOperator;

/// The router over one open vault, called without a socket.
#[derive(Clone)]
pub struct InProcess {
    router: axum::Router,
    state: Arc<AppState>,
}

/// Bodies a local command may send: the file's owner is not a remote client to be bounded,
/// but an import or a plugin still has to fit in memory.
const LOCAL_MAX_BODY: usize = 256 * 1024 * 1024;

impl InProcess {
    pub fn new(vault_path: PathBuf, engine: Arc<Engine>) -> InProcess {
        let config = ServerConfig {
            max_body_bytes: LOCAL_MAX_BODY,
            // One operator at a terminal: rate limits and the pre-authentication budget
            // protect a server from its clients, not a file from its owner.
            rate_limits: RateLimits {
                enabled: false,
                multiplier: 1.0,
            },
            preauth: crate::PreAuthLimits {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let state = AppState::new(vault_path, None, Arc::new(SystemClock), config);
        state.set_engine(Some(engine));
        InProcess {
            router: crate::router(state.clone()),
            state,
        }
    }

    /// Answers one request as the local operator.
    pub async fn call(&self, mut req: Request<Body>) -> Response<Body> {
        req.extensions_mut().insert(LocalOperator);
        match self.router.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    /// Persists what the requests left in memory (last-access times, which a server flushes
    /// every minute) and closes the file, as a server does when it stops.
    pub async fn close(&self) {
        self.state.close().await;
    }

    /// The engine the requests reach (for operations on the file itself, which have no route:
    /// changing the passphrase, the recovery key or the key file).
    pub fn engine(&self) -> Arc<Engine> {
        self.state
            .engine()
            .expect("an in-process vault is never sealed")
    }
}
