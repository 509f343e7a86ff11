//! Binding and serving, with TLS (rustls) when a certificate is given and a graceful shutdown
//! on SIGTERM / Ctrl-C: in-flight requests finish, then the vault file is closed cleanly.
//!
//! The accept loop is ours rather than a library's so that what a client can hold is bounded
//! (docs/SECURITY.md, "pre-authentication budget"): at most `max_connections` connections
//! are served at once (past that, new ones wait in the kernel's queue, so the process never
//! runs out of descriptors); a client has `header_timeout` to send a request's headers (and to
//! finish a TLS handshake); a connection with no request in progress and no bytes moving for
//! `idle_timeout` is closed; one client address holds at most `max_connections_per_address`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::routes::router;
use crate::state::AppState;

pub struct Listen {
    pub addr: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allows a non-loopback address without TLS.
    pub insecure: bool,
}

/// Serves until a shutdown signal. `ready` receives the bound address (port 0 resolves).
pub async fn serve(
    state: Arc<AppState>,
    listen: Listen,
    ready: impl FnOnce(SocketAddr) + Send,
) -> std::io::Result<()> {
    if !listen.addr.ip().is_loopback() && listen.tls.is_none() && !listen.insecure {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "refusing to serve plain HTTP on non-loopback address {}; give --tls-cert/--tls-key, or --insecure-listen",
                listen.addr
            ),
        ));
    }
    let app = router(state.clone());
    let listener = std::net::TcpListener::bind(listen.addr).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", listen.addr))
    })?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let tls = match &listen.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let max_connections = connection_limit(state.config.max_connections);

    // Compile the secret-type plugins now, off the request path, so the first write does not
    // pay for it; generators and rotation backends compile on first use.
    if let Ok(engine) = state.engine() {
        tokio::task::spawn_blocking(move || {
            let types = [scaivault_plugin_host::Kind::SecretTypes];
            for (name, took) in engine.plugin_host().precompile_kinds(&types) {
                tracing::info!(plugin = %name, ms = took.as_millis() as u64, "plugin compiled");
            }
        });
    }

    let flusher = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let Ok(engine) = state.engine()
                    && let Err(e) = engine.flush_access_times().await
                {
                    tracing::warn!(error = %e, "could not persist last-access times");
                }
            }
        })
    };
    // The rotation scheduler: due secrets of auto-generating policies are rotated here.
    let rotations = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Some(engine) = leading(&state) {
                    match engine.rotation_tick().await {
                        Ok(done) if !done.is_empty() => {
                            tracing::info!(rotated = done.len(), "rotation tick")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "rotation tick failed"),
                    }
                }
            }
        })
    };
    // Expiry notices (`secret.expiring`, `secret.expired`): thresholds are days apart, so a
    // pass every five minutes is plenty. Every twelfth pass (hourly) also destroys the
    // soft-deleted secrets whose restore window has passed.
    let expiry = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            let mut pass = 0u64;
            loop {
                tick.tick().await;
                let Some(engine) = leading(&state) else {
                    continue;
                };
                match engine.expiry_tick().await {
                    Ok(n) if n > 0 => tracing::info!(notices = n, "expiry notices queued"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expiry pass failed"),
                }
                if pass.is_multiple_of(12) {
                    match engine.purge_deleted().await {
                        Ok(n) if n > 0 => tracing::info!(purged = n, "expired soft deletes purged"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "purge of soft deletes failed"),
                    }
                    match engine.prune_expired_tokens().await {
                        Ok(n) if n > 0 => tracing::info!(pruned = n, "expired tokens pruned"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "pruning expired tokens failed"),
                    }
                }
                pass += 1;
            }
        })
    };
    // The webhook delivery worker: woken when a change queues a delivery or a webhook's task
    // finishes, and every two seconds for retries whose time has come. It starts a task per
    // webhook with due deliveries and does not wait for them.
    let deliveries = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok(engine) = state.engine() else {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                };
                let queued = engine.deliveries_queued();
                drop(engine);
                if let Some(engine) = leading(&state) {
                    engine.dispatch_deliveries();
                }
                state
                    .metrics
                    .delivery_passes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = tokio::time::timeout(Duration::from_secs(2), queued.notified()).await;
            }
        })
    };
    let retention = state.config.audit_retention.map(|keep| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Some(engine) = leading(&state) {
                    let before = engine.now().minus(keep);
                    match engine
                        .prune_audit(&scaivault_engine::Caller::local_operator(), before)
                        .await
                    {
                        Ok(r) => tracing::info!(removed = r.removed, "audit retention applied"),
                        Err(e) => tracing::warn!(error = %e, "audit retention failed"),
                    }
                }
            }
        })
    });
    let backups = state.config.backups.clone().map(|(dir, every, keep)| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the first tick is immediate; the first backup comes one interval in
            loop {
                tick.tick().await;
                let Some(engine) = leading(&state) else {
                    continue;
                };
                let (dir, name) = (
                    dir.clone(),
                    format!("scaivault-{}.svbak", engine.now().unix_seconds()),
                );
                let done = tokio::task::spawn_blocking(move || {
                    let r = engine.backup(
                        &scaivault_engine::Caller::local_operator(),
                        &dir.join(&name),
                    );
                    prune_backups(&dir, keep);
                    r
                })
                .await;
                match done {
                    Ok(Ok(_)) => tracing::info!("scheduled backup written"),
                    Ok(Err(e)) => tracing::error!(error = %e, "scheduled backup failed"),
                    Err(_) => tracing::error!("scheduled backup task failed"),
                }
            }
        })
    });
    // Failed authentications counted but not written one by one go into the audit log as
    // one `auth_failures` entry per address and reason when their window closes.
    let failures = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                record_failure_counts(&state, false).await;
            }
        })
    };
    ready(bound);
    let engine_state = state.clone();
    let end_waits = move || {
        if let Ok(engine) = engine_state.engine() {
            engine.end_long_polls();
        }
    };
    let result = accept_loop(
        listener,
        tls,
        app,
        &state.config,
        max_connections,
        end_waits,
    )
    .await;
    failures.abort();
    record_failure_counts(&state, true).await;
    flusher.abort();
    rotations.abort();
    expiry.abort();
    deliveries.abort();
    for t in [retention, backups].into_iter().flatten() {
        t.abort();
    }
    state.close().await;
    result
}

/// Writes the window's counted failed authentications as `auth_failures` entries. While the
/// vault is sealed the counts stay where they are (drained only once they can be written),
/// so failures made against a sealed server are recorded after unseal, not dropped.
/// The engine, if this node runs the once-per-vault work now (always, on a file; on a
/// database several nodes share, the node holding the leader lock), brought up to the other
/// nodes' commits first.
fn leading(state: &AppState) -> Option<Arc<scaivault_engine::Engine>> {
    let engine = state.engine().ok()?;
    if !engine.leads() {
        return None;
    }
    if let Err(e) = engine.follow() {
        tracing::warn!(error = %e, "could not follow the other nodes' changes; the pass waits");
        return None;
    }
    Some(engine)
}

async fn record_failure_counts(state: &AppState, force: bool) {
    let Ok(engine) = state.engine() else {
        return;
    };
    let counts = state.preauth.drain(force);
    if counts.is_empty() {
        return;
    }
    let inputs = counts
        .into_iter()
        .map(|c| {
            let mut extra = serde_json::Map::new();
            extra.insert("reason".into(), c.reason.into());
            extra.insert("count".into(), c.count.into());
            extra.insert("window_seconds".into(), c.window_seconds.into());
            scaivault_engine::AuditInput {
                action: scaivault_engine::AuditAction::AuthFailures.into(),
                source_ip: Some(c.address),
                success: false,
                request_id: format!("agg_{}", engine.now().unix_seconds()),
                extra_data: extra,
                ..Default::default()
            }
        })
        .collect();
    if let Err(e) = engine.record_audits(inputs).await {
        tracing::error!(error = %e, "could not record the counts of failed authentications");
    }
}

/// `max_connections`, lowered to what the process's descriptor limit allows (after raising
/// the soft limit towards the hard one), keeping room for the vault file, plugins and
/// outbound connections.
fn connection_limit(wanted: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const RESERVED: u64 = 128;
    let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted.max(1);
    };
    let want = (wanted as u64 + RESERVED).min(hard);
    if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        soft = want;
    }
    let fits = soft.saturating_sub(RESERVED).max(16) as usize;
    if fits < wanted {
        tracing::warn!(
            wanted,
            serving = fits,
            "the descriptor limit (ulimit -n) allows fewer connections than max_connections"
        );
    }
    wanted.min(fits).max(1)
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, p: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} {}: {e}", p.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("cannot read the certificate", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("cannot parse the certificate", cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad("cannot read the private key", key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("TLS setup failed for", cert, &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| bad("the certificate and key do not fit", cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until a shutdown signal, at most `max_connections` at once, then ends
/// what waits by design (`end_waits`: long-polls answer with what they have) and waits up to
/// 30 s for the requests in flight.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    config: &crate::state::ServerConfig,
    max_connections: usize,
    end_waits: impl FnOnce(),
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let per_address = Arc::new(PerAddress::new(config.max_connections_per_address));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let (header_timeout, idle_timeout) = (config.header_timeout, config.idle_timeout);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or memory for a moment: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // One address may hold only its share of the slots; past it, a new connection is
        // closed at once (the address's own connections go on).
        let Some(slot) = per_address.take(peer.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let service = {
            let (app, activity) = (app.clone(), activity.clone());
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                // A body that stalls for the header timeout fails (see `body`).
                let mut req = req
                    .map(|b| axum::body::Body::new(crate::body::TimedBody::new(b, header_timeout)));
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let busy = InFlight::new(activity.clone());
                let call = tower::ServiceExt::oneshot(app.clone(), req);
                async move {
                    let r = call.await;
                    drop(busy);
                    r
                }
            })
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let (_permit, _slot) = (permit, slot);
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let io = TokioIo::new(IdleIo::new(stream, activity, idle_timeout));
                    let conn = builder.serve_connection_with_upgrades(io, service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let io = TokioIo::new(IdleIo::new(tcp, activity, idle_timeout));
                    let conn = builder.serve_connection_with_upgrades(io, service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    drop(listener);
    end_waits();
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 30 s were cut off");
    }
    Ok(())
}

/// Connections held per client address (IPv6 by its /64), capped.
struct PerAddress {
    cap: usize,
    held: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection's place in its address's count, given back when the connection ends.
struct Slot(Arc<PerAddress>, std::net::IpAddr);

impl PerAddress {
    fn new(cap: usize) -> PerAddress {
        PerAddress {
            cap: cap.max(1),
            held: Default::default(),
        }
    }

    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Slot> {
        let key = crate::preauth::address_key(Some(ip));
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), key))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.0.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.1);
            }
        }
    }
}

/// Requests in progress on one connection; the idle timer runs only while there are none.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection that ends itself when no request is in progress and no byte has moved for
/// `idle`: a client cannot hold a descriptor by opening a connection and saying nothing.
struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    fn new(inner: T, activity: Arc<Activity>, idle: Duration) -> IdleIo<T> {
        let now = Instant::now();
        IdleIo {
            inner,
            activity,
            idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.activity.in_flight.load(Ordering::Relaxed) > 0 {
                    this.last = Instant::now();
                    return Poll::Pending;
                }
                let deadline = this.last + this.idle;
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle connection closed",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last = Instant::now();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last = Instant::now();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Keeps the newest `keep` scheduled backups in `dir` (names sort by time).
fn prune_backups(dir: &std::path::Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("scaivault-")
                    && n.to_string_lossy().ends_with(".svbak")
            })
        })
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for old in names.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
}
