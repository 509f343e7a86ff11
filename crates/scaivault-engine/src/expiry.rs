//! `secret.expiring` and `secret.expired`.
//!
//! A secret with an `expires_at` (from `options.expires_in`, or a certificate's notAfter) is
//! announced when it reaches a `notify_before` threshold — its metadata field, e.g. `"14d,2d"`,
//! by default `30d,7d,1d` — and once when it has passed. Only the tightest threshold reached is
//! sent (a secret written to expire in twelve hours gets one `1d` notice, not three). Each
//! notice goes out once per expiry time: what was sent is recorded (table `rotation`,
//! `expiry/<path>`) in the transaction that queues the deliveries, and a new `expires_at`
//! starts afresh.

use std::time::Duration;

use scaivault_core::duration::parse_duration_list;
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, Result};
use scaivault_store::Table;
use serde_json::{Value, json};

use scaivault_core::scope::{Permission, Scope};
use serde::{Deserialize, Serialize};

use crate::Caller;
use crate::events::Event;
use crate::records::SecretHead;
use crate::rotation_state::RotationRecord;
use crate::{Engine, encode, read, write};

pub const DEFAULT_NOTIFY_BEFORE: &str = "30d,7d,1d";

/// Checks a `notify_before` metadata value at write time.
pub(crate) fn check_notify_before(v: &Value) -> std::result::Result<(), &'static str> {
    match v.as_str().map(parse_duration_list) {
        Some(Ok(list)) if !list.is_empty() && list.iter().all(|d| !d.is_zero()) => Ok(()),
        _ => Err("must be a comma-separated list of durations such as \"30d,7d,1d\""),
    }
}

pub(crate) fn expiry_key(path: &str) -> Vec<u8> {
    let mut k = b"expiry/".to_vec();
    k.extend_from_slice(path.as_bytes());
    k
}

/// The notice a secret is owed now, if any: its key, event type and data, and every key it
/// settles (the thresholds it passes over, so they are not sent later).
fn due_notice(
    head: &SecretHead,
    expires_at: Timestamp,
    now: Timestamp,
) -> Option<(String, &'static str, Value, Vec<String>)> {
    let raw = head
        .metadata
        .get("notify_before")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_NOTIFY_BEFORE);
    let thresholds: Vec<(String, Duration)> = match parse_duration_list(raw) {
        Ok(list) => raw
            .split(',')
            .map(|s| s.trim().to_owned())
            .zip(list)
            .collect(),
        Err(_) => DEFAULT_NOTIFY_BEFORE
            .split(',')
            .map(str::to_owned)
            .zip(parse_duration_list(DEFAULT_NOTIFY_BEFORE).expect("valid default"))
            .collect(),
    };
    let reached: Vec<&(String, Duration)> = thresholds
        .iter()
        .filter(|(_, d)| now >= expires_at.minus(*d))
        .collect();
    let mut settles: Vec<String> = reached.iter().map(|(r, _)| format!("warn:{r}")).collect();
    if now >= expires_at {
        settles.push("expired".into());
        let data = json!({ "expires_at": expires_at, "secret_type": head.secret_type });
        return Some(("expired".into(), "secret.expired", data, settles));
    }
    let (raw, _) = reached.into_iter().min_by_key(|(_, d)| *d)?;
    let days_remaining = (expires_at.unix_seconds() - now.unix_seconds()).max(0) / 86_400;
    let data = json!({
        "expires_at": expires_at, "days_remaining": days_remaining, "threshold": raw,
        "secret_type": head.secret_type,
    });
    Some((format!("warn:{raw}"), "secret.expiring", data, settles))
}

/// A secret that expires within the asked window (or has expired).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExpiringSecret {
    pub path: String,
    pub secret_type: String,
    pub version: u64,
    pub expires_at: Timestamp,
    /// Whole days left (0 on the last day; negative once expired).
    pub days_remaining: i64,
    pub expired: bool,
}

/// `GET /v1/expiring`: soonest first.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExpiringSecrets {
    pub secrets: Vec<ExpiringSecret>,
    pub within_days: u32,
    /// More secrets matched than `limit`; the ones shown are the soonest.
    pub truncated: bool,
}

/// The longest window an expiring query may ask about.
pub const MAX_EXPIRING_DAYS: u32 = 3650;

impl Engine {
    /// The live secrets under `prefix` the caller may list whose `expires_at` falls within
    /// `days` from now, already expired ones included, soonest first, at most `limit`. Reads
    /// the head of each secret under the prefix (no values).
    pub fn expiring_secrets(
        &self,
        caller: &Caller,
        prefix: &str,
        days: u32,
        limit: Option<usize>,
    ) -> Result<ExpiringSecrets> {
        self.authorize(caller, Scope::SecretsList, None)?;
        scaivault_core::path::validate_prefix(prefix)?;
        if days == 0 || days > MAX_EXPIRING_DAYS {
            return Err(Error::invalid_request(format!(
                "days must be between 1 and {MAX_EXPIRING_DAYS}"
            )));
        }
        let limit = limit.unwrap_or(crate::limits::DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > crate::limits::MAX_LIST_LIMIT {
            return Err(Error::invalid_request(format!(
                "limit must be between 1 and {}",
                crate::limits::MAX_LIST_LIMIT
            )));
        }
        let now = self.now();
        let horizon = now.plus(Duration::from_secs(u64::from(days) * 86_400));
        let may_list = self.checker(caller, Permission::List);
        let paths: Vec<String> = read(&self.paths)
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(p, _)| p.starts_with(prefix))
            .filter(|(p, e)| !e.deleted && may_list(p))
            .map(|(p, _)| p.clone())
            .collect();
        let mut found = Vec::new();
        for path in paths {
            let Some(head) = self.load_head(&path)? else {
                continue;
            };
            let Some(expires_at) = head.expires_at.filter(|at| *at <= horizon) else {
                continue;
            };
            if head.deleted_at.is_some() {
                continue;
            }
            let left = expires_at.unix_seconds() - now.unix_seconds();
            found.push(ExpiringSecret {
                path,
                secret_type: head.secret_type.clone(),
                version: head.current_version,
                expires_at,
                days_remaining: left.div_euclid(86_400),
                expired: left <= 0,
            });
        }
        found.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.path.cmp(&b.path)));
        let truncated = found.len() > limit;
        found.truncate(limit);
        Ok(ExpiringSecrets {
            secrets: found,
            within_days: days,
            truncated,
        })
    }

    /// One pass over the live secrets: queues the expiry notices that are due. Returns how
    /// many. Nothing is read while no webhook exists (a threshold reached meanwhile is sent
    /// once one does, while it still applies). The server runs it every five minutes and
    /// `dev --test-clock` after each move of the clock; the thresholds are days apart.
    pub async fn expiry_tick(&self) -> Result<usize> {
        if read(&self.events.state).hooks.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let paths: Vec<String> = read(&self.paths)
            .iter()
            .filter(|(_, e)| !e.deleted)
            .map(|(p, _)| p.clone())
            .collect();
        let mut queued = 0;
        for path in paths {
            let Some(head) = self.load_head(&path)? else {
                continue;
            };
            if let (Some(expires_at), None) = (head.expires_at, head.deleted_at) {
                queued += usize::from(self.send_expiry_notice(&head, expires_at, now).await?);
            }
        }
        Ok(queued)
    }

    async fn send_expiry_notice(
        &self,
        head: &SecretHead,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let Some((key, kind, data, settles)) = due_notice(head, expires_at, now) else {
            return Ok(false);
        };
        let already: Vec<String> = match read(&self.rotation).expiry.get(&head.path) {
            Some((at, sent)) if *at == expires_at => sent.clone(),
            _ => Vec::new(),
        };
        if already.contains(&key) {
            return Ok(false);
        }
        let mut sent = already;
        for s in settles {
            if !sent.contains(&s) {
                sent.push(s);
            }
        }
        let event = Event::new(kind, "system:scheduler", Some(&head.path), data, now);
        let record = RotationRecord::ExpiryNotices {
            secret_path: head.path.clone(),
            expires_at,
            sent: sent.clone(),
        };
        let (state, sink, path) = (
            self.rotation.clone(),
            self.events.clone(),
            head.path.clone(),
        );
        self.vault
            .write(move |tx| {
                tx.put(Table::Rotation, &expiry_key(&path), &encode(&record));
                sink.enqueue_in(tx, vec![event], &[], now);
                tx.on_commit(move || {
                    write(&state).expiry.insert(path, (expires_at, sent));
                });
                Ok::<_, Error>(())
            })
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(notify: Option<&str>) -> SecretHead {
        let mut h = SecretHead::new("tls/web", Timestamp(0));
        h.secret_type = "certificate".into();
        if let Some(n) = notify {
            h.metadata.insert("notify_before".into(), json!(n));
        }
        h
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn the_tightest_threshold_reached_is_the_one_sent() {
        let exp = Timestamp::from_unix_seconds(1_000 * 86_400);
        let h = head(None);
        assert!(due_notice(&h, exp, exp.minus(DAY * 31)).is_none());
        let (key, kind, data, settles) = due_notice(&h, exp, exp.minus(DAY * 20)).unwrap();
        assert_eq!((key.as_str(), kind), ("warn:30d", "secret.expiring"));
        assert_eq!(data["days_remaining"], 20);
        assert_eq!(settles, ["warn:30d"]);
        let (key, _, data, settles) =
            due_notice(&h, exp, exp.minus(Duration::from_secs(3600))).unwrap();
        assert_eq!(key, "warn:1d");
        assert_eq!(data["threshold"], "1d");
        assert_eq!(settles, ["warn:30d", "warn:7d", "warn:1d"]);
        let (key, kind, _, settles) = due_notice(&h, exp, exp).unwrap();
        assert_eq!((key.as_str(), kind), ("expired", "secret.expired"));
        assert!(settles.contains(&"expired".to_owned()));
    }

    #[test]
    fn notify_before_is_the_secrets_own_and_checked() {
        let exp = Timestamp::from_unix_seconds(1_000 * 86_400);
        let h = head(Some("14d, 2d"));
        assert!(due_notice(&h, exp, exp.minus(DAY * 20)).is_none());
        assert_eq!(
            due_notice(&h, exp, exp.minus(DAY * 10)).unwrap().0,
            "warn:14d"
        );
        assert!(check_notify_before(&json!("30d,1d")).is_ok());
        for bad in [json!("soon"), json!(""), json!(7), json!("0s")] {
            assert!(check_notify_before(&bad).is_err(), "{bad}");
        }
    }
}
