use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{Clock, Engine};

use crate::metrics::Metrics;
use crate::preauth::{PreAuth, PreAuthLimits};
use crate::ratelimit::{RateLimiter, RateLimits};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Request bodies above this answer 413 `payload_too_large`.
    pub max_body_bytes: usize,
    pub rate_limits: RateLimits,
    /// `/v1/metrics` without a token (it reveals counts, never paths or values).
    pub public_metrics: bool,
    /// Audit entries older than this are pruned hourly; `None` keeps everything.
    pub audit_retention: Option<std::time::Duration>,
    /// Scheduled backups: directory, interval, how many to keep.
    pub backups: Option<(std::path::PathBuf, std::time::Duration, usize)>,
    /// Where installed plugins live and what they may be granted (used when unsealing).
    pub plugins: scaivault_engine::PluginSettings,
    /// `scaivault dev --test-clock`: the engine's clock, which `POST /v1/sys/test/clock` moves.
    pub test_clock: Option<TestClock>,
    /// Failed authentications an address may make before its requests are refused unchecked.
    pub preauth: PreAuthLimits,
    /// Unseal attempts that may run their key derivation at once (64 MiB of Argon2id each);
    /// a further attempt answers 429 at once instead of queueing.
    pub unseal_concurrency: usize,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 client's /64) may hold at once.
    pub max_connections_per_address: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: std::time::Duration,
    /// How long a connection may stay open with no request in progress.
    pub idle_timeout: std::time::Duration,
}

/// A clock tests can move (only ever set by `dev --test-clock`).
#[derive(Clone)]
pub struct TestClock(pub Arc<scaivault_engine::ManualClock>);

impl std::fmt::Debug for TestClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestClock")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
            rate_limits: RateLimits::default(),
            public_metrics: true,
            audit_retention: None,
            backups: None,
            plugins: Default::default(),
            test_clock: None,
            preauth: PreAuthLimits::default(),
            unseal_concurrency: 1,
            max_connections: 4096,
            max_connections_per_address: 512,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(120),
        }
    }
}

/// Everything a request handler can reach. The engine is `None` while the vault is sealed.
pub struct AppState {
    pub vault_path: PathBuf,
    pub(crate) engine: RwLock<Option<Arc<Engine>>>,
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    pub(crate) metrics: Metrics,
    pub(crate) limiter: RateLimiter,
    pub(crate) preauth: PreAuth,
    /// Permits for unseal attempts' key derivations (`unseal_concurrency`).
    pub(crate) unseal_permits: Arc<tokio::sync::Semaphore>,
    /// Unseal attempts waiting for a permit (at most `UNSEAL_QUEUE`; more answer 429).
    pub(crate) unseal_waiting: std::sync::atomic::AtomicUsize,
    pub(crate) started: Instant,
    /// Writes' `Idempotency-Key`s and what they answered.
    pub(crate) idempotency: crate::idempotency::Idempotency,
}

impl AppState {
    pub fn new(
        vault_path: PathBuf,
        engine: Option<Engine>,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            vault_path,
            engine: RwLock::new(engine.map(Arc::new)),
            clock,
            limiter: RateLimiter::new(config.rate_limits.clone()),
            preauth: PreAuth::new(config.preauth),
            unseal_permits: Arc::new(tokio::sync::Semaphore::new(
                config.unseal_concurrency.max(1),
            )),
            unseal_waiting: Default::default(),
            config,
            metrics: Metrics::default(),
            started: Instant::now(),
            idempotency: Default::default(),
        })
    }

    pub fn engine(&self) -> Result<Arc<Engine>, Error> {
        self.engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::VaultSealed,
                    "the vault is sealed; unseal it with `scaivault operator unseal` (POST /v1/sys/unseal)",
                )
            })
    }

    pub fn is_sealed(&self) -> bool {
        self.engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    pub(crate) fn set_engine(&self, engine: Option<Arc<Engine>>) {
        *self.engine.write().unwrap_or_else(|p| p.into_inner()) = engine;
    }

    /// Flushes in-memory state and closes the file; used at shutdown and on seal.
    pub async fn close(&self) {
        let engine = self
            .engine
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(engine) = engine {
            if let Err(e) = engine.flush_access_times().await {
                tracing::warn!(error = %e, "could not persist last-access times at shutdown");
            }
            engine.vault().shutdown();
        }
    }
}
