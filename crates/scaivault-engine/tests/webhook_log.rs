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
    hook["id"].as_str().unwrap().to_owned()
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
        e.write_secrets(root, writes).await.unwrap();
        // Every attempt fails; move the clock past each retry until all have given up.
        for _ in 0..8 {
            while e.deliver_pending().await.unwrap() > 0 {}
            clock.advance(std::time::Duration::from_secs(7 * 3600));
        }

        let log = e
            .list_deliveries(root, &id, None, Some(1000), None)
            .unwrap();
        let page = log["deliveries"].as_array().unwrap();
        assert_eq!(page.len(), 1000);
        assert_eq!(log["has_more"], false, "the oldest five were pruned");
        assert!(page.iter().all(|d| d["status"] == "failed"));
        let records = |v: &Vault| v.stats().unwrap().records["webhooks"];
        assert_eq!(records(vault), 1001, "1000 deliveries and the webhook");

        // Pages walk the same log, newest first.
        let first = e.list_deliveries(root, &id, None, Some(400), None).unwrap();
        let cursor = first["cursor"].as_str().unwrap().to_owned();
        let second = e
            .list_deliveries(root, &id, Some("failed"), Some(1000), Some(&cursor))
            .unwrap();
        assert_eq!(second["deliveries"].as_array().unwrap().len(), 600);
        assert_eq!(first["deliveries"][0], page[0]);
        assert_eq!(second["deliveries"][0], page[400]);
        let stats = e.get_webhook(root, &id).unwrap();
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
