//! Runs the real `scaivault` binary for end-to-end tests.
#![allow(dead_code)]

pub mod postgres;
pub mod receiver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_scaivault")
}

/// A running `scaivault dev` on a free loopback port, killed on drop.
pub struct Dev {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub vault: PathBuf,
    pub http: reqwest::blocking::Client,
}

impl Dev {
    pub fn start() -> Dev {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Dev {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Dev {
        let mut child = Command::new(bin())
            .args(["dev", "--listen", "127.0.0.1:0", "--json"])
            .args(extra)
            .env_remove("SCAIVAULT_URL")
            .env_remove("SCAIVAULT_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scaivault dev");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("dev prints its address");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("unexpected dev output {line:?}"));
        Dev {
            url: v["url"].as_str().unwrap().to_owned(),
            token: v["root_token"].as_str().unwrap().to_owned(),
            vault: PathBuf::from(v["vault"].as_str().unwrap()),
            child,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Stops the server as an operator would (SIGTERM) and waits for it to close the vault.
    pub fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The Prometheus text of `/v1/metrics` (public on `dev`).
    pub fn metrics(&self) -> String {
        self.http
            .get(format!("{}/v1/metrics", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    pub fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.req(reqwest::Method::GET, path, Some(token), None)
    }

    pub fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.req(reqwest::Method::PUT, path, Some(token), Some(body))
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.req(reqwest::Method::POST, path, Some(token), Some(body))
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_as(&self.token, args, None)
    }

    pub fn cli_as(&self, token: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        cli_env(
            args,
            &[("SCAIVAULT_URL", &self.url), ("SCAIVAULT_TOKEN", token)],
            stdin,
        )
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `scaivault ARGS` with `env`, an isolated HOME, and optional stdin.
pub fn cli_env(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("HOME", home.path())
        .env_remove("SCAIVAULT_URL")
        .env_remove("SCAIVAULT_TOKEN")
        .env_remove("SCAIVAULT_VAULT")
        .env_remove("SCAIVAULT_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run scaivault");
    {
        let mut sin = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            let _ = sin.write_all(s.as_bytes()); // the CLI may exit without reading it
        }
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Creates an identity, a policy over `pattern` with `perms`, binds it, and returns a token
/// with `scopes`.
pub fn service_account(
    dev: &Dev,
    id: &str,
    policy: &str,
    pattern: &str,
    perms: &[&str],
    scopes: &[&str],
) -> String {
    let (s, b) = dev.post(
        "/v1/identities",
        &dev.token,
        serde_json::json!({ "identity_id": id }),
    );
    assert!(
        s == 201 || b["error"]["code"] == "identity_exists",
        "{s} {b}"
    );
    let (s, p) = dev.post(
        "/v1/policies",
        &dev.token,
        serde_json::json!({ "name": policy, "rules": [{ "path_pattern": pattern, "permissions": perms }] }),
    );
    assert_eq!(s, 201, "{p}");
    let (s, _) = dev.post(
        &format!("/v1/policies/{}/bindings", p["id"].as_str().unwrap()),
        &dev.token,
        serde_json::json!({ "identity_type": "service_account", "identity_id": id }),
    );
    assert_eq!(s, 201);
    let (s, t) = dev.post(
        "/v1/auth/tokens",
        &dev.token,
        serde_json::json!({ "identity_id": id, "scopes": scopes, "ttl": "1h" }),
    );
    assert_eq!(s, 201, "{t}");
    t["token"].as_str().unwrap().to_owned()
}

pub fn wait_for(url: &str) {
    for _ in 0..200 {
        if reqwest::blocking::get(format!("{url}/v1/health")).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("server at {url} did not come up");
}

pub fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read vault file")
}

pub const PASS: &str = "correct horse battery staple";

pub fn init(dir: &Path) -> (std::path::PathBuf, String) {
    let vault = dir.join("vault.db");
    let out = cli_env(
        &[
            "init",
            "--vault",
            vault.to_str().unwrap(),
            "--json",
            "--kdf-memory-mib",
            "19",
            "--kdf-passes",
            "2",
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (vault, v["root_token"].as_str().unwrap().to_owned())
}

/// Starts `scaivault server` and returns it with its URL (read from its start-up line).
pub fn server(vault: &Path, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["server", "--vault", vault.to_str().unwrap()]);
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.args(args)
        .env_remove("SCAIVAULT_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break None;
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break Some(rest.split_whitespace().next().unwrap().to_owned());
        }
    };
    match url {
        Some(url) => {
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            (child, url)
        }
        None => {
            let status = child.wait();
            panic!("server exited before listening: {status:?}");
        }
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_of(p: &Path) -> String {
    // Computed independently of the vault's own crypto crate, as a client would.
    #[allow(clippy::disallowed_types)]
    let digest = <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(p).unwrap());
    hex::encode(digest)
}

/// Kills a child process when dropped, so a failing test leaves no server behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
