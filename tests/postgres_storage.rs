//! A vault on PostgreSQL (issue #21, its first part): `init` and `server` with
//! `--storage postgresql://…` against a real PostgreSQL server started by the test. The
//! database holds what the file would — blinded keys and sealed records — and nothing
//! readable; a node that restarts or loses its database recovers; one node at a time.
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
#[allow(clippy::zombie_processes)] // a node that started is the caller's to kill and wait for
fn node(storage: &str) -> Result<(Child, String), String> {
    let mut child = Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0"])
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

    // One node at a time: a second one on the same database refuses to start.
    let refused = node(&storage).expect_err("a second node starts");
    assert!(refused.contains("another ScaiVault node"), "{refused}");

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
    let conns: usize = pg
        .scalar(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'admin'",
        )
        .parse()
        .unwrap();
    // 16 pooled, the writer's, the node lock's, and psql's own.
    assert!(conns <= 19, "{conns} connections");

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

#[test]
fn a_node_that_lost_its_database_writes_nothing_once_another_node_took_it() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (mut first, url1) = node(&storage).unwrap();
    let put = |url: &str, v: &str| {
        call(
            url,
            &root,
            reqwest::Method::PUT,
            "/v1/secrets/app/a",
            Some(json!({"data": {"k": v}})),
        )
    };
    assert_eq!(put(&url1, "v1").0, 201);
    // The database restarts: the first node's session, and the node lock with it, are gone,
    // and a second node starts before the first writes again.
    pg.stop();
    pg.run();
    let (mut second, url2) =
        node(&storage).expect("the lock is free while the first node is cut off");
    assert_eq!(put(&url2, "v2").0, 200);
    let (s, b) = put(&url1, "v3");
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("service_unavailable")),
        "{b}"
    );
    let (_, cur) = call(
        &url2,
        &root,
        reqwest::Method::GET,
        "/v1/secrets/app/a",
        None,
    );
    assert_eq!(
        cur["data"]["k"], "v2",
        "the cut-off node wrote nothing: {cur}"
    );
    for n in [&mut first, &mut second] {
        n.kill().unwrap();
        n.wait().unwrap();
    }
}

#[test]
fn a_node_whose_sessions_were_cut_while_someone_else_wrote_stops_writing() {
    let pg = Postgres::start();
    let storage = pg.url("postgres");
    let root = init(&storage)["root_token"].as_str().unwrap().to_owned();
    let (mut first, url) = node(&storage).unwrap();
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
    // Every session of the node is cut (an idle timeout, a proxy, a failover), and while its
    // lock is free a local command writes.
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
    // The node takes its lock back, sees the vault changed under it, and writes nothing:
    // its indexes, tokens and ledger are behind.
    let (s, b) = put("v2");
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("service_unavailable")),
        "{b}"
    );
    let ready = http().get(format!("{url}/v1/health/ready")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    first.kill().unwrap();
    first.wait().unwrap();
    // Restarted, it reads the vault as it is: both writes, and a chain that verifies.
    let (mut again, url) = node(&storage).unwrap();
    let (s, b) = call(&url, &root, reqwest::Method::GET, "/v1/secrets/app/b", None);
    assert_eq!(
        (s, &b["data"]["k"]),
        (200, &json!("written-meanwhile")),
        "{b}"
    );
    let (_, v) = call(&url, &root, reqwest::Method::GET, "/v1/audit/verify", None);
    assert_eq!(v["ok"], true, "{v}");
    again.kill().unwrap();
    again.wait().unwrap();
}
