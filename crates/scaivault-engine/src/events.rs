//! Events (spec §1.9): what changed, in the spec's envelope, never carrying a secret value.
//! Each event is matched against the webhooks when it is raised, and one pending delivery per
//! matching webhook is written in the same transaction as the change that raised it where
//! that change is a secret write (an outbox: a committed change always has its deliveries).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use scaivault_core::time::Timestamp;
use scaivault_store::{Table, WriteTx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::webhooks::{DeliveryRecord, DeliveryStatus, WebhookItem, WebhookRecord, delivery_key};
use crate::{encode, read, write};

/// The event types this vault raises.
pub const EVENT_TYPES: &[&str] = &[
    "secret.created",
    "secret.updated",
    "secret.deleted",
    "secret.rotated",
    "secret.expiring",
    "secret.expired",
    "secret.accessed",
    "policy.created",
    "policy.updated",
    "policy.deleted",
    "policy.binding.created",
    "policy.binding.deleted",
    "rotation.due",
    "rotation.overdue",
    "rotation.completed",
    "rotation.failed",
    "webhook.test",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub event_type: String,
    pub timestamp: Timestamp,
    pub identity_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Event {
    pub fn new(
        event_type: &str,
        identity_id: &str,
        path: Option<&str>,
        data: Value,
        now: Timestamp,
    ) -> Event {
        let id: [u8; 12] = scaivault_crypto::unique_id_bytes();
        Event {
            event_id: format!("evt_{}", hex::encode(id)),
            event_type: event_type.to_owned(),
            timestamp: now,
            identity_id: identity_id.to_owned(),
            path: path.map(str::to_owned),
            data,
            request_id: None,
        }
    }
}

/// The webhooks and the pending deliveries, as loaded from the file and kept in step with it.
#[derive(Default)]
pub(crate) struct WebhookState {
    pub(crate) hooks: BTreeMap<String, WebhookRecord>,
    pub(crate) pending: BTreeMap<u64, DeliveryRecord>,
    /// Webhook id → sequence numbers of its finished deliveries (the records stay in the
    /// file): the delivery log is pruned and read by key, never by decrypting the table.
    pub(crate) finished: BTreeMap<String, std::collections::BTreeSet<u64>>,
}

/// Where events go: cheap to clone into a write job.
#[derive(Clone)]
pub(crate) struct EventSink {
    pub(crate) state: Arc<RwLock<WebhookState>>,
    pub(crate) seq: Arc<AtomicU64>,
    pub(crate) notify: Arc<tokio::sync::Notify>,
}

/// Events only an exact subscription receives: one per read is far more than a webhook that
/// asked for `secret.*` or `*` bargained for.
const EXPLICIT_ONLY: &[&str] = &["secret.accessed"];

/// Whether a webhook subscribed to `event_type`: exact, `*`, or a group such as `secret.*`.
pub(crate) fn subscribed(events: &[String], event_type: &str) -> bool {
    let wildcards = !EXPLICIT_ONLY.contains(&event_type);
    events.iter().any(|e| {
        e == event_type
            || wildcards
                && (e == "*"
                    || e.strip_suffix(".*")
                        .is_some_and(|g| event_type.starts_with(&format!("{g}."))))
    })
}

fn matches(h: &WebhookRecord, e: &Event, extra: &[String]) -> bool {
    if !h.enabled {
        return false;
    }
    let targeted = extra.contains(&h.id);
    if !targeted && !subscribed(&h.events, &e.event_type) {
        return false;
    }
    let f = &h.filters;
    if let Some(prefix) = &f.path_prefix
        && !e
            .path
            .as_deref()
            .is_some_and(|p| p.starts_with(prefix.as_str()))
    {
        return false;
    }
    if let Some(t) = &f.secret_type
        && e.data.get("secret_type").and_then(Value::as_str) != Some(t.as_str())
    {
        return false;
    }
    if !f.tags.is_empty() {
        let tags: Vec<&str> = e
            .data
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !f.tags.iter().all(|t| tags.contains(&t.as_str())) {
            return false;
        }
    }
    true
}

impl EventSink {
    /// Whether any enabled webhook subscribed to `event_type` (filters aside).
    pub(crate) fn wanted(&self, event_type: &str) -> bool {
        read(&self.state)
            .hooks
            .values()
            .any(|h| h.enabled && subscribed(&h.events, event_type))
    }

    /// Queues deliveries of `events` inside a write job: durable with the change, and visible
    /// to the delivery worker once committed. `extra` names webhooks that receive the events
    /// whatever they subscribed to (a rotation policy's `webhook_ids`).
    pub(crate) fn enqueue_in(
        &self,
        tx: &mut WriteTx<'_, '_>,
        events: Vec<Event>,
        extra: &[String],
        now: Timestamp,
    ) {
        let records: Vec<DeliveryRecord> = {
            let s = read(&self.state);
            if s.hooks.is_empty() {
                return;
            }
            events
                .iter()
                .flat_map(|e| {
                    s.hooks
                        .values()
                        .filter(|h| matches(h, e, extra))
                        .map(|h| {
                            DeliveryRecord::new(
                                self.seq.fetch_add(1, Ordering::SeqCst),
                                &h.id,
                                e,
                                now,
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        if records.is_empty() {
            return;
        }
        for r in &records {
            tx.put(
                Table::Webhooks,
                &delivery_key(r.seq),
                &encode(&WebhookItem::Delivery(r.clone())),
            );
        }
        let (state, notify) = (self.state.clone(), self.notify.clone());
        tx.on_commit(move || {
            let mut s = write(&state);
            for r in records {
                if r.status == DeliveryStatus::Pending {
                    s.pending.insert(r.seq, r);
                }
            }
            drop(s);
            notify.notify_one();
        });
    }
}

/// The `data` of `secret.created` / `secret.updated`.
pub(crate) fn secret_written_event(
    out: &crate::WriteOutcome,
    actor: &str,
    tags: Option<&Value>,
    is_rotation: bool,
    now: Timestamp,
) -> Event {
    let data = if out.created {
        json!({ "version": out.version, "secret_type": out.secret_type, "created_by": actor,
                "tags": tags.cloned().unwrap_or(json!([])), "expires_at": out.expires_at })
    } else {
        json!({ "old_version": out.version.saturating_sub(1), "new_version": out.version,
                "updated_by": actor, "is_rotation": is_rotation, "secret_type": out.secret_type,
                "tags": tags.cloned().unwrap_or(json!([])) })
    };
    let t = if out.created {
        "secret.created"
    } else {
        "secret.updated"
    };
    Event::new(t, actor, Some(&out.path), data, now)
}
