//! A webhook receiver for tests: verifies ScaiVault's signature on every delivery, records
//! it, and plays the external system of a rotation: `rotation.apply` stores the new value,
//! `rotation.test` succeeds only if the value tested is the one applied. Answers can be forced
//! per event type to simulate failures.
// The signature is checked with HMAC from its own crates, not ScaiVault's: an independent
// check of what the vault signs.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_type: String,
    pub body: Value,
    /// The signature matched (the current one, or during a secret rotation the previous).
    pub signature_ok: bool,
    /// It matched only through `X-ScaiVault-Signature-Previous`.
    pub via_previous: bool,
    pub status: u16,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
pub struct State {
    pub deliveries: Vec<Delivery>,
    /// The "external system's" current credential: the last applied `new_data`.
    pub applied: Option<Value>,
    /// Forced answers by event type (e.g. `rotation.test` → 500).
    pub force: HashMap<String, u16>,
}

pub struct Receiver {
    pub url: String,
    pub port: u16,
    pub state: Arc<Mutex<State>>,
}

fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(ts.as_bytes());
    m.update(b".");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

impl Receiver {
    pub fn start(secret: &str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let (st, secret) = (state.clone(), secret.to_owned());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut headers = HashMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let ts = headers
                    .get("x-scaivault-timestamp")
                    .cloned()
                    .unwrap_or_default();
                let expected = sign(&secret, &ts, &body);
                let agent_ok =
                    headers.get("user-agent").map(String::as_str) == Some("ScaiVault-Webhook/1.0");
                let primary = headers.get("x-scaivault-signature") == Some(&expected);
                let via_previous =
                    !primary && headers.get("x-scaivault-signature-previous") == Some(&expected);
                let signature_ok = agent_ok && (primary || via_previous);
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let event_type = headers
                    .get("x-scaivault-event-type")
                    .cloned()
                    .unwrap_or_default();
                let mut s = st.lock().unwrap();
                let status = if !signature_ok {
                    401
                } else if let Some(forced) = s.force.get(&event_type) {
                    *forced
                } else if event_type == "rotation.apply" {
                    s.applied = Some(v["data"]["new_data"].clone());
                    200
                } else if event_type == "rotation.test" {
                    if s.applied.as_ref() == Some(&v["data"]["new_data"]) {
                        200
                    } else {
                        409
                    }
                } else {
                    200
                };
                s.deliveries.push(Delivery {
                    event_type,
                    body: v,
                    signature_ok,
                    via_previous,
                    status,
                    headers,
                });
                drop(s);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks/rotation"),
            port,
            state,
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// The event types received, in order.
    pub fn event_types(&self) -> Vec<String> {
        self.deliveries()
            .into_iter()
            .map(|d| d.event_type)
            .collect()
    }

    pub fn applied(&self) -> Option<Value> {
        self.state.lock().unwrap().applied.clone()
    }

    pub fn force(&self, event_type: &str, status: Option<u16>) {
        let mut s = self.state.lock().unwrap();
        match status {
            Some(code) => s.force.insert(event_type.to_owned(), code),
            None => s.force.remove(event_type),
        };
    }
}

/// An endpoint that holds its first request unanswered until the test lets it go, then
/// answers every request `200`: a slow or dead system, to show that one held call holds up
/// nothing else.
pub struct Stall {
    pub url: String,
    pub port: u16,
    arrived: std::sync::mpsc::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

impl Stall {
    pub fn start() -> Stall {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (arrived_tx, arrived) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut first = true;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                if first {
                    first = false;
                    let _ = arrived_tx.send(());
                    let _ = release_rx.recv();
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Stall {
            url: format!("http://127.0.0.1:{port}/stalled"),
            port,
            arrived,
            release,
        }
    }

    /// Waits until the first request is being held.
    pub fn wait_for_arrival(&self) {
        self.arrived
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the held request arrived");
    }

    /// Answers the held request (and every later one at once).
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

/// Waits until `f` holds, checking every few milliseconds; false if it still does not after
/// `within` (a condition waited on, not a sleep before an assertion).
pub fn eventually(within: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
