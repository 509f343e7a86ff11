//! Calls handed to the router inside this process, over a vault file opened here.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use scaivault_core::Error;
use scaivault_engine::Engine;
use scaivault_server::InProcess;

use crate::{Answer, Call, Payload, Result, Transport};

/// The API of an open vault file, answered without a socket as its local operator.
#[derive(Clone)]
pub struct Local {
    api: InProcess,
}

impl Local {
    pub fn new(vault_path: PathBuf, engine: Arc<Engine>) -> Local {
        Local {
            api: InProcess::new(vault_path, engine),
        }
    }

    /// Ends the session as a server ends: last-access times persisted, the file closed.
    pub async fn close(&self) {
        self.api.close().await;
    }

    /// The engine itself, for what works on the file and has no route (the passphrase, the
    /// recovery key, the key file).
    pub fn engine(&self) -> Arc<Engine> {
        self.api.engine()
    }
}

impl Transport for Local {
    fn send(&self, call: Call) -> Pin<Box<dyn Future<Output = Result<Answer>> + Send + '_>> {
        Box::pin(async move {
            let mut req = axum::http::Request::builder()
                .method(call.method)
                .uri(&call.path)
                .header(
                    "user-agent",
                    concat!("scaivault-cli/", env!("CARGO_PKG_VERSION"), " (local)"),
                );
            let body = match call.payload {
                Payload::Empty => Body::empty(),
                Payload::Json(bytes) => {
                    req = req.header("content-type", "application/json");
                    Body::from(bytes)
                }
                Payload::File { file, len } => {
                    req = req
                        .header("content-type", "application/octet-stream")
                        .header("content-length", len);
                    Body::from_stream(tokio_util::io::ReaderStream::new(file))
                }
            };
            let req = req.body(body).map_err(|_| {
                Error::invalid_request(format!("not a valid request path: {}", call.path))
            })?;
            Ok(self.api.call(req).await)
        })
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Local::close(self))
    }
}
