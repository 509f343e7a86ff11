//! The webhook delivery log keeps the newest 1000 finished deliveries per webhook, and a
//! deleted webhook takes its whole log with it.

use std::sync::Arc;

use scaivault_core::time::Timestamp;
use scaivault_crypto::KdfParams;
use scaivault_engine::{Caller, Engine, ManualClock, PluginSettings, WebhookRequest, WriteRequest};
use scaivault_store::Vault;

/// An engine on a moving clock whose one webhook points at loopback port 9, which refuses at
/// once: every delivery fails at its first attempt, without a network.
struct Setup {
    _dir: tempfile::TempDir,
    vault: Arc<Vault>,
    clock: Arc<ManualClock>,
    e: Engine,
    root: Caller,
    rt: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let vault =
        Arc::new(Vault::create(&dir.path().join("v.db"), b"pw-log", KdfParams::FLOOR).unwrap());
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let settings = PluginSettings {
        allow_hosts: vec!["127.0.0.1:9".into()],
        ..PluginSettings::default()
    };
    Setup {
        e: Engine::load_with(vault.clone(), clock.clone(), settings).unwrap(),
        _dir: dir,
        vault,
        clock,
        root: Caller::local_operator(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    }
}

async fn hook(s: &Setup, events: &[&str]) -> String {
    let req: WebhookRequest = serde_json::from_value(serde_json::json!({
        "name": "log", "url": "http://127.0.0.1:9/hook",
        "secret": "whsec_0123456789abcdef0123", "events": events,
    }))
    .unwrap();
    let hook = s.e.create_webhook(&s.root, req).await.unwrap();
    hook.id
}

#[test]
fn the_delivery_log_is_pruned_per_webhook_and_goes_with_it() {
    let s = setup();
    let (e, root, clock, vault) = (&s.e, &s.root, &s.clock, &s.vault);
    s.rt.block_on(async {
        let id = hook(&s, &["secret.created"]).await;
        let writes: Vec<(String, WriteRequest)> = (0..1005)
            .map(|i| {
                let w = serde_json::from_value(serde_json::json!({"data": {"k": "v"}})).unwrap();
                (format!("app/s{i:04}"), w)
            })
            .collect();
        let mut writes = writes;
        let rest = writes.split_off(1000);
        e.write_secrets(root, writes).await.unwrap();
        e.write_secrets(root, rest).await.unwrap();
        // Every attempt fails; move the clock past each retry until all have given up.
        for _ in 0..8 {
            while e.deliver_pending().await.unwrap() > 0 {}
            clock.advance(std::time::Duration::from_secs(7 * 3600));
        }

        let log = serde_json::to_value(
            e.list_deliveries(root, &id, None, Some(1000), None)
                .unwrap(),
        )
        .unwrap();
        let page = log["deliveries"].as_array().unwrap();
        assert_eq!(page.len(), 1000);
        assert_eq!(log["has_more"], false, "the oldest five were pruned");
        assert!(page.iter().all(|d| d["status"] == "failed"));
        let records = |v: &Vault| v.stats().unwrap().records["webhooks"];
        assert_eq!(records(vault), 1001, "1000 deliveries and the webhook");

        // Pages walk the same log, newest first.
        let first =
            serde_json::to_value(e.list_deliveries(root, &id, None, Some(400), None).unwrap())
                .unwrap();
        let cursor = first["cursor"].as_str().unwrap().to_owned();
        let second = serde_json::to_value(
            e.list_deliveries(root, &id, Some("failed"), Some(1000), Some(&cursor))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(second["deliveries"].as_array().unwrap().len(), 600);
        assert_eq!(first["deliveries"][0], page[0]);
        assert_eq!(second["deliveries"][0], page[400]);
        let stats = serde_json::to_value(e.get_webhook(root, &id).unwrap()).unwrap();
        // Every delivery was queued more than a day ago on the moved clock: none counts, and
        // the newest is still shown.
        assert_eq!(stats["statistics"]["deliveries_24h"], 0);
        assert_eq!(stats["last_delivery"]["status"], "failed");
        assert_eq!(stats["last_delivery"]["id"], page[0]["id"]);

        e.delete_webhook(root, &id).await.unwrap();
        assert_eq!(
            records(vault),
            0,
            "a deleted webhook left deliveries behind"
        );
    });
}

/// A destroyed secret takes its expiry-notice record with it.
#[test]
fn a_destroyed_secret_leaves_no_expiry_record() {
    let s = setup();
    let (e, root) = (&s.e, &s.root);
    s.rt.block_on(async {
        hook(&s, &["secret.expiring"]).await;
        let w: WriteRequest = serde_json::from_value(
            serde_json::json!({"data": {"k": "v"}, "options": {"expires_in": "12h"}}),
        )
        .unwrap();
        e.write_secret(root, "tls/short", w).await.unwrap();
        let rotation_records = || s.vault.stats().unwrap().records["rotation"];
        assert_eq!(
            e.expiry_tick().await.unwrap(),
            1,
            "one 1d notice, not three"
        );
        assert_eq!(e.expiry_tick().await.unwrap(), 0, "and only once");
        assert_eq!(rotation_records(), 1);
        e.delete_secret(root, "tls/short", true).await.unwrap();
        assert_eq!(rotation_records(), 0);
    });
}

/// An attempt takes as long as the receiver does; an edit of the webhook made meanwhile (here
/// a rename and a rotated signing secret) survives the attempt's bookkeeping, which resets the
/// failure count an earlier, failed delivery left.
#[test]
fn an_edit_made_during_a_delivery_attempt_is_kept() {
    use scaivault_engine::DELIVERY_ATTEMPTS;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let vault =
        Arc::new(Vault::create(&dir.path().join("v.db"), b"pw-log", KdfParams::FLOOR).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = Caller::local_operator();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let settings = PluginSettings {
            allow_hosts: vec![format!("127.0.0.1:{port}")],
            ..PluginSettings::default()
        };
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let e = Arc::new(Engine::load_with(vault, clock.clone(), settings).unwrap());
        let req: WebhookRequest = serde_json::from_value(serde_json::json!({
            "name": "slow", "url": format!("http://127.0.0.1:{port}/hook"),
            "secret": "whsec_0123456789abcdef0123", "events": ["secret.created"],
        }))
        .unwrap();
        let id = serde_json::to_value(e.create_webhook(&root, req).await.unwrap()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let write = |path: &'static str| {
            let e = e.clone();
            let root = root.clone();
            async move {
                let w: WriteRequest =
                    serde_json::from_value(serde_json::json!({"data": {"k": "v"}})).unwrap();
                e.write_secret(&root, path, w).await.unwrap();
            }
        };

        // The receiver refuses every attempt of the first delivery, then holds the next
        // request until told to answer it.
        let (accepted, on_accept) = tokio::sync::oneshot::channel();
        let (release, on_release) = tokio::sync::oneshot::channel::<()>();
        let receiver = tokio::spawn(async move {
            let answer = |status: &str| {
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            };
            let mut buf = [0u8; 8192];
            for _ in 0..DELIVERY_ATTEMPTS {
                let (mut sock, _) = listener.accept().await.unwrap();
                let _ = sock.read(&mut buf).await.unwrap();
                sock.write_all(answer("500 Internal Server Error").as_bytes())
                    .await
                    .unwrap();
            }
            let (mut sock, _) = listener.accept().await.unwrap();
            accepted.send(()).unwrap();
            on_release.await.unwrap();
            let _ = sock.read(&mut buf).await.unwrap();
            sock.write_all(answer("200 OK").as_bytes()).await.unwrap();
        });
        write("app/one").await;
        for _ in 0..DELIVERY_ATTEMPTS {
            while e.deliver_pending().await.unwrap() > 0 {}
            clock.advance(std::time::Duration::from_secs(7 * 3600));
        }
        assert_eq!(
            serde_json::to_value(e.get_webhook(&root, &id).unwrap()).unwrap()["last_delivery"]["status"],
            "failed"
        );

        write("app/two").await;
        let worker = tokio::spawn({
            let e = e.clone();
            async move { e.deliver_pending().await.unwrap() }
        });
        on_accept.await.unwrap();
        let edit: WebhookRequest = serde_json::from_value(serde_json::json!({
            "name": "renamed", "secret": "whsec_rotated_0123456789ab", "previous_secret_ttl": "1h",
        }))
        .unwrap();
        e.update_webhook(&root, &id, edit).await.unwrap();
        release.send(()).unwrap();
        assert_eq!(worker.await.unwrap(), 1);
        receiver.await.unwrap();

        let h = serde_json::to_value(e.get_webhook(&root, &id).unwrap()).unwrap();
        assert_eq!(h["name"], "renamed", "{h}");
        assert!(h["previous_secret_expires_at"].is_string(), "{h}");
        assert_eq!(h["last_delivery"]["status"], "success", "{h}");
    });
}
