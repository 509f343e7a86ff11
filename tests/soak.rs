//! A bounded soak: several clients mix reads, writes, lists, policy changes and rotations over loopback
//! while the server is killed (SIGKILL) and restarted. Afterwards every acknowledged write is
//! present, the audit chain verifies, and memory stayed bounded.
//!
//! `SCAIVAULT_SOAK_SECS` sets the length (default 30 s; docs/RELIABILITY.md has a longer run).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

#[test]
fn soak_with_restarts() {
    let secs: u64 = std::env::var("SCAIVAULT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let start_server = || {
        let (child, u) = server(
            &vault,
            &["--no-rate-limit", "--listen", &listen],
            &[("SCAIVAULT_PASSPHRASE", PASS)],
        );
        assert_eq!(u, url);
        child
    };
    let mut child = start_server();
    let c = reqwest::blocking::Client::new();
    for n in 0..8 {
        let r = c
            .post(format!("{url}/v1/policies"))
            .bearer_auth(&root)
            .json(&json!({"name": format!("soak-{n}"), "rules": [{"path_pattern": format!("soak/c{n}/**"), "permissions": ["read"]}]}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        // And a secret under an auto-generating rotation policy, rotated during the run.
        let r = c
            .put(format!("{url}/v1/secrets/soak/c{n}/rotating"))
            .bearer_auth(&root)
            .json(&json!({"data": {"value": "v0"}}))
            .send()
            .unwrap();
        assert!(r.status().is_success());
        let r = c
            .post(format!("{url}/v1/rotation/policies"))
            .bearer_auth(&root)
            .json(
                &json!({"name": format!("soak-rot-{n}"), "interval": "30d", "auto_generate": true}),
            )
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let r = c
            .post(format!(
                "{url}/v1/rotation/policies/rot_soak-rot-{n}/secrets"
            ))
            .bearer_auth(&root)
            .json(&json!({"secret_path": format!("soak/c{n}/rotating")}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }

    let acked: Arc<Mutex<std::collections::HashMap<String, u64>>> = Arc::default();
    let (requests, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|n| {
            let (url, root, acked, requests, errors, stop) =
                (url.clone(), root.clone(), acked.clone(), requests.clone(), errors.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let path = format!("soak/c{n}/s{}", i % 20);
                    let r = match i % 5 {
                        0 | 1 => c.put(format!("{url}/v1/secrets/{path}")).bearer_auth(&root).json(&json!({"data": {"i": i}})).send(),
                        2 => c.get(format!("{url}/v1/secrets/{path}")).bearer_auth(&root).send(),
                        3 => c.get(format!("{url}/v1/secrets?prefix=soak/c{n}/")).bearer_auth(&root).send(),
                        // Rotations of the client's rotating secret.
                        _ if i % 10 == 9 => c.post(format!("{url}/v1/rotation/policies/rot_soak-rot-{n}/rotate")).bearer_auth(&root).send(),
                        // Policy changes: each client keeps rewriting its own policy.
                        _ => c
                            .put(format!("{url}/v1/policies/soak-{n}"))
                            .bearer_auth(&root)
                            .json(&json!({"name": format!("soak-{n}"), "rules": [{"path_pattern": format!("soak/c{n}/**"), "permissions": ["read", if i.is_multiple_of(2) { "list" } else { "read" }]}]}))
                            .send(),
                    };
                    requests.fetch_add(1, Ordering::Relaxed);
                    match r {
                        Ok(r) if r.status().is_success() => {
                            if i % 5 <= 1 {
                                let v: serde_json::Value = r.json().unwrap_or_default();
                                if let Some(ver) = v["version"].as_u64() {
                                    let mut a = acked.lock().unwrap();
                                    let e = a.entry(path).or_insert(0);
                                    *e = (*e).max(ver);
                                }
                            }
                        }
                        // 404 for a read of a path not written yet is expected.
                        Ok(r) if r.status().as_u16() == 404 => {}
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        })
        .collect();

    let begin = Instant::now();
    let mut restarts = 0;
    let mut rss = vec![rss_mib(child.id())];
    while begin.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(secs / 4).max(Duration::from_secs(2)));
        rss.push(rss_mib(child.id()));
        child.kill().unwrap();
        let _ = child.wait();
        restarts += 1;
        child = start_server();
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().unwrap();
    }
    rss.push(rss_mib(child.id()));

    let acked = acked.lock().unwrap().clone();
    for (path, version) in &acked {
        let v: serde_json::Value = c
            .get(format!("{url}/v1/versions/{path}"))
            .bearer_auth(&root)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            v["current_version"].as_u64().unwrap_or(0) >= *version,
            "{path}: acknowledged v{version} lost: {v}"
        );
    }
    let report: serde_json::Value = c
        .post(format!("{url}/v1/sys/verify"))
        .bearer_auth(&root)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let peak = rss.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "soak: {secs}s, {} requests, {} errors (during restarts), {restarts} restarts, {} secrets checked, RSS MiB {rss:?}, audit entries {}",
        requests.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        acked.len(),
        report["checked"]["audit_entries"]
    );
    assert!(requests.load(Ordering::Relaxed) > 100);
    assert!(peak < 300.0, "RSS grew to {peak} MiB");
    let _ = child.kill();
    let _ = child.wait();
}
