//! Rotation through backends: the four-step state machine against a webhook receiver that
//! verifies signatures (in-process engine, so a test can stop between steps exactly as a
//! crash would and reopen the file), then the real binary against the same receiver and
//! against a real PostgreSQL server the test starts.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::postgres::{PG_ADMIN_PASS, Postgres};
use common::receiver::Receiver;
use common::*;
use scaivault_core::time::Timestamp;
use scaivault_crypto::KdfParams;
use scaivault_engine::{
    Caller, Engine, ManualClock, PluginSettings, RotationPolicyRequest, WriteRequest,
};
use scaivault_store::{Unlock, Vault};
use serde_json::{Value, json};

const SIGNING: &str = "whsec_0123456789abcdef";
const PATH: &str = "environments/production/billing/database";
const VAULT_PASS: &[u8] = b"pw-rotation-backends";

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    engine: Option<Arc<Engine>>,
    receiver: Receiver,
}

impl Fixture {
    fn settings(&self) -> PluginSettings {
        PluginSettings {
            allow_hosts: vec![format!("127.0.0.1:{}", self.receiver.port)],
            ..Default::default()
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("v.db")
    }

    fn e(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    /// Drops the engine and its vault without finishing anything in memory, like a killed
    /// process (every write the engine acknowledged is durable), and opens the file again.
    fn crash_and_reopen(&mut self) {
        let e = self.engine.take().unwrap();
        e.vault().shutdown();
        drop(e);
        let vault = Vault::open(&self.path(), Unlock::Passphrase(VAULT_PASS)).unwrap();
        self.engine = Some(Arc::new(
            Engine::load_with(Arc::new(vault), self.clock.clone(), self.settings()).unwrap(),
        ));
    }

    fn current(&self) -> (u64, Value) {
        let v = self
            .e()
            .read_secret(&Caller::local_operator(), PATH, None)
            .unwrap();
        (v.version, v.data.to_value())
    }

    fn status(&self) -> Value {
        js(self
            .e()
            .rotation_status(&Caller::local_operator(), Some(PATH))
            .unwrap())["secrets"][0]
            .clone()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn setup(rt: &tokio::runtime::Runtime) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(SIGNING);
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let mut f = Fixture {
        dir,
        clock,
        engine: None,
        receiver,
    };
    let vault = Vault::create(&f.path(), VAULT_PASS, KdfParams::FLOOR).unwrap();
    f.engine = Some(Arc::new(
        Engine::load_with(Arc::new(vault), f.clock.clone(), f.settings()).unwrap(),
    ));
    let root = Caller::local_operator();
    rt.block_on(async {
        let w: WriteRequest = serde_json::from_value(
            json!({"data": {"username": "billing", "password": "pw-original"}}),
        )
        .unwrap();
        f.e().write_secret(&root, PATH, w).await.unwrap();
        let p: RotationPolicyRequest = serde_json::from_value(json!({
            "name": "db-weekly", "interval": "7d", "grace_period": "24h", "auto_generate": true,
            "backend": "webhook",
            "backend_config": {"url": f.receiver.url, "signing_secret": SIGNING},
        }))
        .unwrap();
        f.e().create_rotation_policy(&root, p).await.unwrap();
        f.e()
            .assign_rotation(&root, "rot_db-weekly", PATH)
            .await
            .unwrap();
    });
    f
}

fn original() -> Value {
    json!({"username": "billing", "password": "pw-original"})
}

#[test]
fn a_webhook_rotation_applies_tests_then_finishes() {
    let rt = rt();
    let f = setup(&rt);
    f.clock.advance(Duration::from_secs(8 * 86_400));
    let done = js(rt.block_on(f.e().rotation_tick()).unwrap());
    assert_eq!(done[0]["status"], "completed", "{done:?}");
    let (version, data) = f.current();
    assert_eq!(version, 2);
    assert_ne!(data["password"], "pw-original");
    assert_eq!(data["username"], "billing");
    assert_eq!(
        f.receiver.applied(),
        Some(data.clone()),
        "the external system holds the new value"
    );
    let events: Vec<String> = f.receiver.event_types();
    assert_eq!(events, ["rotation.apply", "rotation.test"]);
    assert!(f.receiver.deliveries().iter().all(|d| d.signature_ok));
    let d = &f.receiver.deliveries()[0].body;
    assert_eq!(
        (d["path"].as_str(), d["identity_id"].as_str()),
        (Some(PATH), Some("system:rotation-scheduler"))
    );
    // The signing secret is never shown back.
    let p = js(f
        .e()
        .get_rotation_policy(&Caller::local_operator(), "rot_db-weekly")
        .unwrap());
    assert_eq!(p["backend_config"]["signing_secret"], "********");
    assert!(!p.to_string().contains(SIGNING));
}

#[test]
fn a_failing_set_retries_with_backoff_then_fails_and_keeps_the_current_value() {
    let rt = rt();
    let f = setup(&rt);
    f.receiver.force("rotation.apply", Some(503));
    f.clock.advance(Duration::from_secs(8 * 86_400));
    let done = js(rt.block_on(f.e().rotation_tick()).unwrap());
    assert_eq!(done[0]["status"], "pending", "{done:?}");
    assert_eq!(f.status()["rotation"]["attempts"], 1);
    // Before the backoff is over, nothing is retried.
    rt.block_on(f.e().rotation_tick()).unwrap();
    assert_eq!(f.receiver.deliveries().len(), 1);
    for _ in 0..10 {
        f.clock.advance(Duration::from_secs(3600));
        rt.block_on(f.e().rotation_tick()).unwrap();
    }
    let st = f.status();
    assert_eq!(st["rotation"]["state"], "failed", "{st}");
    assert_eq!(st["rotation"]["attempts"], scaivault_engine::MAX_ATTEMPTS);
    assert_eq!(
        f.receiver.deliveries().len(),
        scaivault_engine::MAX_ATTEMPTS as usize
    );
    assert_eq!(
        f.current(),
        (1, original()),
        "the current value is untouched"
    );
    let logs = js(f
        .e()
        .query_audit(
            &Caller::local_operator(),
            &serde_json::from_value(json!({"action": "rotation_failed"})).unwrap(),
        )
        .unwrap());
    assert_eq!(logs["logs"].as_array().map(Vec::len), Some(1), "{logs}");
    // `rotate` starts afresh once the receiver is fixed.
    f.receiver.force("rotation.apply", None);
    let r = js(rt
        .block_on(
            f.e()
                .rotate_now(&Caller::local_operator(), "rot_db-weekly", Some(PATH)),
        )
        .unwrap());
    assert_eq!(r["rotated"][0]["status"], "completed", "{r}");
    assert_eq!(f.current().0, 2);
}

#[test]
fn a_failing_test_reverts_the_external_system_and_keeps_the_current_value() {
    let rt = rt();
    let f = setup(&rt);
    f.receiver.force("rotation.test", Some(400)); // final: no retries
    f.clock.advance(Duration::from_secs(8 * 86_400));
    let done = js(rt.block_on(f.e().rotation_tick()).unwrap());
    assert_eq!(done[0]["status"], "failed", "{done:?}");
    let st = f.status();
    assert_eq!(st["rotation"]["reverted"], true, "{st}");
    let events: Vec<String> = f.receiver.event_types();
    assert_eq!(
        events,
        ["rotation.apply", "rotation.test", "rotation.apply"]
    );
    assert_eq!(
        f.receiver.applied(),
        Some(original()),
        "the revert put the current value back"
    );
    assert_eq!(f.current(), (1, original()));
}

#[test]
fn a_crash_between_steps_resumes_with_the_same_pending_value() {
    let rt = rt();
    let mut f = setup(&rt);
    // Crash right after create: the pending value is in the file, nothing applied yet.
    rt.block_on(f.e().begin_rotation("rot_db-weekly", PATH))
        .unwrap();
    f.crash_and_reopen();
    assert_eq!(f.status()["rotation"]["state"], "pending_set");
    assert_eq!(f.current(), (1, original()));
    // One step (set), then crash again.
    let r = js(rt.block_on(f.e().advance_rotation(PATH, 1)).unwrap());
    assert_eq!(r["status"], "pending", "{r}");
    let applied = f.receiver.applied().expect("set ran");
    f.crash_and_reopen();
    assert_eq!(f.status()["rotation"]["state"], "pending_test");
    assert_eq!(
        f.current(),
        (1, original()),
        "never replaced by an untested value"
    );
    // One step (test), crash before finish.
    rt.block_on(f.e().advance_rotation(PATH, 1)).unwrap();
    f.crash_and_reopen();
    assert_eq!(f.status()["rotation"]["state"], "pending_finish");
    assert_eq!(f.current(), (1, original()));
    // The scheduler resumes it after the restart.
    let done = js(rt.block_on(f.e().rotation_tick()).unwrap());
    assert_eq!(done[0]["status"], "completed", "{done:?}");
    assert_eq!(
        f.current(),
        (2, applied.clone()),
        "the value applied before the crash is the one stored"
    );
    let events: Vec<String> = f.receiver.event_types();
    assert_eq!(events, ["rotation.apply", "rotation.test"]);
    assert!(f.status()["rotation"].is_null());
}

#[test]
fn a_write_during_a_rotation_supersedes_it() {
    let rt = rt();
    let f = setup(&rt);
    rt.block_on(f.e().begin_rotation("rot_db-weekly", PATH))
        .unwrap();
    rt.block_on(f.e().advance_rotation(PATH, 2)).unwrap();
    let w: WriteRequest = serde_json::from_value(
        json!({"data": {"username": "billing", "password": "typed-by-hand"}}),
    )
    .unwrap();
    rt.block_on(f.e().write_secret(&Caller::local_operator(), PATH, w))
        .unwrap();
    let r = js(rt.block_on(f.e().advance_rotation(PATH, 1)).unwrap());
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r["error"].as_str().unwrap().contains("superseded"));
    assert_eq!(f.current().1["password"], "typed-by-hand");
}

#[test]
fn backends_reach_only_allow_listed_hosts() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(SIGNING);
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let vault = Vault::create(&dir.path().join("v.db"), VAULT_PASS, KdfParams::FLOOR).unwrap();
    // Nothing allowed.
    let e = Engine::load_with(Arc::new(vault), clock.clone(), PluginSettings::default()).unwrap();
    let root = Caller::local_operator();
    rt.block_on(async {
        let w: WriteRequest = serde_json::from_value(json!({"data": {"password": "x"}})).unwrap();
        e.write_secret(&root, PATH, w).await.unwrap();
        let p: RotationPolicyRequest = serde_json::from_value(json!({
            "name": "r", "interval": "1d", "auto_generate": true, "backend": "webhook",
            "backend_config": {"url": receiver.url, "signing_secret": SIGNING}}))
        .unwrap();
        e.create_rotation_policy(&root, p).await.unwrap();
        e.assign_rotation(&root, "rot_r", PATH).await.unwrap();
        let r = js(e.rotate_now(&root, "rot_r", None).await.unwrap());
        assert_eq!(r["rotated"][0]["status"], "failed", "{r}");
        assert!(
            r["rotated"][0]["error"]
                .as_str()
                .unwrap()
                .contains("allow-list"),
            "{r}"
        );
        let bad: RotationPolicyRequest =
            serde_json::from_value(json!({"name": "n", "interval": "1d", "backend": "ftp"}))
                .unwrap();
        assert_eq!(
            e.create_rotation_policy(&root, bad).await.unwrap_err().code,
            scaivault_core::ErrorCode::ValidationError
        );
    });
    assert!(receiver.deliveries().is_empty());
}

// ---- the real binary ----

fn dev_with(extra: &[&str]) -> Dev {
    let mut args = vec!["--test-clock"];
    args.extend_from_slice(extra);
    Dev::start_with(&args)
}

fn advance(dev: &Dev, by: &str) -> Value {
    let (s, b) = dev.post("/v1/sys/test/clock", &dev.token, json!({"advance": by}));
    assert_eq!(s, 200, "{b}");
    b
}

#[test]
fn webhook_backend_through_the_binary_with_signed_deliveries() {
    let receiver = Receiver::start(SIGNING);
    let allow = format!("127.0.0.1:{}", receiver.port);
    let dev = dev_with(&["--allow-host", &allow]);
    let (s, b) = dev.put(
        &format!("/v1/secrets/{PATH}"),
        &dev.token,
        json!({"data": {"username": "billing", "password": "pw-1"}}),
    );
    assert_eq!(s, 201, "{b}");
    let url_cfg = format!("url={}", receiver.url);
    // The signing secret comes from stdin (`key=-`), not the command line.
    let secret_cfg = "signing_secret=-";
    let out = dev.cli_as(
        &dev.token,
        &[
            "rotation",
            "create",
            "--name",
            "billing-db",
            "--interval",
            "7d",
            "--grace-period",
            "24h",
            "--auto-generate",
            "--backend",
            "webhook",
            "--backend-config",
            &url_cfg,
            "--backend-config",
            secret_cfg,
        ],
        Some(&format!("{SIGNING}\n")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "rot_billing-db");
    let out = dev.cli(&["rotation", "assign", "rot_billing-db", PATH]);
    assert!(out.status.success(), "{}", stderr(&out));

    let moved = advance(&dev, "8d");
    assert_eq!(moved["rotations"][0]["status"], "completed", "{moved}");
    let (_, cur) = dev.get(&format!("/v1/secrets/{PATH}"), &dev.token);
    assert_eq!(cur["version"], 2);
    let (_, history) = dev.get(&format!("/v1/versions/{PATH}"), &dev.token);
    assert_eq!(
        history["versions"][1]["created_by"], "system:rotation-scheduler",
        "the scheduler's rotation is the scheduler's: {history}"
    );
    assert_eq!(receiver.applied(), Some(cur["data"].clone()));
    assert!(
        receiver
            .deliveries()
            .iter()
            .all(|d| d.signature_ok && d.status == 200)
    );
    // The previous version during the grace period, and not after it.
    let (s, _) = dev.get(&format!("/v1/secrets/{PATH}?version=1"), &dev.token);
    assert_eq!(s, 200);
    advance(&dev, "25h");
    let (s, _) = dev.get(&format!("/v1/secrets/{PATH}?version=1"), &dev.token);
    assert_ne!(s, 200);
    let out = dev.cli(&["rotation", "status", PATH, "--json"]);
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["secrets"][0]["backend"], "webhook");
}

#[test]
fn postgres_backend_changes_the_role_password_on_a_real_server() {
    let pg = Postgres::start();
    // A role name that needs quoting, to prove the host quotes it.
    let role = r#"billing "app""#;
    pg.admin_sql(r#"CREATE ROLE "billing ""app""" LOGIN PASSWORD 'pw-original'"#);
    assert!(pg.login(role, "pw-original"));

    let allow = format!("127.0.0.1:{}", pg.port);
    let dev = dev_with(&["--allow-host", &allow]);
    let (s, b) = dev.put(
        "/v1/secrets/infra/postgres/admin",
        &dev.token,
        json!({"data": {"username": "admin", "password": PG_ADMIN_PASS}}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = dev.put(
        &format!("/v1/secrets/{PATH}"),
        &dev.token,
        json!({"data": {"username": role, "password": "pw-original"}}),
    );
    assert_eq!(s, 201, "{b}");
    let cfg: Vec<String> = vec![
        "host=127.0.0.1".into(),
        format!("port={}", pg.port),
        format!("role={role}"),
        "admin_secret_path=infra/postgres/admin".into(),
    ];
    let mut args = vec![
        "rotation",
        "create",
        "--name",
        "db-passwords-weekly",
        "--interval",
        "7d",
        "--grace-period",
        "24h",
        "--auto-generate",
        "--backend",
        "postgres",
    ];
    for c in &cfg {
        args.push("--backend-config");
        args.push(c);
    }
    let out = dev.cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "rot_db-passwords-weekly");
    let out = dev.cli(&["rotation", "assign", "rot_db-passwords-weekly", PATH]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Nothing is due yet.
    let moved = advance(&dev, "6d");
    assert_eq!(moved["rotations"], json!([]));
    let moved = advance(&dev, "2d");
    assert_eq!(moved["rotations"][0]["status"], "completed", "{moved}");

    let (_, cur) = dev.get(&format!("/v1/secrets/{PATH}"), &dev.token);
    let new_password = cur["data"]["password"].as_str().unwrap().to_owned();
    assert_ne!(new_password, "pw-original");
    assert!(
        !pg.login(role, "pw-original"),
        "the old password no longer logs in"
    );
    assert!(
        pg.login(role, &new_password),
        "the new password, read from the vault, does"
    );
    // The previous version stays readable for the 24 h grace period, then not.
    let (s, old) = dev.get(&format!("/v1/secrets/{PATH}?version=1"), &dev.token);
    assert_eq!(
        (s, old["data"]["password"].as_str()),
        (200, Some("pw-original"))
    );
    advance(&dev, "25h");
    let (s, _) = dev.get(&format!("/v1/secrets/{PATH}?version=1"), &dev.token);
    assert_ne!(s, 200);
    // The audit log shows the rotation by the scheduler.
    let (_, logs) = dev.get("/v1/audit/logs?action=rotate", &dev.token);
    assert_eq!(
        logs["logs"][0]["identity_id"], "system:rotation-scheduler",
        "{logs}"
    );
    assert_eq!(logs["logs"][0]["extra_data"]["backend"], "postgres");
}

/// The real process killed with SIGKILL between `set` and `test`: after a restart on the same
/// file the rotation resumes with the same pending value, and the current value was never
/// replaced by an untested one.
#[test]
fn a_killed_server_resumes_the_rotation_after_restart() {
    let receiver = Receiver::start(SIGNING);
    let allow = format!("127.0.0.1:{}", receiver.port);
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("dev.db");
    let start = || {
        std::process::Command::new(bin())
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--test-clock",
                "--allow-host",
                &allow,
            ])
            .arg("--dev-vault")
            .arg(&vault)
            .env("SCAIVAULT_PASSPHRASE", "dev-passphrase")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let connect = |child: &mut std::process::Child| -> (String, String) {
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        (
            v["url"].as_str().unwrap().to_owned(),
            v["root_token"].as_str().unwrap().to_owned(),
        )
    };
    let call = |url: &str, token: &str, m: reqwest::Method, p: &str, body: Value| -> (u16, Value) {
        let r = http()
            .request(m, format!("{url}{p}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().unwrap_or(Value::Null))
    };

    let mut first = KillOnDrop(start());
    let (url, token) = connect(&mut first.0);
    call(
        &url,
        &token,
        reqwest::Method::PUT,
        &format!("/v1/secrets/{PATH}"),
        json!({"data": {"username": "billing", "password": "pw-original"}}),
    );
    let (s, b) = call(
        &url,
        &token,
        reqwest::Method::POST,
        "/v1/rotation/policies",
        json!({
        "name": "db", "interval": "7d", "auto_generate": true, "backend": "webhook",
        "backend_config": {"url": receiver.url, "signing_secret": SIGNING}}),
    );
    assert_eq!(s, 201, "{b}");
    call(
        &url,
        &token,
        reqwest::Method::POST,
        "/v1/rotation/policies/rot_db/secrets",
        json!({"secret_path": PATH}),
    );
    receiver.force("rotation.test", Some(503));
    let (_, moved) = call(
        &url,
        &token,
        reqwest::Method::POST,
        "/v1/sys/test/clock",
        json!({"advance": "8d"}),
    );
    assert_eq!(moved["rotations"][0]["status"], "pending", "{moved}");
    assert_eq!(moved["rotations"][0]["rotation"]["state"], "pending_test");
    let applied = receiver.applied().expect("set ran before the kill");

    // SIGKILL: nothing gets to finish.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    drop(first);

    receiver.force("rotation.test", None);
    let mut second = KillOnDrop(start());
    let (url, token) = connect(&mut second.0);
    let (_, cur) = call(
        &url,
        &token,
        reqwest::Method::GET,
        &format!("/v1/secrets/{PATH}"),
        Value::Null,
    );
    assert_eq!(
        (cur["version"].as_u64(), cur["data"]["password"].as_str()),
        (Some(1), Some("pw-original"))
    );
    let (_, st) = call(
        &url,
        &token,
        reqwest::Method::GET,
        &format!("/v1/rotation/status?path={PATH}"),
        Value::Null,
    );
    assert_eq!(
        st["secrets"][0]["rotation"]["state"], "pending_test",
        "{st}"
    );
    // The new process's clock starts at the real time: move it past the retry.
    let (_, moved) = call(
        &url,
        &token,
        reqwest::Method::POST,
        "/v1/sys/test/clock",
        json!({"advance": "9d"}),
    );
    assert_eq!(moved["rotations"][0]["status"], "completed", "{moved}");
    let (_, cur) = call(
        &url,
        &token,
        reqwest::Method::GET,
        &format!("/v1/secrets/{PATH}"),
        Value::Null,
    );
    assert_eq!(cur["version"], 2);
    assert_eq!(
        cur["data"], applied,
        "the value applied before the kill is the one that became current"
    );
    let kinds: Vec<String> = receiver.event_types();
    assert_eq!(kinds, ["rotation.apply", "rotation.test", "rotation.test"]);
}

/// Issue #18: secrets rotate side by side. A backend that holds its call (a dead system,
/// up to its timeout) holds up no other secret's rotation, and a secret that cannot be
/// rotated at all is reported while the scheduler's pass goes on.
#[test]
fn one_stalled_or_broken_rotation_holds_up_no_other() {
    use common::receiver::{Stall, eventually};
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let healthy = Receiver::start(SIGNING);
    let stall = Stall::start();
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let settings = PluginSettings {
        allow_hosts: vec![
            format!("127.0.0.1:{}", healthy.port),
            format!("127.0.0.1:{}", stall.port),
        ],
        ..Default::default()
    };
    let vault = Vault::create(&dir.path().join("v.db"), VAULT_PASS, KdfParams::FLOOR).unwrap();
    let e = Arc::new(Engine::load_with(Arc::new(vault), clock.clone(), settings).unwrap());
    let root = Caller::local_operator();
    rt.block_on(async {
        for (path, data) in [
            // No field a rotation could generate: rotating it is an error, not a failed job.
            ("app/a-broken", json!({"username": "only"})),
            ("app/b-stalled", json!({"password": "pw-b"})),
            ("app/c-healthy", json!({"password": "pw-c"})),
        ] {
            let w: WriteRequest = serde_json::from_value(json!({ "data": data })).unwrap();
            e.write_secret(&root, path, w).await.unwrap();
        }
        for (name, url, paths) in [
            (
                "healthy",
                &healthy.url,
                &["app/a-broken", "app/c-healthy"][..],
            ),
            ("stalled", &stall.url, &["app/b-stalled"][..]),
        ] {
            let p: RotationPolicyRequest = serde_json::from_value(json!({
                "name": name, "interval": "7d", "auto_generate": true, "backend": "webhook",
                "backend_config": {"url": url, "signing_secret": SIGNING},
            }))
            .unwrap();
            e.create_rotation_policy(&root, p).await.unwrap();
            for path in paths {
                e.assign_rotation(&root, &format!("rot_{name}"), path)
                    .await
                    .unwrap();
            }
        }
    });
    clock.advance(Duration::from_secs(8 * 86_400));
    let tick = {
        let e = e.clone();
        rt.spawn(async move { e.rotation_tick().await })
    };
    stall.wait_for_arrival();
    // While b's backend holds its call, c's rotation goes through both of its steps.
    assert!(
        eventually(Duration::from_secs(20), || healthy.event_types()
            == ["rotation.apply", "rotation.test"]),
        "c was not rotated while b's backend stalled: {:?}",
        healthy.event_types()
    );
    stall.release();
    let done = js(rt.block_on(tick).unwrap().unwrap());
    let status = |p: &str| {
        done.as_array()
            .unwrap()
            .iter()
            .find(|d| d["secret_path"] == p)
            .map(|d| d["status"].clone())
    };
    assert_eq!(status("app/a-broken"), Some(json!("error")), "{done:#?}");
    assert_eq!(
        status("app/b-stalled"),
        Some(json!("completed")),
        "{done:#?}"
    );
    assert_eq!(
        status("app/c-healthy"),
        Some(json!("completed")),
        "{done:#?}"
    );
    let broken = done
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["secret_path"] == "app/a-broken")
        .unwrap();
    assert_eq!(broken["error"]["code"], "validation_error", "{broken}");
}

/// A typed answer as the JSON the API sends, to look into by field name.
fn js(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap()
}
