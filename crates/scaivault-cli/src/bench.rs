//! `scaivault bench`: the benchmarks behind docs/PERFORMANCE.md, rerunnable by anyone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scaivault_core::Error;
use scaivault_crypto::KdfParams;
use scaivault_engine::{Caller, Engine, SystemClock, WriteRequest};
use scaivault_store::{Unlock, Vault};
use serde_json::json;

use crate::args::BenchCmd;
use crate::output::Out;
use crate::target::CliResult;

const PASS: &[u8] = b"benchmark passphrase";

fn value_1k(i: usize) -> WriteRequest {
    let filler = "x".repeat(1000);
    serde_json::from_value(json!({ "data": { "value": format!("{i:08}{filler}") } }))
        .expect("valid request")
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Durable writes per second with `writers` concurrent tasks, for `secs`.
async fn write_rate(engine: &Arc<Engine>, writers: usize, secs: u64, tag: &str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (engine, stop, done, tag) =
            (engine.clone(), stop.clone(), done.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let caller = Caller::local_operator();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("bench/{tag}/w{w}/s{}", i % 100);
                engine
                    .write_secret(&caller, &path, value_1k(i))
                    .await
                    .expect("benchmark write");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn fill(engine: &Arc<Engine>, n: usize) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..256 {
        let (engine, next) = (engine.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let caller = Caller::local_operator();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    break;
                }
                let path = format!("fill/{}/{}/secret-{i}", i % 97, i % 13);
                let req: WriteRequest =
                    serde_json::from_value(json!({"data": {"value": format!("v-{i}")}}))
                        .expect("valid");
                engine
                    .write_secret(&caller, &path, req)
                    .await
                    .expect("fill write");
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn unseal_report(file: &Path) -> Result<serde_json::Value, Error> {
    let header = Vault::read_header(file)?;
    let kdf_start = Instant::now();
    let salt = header.salt_bytes().unwrap_or_default();
    let _ = scaivault_crypto::derive_kek(PASS, &salt, header.kdf);
    let kdf = kdf_start.elapsed();
    let start = Instant::now();
    let vault = Vault::open(file, Unlock::Passphrase(PASS))?;
    let engine = Engine::load(Arc::new(vault), Arc::new(SystemClock))?;
    let total = start.elapsed();
    Ok(json!({
        "secrets": engine.secrets_total(),
        "unseal_seconds_excluding_kdf": (total.saturating_sub(kdf)).as_secs_f64(),
        "kdf_seconds": kdf.as_secs_f64(),
        "rss_mib": rss_mib(),
    }))
}

/// Compile time of the built-ins (cold, then from the process-wide cache), and per-call
/// latency of `validate` for each built-in type on a small secret.
fn plugin_bench(iterations: usize) -> Result<serde_json::Value, Error> {
    use scaivault_plugin_host::{Capability, NoServices, PluginHost};
    let start = Instant::now();
    let host = PluginHost::new(Capability::default_allowed())?;
    let sandbox = start.elapsed();
    let cold: Vec<serde_json::Value> = host
        .precompile()
        .into_iter()
        .map(|(name, d)| json!({ "plugin": name, "ms": d.as_secs_f64() * 1e3 }))
        .collect();
    let again = PluginHost::new(Capability::default_allowed())?;
    let warm_start = Instant::now();
    again.precompile();
    let warm = warm_start.elapsed();

    let services: Arc<dyn scaivault_plugin_host::HostServices> = Arc::new(NoServices);
    let cases = [
        (
            "kv",
            json!({ "username": "billing", "password": "s3cr3t-value-0123456789" }),
        ),
        (
            "api_key",
            json!({ "key": "sk_live_0123456789abcdef", "endpoint": "https://api.example" }),
        ),
    ];
    let mut calls = Vec::new();
    for (t, data) in cases {
        let data = data.to_string();
        for _ in 0..iterations.min(1000) {
            host.validate_secret(t, &data, services.clone())?;
        }
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let s = Instant::now();
            host.validate_secret(t, &data, services.clone())?;
            times.push(s.elapsed());
        }
        times.sort();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        calls.push(json!({
            "type": t,
            "iterations": iterations,
            "median_us": pct(0.5).as_secs_f64() * 1e6,
            "p99_us": pct(0.99).as_secs_f64() * 1e6,
        }));
    }
    Ok(json!({
        "sandbox_start_ms": sandbox.as_secs_f64() * 1e3,
        "compile_cold": cold,
        "compile_again_same_process_ms": warm.as_secs_f64() * 1e3,
        "validate": calls,
    }))
}

pub async fn run(cmd: BenchCmd, g: &crate::args::Global, out: &Out) -> CliResult<()> {
    match cmd {
        BenchCmd::Unseal { file } => {
            let r = unseal_report(&file)?;
            println!("{r}");
            Ok(())
        }
        BenchCmd::Store {
            dir,
            secrets,
            writers,
            seconds,
        } => {
            let tmp = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
            let dir = dir.unwrap_or_else(|| tmp.path().to_owned());
            scaivault_store::private_fs::create_dir_all(&dir)
                .map_err(|e| Error::internal(e.to_string()))?;
            let file = dir.join(format!("bench-{}.db", std::process::id()));
            let vault = Vault::create(&file, PASS, KdfParams::FLOOR)?;
            let engine = Arc::new(Engine::load(Arc::new(vault), Arc::new(SystemClock))?);

            let single = write_rate(&engine, 1, seconds, "single").await;
            let many = write_rate(&engine, writers, seconds, "many").await;
            eprintln!("writes/s: 1 writer {single:.0}, {writers} writers {many:.0}");

            let caller = Caller::local_operator();
            for i in 0..1000 {
                engine
                    .write_secret(&caller, &format!("bench/read/s{i}"), value_1k(i))
                    .await?;
            }
            let reads = {
                let engine = engine.clone();
                tokio::task::spawn_blocking(move || {
                    let caller = Caller::local_operator();
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_secs(seconds) {
                        for _ in 0..1000 {
                            let v = engine
                                .read_secret(&caller, &format!("bench/read/s{}", n % 1000), None)
                                .expect("read");
                            std::hint::black_box(serde_json::to_vec(&v).expect("json"));
                            n += 1;
                        }
                    }
                    n as f64 / start.elapsed().as_secs_f64()
                })
                .await
                .map_err(|_| Error::internal("read benchmark failed"))?
            };
            eprintln!("reads/s (1 thread, decrypt + JSON): {reads:.0}");

            let fill_start = Instant::now();
            fill(&engine, secrets).await;
            let fill_secs = fill_start.elapsed().as_secs_f64();
            eprintln!("filled {secrets} secrets in {fill_secs:.1}s");
            engine.vault().shutdown();
            drop(engine);
            let exe = std::env::current_exe().map_err(|e| Error::internal(e.to_string()))?;
            let child = std::process::Command::new(exe)
                .args(["bench", "unseal", "--file"])
                .arg(&file)
                .output()
                .map_err(|e| Error::internal(e.to_string()))?;
            let unseal: serde_json::Value = serde_json::from_slice(&child.stdout)
                .unwrap_or(json!({"error": String::from_utf8_lossy(&child.stderr)}));
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            // A root-key change (what `operator passphrase`, `rekey`, `key-file` and
            // `rotate-key` do) rewrites no record but recomputes the ledger over all of them.
            let root_change_seconds = {
                let vault = Vault::open(&file, Unlock::Passphrase(PASS))?;
                let start = Instant::now();
                vault.rotate_data_key().await?;
                start.elapsed().as_secs_f64()
            };
            eprintln!("root-key change with {secrets} secrets: {root_change_seconds:.2}s");
            let res = json!({
                "root_key_change_seconds": root_change_seconds,
                "durable_writes_per_sec": { "1_writer": single, format!("{writers}_writers"): many, "ratio": many / single },
                "reads_per_sec_1_thread_1kib": reads,
                "fill": { "secrets": secrets, "seconds": fill_secs, "rate_per_sec": secrets as f64 / fill_secs },
                "unseal": unseal,
                "file_bytes": size,
            });
            let _ = std::fs::remove_file(&file);
            out.emit(&res, || {
                println!("{}", serde_json::to_string_pretty(&res).unwrap_or_default())
            });
            Ok(())
        }
        BenchCmd::Plugins { iterations } => {
            let res = tokio::task::spawn_blocking(move || plugin_bench(iterations))
                .await
                .map_err(|_| Error::internal("benchmark panicked"))??;
            out.emit(&res, || {
                println!("{}", serde_json::to_string_pretty(&res).unwrap_or_default())
            });
            Ok(())
        }
        BenchCmd::Http {
            target,
            connections,
            seconds,
            mode,
            path,
        } => {
            let url = target.unwrap_or_else(|| crate::server_url(g));
            let token = crate::token(g).unwrap_or_default();
            let res = http_load(&url, &token, connections, seconds, &mode, &path).await?;
            out.emit(&res, || {
                println!("{}", serde_json::to_string_pretty(&res).unwrap_or_default())
            });
            Ok(())
        }
    }
}

/// A closed-loop load generator: each connection sends its next request when the last one
/// answered. Reports throughput and latency percentiles.
async fn http_load(
    base: &str,
    token: &str,
    conns: usize,
    secs: u64,
    mode: &str,
    path: &str,
) -> CliResult<serde_json::Value> {
    let base = base.trim_end_matches('/').to_owned();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let body = json!({ "data": { "value": "x".repeat(1000) } });
    for c in 0..conns {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let (base, token, mode, path, errors, body) = (
            base.clone(),
            token.to_owned(),
            mode.to_owned(),
            path.to_owned(),
            errors.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let req = match mode.as_str() {
                    "health" => client.get(format!("{base}/v1/health")),
                    "write" => client
                        .put(format!("{base}/v1/secrets/{path}-c{c}-{}", i % 50))
                        .bearer_auth(&token)
                        .json(&body),
                    _ => client
                        .get(format!("{base}/v1/secrets/{path}"))
                        .bearer_auth(&token),
                };
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    Ok(r) => {
                        let _ = r.bytes().await;
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            lat
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64().max(secs as f64);
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Ok(json!({
        "mode": mode, "connections": conns, "seconds": secs,
        "requests": all.len(), "errors": errors.load(Ordering::Relaxed),
        "requests_per_sec": all.len() as f64 / elapsed,
        "latency_ms": { "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0) },
    }))
}
