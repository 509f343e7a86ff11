//! A vault on PostgreSQL (issue #21): `init` and `server` with `--storage postgresql://…`
//! against a real PostgreSQL server started by the test. The database holds what the file
//! would — blinded keys and sealed records — and nothing readable; a node that restarts or
//! loses its database recovers; several nodes serve one vault, each seeing the others'
//! changes from the next request on, with one audit chain and one leader.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::postgres::Postgres;
use common::*;
use serde_json::{Value, json};

const DISTINCT: &[&str] = &[
    "zebrafinch-ledger",   // a path segment
    "tag-ultramarine",     // a tag
    "sa:orchid-reporter",  // an identity
    "s3cr3t-VALUE-quokka", // a value
    "policy-heliotrope",   // a policy name
];

fn init(storage: &str) -> Value {
    let out = cli_env(
        &[
            "init",
            "--json",
            "--kdf-memory-mib",
            "19",
            "--kdf-passes",
            "2",
        ],
        &[
            ("SCAIVAULT_STORAGE", storage),
            ("SCAIVAULT_PASSPHRASE", PASS),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `scaivault server` on the database; its URL, or its exit status and log if it stopped.
fn node(storage: &str) -> Result<(Child, String), String> {
    node_with(storage, &[])
}

#[allow(clippy::zombie_processes)] // a node that started is the caller's to kill and wait for
fn node_with(storage: &str, extra: &[&str]) -> Result<(Child, String), String> {
    let mut child = Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("SCAIVAULT_STORAGE", storage)
        .env("SCAIVAULT_PASSPHRASE", PASS)
        .env_remove("SCAIVAULT_VAULT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait().unwrap();
            return Err(format!("{status}: {log}"));
        }
        log.push_str(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            let url = rest.split_whitespace().next().unwrap().to_owned();
            std::thread::spawn(move || for _ in reader.lines() {});
            return Ok((child, url));
        }
    }
}

fn call(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn a_vault_on_postgresql_keeps_nothing_readable_there_and_survives_its_node() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let created = init(&storage);
    let root = created["root_token"].as_str().unwrap().to_owned();
    assert!(
        !created
            .to_string()
            .contains(common::postgres::PG_ADMIN_PASS),
        "init shows the database without its password: {created}"
    );
    // A second init on the same database refuses to overwrite it.
    let again = cli_env(
        &[
            "init",
            "--json",
            "--kdf-memory-mib",
            "19",
            "--kdf-passes",
            "2",
        ],
        &[
            ("SCAIVAULT_STORAGE", &storage),
            ("SCAIVAULT_PASSPHRASE", PASS),
        ],
        None,
    );
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));

    let (mut first, url) = node(&storage).unwrap();
    let put = |url: &str, path: &str, body: Value| {
        call(url, &root, reqwest::Method::PUT, path, Some(body))
    };
    let (s, b) = put(
        &url,
        "/v1/secrets/apps/zebrafinch-ledger/db",
        json!({"data": {"password": "s3cr3t-VALUE-quokka"}, "metadata": {"tags": ["tag-ultramarine"]}}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &url,
        &root,
        reqwest::Method::POST,
        "/v1/identities",
        Some(json!({"identity_id": "sa:orchid-reporter"})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &url,
        &root,
        reqwest::Method::POST,
        "/v1/policies",
        Some(
            json!({"name": "policy-heliotrope", "rules": [{"path_pattern": "apps/**", "permissions": ["read"]}]}),
        ),
    );
    assert_eq!(s, 201, "{b}");

    // kill -9, then a new node: every acknowledged write is there.
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, url) = node(&storage).unwrap();
    let (s, b) = call(
        &url,
        &root,
        reqwest::Method::GET,
        "/v1/secrets/apps/zebrafinch-ledger/db",
        None,
    );
    assert_eq!(
        (s, &b["data"]["password"]),
        (200, &json!("s3cr3t-VALUE-quokka")),
        "{b}"
    );
    let (s, b) = call(&url, &root, reqwest::Method::GET, "/v1/audit/verify", None);
    assert_eq!((s, &b["ok"]), (200, &json!(true)), "{b}");

    // Many readers at once share a bounded pool: PostgreSQL's connection limit is shared
    // by every node and client.
    std::thread::scope(|s| {
        for _ in 0..40 {
            s.spawn(|| {
                for _ in 0..5 {
                    let (st, _) = call(
                        &url,
                        &root,
                        reqwest::Method::GET,
                        "/v1/secrets/apps/zebrafinch-ledger/db",
                        None,
                    );
                    assert_eq!(st, 200);
                }
            });
        }
    });
    let conns = || -> usize {
        pg.scalar(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        .parse()
        .unwrap()
    };
    // 16 pooled, the writer's, the leader lock's, and psql's own (once PostgreSQL has seen
    // the killed node's sessions go).
    assert!(
        common::receiver::eventually(Duration::from_secs(20), || conns() <= 19),
        "{} connections",
        conns()
    );

    // The node's metrics show its pool and the time it spends waiting for the database.
    let m = http()
        .get(format!("{url}/v1/metrics"))
        .bearer_auth(&root)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    assert!(value("scaivault_database_calls_total") >= 200.0, "{m}");
    assert!(value("scaivault_database_call_seconds_total") > 0.0, "{m}");
    assert_eq!(value("scaivault_database_connections_max"), 16.0);
    assert!(value("scaivault_database_connections_in_use") <= 16.0);

    // PostgreSQL sees blinded keys and sealed values only.
    let dump = pg.dump("postgres");
    assert!(
        dump.contains("scaivault_records"),
        "the dump holds the vault's table"
    );
    for d in DISTINCT {
        assert!(!dump.contains(d), "{d:?} is readable in pg_dump");
    }

    // A backup from the node is a vault file like any other.
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("vault.svbak");
    let resp = http()
        .get(format!("{url}/v1/sys/backup"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    std::fs::write(&backup, resp.bytes().unwrap()).unwrap();
    let file = dir.path().join("restored.db");
    let out = cli_env(
        &[
            "operator",
            "restore",
            "--backup",
            backup.to_str().unwrap(),
            "--into",
            file.to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_env(
        &[
            "--vault",
            file.to_str().unwrap(),
            "secrets",
            "read",
            "apps/zebrafinch-ledger/db",
            "--json",
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("s3cr3t-VALUE-quokka"));
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn a_lost_database_answers_503_and_the_node_recovers_without_a_restart() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (mut node, url) = node(&storage).unwrap();
    let (s, _) = call(
        &url,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/app/a",
        Some(json!({"data": {"k": "v1"}})),
    );
    assert_eq!(s, 201);

    pg.stop();
    let (s, b) = call(
        &url,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/app/a",
        Some(json!({"data": {"k": "v2"}})),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("service_unavailable")),
        "{b}"
    );
    let ready = http().get(format!("{url}/v1/health/ready")).send().unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "readiness reflects the database"
    );

    pg.run();
    // The node reconnects by itself: the next write after the database is back succeeds.
    assert!(receiver::eventually(Duration::from_secs(20), || {
        call(
            &url,
            &root,
            reqwest::Method::PUT,
            "/v1/secrets/app/a",
            Some(json!({"data": {"k": "v3"}})),
        )
        .0 == 200
    }));
    let (s, b) = call(&url, &root, reqwest::Method::GET, "/v1/secrets/app/a", None);
    assert_eq!((s, &b["data"]["k"]), (200, &json!("v3")), "{b}");
    let ready = http().get(format!("{url}/v1/health/ready")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    node.kill().unwrap();
    node.wait().unwrap();
}

#[test]
fn a_file_vault_moves_to_postgresql_and_back_with_its_audit_chain() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (file, root) = common::init(dir.path());
    let (mut server, url) = common::server(&file, &[], &[("SCAIVAULT_PASSPHRASE", PASS)]);
    let (s, _) = call(
        &url,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/app/db",
        Some(json!({"data": {"password": "moved-1"}})),
    );
    assert_eq!(s, 201);
    server.kill().unwrap();
    server.wait().unwrap();

    // The password goes in PGPASSWORD, as libpq takes it: not on the command line.
    let db = format!("postgresql://admin@127.0.0.1:{}/postgres", pg.port);
    let env = [
        ("SCAIVAULT_PASSPHRASE", PASS),
        ("PGPASSWORD", common::postgres::PG_ADMIN_PASS),
    ];
    let out = cli_env(
        &[
            "operator",
            "migrate",
            "--from",
            file.to_str().unwrap(),
            "--to",
            &db,
            "--json",
        ],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("password is on the command line"),
        "{}",
        stderr(&out)
    );
    let res: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(res["records"].as_u64().unwrap() > 0, "{res}");

    // Into a database that already holds a vault: refused, nothing changed.
    let out = cli_env(
        &[
            "operator",
            "migrate",
            "--from",
            file.to_str().unwrap(),
            "--to",
            &db,
        ],
        &env,
        None,
    );
    assert!(!out.status.success());

    let storage = pg.url("postgres");
    let (mut node, url) = node(&storage).unwrap();
    let (s, b) = call(
        &url,
        &root,
        reqwest::Method::GET,
        "/v1/secrets/app/db",
        None,
    );
    assert_eq!((s, &b["data"]["password"]), (200, &json!("moved-1")), "{b}");
    let (s, _) = call(
        &url,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/app/db",
        Some(json!({"data": {"password": "moved-2"}})),
    );
    assert_eq!(s, 200);
    let (_, before) = call(&url, &root, reqwest::Method::GET, "/v1/audit/verify", None);
    assert_eq!(
        before["ok"], true,
        "the chain carried over and goes on: {before}"
    );
    node.kill().unwrap();
    node.wait().unwrap();

    // And back to a file.
    let back = dir.path().join("back.db");
    let out = cli_env(
        &[
            "operator",
            "migrate",
            "--from",
            &db,
            "--to",
            back.to_str().unwrap(),
        ],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (mut server, url) = common::server(&back, &[], &[("SCAIVAULT_PASSPHRASE", PASS)]);
    let (s, b) = call(
        &url,
        &root,
        reqwest::Method::GET,
        "/v1/secrets/app/db",
        None,
    );
    assert_eq!((s, &b["data"]["password"]), (200, &json!("moved-2")), "{b}");
    let (_, after) = call(&url, &root, reqwest::Method::GET, "/v1/audit/verify", None);
    assert_eq!(after["ok"], true, "{after}");
    assert!(
        after["head_seq"].as_u64() > before["head_seq"].as_u64()
            && after["from_seq"] == before["from_seq"],
        "one chain: {before} then {after}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

fn metric(url: &str, name: &str) -> u64 {
    http()
        .get(format!("{url}/v1/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

fn kill(mut n: Child) {
    let _ = n.kill();
    let _ = n.wait();
}

/// A service account with one policy over `pattern` and a token on it; `(policy id, token
/// id, token)`.
fn reader(url: &str, root: &str, id: &str, pattern: &str) -> (String, String, String) {
    let (s, b) = call(
        url,
        root,
        reqwest::Method::POST,
        "/v1/identities",
        Some(json!({"identity_id": id})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, p) = call(
        url,
        root,
        reqwest::Method::POST,
        "/v1/policies",
        Some(
            json!({"name": format!("{}-read", id.replace(':', "-")), "rules": [{"path_pattern": pattern, "permissions": ["read"]}]}),
        ),
    );
    assert_eq!(s, 201, "{p}");
    let policy = p["id"].as_str().unwrap().to_owned();
    let (s, b) = call(
        url,
        root,
        reqwest::Method::POST,
        &format!("/v1/policies/{policy}/bindings"),
        Some(json!({"identity_type": "service_account", "identity_id": id})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, t) = call(
        url,
        root,
        reqwest::Method::POST,
        "/v1/auth/tokens",
        Some(json!({"identity_id": id, "scopes": ["secrets:read"], "ttl": "1h"})),
    );
    assert_eq!(s, 201, "{t}");
    (
        policy,
        t["token_id"].as_str().unwrap().to_owned(),
        t["token"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn two_nodes_see_each_others_changes_from_the_next_request() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (a, ua) = node(&storage).unwrap();
    let (b, ub) = node(&storage).unwrap();
    let put = |url: &str, body: Value| {
        call(
            url,
            &root,
            reqwest::Method::PUT,
            "/v1/secrets/apps/shop/db",
            Some(body),
        )
    };
    let get = |url: &str, token: &str| {
        call(
            url,
            token,
            reqwest::Method::GET,
            "/v1/secrets/apps/shop/db",
            None,
        )
    };

    // Read-your-writes across nodes, both ways; version numbers continue across them.
    let (s, w) = put(&ua, json!({"data": {"password": "one"}}));
    assert_eq!((s, w["version"].as_u64()), (201, Some(1)), "{w}");
    let (s, r) = get(&ub, &root);
    assert_eq!((s, &r["data"]["password"]), (200, &json!("one")), "{r}");
    let (s, w) = put(&ub, json!({"data": {"password": "two"}}));
    assert_eq!((s, w["version"].as_u64()), (200, Some(2)), "{w}");
    let (_, r) = get(&ua, &root);
    assert_eq!(
        (&r["data"]["password"], r["version"].as_u64()),
        (&json!("two"), Some(2)),
        "{r}"
    );

    // Check-and-set is decided in the database: the second writer of version 2 loses,
    // whichever node it asked.
    let (s, w) = put(
        &ua,
        json!({"data": {"password": "three"}, "options": {"cas": 2}}),
    );
    assert_eq!((s, w["version"].as_u64()), (200, Some(3)), "{w}");
    let (s, w) = put(
        &ub,
        json!({"data": {"password": "stale"}, "options": {"cas": 2}}),
    );
    assert_eq!(
        (s, w["error"]["code"].as_str()),
        (409, Some("version_conflict")),
        "{w}"
    );

    // A token made on one node works on the other; a policy narrowed, a token revoked, an
    // identity deleted on one node hold on the other from its next request.
    let (policy, token_id, token) = reader(&ua, &root, "sa:shop", "apps/**");
    assert_eq!(get(&ub, &token).0, 200);
    let (s, p) = call(
        &ua,
        &root,
        reqwest::Method::PUT,
        &format!("/v1/policies/{policy}"),
        Some(
            json!({"name": "sa-shop-read", "rules": [{"path_pattern": "other/**", "permissions": ["read"]}]}),
        ),
    );
    assert_eq!(s, 200, "{p}");
    let (s, r) = get(&ub, &token);
    assert_eq!(s, 403, "the narrowed policy holds on the other node: {r}");
    let (s, r) = call(
        &ua,
        &root,
        reqwest::Method::DELETE,
        &format!("/v1/auth/tokens/{token_id}"),
        None,
    );
    assert_eq!(s, 200, "{r}");
    let (s, r) = get(&ub, &token);
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (401, Some("token_revoked")),
        "{r}"
    );

    let (_, _, second) = reader(&ub, &root, "sa:gone", "apps/**");
    assert_eq!(get(&ua, &second).0, 200);
    let (s, r) = call(
        &ub,
        &root,
        reqwest::Method::DELETE,
        "/v1/identities/sa:gone",
        None,
    );
    assert_eq!(s, 204, "{r}");
    let (s, r) = get(&ua, &second);
    assert_eq!(
        s, 401,
        "the deleted identity's token fails on the other node: {r}"
    );

    // A secret created on one node is listed by the other.
    let (s, _) = call(
        &ub,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/apps/shop/api",
        Some(json!({"data": {"key": "k"}})),
    );
    assert_eq!(s, 201);
    let (_, l) = call(
        &ua,
        &root,
        reqwest::Method::GET,
        "/v1/secrets?prefix=apps/shop/",
        None,
    );
    assert!(l.to_string().contains("apps/shop/api"), "{l}");

    // A change of the vault's keys on one node stops the other until it is restarted, and
    // says so, to requests and to readiness (a load balancer takes it out).
    let (s, r) = call(
        &ua,
        &root,
        reqwest::Method::POST,
        "/v1/sys/rotate-key",
        None,
    );
    assert_eq!(s, 200, "{r}");
    let (s, r) = get(&ub, &root);
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (503, Some("service_unavailable")),
        "{r}"
    );
    assert!(r.to_string().contains("restart this node"), "{r}");
    let ready = http().get(format!("{ub}/v1/health/ready")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(
        get(&ua, &root).0,
        200,
        "the node that changed them serves on"
    );
    kill(a);
    kill(b);
    let (b, ub) = node(&storage).unwrap();
    assert_eq!(get(&ub, &root).0, 200, "restarted, it serves again");
    kill(b);
}

#[test]
fn writes_on_two_nodes_at_once_keep_one_history_and_one_audit_chain_when_one_is_killed() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (a, ua) = node(&storage).unwrap();
    let (b, ub) = node(&storage).unwrap();
    let (s, w) = call(
        &ua,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/apps/hot",
        Some(json!({"data": {"v": "first"}, "options": {"max_versions": 1000}})),
    );
    assert_eq!(s, 201, "{w}");
    let a = std::sync::Mutex::new(Some(a));
    // Four writers per node on one secret, and readers; the first node is killed (-9)
    // while they write. Every acknowledged version is kept, no number is given twice.
    let acked: Vec<(u64, String)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (n, url) in [(0, &ua), (1, &ub)] {
            for w in 0..4 {
                let root = &root;
                let a = &a;
                handles.push(s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..15 {
                        if n == 0
                            && w == 0
                            && i == 8
                            && let Some(c) = a.lock().unwrap().take()
                        {
                            kill(c);
                        }
                        let value = format!("n{n}-w{w}-i{i}");
                        let resp = http()
                            .put(format!("{url}/v1/secrets/apps/hot"))
                            .bearer_auth(root)
                            .json(&json!({"data": {"v": value}}))
                            .send();
                        let Ok(resp) = resp else {
                            // The killed node: nothing more from it.
                            assert_eq!(n, 0, "the surviving node stopped answering");
                            break;
                        };
                        if let Ok(b) = resp.json::<Value>()
                            && let Some(v) = b["version"].as_u64()
                        {
                            mine.push((v, value));
                        }
                    }
                    mine
                }));
            }
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut versions: Vec<u64> = acked.iter().map(|(v, _)| *v).collect();
    versions.sort();
    let n = versions.len();
    versions.dedup();
    assert_eq!(versions.len(), n, "a version number was given twice");
    assert!(n >= 60, "the surviving node kept writing: {n} acknowledged");
    // Every acknowledged write is there, read from the surviving node.
    let (_, head) = call(
        &ub,
        &root,
        reqwest::Method::GET,
        "/v1/secrets/apps/hot",
        None,
    );
    let last = head["version"].as_u64().unwrap();
    assert_eq!(last, *versions.last().unwrap(), "{head}");
    for (v, value) in &acked {
        let (s, r) = call(
            &ub,
            &root,
            reqwest::Method::GET,
            &format!("/v1/secrets/apps/hot?version={v}"),
            None,
        );
        assert_eq!(
            (s, &r["data"]["v"]),
            (200, &json!(value)),
            "version {v}: {r}"
        );
    }
    // One audit chain across both nodes, intact; a node started now verifies it too.
    let (s, v) = call(&ub, &root, reqwest::Method::GET, "/v1/audit/verify", None);
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    let (c, uc) = node(&storage).unwrap();
    let (s, v) = call(&uc, &root, reqwest::Method::GET, "/v1/audit/verify", None);
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    let out = cli_env(
        &["operator", "verify", "--json"],
        &[
            ("SCAIVAULT_STORAGE", &storage),
            ("SCAIVAULT_PASSPHRASE", PASS),
        ],
        None,
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    kill(b);
    kill(c);
}

#[test]
fn one_node_leads_and_another_takes_over_when_it_dies() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let r = common::receiver::Receiver::start("whsec-leader-0123456789");
    let allow = format!("127.0.0.1:{}", r.port);
    let (a, ua) = node_with(&storage, &["--allow-host", &allow]).unwrap();
    let (b, ub) = node_with(&storage, &["--allow-host", &allow]).unwrap();
    let wait = Duration::from_secs(30);
    let leaders = || metric(&ua, "scaivault_node_leader") + metric(&ub, "scaivault_node_leader");
    assert!(common::receiver::eventually(wait, || leaders() == 1));
    let (leader, leader_url, other, other_url) = if metric(&ua, "scaivault_node_leader") == 1 {
        (a, ua, b, ub)
    } else {
        (b, ub, a, ua)
    };
    // A webhook made on one node, a change on the other: delivered once, by the leader.
    let (s, h) = call(
        &other_url,
        &root,
        reqwest::Method::POST,
        "/v1/webhooks",
        Some(
            json!({"name": "lead", "url": r.url, "secret": "whsec-leader-0123456789", "events": ["secret.created"]}),
        ),
    );
    assert_eq!(s, 201, "{h}");
    let (s, _) = call(
        &other_url,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/apps/first",
        Some(json!({"data": {"k": "v"}})),
    );
    assert_eq!(s, 201);
    assert!(common::receiver::eventually(wait, || r.deliveries().len() == 1));
    // Both nodes' delivery workers look twice more: still one delivery.
    let passes = |u: &str| metric(u, "scaivault_webhook_delivery_passes_total");
    let (pl, po) = (passes(&leader_url), passes(&other_url));
    assert!(common::receiver::eventually(wait, || passes(&leader_url)
        >= pl + 2
        && passes(&other_url) >= po + 2));
    assert_eq!(r.deliveries().len(), 1, "{:?}", r.event_types());

    // The leader dies; the other node takes the lead and delivers the next change.
    kill(leader);
    assert!(common::receiver::eventually(wait, || metric(
        &other_url,
        "scaivault_node_leader"
    ) == 1));
    let (s, _) = call(
        &other_url,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/apps/second",
        Some(json!({"data": {"k": "v"}})),
    );
    assert_eq!(s, 201);
    assert!(common::receiver::eventually(wait, || r.deliveries().len() == 2));
    kill(other);
}

#[test]
fn a_node_whose_sessions_were_cut_while_someone_else_wrote_follows_and_writes_on() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (first, url) = node(&storage).unwrap();
    let put = |v: &str| {
        call(
            &url,
            &root,
            reqwest::Method::PUT,
            "/v1/secrets/app/a",
            Some(json!({"data": {"k": v}})),
        )
    };
    assert_eq!(put("v1").0, 201);
    // Every session of the node is cut (an idle timeout, a proxy, a failover), and a local
    // command writes meanwhile.
    pg.scalar(
        "postgres",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'admin' AND pid <> pg_backend_pid()",
    );
    let out = cli_env(
        &["secrets", "write", "app/b", "k=written-meanwhile"],
        &[
            ("SCAIVAULT_STORAGE", &storage),
            ("SCAIVAULT_PASSPHRASE", PASS),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The node reconnects, follows the change, and writes on after it.
    let (s, b) = put("v2");
    assert_eq!((s, b["version"].as_u64()), (200, Some(2)), "{b}");
    let (s, b) = call(&url, &root, reqwest::Method::GET, "/v1/secrets/app/b", None);
    assert_eq!(
        (s, &b["data"]["k"]),
        (200, &json!("written-meanwhile")),
        "{b}"
    );
    let (_, l) = call(
        &url,
        &root,
        reqwest::Method::GET,
        "/v1/secrets?prefix=app/",
        None,
    );
    assert!(
        l.to_string().contains("app/b"),
        "the listing follows too: {l}"
    );
    let (_, v) = call(&url, &root, reqwest::Method::GET, "/v1/audit/verify", None);
    assert_eq!(v["ok"], true, "{v}");
    let ready = http().get(format!("{url}/v1/health/ready")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    kill(first);
}

/// Tokens minted on one node while another revokes what they come from (the identity, the
/// client credential) are revoked with the rest: the revocation picks its tokens in the
/// database's turn, and a mint checks its identity and credential there again.
#[test]
fn revocations_on_one_node_catch_tokens_minted_meanwhile_on_another() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (a, ua) = node_with(&storage, &["--no-rate-limit"]).unwrap();
    let (b, ub) = node_with(&storage, &["--no-rate-limit"]).unwrap();
    let post = |url: &str, token: Option<&str>, path: &str, body: Value| {
        let mut r = http().post(format!("{url}{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().unwrap();
        let s = resp.status().as_u16();
        (s, resp.json::<Value>().unwrap_or(Value::Null))
    };
    for trial in 0..3 {
        let id = format!("sa:race{trial}");
        assert_eq!(
            post(
                &ua,
                Some(&root),
                "/v1/identities",
                json!({"identity_id": id})
            )
            .0,
            201
        );
        let (s, cred) = post(
            &ua,
            Some(&root),
            &format!("/v1/identities/{id}/credentials"),
            json!({"scopes": ["secrets:read"]}),
        );
        assert_eq!(s, 201, "{cred}");
        let secret = cred["client_secret"].as_str().unwrap().to_owned();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let minted: Vec<String> = std::thread::scope(|s| {
            let minters: Vec<_> = (0..2)
                .map(|m| {
                    let (stop, id, secret, ub, root) = (&stop, &id, &secret, &ub, &root);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                            let (st, t) = if m == 0 {
                                post(ub, Some(root), "/v1/auth/tokens", json!({"identity_id": id, "scopes": ["secrets:read"], "ttl": "1h"}))
                            } else {
                                post(ub, None, "/v1/auth/token", json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}))
                            };
                            let token = t["token"].as_str().or(t["access_token"].as_str());
                            if let (200 | 201, Some(token)) = (st, token) {
                                got.push(token.to_owned());
                            }
                        }
                        got
                    })
                })
                .collect();
            // Revoked on the other node while tokens are being minted: first the credential,
            // then the identity.
            std::thread::sleep(Duration::from_millis(150));
            let (s, r) = call(
                &ua,
                &root,
                reqwest::Method::DELETE,
                &format!(
                    "/v1/identities/{id}/credentials/{}",
                    cred["credential_id"].as_str().unwrap()
                ),
                None,
            );
            assert_eq!(s, 200, "{r}");
            let (s, r) = call(
                &ua,
                &root,
                reqwest::Method::DELETE,
                &format!("/v1/identities/{id}"),
                None,
            );
            assert_eq!(s, 204, "{r}");
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            minters
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert!(!minted.is_empty(), "trial {trial}: nothing was minted");
        // A new identity given the same id is someone else: none of the old tokens is its.
        let (s, r) = post(
            &ub,
            Some(&root),
            "/v1/identities",
            json!({"identity_id": id}),
        );
        assert_eq!(s, 201, "{r}");
        for t in &minted {
            for url in [&ua, &ub] {
                let (s, w) = call(url, t, reqwest::Method::GET, "/v1/auth/whoami", None);
                assert_eq!(
                    s, 401,
                    "trial {trial}: a token minted during the revocation still works: {w}"
                );
            }
        }
    }
    kill(a);
    kill(b);
}

/// A node stopped in the middle of its turn holds every node's writes for at most the
/// database's idle-in-transaction timeout (5 s, less than the 10 s others wait for the lock),
/// and a stopped leader loses the lead once
/// it has been silent for 30 s.
#[test]
fn a_frozen_node_holds_up_the_others_only_briefly() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (a, ua) = node(&storage).unwrap();
    let (b, ub) = node(&storage).unwrap();
    let wait = Duration::from_secs(60);
    let lead = |u: &str| metric(u, "scaivault_node_leader");
    assert!(common::receiver::eventually(wait, || lead(&ua) + lead(&ub) == 1));
    let (frozen, frozen_url, other_url) = if lead(&ua) == 1 {
        (a, ua, ub)
    } else {
        (b, ub, ua)
    };
    let pid = frozen.id().to_string();
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    // Writes on the node to freeze, until it is stopped with its turn open.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in 0..4 {
            let (stop, frozen_url, root) = (&stop, &frozen_url, &root);
            s.spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .unwrap();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let _ = client
                        .put(format!("{frozen_url}/v1/secrets/load/w{w}"))
                        .bearer_auth(root)
                        .json(&json!({"data": {"i": i.to_string()}}))
                        .send();
                }
            });
        }
        let in_turn = || {
            pg.scalar(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND usename = 'admin'",
            ) != "0"
        };
        let mut held = false;
        for _ in 0..200 {
            signal("-STOP");
            if common::receiver::eventually(Duration::from_millis(300), in_turn) {
                held = true;
                break;
            }
            signal("-CONT");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(held, "never caught the node inside its turn");
    });
    // The other node's write waits for the frozen turn to be ended by PostgreSQL, then lands.
    let started = std::time::Instant::now();
    let (s, w) = call(
        &other_url,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/apps/after-freeze",
        Some(json!({"data": {"k": "v"}})),
    );
    assert_eq!(s, 201, "{w}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The frozen leader's session goes silent; the other node takes the lead.
    assert!(common::receiver::eventually(wait, || lead(&other_url) == 1));
    signal("-CONT");
    kill(frozen);
    let (_, v) = call(
        &other_url,
        &root,
        reqwest::Method::GET,
        "/v1/audit/verify",
        None,
    );
    assert_eq!(v["ok"], true, "{v}");
}

/// A primary with a synchronous standby, started by the test; two nodes reach whichever is
/// the primary through a multi-host connection string (`target_session_attrs=read-write`).
/// The primary is killed and the standby promoted: the nodes reconnect by themselves, and
/// every write acknowledged before the failover is there, with one audit chain.
#[test]
fn a_primary_failover_loses_no_acknowledged_write() {
    let primary = Postgres::start();
    let standby = primary.standby("standby1");
    primary.admin_sql("ALTER SYSTEM SET synchronous_standby_names = 'standby1'");
    primary.admin_sql("SELECT pg_reload_conf()");
    let wait = Duration::from_secs(60);
    assert!(common::receiver::eventually(wait, || primary.scalar(
        "postgres",
        "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
    ) == "1"));
    let storage = format!(
        "postgresql://admin:{}@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        common::postgres::PG_ADMIN_PASS,
        primary.port,
        standby.port
    );
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (a, ua) = node(&storage).unwrap();
    let (b, ub) = node(&storage).unwrap();
    let put = |url: &str, path: &str, v: &str| {
        call(
            url,
            &root,
            reqwest::Method::PUT,
            &format!("/v1/secrets/{path}"),
            Some(json!({"data": {"v": v}, "options": {"max_versions": 100}})),
        )
    };
    let mut acked = Vec::new();
    for i in 0..20 {
        let (url, path) = if i % 2 == 0 {
            (&ua, "ha/a")
        } else {
            (&ub, "ha/b")
        };
        let (s, w) = put(url, path, &format!("before-{i}"));
        assert!(s == 200 || s == 201, "{w}");
        acked.push((path, w["version"].as_u64().unwrap(), format!("before-{i}")));
    }
    // The primary goes away at once; the standby is promoted.
    primary.stop();
    standby.promote();
    // Writes fail retryably while the nodes find the new primary, then land.
    let mut refused = Vec::new();
    for (url, path) in [(&ua, "ha/a"), (&ub, "ha/b")] {
        assert!(
            common::receiver::eventually(wait, || {
                let (s, w) = put(url, path, "after");
                if s != 200 {
                    refused.push((s, w));
                }
                s == 200
            }),
            "{refused:?}"
        );
    }
    assert!(
        refused.iter().all(|(s, _)| *s == 503),
        "every refusal during the failover is retryable: {refused:?}"
    );
    for (path, version, value) in &acked {
        let (s, r) = call(
            &ua,
            &root,
            reqwest::Method::GET,
            &format!("/v1/secrets/{path}?version={version}"),
            None,
        );
        assert_eq!(
            (s, &r["data"]["v"]),
            (200, &json!(value)),
            "{path} v{version}: {r}"
        );
    }
    let (_, v) = call(&ub, &root, reqwest::Method::GET, "/v1/audit/verify", None);
    assert_eq!(v["ok"], true, "{v}");
    assert!(common::receiver::eventually(wait, || metric(
        &ua,
        "scaivault_node_leader"
    ) + metric(
        &ub,
        "scaivault_node_leader"
    ) == 1));
    kill(a);
    kill(b);
}
