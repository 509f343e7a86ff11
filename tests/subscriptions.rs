//! Subscriptions (spec §2.9) through the real binary: a service's own feed of events on the
//! paths it may read, long-polled and acknowledged or sent to its webhook; owner-only
//! consumption; buffers that drop their oldest, survive a restart and honour a narrowed
//! policy.

mod common;

use std::time::Duration;

use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};

const HOOK_SECRET: &str = "whsec_receiver_0123456789abcdef";
const SCOPES: &[&str] = &["subscriptions:read", "subscriptions:write"];

/// A service that may read `apps/billing/**` and manage its own subscriptions.
fn billing(dev: &Dev) -> String {
    service_account(
        dev,
        "sa:billing",
        "billing-read",
        "apps/billing/**",
        &["read"],
        SCOPES,
    )
}

fn subscribe(dev: &Dev, token: &str, body: Value) -> String {
    let (s, b) = dev.post("/v1/subscriptions", token, body);
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

fn polling(dev: &Dev, token: &str, paths: Value, extra: Value) -> String {
    let mut body = json!({
        "name": "billing-feed", "paths": paths, "events": ["secret.*"],
        "delivery": {"type": "polling"},
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    subscribe(dev, token, body)
}

fn write(dev: &Dev, path: &str, value: &str) {
    let (s, b) = dev.put(
        &format!("/v1/secrets/{path}"),
        &dev.token,
        json!({"data": {"password": value}}),
    );
    assert!(s == 200 || s == 201, "{s} {b}");
}

fn poll(dev: &Dev, token: &str, id: &str, query: &str) -> Value {
    let (s, b) = dev.get(&format!("/v1/subscriptions/{id}/poll?{query}"), token);
    assert_eq!(s, 200, "{b}");
    b
}

fn paths_of(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event_type"].as_str().unwrap(),
                e["path"].as_str().unwrap()
            )
        })
        .collect()
}

fn ids_of(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_polled_feed_carries_only_readable_paths_until_acknowledged() {
    let dev = Dev::start();
    let token = billing(&dev);
    // `apps/**` is wider than the service may read: what it gets is bounded by its policy.
    let id = polling(&dev, &token, json!(["apps/**"]), json!({}));
    let (_, view) = dev.get(&format!("/v1/subscriptions/{id}"), &token);
    assert_eq!(view["identity_id"], "sa:billing", "{view}");
    assert_eq!(view["status"], "active", "{view}");
    assert_eq!(
        view["delivery"],
        json!({"type": "polling", "buffer_size": 1000, "buffered": 0})
    );

    write(&dev, "apps/billing/db", "pw-ONE-secret");
    write(&dev, "apps/payroll/db", "pw-PAYROLL-secret");
    write(&dev, "apps/billing/db", "pw-TWO-secret");
    write(&dev, "other/billing/db", "pw-OTHER-secret");

    let page = poll(&dev, &token, &id, "timeout=0");
    assert_eq!(
        paths_of(&page),
        [
            "secret.created apps/billing/db",
            "secret.updated apps/billing/db"
        ],
        "{page}"
    );
    assert_eq!(page["has_more"], false);
    let text = page.to_string();
    assert!(!text.contains("pw-"), "an event carries no value: {text}");
    let e = &page["events"][0];
    assert_eq!(e["identity_id"], "user:root", "{e}");
    assert!(e["request_id"].as_str().unwrap().starts_with("req_"), "{e}");
    assert_eq!(e["tenant_id"], "tnt_local", "{e}");

    // Not acknowledged: the next poll (a new connection) gets them again.
    let again = poll(&dev, &token, &id, "timeout=0");
    assert_eq!(ids_of(&again), ids_of(&page));
    // After the first: only the second.
    let first = &ids_of(&page)[0];
    let after = poll(
        &dev,
        &token,
        &id,
        &format!("timeout=0&since_event_id={first}"),
    );
    assert_eq!(ids_of(&after), ids_of(&page)[1..]);
    // One at a time.
    let one = poll(&dev, &token, &id, "timeout=0&max_events=1");
    assert_eq!((ids_of(&one).len(), &one["has_more"]), (1, &json!(true)));

    let (s, b) = dev.post(
        &format!("/v1/subscriptions/{id}/ack"),
        &token,
        json!({"event_ids": ids_of(&page)}),
    );
    assert_eq!((s, &b["acknowledged"]), (200, &json!(2)), "{b}");
    let (s, b) = dev.post(
        &format!("/v1/subscriptions/{id}/ack"),
        &token,
        json!({"event_ids": ids_of(&page)}),
    );
    assert_eq!(
        (s, &b["acknowledged"]),
        (200, &json!(0)),
        "acknowledged twice: {b}"
    );
    // Nothing left: the reference's empty answer, after the timeout.
    let empty = poll(&dev, &token, &id, "timeout=1");
    assert_eq!(empty, json!({"events": [], "has_more": false}));

    // The reads and polls are in the audit log under the reference's action.
    let (_, log) = dev.get("/v1/audit/logs?action=subscription_event", &dev.token);
    assert!(
        log["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["identity_id"] == "sa:billing"),
        "{log}"
    );
}

#[test]
fn a_long_poll_answers_as_soon_as_an_event_is_committed() {
    let dev = Dev::start();
    let token = billing(&dev);
    let id = polling(&dev, &token, json!(["apps/billing/**"]), json!({}));
    std::thread::scope(|s| {
        // The client gives up after 30 s; the poll would wait 60: only a wake-up answers it.
        let waiting = s.spawn(|| poll(&dev, &token, &id, "timeout=60"));
        // Until the poll is registered there is nothing to wake: write once it is waiting
        // (a write before it would be answered at once, which proves nothing but passes).
        assert!(receiver::eventually(Duration::from_secs(10), || {
            dev.metrics()
                .lines()
                .any(|l| l == "scaivault_subscription_polls_waiting 1")
        }));
        write(&dev, "apps/billing/api-key", "k-1");
        let page = waiting.join().unwrap();
        assert_eq!(
            paths_of(&page),
            ["secret.created apps/billing/api-key"],
            "{page}"
        );
    });
}

#[test]
fn only_the_owner_consumes_and_others_are_told_it_does_not_exist() {
    let dev = Dev::start();
    let token = billing(&dev);
    let id = polling(&dev, &token, json!(["apps/billing/**"]), json!({}));
    let other = service_account(
        &dev,
        "sa:payroll",
        "payroll-read",
        "apps/**",
        &["read"],
        SCOPES,
    );
    for (method, path, body) in [
        (
            reqwest::Method::GET,
            format!("/v1/subscriptions/{id}"),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/v1/subscriptions/{id}/poll?timeout=0"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/v1/subscriptions/{id}/ack"),
            Some(json!({"event_ids": []})),
        ),
        (
            reqwest::Method::PATCH,
            format!("/v1/subscriptions/{id}"),
            Some(json!({"paths": ["**"]})),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/subscriptions/{id}"),
            None,
        ),
    ] {
        let (s, b) = dev.req(method.clone(), &path, Some(&other), body);
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (404, Some("subscription_not_found")),
            "{method} {path}: {b}"
        );
    }
    let (_, list) = dev.get("/v1/subscriptions", &other);
    assert_eq!(list["subscriptions"], json!([]), "{list}");

    // An admin sees and manages it, but does not consume another identity's feed.
    let (s, _) = dev.get(&format!("/v1/subscriptions/{id}"), &dev.token);
    assert_eq!(s, 200);
    let (_, list) = dev.get("/v1/subscriptions", &dev.token);
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 1, "{list}");
    let (s, b) = dev.get(
        &format!("/v1/subscriptions/{id}/poll?timeout=0"),
        &dev.token,
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("access_denied")),
        "{b}"
    );

    // Scopes: a token without subscriptions:write creates nothing.
    let reader = service_account(
        &dev,
        "sa:reader",
        "reader-read",
        "apps/**",
        &["read"],
        &["subscriptions:read", "secrets:read"],
    );
    let (s, b) = dev.post(
        "/v1/subscriptions",
        &reader,
        json!({"name": "x", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "polling"}}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{b}"
    );

    // The webhook API neither lists nor changes subscriptions.
    let (_, hooks) = dev.get("/v1/webhooks", &dev.token);
    assert_eq!(hooks["webhooks"], json!([]), "{hooks}");
    let (s, _) = dev.get(&format!("/v1/webhooks/{id}"), &dev.token);
    assert_eq!(s, 404);
    let (s, b) = dev.req(
        reqwest::Method::DELETE,
        &format!("/v1/subscriptions/{id}"),
        Some(&token),
        None,
    );
    assert_eq!(s, 204, "{b}");
    let (s, _) = dev.get(&format!("/v1/subscriptions/{id}"), &token);
    assert_eq!(s, 404);
}

#[test]
fn a_narrowed_policy_holds_back_what_was_queued() {
    let dev = Dev::start();
    let token = billing(&dev);
    let id = polling(&dev, &token, json!(["apps/billing/**"]), json!({}));
    write(&dev, "apps/billing/db", "v1");
    assert_eq!(paths_of(&poll(&dev, &token, &id, "timeout=0")).len(), 1);
    // The policy goes: the queued event is no longer handed out, and new ones are not queued.
    let (s, b) = dev.req(
        reqwest::Method::DELETE,
        "/v1/policies/billing-read?force=true",
        Some(&dev.token),
        None,
    );
    assert!(s == 200 || s == 204, "{s} {b}");
    write(&dev, "apps/billing/db", "v2");
    assert_eq!(poll(&dev, &token, &id, "timeout=0")["events"], json!([]));
    let (_, view) = dev.get(&format!("/v1/subscriptions/{id}"), &token);
    assert_eq!(
        view["delivery"]["buffered"], 1,
        "only the first was queued: {view}"
    );
}

#[test]
fn a_full_buffer_drops_its_oldest_and_a_restart_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let env = [("SCAIVAULT_PASSPHRASE", PASS)];
    let (mut child, url) = server(&vault, &[], &env);
    let dev_like = |url: &str| Dev {
        child: std::process::Command::new("true").spawn().unwrap(),
        url: url.to_owned(),
        token: root.clone(),
        vault: vault.clone(),
        http: http(),
    };
    let dev = dev_like(&url);
    let token = billing(&dev);
    let id = polling(
        &dev,
        &token,
        json!(["apps/billing/*"]),
        json!({"delivery": {"type": "polling", "buffer_size": 2}}),
    );
    for n in ["a", "b", "c"] {
        write(&dev, &format!("apps/billing/{n}"), "x");
    }
    let page = poll(&dev, &token, &id, "timeout=0");
    assert_eq!(
        paths_of(&page),
        [
            "secret.created apps/billing/b",
            "secret.created apps/billing/c"
        ],
        "the oldest was dropped: {page}"
    );
    let (s, _) = dev.post(
        &format!("/v1/subscriptions/{id}/ack"),
        &token,
        json!({"event_ids": [ids_of(&page)[0]]}),
    );
    assert_eq!(s, 200);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, url) = server(&vault, &[], &env);
    let dev = dev_like(&url);
    let page = poll(&dev, &token, &id, "timeout=0");
    assert_eq!(
        paths_of(&page),
        ["secret.created apps/billing/c"],
        "after kill -9: the unacknowledged event, not the acknowledged or dropped ones: {page}"
    );
    // A shrunken buffer drops at once, and for good: grown again and restarted, it does not
    // get back what it dropped.
    for n in ["d", "e"] {
        write(&dev, &format!("apps/billing/{n}"), "x");
    }
    for body in [
        json!({"delivery": {"buffer_size": 1}, "paths": ["apps/billing/**"]}),
        json!({"delivery": {"buffer_size": 10}}),
    ] {
        let (s, b) = dev.req(
            reqwest::Method::PATCH,
            &format!("/v1/subscriptions/{id}"),
            Some(&token),
            Some(body),
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["paths"], json!(["apps/billing/**"]));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, url) = server(&vault, &[], &env);
    let dev = dev_like(&url);
    let page = poll(&dev, &token, &id, "timeout=0");
    assert_eq!(paths_of(&page), ["secret.created apps/billing/e"], "{page}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn webhook_delivery_is_signed_and_bounded_by_the_owners_policy() {
    let r = Receiver::start(HOOK_SECRET);
    let allow = format!("127.0.0.1:{}", r.port);
    let dev = Dev::start_with(&["--allow-host", &allow]);
    let token = billing(&dev);
    let id = subscribe(
        &dev,
        &token,
        json!({
            "name": "billing-hook", "paths": ["apps/**"], "events": ["secret.created"],
            "delivery": {"type": "webhook", "url": r.url, "secret": HOOK_SECRET},
        }),
    );
    let (_, view) = dev.get(&format!("/v1/subscriptions/{id}"), &token);
    assert!(!view.to_string().contains(HOOK_SECRET), "{view}");
    write(&dev, "apps/payroll/db", "x");
    write(&dev, "apps/billing/db", "y");
    assert!(receiver::eventually(Duration::from_secs(20), || !r
        .deliveries()
        .is_empty()));
    // Delivered in order: had payroll's been sent, it would have come first.
    let d = r.deliveries();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].signature_ok);
    assert_eq!(d[0].body["path"], "apps/billing/db", "{:?}", d[0].body);

    // Not a webhook a rotation policy may target.
    let (s, b) = dev.post(
        "/v1/rotation/policies",
        &dev.token,
        json!({"name": "r", "interval": "30d", "webhook_ids": [id]}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("webhook_not_found")),
        "{b}"
    );
    // A polling subscription's delivery cannot be swapped for a URL.
    let (s, b) = dev.req(
        reqwest::Method::PATCH,
        &format!("/v1/subscriptions/{id}"),
        Some(&token),
        Some(json!({"delivery": {"type": "polling"}})),
    );
    assert_eq!(s, 422, "{b}");
    let (s, b) = dev.get(&format!("/v1/subscriptions/{id}/poll?timeout=0"), &token);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
}

#[test]
fn bad_subscriptions_are_refused_and_long_polls_are_bounded() {
    let dev = Dev::start_with(&["--allow-host", "127.0.0.1:9"]);
    let token = billing(&dev);
    for (body, status, field) in [
        (
            json!({"paths": ["apps/**"], "events": ["*"], "delivery": {"type": "polling"}}),
            422,
            "name",
        ),
        (
            json!({"name": "n", "paths": [], "events": ["*"], "delivery": {"type": "polling"}}),
            422,
            "paths",
        ),
        (
            json!({"name": "n", "paths": ["apps/**x"], "events": ["*"], "delivery": {"type": "polling"}}),
            400,
            "",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["secret.nope"], "delivery": {"type": "polling"}}),
            422,
            "events",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"]}),
            422,
            "delivery",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "email"}}),
            422,
            "delivery.type",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "polling", "buffer_size": 0}}),
            422,
            "delivery.buffer_size",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "polling", "buffer_size": 10001}}),
            422,
            "delivery.buffer_size",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "webhook", "url": "http://example.com/", "secret": HOOK_SECRET}}),
            422,
            "delivery.url",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "polling"}, "owner": "sa:other"}),
            400,
            "",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["policy.violation"], "delivery": {"type": "polling"}}),
            422,
            "events",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["secret.accessed"], "delivery": {"type": "polling"}}),
            422,
            "events",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["policy.*"], "delivery": {"type": "polling"}}),
            422,
            "events",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "webhook", "url": "http://u:p@127.0.0.1:9/", "secret": HOOK_SECRET}}),
            422,
            "delivery.url",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "filters": {"tags": vec!["t"; 21]}, "delivery": {"type": "polling"}}),
            422,
            "filters.tags",
        ),
        (
            json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "WEBHOOK"}}),
            422,
            "delivery.type",
        ),
    ] {
        let (s, b) = dev.post("/v1/subscriptions", &token, body.clone());
        assert_eq!(s, status, "{body}: {b}");
        if !field.is_empty() {
            assert!(
                b["error"]["details"]["fields"].get(field).is_some(),
                "{body}: {b}"
            );
        }
    }
    let (_, list) = dev.get("/v1/subscriptions", &token);
    assert_eq!(
        list["subscriptions"],
        json!([]),
        "nothing was created: {list}"
    );

    let id = polling(&dev, &token, json!(["apps/billing/**"]), json!({}));
    for q in [
        "timeout=61",
        "max_events=0",
        "max_events=1001",
        "since=evt_1",
    ] {
        let (s, b) = dev.get(&format!("/v1/subscriptions/{id}/poll?{q}"), &token);
        assert_eq!(s, 400, "{q}: {b}");
    }
    // Four long-polls at once per identity; a fifth is told to come back.
    std::thread::scope(|s| {
        let waiting: Vec<_> = (0..4)
            .map(|_| s.spawn(|| poll(&dev, &token, &id, "timeout=60")))
            .collect();
        assert!(receiver::eventually(Duration::from_secs(10), || {
            dev.metrics()
                .lines()
                .any(|l| l == "scaivault_subscription_polls_waiting 4")
        }));
        let (st, b) = dev.get(&format!("/v1/subscriptions/{id}/poll?timeout=0"), &token);
        assert_eq!(
            (st, b["error"]["code"].as_str()),
            (429, Some("rate_limited")),
            "{b}"
        );
        write(&dev, "apps/billing/db", "x");
        for w in waiting {
            assert_eq!(
                paths_of(&w.join().unwrap()),
                ["secret.created apps/billing/db"]
            );
        }
    });
    // Per identity: at most 20.
    for n in 1..20 {
        polling(
            &dev,
            &token,
            json!([format!("apps/billing/{n}")]),
            json!({}),
        );
    }
    let (s, b) = dev.post(
        "/v1/subscriptions",
        &token,
        json!({"name": "n", "paths": ["apps/**"], "events": ["*"], "delivery": {"type": "polling"}}),
    );
    assert_eq!(s, 422, "{b}");
}

#[test]
fn a_waiting_poll_ends_with_its_token_and_with_the_server() {
    let dev = Dev::start();
    let token = billing(&dev);
    let id = polling(&dev, &token, json!(["apps/billing/**"]), json!({}));
    let waiting = |n: usize| {
        assert!(receiver::eventually(Duration::from_secs(10), || {
            dev.metrics()
                .lines()
                .any(|l| l == format!("scaivault_subscription_polls_waiting {n}"))
        }));
    };
    // Revoked while it waits: the event raised afterwards is not handed out.
    let (_, who) = dev.get("/v1/auth/whoami", &token);
    let token_id = who["token_id"]
        .as_str()
        .expect("whoami names its token")
        .to_owned();
    std::thread::scope(|s| {
        let poll = s.spawn(|| dev.get(&format!("/v1/subscriptions/{id}/poll?timeout=60"), &token));
        waiting(1);
        let (st, b) = dev.req(
            reqwest::Method::DELETE,
            &format!("/v1/auth/tokens/{token_id}"),
            Some(&dev.token),
            None,
        );
        assert!(st == 200 || st == 204, "{st} {b}");
        write(&dev, "apps/billing/after-revocation", "x");
        let (st, b) = poll.join().unwrap();
        assert_eq!(
            (st, b["error"]["code"].as_str()),
            (401, Some("token_revoked")),
            "{b}"
        );
    });

    // A server shutting down answers its waiting polls (empty) instead of cutting them off.
    let fresh = {
        let (s, t) = dev.post(
            "/v1/auth/tokens",
            &dev.token,
            json!({"identity_id": "sa:billing", "scopes": SCOPES, "ttl": "1h"}),
        );
        assert_eq!(s, 201, "{t}");
        t["token"].as_str().unwrap().to_owned()
    };
    // (The event raised after the revocation waits in the buffer for the identity's next token.)
    let held = poll(&dev, &fresh, &id, "timeout=0");
    assert_eq!(
        paths_of(&held),
        ["secret.created apps/billing/after-revocation"]
    );
    let (s, _) = dev.post(
        &format!("/v1/subscriptions/{id}/ack"),
        &fresh,
        json!({"event_ids": ids_of(&held)}),
    );
    assert_eq!(s, 200);
    let url = format!("{}/v1/subscriptions/{id}/poll?timeout=60", dev.url);
    let poll = std::thread::spawn(move || {
        let r = http()
            .get(url)
            .bearer_auth(fresh)
            .send()
            .expect("an answer, not a cut connection");
        (r.status().as_u16(), r.json::<Value>().unwrap())
    });
    waiting(1);
    dev.terminate();
    let (st, b) = poll.join().unwrap();
    assert_eq!((st, b), (200, json!({"events": [], "has_more": false})));
}
