//! Webhooks through the real binary: subscriptions with filters, signed deliveries that carry
//! no secret value, the delivery log, retries on the engine's clock, the test event, signing
//! secret rotation with an overlap, and the outbound allow-list.

mod common;

use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "whsec_receiver_0123456789abcdef";

fn wait_for_deliveries(r: &Receiver, n: usize) -> Vec<common::receiver::Delivery> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = r.deliveries();
        if d.len() >= n || Instant::now() > deadline {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The delivery log once its newest entry satisfies `done` (it is written just after each
/// attempt), or as it is after 10 s.
fn wait_for_log(dev: &Dev, id: &str, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, log) = dev.get(&format!("/v1/webhooks/{id}/deliveries{query}"), &dev.token);
        if done(&log["deliveries"][0]) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A counter or gauge from `/v1/metrics`.
fn metric(dev: &Dev, name: &str) -> u64 {
    dev.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

/// Waits until every delivery the server queued has been attempted and recorded: a change
/// queues its deliveries in its own transaction, so once its request has answered, nothing
/// pending means nothing more is coming for it.
fn settled(dev: &Dev) {
    assert!(
        common::receiver::eventually(Duration::from_secs(20), || metric(
            dev,
            "scaivault_webhook_deliveries_pending"
        ) == 0),
        "deliveries still pending"
    );
}

/// Waits until the delivery worker has looked for due deliveries at least once after this
/// call, and nothing it started is still being sent.
fn one_more_pass(dev: &Dev) {
    let before = metric(dev, "scaivault_webhook_delivery_passes_total");
    assert!(common::receiver::eventually(
        Duration::from_secs(20),
        || {
            metric(dev, "scaivault_webhook_delivery_passes_total") >= before + 2
                && metric(dev, "scaivault_webhook_deliveries_in_flight") == 0
        }
    ));
}

fn start(r: &Receiver) -> Dev {
    let allow = format!("127.0.0.1:{}", r.port);
    Dev::start_with(&["--test-clock", "--allow-host", &allow])
}

fn create_hook(dev: &Dev, r: &Receiver, events: Value, filters: Value) -> String {
    let (s, b) = dev.post("/v1/webhooks", &dev.token, json!({
        "name": "billing-watch", "url": r.url, "secret": SECRET, "events": events, "filters": filters,
    }));
    assert_eq!(s, 201, "{b}");
    assert!(
        b.get("secret").is_none() && !b.to_string().contains(SECRET),
        "{b}"
    );
    b["id"].as_str().unwrap().to_owned()
}

#[test]
fn secret_events_are_delivered_signed_filtered_and_without_values() {
    let r = Receiver::start(SECRET);
    let dev = start(&r);
    let id = create_hook(
        &dev,
        &r,
        json!(["secret.*"]),
        json!({"path_prefix": "environments/production/"}),
    );

    let (s, _) = dev.put(
        "/v1/secrets/environments/production/billing/stripe",
        &dev.token,
        json!({"data": {"secret_key": "sk_live_TOPSECRET"}, "metadata": {"tags": ["billing"]}}),
    );
    assert_eq!(s, 201);
    dev.put(
        "/v1/secrets/environments/staging/billing/stripe",
        &dev.token,
        json!({"data": {"secret_key": "sk_test_x"}}),
    );
    dev.put(
        "/v1/secrets/environments/production/billing/stripe",
        &dev.token,
        json!({"data": {"secret_key": "sk_live_NEXT"}}),
    );
    let (s, _) = dev.req(
        reqwest::Method::DELETE,
        "/v1/secrets/environments/production/billing/stripe",
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 200);

    let got = wait_for_deliveries(&r, 3);
    let types: Vec<&str> = got.iter().map(|d| d.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["secret.created", "secret.updated", "secret.deleted"],
        "staging is filtered out"
    );
    for d in &got {
        assert!(d.signature_ok && !d.via_previous, "{d:?}");
        assert_eq!(d.status, 200);
        assert_eq!(d.body["path"], "environments/production/billing/stripe");
        // The reference's envelope: tenancy, and the request that raised the event.
        assert_eq!(
            (d.body["tenant_id"].as_str(), d.body["partner_id"].as_str()),
            (Some("tnt_local"), Some("ptn_local"))
        );
        assert!(
            d.body["request_id"]
                .as_str()
                .is_some_and(|r| r.starts_with("req_")),
            "{}",
            d.body
        );
        assert_eq!(
            d.headers["x-scaivault-event-id"],
            d.body["event_id"].as_str().unwrap()
        );
        let text = d.body.to_string();
        assert!(
            !text.contains("TOPSECRET") && !text.contains("NEXT"),
            "a value leaked: {text}"
        );
    }
    assert_eq!(got[0].body["data"]["version"], 1);
    assert_eq!(got[0].body["data"]["tags"], json!(["billing"]));
    assert_eq!(got[1].body["data"]["new_version"], 2);

    // Each log entry is written just after its answer: wait for the third.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let (_, log) = dev.get(
            &format!("/v1/webhooks/{id}/deliveries?status=success"),
            &dev.token,
        );
        if log["deliveries"].as_array().unwrap().len() == 3 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(log["deliveries"].as_array().unwrap().len(), 3, "{log}");
    let (_, hook) = dev.get(&format!("/v1/webhooks/{id}"), &dev.token);
    assert_eq!(hook["statistics"]["deliveries_24h"], 3);
    assert_eq!(hook["status"], "healthy");
    assert!(!hook.to_string().contains(SECRET));

    // The test event, synchronously.
    let (s, t) = dev.post(&format!("/v1/webhooks/{id}/test"), &dev.token, json!({}));
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        (t["status"].as_str(), t["response_code"].as_u64()),
        (Some("success"), Some(200))
    );
}

#[test]
fn failed_deliveries_are_retried_with_backoff_and_logged() {
    let r = Receiver::start(SECRET);
    let dev = start(&r);
    let id = create_hook(&dev, &r, json!(["secret.created"]), json!({}));
    r.force("secret.created", Some(503));
    dev.put(
        "/v1/secrets/apps/one",
        &dev.token,
        json!({"data": {"k": "v"}}),
    );
    wait_for_deliveries(&r, 1);
    let log = wait_for_log(&dev, &id, "?status=pending", |d| d["attempts"] == 1);
    let d = &log["deliveries"][0];
    assert_eq!(
        (d["attempts"].as_u64(), d["response_code"].as_u64()),
        (Some(1), Some(503)),
        "{log}"
    );
    // Not retried before its time, then retried once the clock passes it.
    one_more_pass(&dev);
    assert_eq!(r.deliveries().len(), 1);
    r.force("secret.created", None);
    let (s, b) = dev.post("/v1/sys/test/clock", &dev.token, json!({"advance": "1m"}));
    assert_eq!(s, 200, "{b}");
    let got = wait_for_deliveries(&r, 2);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].body["event_id"], got[1].body["event_id"],
        "a retry is the same event"
    );
    let log = wait_for_log(&dev, &id, "", |d| d["status"] == "success");
    assert_eq!(log["deliveries"][0]["status"], "success", "{log}");
    assert_eq!(log["deliveries"][0]["attempts"], 2);
}

#[test]
fn a_new_signing_secret_overlaps_with_the_old_one_for_its_ttl() {
    let r = Receiver::start(SECRET); // the receiver still knows only the old secret
    let dev = start(&r);
    let id = create_hook(&dev, &r, json!(["secret.created"]), json!({}));
    let (s, b) = dev.req(
        reqwest::Method::PATCH,
        &format!("/v1/webhooks/{id}"),
        Some(&dev.token),
        Some(json!({"secret": "whsec_the_new_one_0123456789", "previous_secret_ttl": "24h"})),
    );
    assert_eq!(s, 200, "{b}");
    assert!(b["previous_secret_expires_at"].is_string());
    dev.put(
        "/v1/secrets/apps/a",
        &dev.token,
        json!({"data": {"k": "v"}}),
    );
    let got = wait_for_deliveries(&r, 1);
    assert!(got[0].signature_ok && got[0].via_previous, "{:?}", got[0]);
    // After the TTL only the new secret signs: this receiver can no longer verify.
    dev.post("/v1/sys/test/clock", &dev.token, json!({"advance": "25h"}));
    dev.put(
        "/v1/secrets/apps/b",
        &dev.token,
        json!({"data": {"k": "v"}}),
    );
    let got = wait_for_deliveries(&r, 2);
    assert!(!got[1].signature_ok, "{:?}", got[1]);
}

#[test]
fn bad_webhooks_are_refused() {
    let r = Receiver::start(SECRET);
    let dev = start(&r);
    let cases = [
        (
            json!({"name": "x", "url": "http://10.0.0.8/hook", "secret": SECRET, "events": ["secret.created"]}),
            "url",
        ),
        (
            json!({"name": "x", "url": "https://example.com/hook", "secret": SECRET, "events": ["secret.created"]}),
            "url",
        ),
        (
            json!({"name": "x", "url": r.url, "secret": "short", "events": ["secret.created"]}),
            "secret",
        ),
        (
            json!({"name": "x", "url": r.url, "secret": SECRET, "events": ["secret.exploded"]}),
            "events",
        ),
        (
            json!({"name": "x", "url": r.url, "secret": SECRET, "events": []}),
            "events",
        ),
    ];
    for (body, field) in cases {
        let (s, b) = dev.post("/v1/webhooks", &dev.token, body.clone());
        assert_eq!(s, 422, "{body} → {b}");
        assert!(b["error"]["details"]["fields"][field].is_string(), "{b}");
    }
    let (_, list) = dev.get("/v1/webhooks", &dev.token);
    assert_eq!(list["webhooks"], json!([]), "nothing was created");
    let (s, b) = dev.get("/v1/webhooks/wh_nope", &dev.token);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("webhook_not_found"))
    );
}

#[test]
fn rotation_events_reach_the_policy_webhooks() {
    let r = Receiver::start(SECRET);
    let dev = start(&r);
    let id = create_hook(&dev, &r, json!(["policy.created"]), json!({}));
    dev.put(
        "/v1/secrets/apps/db",
        &dev.token,
        json!({"data": {"password": "p0"}}),
    );
    let (s, b) = dev.post("/v1/rotation/policies", &dev.token, json!({
        "name": "manual", "interval": "30d", "grace_period": "1d", "warn_before": "7d,1d", "webhook_ids": [id]}));
    assert_eq!(s, 201, "{b}");
    let (s, b) = dev.post(
        "/v1/rotation/policies/rot_manual/secrets",
        &dev.token,
        json!({"secret_path": "apps/db"}),
    );
    assert!(s == 200 || s == 201, "{b}");
    // Day 24: 7 days before; day 29: 1 day before; day 30: due; day 31: the grace day is
    // over; day 32: nothing new.
    for step in ["24d", "5d", "1d", "1d", "1d"] {
        dev.post("/v1/sys/test/clock", &dev.token, json!({"advance": step}));
    }
    let got = wait_for_deliveries(&r, 4);
    let seen: Vec<(String, Value)> = got
        .iter()
        .map(|d| (d.event_type.clone(), d.body["data"].clone()))
        .collect();
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "rotation.due",
            "rotation.due",
            "rotation.due",
            "rotation.overdue"
        ],
        "{seen:?}"
    );
    assert_eq!(seen[0].1["threshold"], "7d");
    assert_eq!(seen[1].1["threshold"], "1d");
    assert_eq!(seen[2].1["due_now"], true);
    // A PUT is the rotation: `secret.rotated` to the policy's webhooks (made by the client,
    // not generated), a new cycle, and no more notices for the old one.
    dev.put(
        "/v1/secrets/apps/db",
        &dev.token,
        json!({"data": {"password": "p1"}}),
    );
    dev.post("/v1/sys/test/clock", &dev.token, json!({"advance": "1d"}));
    settled(&dev);
    let got = r.deliveries();
    assert_eq!(
        got.len(),
        5,
        "{:?}",
        got.iter().map(|d| &d.event_type).collect::<Vec<_>>()
    );
    let rotated = &got[4];
    assert_eq!(rotated.event_type, "secret.rotated");
    let d = &rotated.body["data"];
    assert_eq!(
        (
            &d["old_version"],
            &d["new_version"],
            &d["rotation_policy_id"],
            &d["auto_generated"]
        ),
        (&json!(1), &json!(2), &json!("rot_manual"), &json!(false)),
        "{d}"
    );
    assert!(d["grace_period_ends"].is_string(), "{d}");
    assert_eq!(rotated.body["identity_id"], "user:root");
    assert!(!rotated.body.to_string().contains("p1"));
}

/// Policy changes raise their events from the same transaction as the change: a refused
/// change raises none. A binding made or removed is announced as such.
#[test]
fn policy_changes_are_announced() {
    let r = Receiver::start(SECRET);
    let dev = start(&r);
    create_hook(&dev, &r, json!(["policy.*"]), json!({}));
    let rules = json!([{"path_pattern": "infra/**", "permissions": ["read"]}]);
    let (s, p) = dev.post(
        "/v1/policies",
        &dev.token,
        json!({"name": "sre", "rules": rules}),
    );
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, _) = dev.post(
        "/v1/policies",
        &dev.token,
        json!({"name": "sre", "rules": rules}),
    );
    assert_eq!(s, 409, "a duplicate name is refused");
    let (s, _) = dev.req(
        reqwest::Method::PATCH,
        &format!("/v1/policies/{id}"),
        Some(&dev.token),
        Some(json!({"description": "on-call"})),
    );
    assert_eq!(s, 200);
    let (s, b) = dev.post(
        &format!("/v1/policies/{id}/bindings"),
        &dev.token,
        json!({"identity_id": "sa:pager"}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, _) = dev.req(
        reqwest::Method::DELETE,
        &format!("/v1/policies/{id}/bindings/sa:pager"),
        Some(&dev.token),
        None,
    );
    assert!(s == 200 || s == 204, "{s}");
    let (s, _) = dev.req(
        reqwest::Method::DELETE,
        &format!("/v1/policies/{id}"),
        Some(&dev.token),
        None,
    );
    assert!(s == 200 || s == 204, "{s}");
    let got = wait_for_deliveries(&r, 5);
    settled(&dev);
    let got_more = r.deliveries();
    assert_eq!(got.len(), got_more.len(), "more deliveries than changes");
    let mut seen: Vec<(String, Value)> = got
        .iter()
        .map(|d| (d.event_type.clone(), d.body["data"].clone()))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "policy.binding.created",
            "policy.binding.deleted",
            "policy.created",
            "policy.deleted",
            "policy.updated"
        ],
        "{seen:?}"
    );
    for (_, data) in &seen {
        assert_eq!(data["policy_id"], id.as_str());
        assert_eq!(data["name"], "sre");
    }
    for (_, data) in &seen[..2] {
        assert_eq!(data["binding_id"], b["id"]);
        assert_eq!(data["identity_id"], "sa:pager");
        assert_eq!(data["identity_type"], "service_account");
    }
}

/// Expiring secrets announce themselves at the tightest `notify_before` threshold they have
/// reached (default 30d, 7d, 1d), then once when they expire; each notice once.
#[test]
fn expiring_secrets_are_announced_once_per_threshold() {
    let r = Receiver::start(SECRET);
    let dev = start(&r);
    create_hook(
        &dev,
        &r,
        json!(["secret.expiring", "secret.expired"]),
        json!({}),
    );
    let put = |path: &str, body: Value| {
        let (s, b) = dev.put(&format!("/v1/secrets/{path}"), &dev.token, body);
        assert_eq!(s, 201, "{b}");
    };
    put(
        "tls/a",
        json!({"data": {"k": "v"}, "options": {"expires_in": "10d"}}),
    );
    put(
        "tls/b",
        json!({"data": {"k": "v"}, "metadata": {"notify_before": "3d"}, "options": {"expires_in": "5d"}}),
    );
    put("tls/forever", json!({"data": {"k": "v"}}));
    let (s, b) = dev.put(
        "/v1/secrets/tls/c",
        &dev.token,
        json!({"data": {"k": "v"}, "metadata": {"notify_before": "soon"}}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("validation_error"))
    );

    for step in ["1s", "4d", "7d", "1d"] {
        dev.post("/v1/sys/test/clock", &dev.token, json!({"advance": step}));
    }
    let got = wait_for_deliveries(&r, 5);
    settled(&dev);
    assert_eq!(r.deliveries().len(), 5, "a notice was sent twice");
    let seen: Vec<(String, String, Value)> = got
        .iter()
        .map(|d| {
            (
                d.event_type.clone(),
                d.body["path"].as_str().unwrap_or_default().to_owned(),
                d.body["data"].clone(),
            )
        })
        .collect();
    let summary: Vec<(String, String, String)> = seen
        .iter()
        .map(|(t, p, d)| {
            (
                t.clone(),
                p.clone(),
                d["threshold"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("secret.expiring", "tls/a", "30d"),
        ("secret.expiring", "tls/a", "7d"),
        ("secret.expiring", "tls/b", "3d"),
        ("secret.expired", "tls/a", "-"),
        ("secret.expired", "tls/b", "-"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    let mut sorted = summary.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted, "{summary:?}");
    let a7 = seen
        .iter()
        .find(|(t, p, d)| t == "secret.expiring" && p == "tls/a" && d["threshold"] == "7d")
        .unwrap();
    assert_eq!(a7.2["days_remaining"], 5);
    assert!(a7.2["expires_at"].as_str().unwrap().ends_with('Z'));
}

/// `secret.accessed` reaches the webhooks that ask for it by name (a canary secret's
/// watcher): per read, batch reads included, never with the value, and not through `*` or
/// `secret.*`, which would otherwise turn every read into a delivery.
#[test]
fn reads_are_announced_only_to_webhooks_that_ask_by_name() {
    let r = Receiver::start(SECRET);
    let dev = start(&r);
    create_hook(
        &dev,
        &r,
        json!(["secret.accessed"]),
        json!({"path_prefix": "canary/"}),
    );
    create_hook(&dev, &r, json!(["*", "secret.*"]), json!({}));
    for p in ["canary/aws-key", "apps/db"] {
        let (s, _) = dev.put(
            &format!("/v1/secrets/{p}"),
            &dev.token,
            json!({"data": {"key": "canary-value-123"}}),
        );
        assert_eq!(s, 201);
    }
    let before = wait_for_deliveries(&r, 2).len();
    assert_eq!(before, 2, "the catch-all hook hears the two writes");
    let (s, _) = dev.get("/v1/secrets/canary/aws-key", &dev.token);
    assert_eq!(s, 200);
    let (s, _) = dev.get("/v1/secrets/apps/db", &dev.token);
    assert_eq!(s, 200);
    let (s, _) = dev.get("/v1/secrets/canary/missing", &dev.token);
    assert_eq!(s, 404);
    let (s, b) = dev.post(
        "/v1/secrets/batch",
        &dev.token,
        json!({"paths": ["canary/aws-key", "apps/db"]}),
    );
    assert_eq!(s, 200, "{b}");
    let got = wait_for_deliveries(&r, before + 2);
    settled(&dev);
    let got_more = r.deliveries();
    assert_eq!(
        got.len(),
        got_more.len(),
        "{:?}",
        got_more.iter().map(|d| &d.event_type).collect::<Vec<_>>()
    );
    let accessed: Vec<&common::receiver::Delivery> = got_more
        .iter()
        .filter(|d| d.event_type == "secret.accessed")
        .collect();
    assert_eq!(accessed.len(), 2, "the canary's two reads, nothing else");
    for d in &accessed {
        assert_eq!(d.body["path"], "canary/aws-key");
        assert_eq!(d.body["identity_id"], "user:root");
        assert_eq!(d.body["data"]["version"], 1);
        assert!(d.body["request_id"].as_str().unwrap().starts_with("req_"));
        assert!(!d.body.to_string().contains("canary-value-123"));
    }
    assert_eq!(accessed[1].body["data"]["batch"], true);
}

/// Issue #18: a webhook whose endpoint holds its delivery (a dead system, up to the request
/// timeout) holds up no other webhook's deliveries.
#[test]
fn a_stalled_endpoint_holds_up_no_other_webhook() {
    let r = Receiver::start(SECRET);
    let stall = common::receiver::Stall::start();
    let dev = Dev::start_with(&[
        "--test-clock",
        "--allow-host",
        &format!("127.0.0.1:{}", r.port),
        "--allow-host",
        &format!("127.0.0.1:{}", stall.port),
    ]);
    let (s, b) = dev.post(
        "/v1/webhooks",
        &dev.token,
        json!({
            "name": "stalled", "url": stall.url, "secret": SECRET, "events": ["secret.created"],
            "filters": {"path_prefix": "a/"},
        }),
    );
    assert_eq!(s, 201, "{b}");
    create_hook(
        &dev,
        &r,
        json!(["secret.created"]),
        json!({"path_prefix": "b/"}),
    );
    // The stalled webhook's delivery is queued first.
    dev.put("/v1/secrets/a/one", &dev.token, json!({"data": {"k": "v"}}));
    stall.wait_for_arrival();
    dev.put("/v1/secrets/b/one", &dev.token, json!({"data": {"k": "v"}}));
    let got = wait_for_deliveries(&r, 1);
    assert_eq!(got.len(), 1, "the other webhook waited for the stalled one");
    assert_eq!(got[0].body["path"], "b/one");
    stall.release();
    settled(&dev);
}

/// Every denial raises `policy.violation` (the reference's rule): the refused action, the
/// code and the path, with the request's id, and never a value; a request allowed raises none.
#[test]
fn denials_raise_policy_violation() {
    let r = Receiver::start(SECRET);
    let dev = start(&r);
    create_hook(&dev, &r, json!(["policy.violation"]), json!({}));
    dev.put(
        "/v1/secrets/other/db",
        &dev.token,
        json!({"data": {"password": "other-value-1"}}),
    );
    dev.put(
        "/v1/secrets/app/db",
        &dev.token,
        json!({"data": {"password": "app-value-1"}}),
    );
    // A catch-all hook does not get them: any token holder can make refusals by the thousand.
    create_hook(&dev, &r, json!(["*", "policy.*"]), json!({}));
    let sa = service_account(
        &dev,
        "sa:narrow",
        "narrow",
        "app/**",
        &["read"],
        &["secrets:read"],
    );
    let (s, _) = dev.get("/v1/secrets/app/db", &sa);
    assert_eq!(s, 200);
    let (s, _) = dev.get("/v1/secrets/other/db", &sa);
    assert_eq!(s, 403);
    let (s, _) = dev.put(
        "/v1/secrets/app/db",
        &sa,
        json!({"data": {"password": "x"}}),
    );
    assert_eq!(s, 403);
    let got = wait_for_deliveries(&r, 2);
    settled(&dev);
    let got = if got.len() < r.deliveries().len() {
        r.deliveries()
    } else {
        got
    };
    let got: Vec<_> = got
        .into_iter()
        .filter(|d| d.event_type == "policy.violation")
        .collect();
    let seen: Vec<(String, Value, Value)> = got
        .iter()
        .map(|d| {
            (
                d.event_type.clone(),
                d.body["path"].clone(),
                d.body["data"]["code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "policy.violation".to_owned(),
                json!("other/db"),
                json!("access_denied")
            ),
            (
                "policy.violation".to_owned(),
                json!("app/db"),
                json!("insufficient_scope")
            ),
        ]
    );
    for d in &got {
        assert_eq!(d.body["identity_id"], "sa:narrow");
        assert!(d.body["request_id"].as_str().unwrap().starts_with("req_"));
        assert!(!d.body.to_string().contains("value-1"));
    }
}
