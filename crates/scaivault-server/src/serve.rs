//! Binding and serving, with TLS (rustls) when a certificate is given and a graceful shutdown
//! on SIGTERM / Ctrl-C: in-flight requests finish, then the vault file is closed cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let listener = std::net::TcpListener::bind(listen.addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;

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
                if let Ok(engine) = state.engine() {
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
                let Ok(engine) = state.engine() else {
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
                }
                pass += 1;
            }
        })
    };
    // The webhook delivery worker: woken when a change queues a delivery, and every two
    // seconds for retries whose time has come.
    let deliveries = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok(engine) = state.engine() else {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                };
                let queued = engine.deliveries_queued();
                match engine.deliver_pending().await {
                    // A full batch: there may be more due right now.
                    Ok(n) if n >= 64 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "webhook delivery pass failed"),
                }
                drop(engine);
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
                if let Ok(engine) = state.engine() {
                    let before = engine.now().minus(keep);
                    match engine
                        .prune_audit(&scaivault_engine::Caller::local_operator(), before)
                        .await
                    {
                        Ok(r) => tracing::info!(removed = %r["removed"], "audit retention applied"),
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
                let Ok(engine) = state.engine() else { continue };
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
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            handle.graceful_shutdown(Some(Duration::from_secs(30)));
        });
    }
    ready(bound);
    let result = match listen.tls {
        Some((cert, key)) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            axum_server::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(app)
                .await
        }
    };
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
