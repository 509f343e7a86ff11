//! The outbox: each event raised by a change is matched against the webhooks, and one pending
//! delivery per matching webhook is written in the same transaction as the change (a
//! committed change always has its deliveries; an uncommitted one has none). The delivery
//! worker in `webhooks` sends them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use scaivault_core::time::Timestamp;
use scaivault_store::{Table, WriteTx};
use serde_json::Value;

use crate::events::Event;
use crate::webhook_records::{
    DeliveryRecord, DeliveryStatus, WebhookItem, WebhookRecord, delivery_key,
};
use crate::{encode, read, write};

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

/// Events only an exact subscription receives: one per read (or per refused request, which
/// any token holder can make) is far more than a webhook that asked for `secret.*` or `*`
/// bargained for.
const EXPLICIT_ONLY: &[&str] = &["secret.accessed", "policy.violation"];

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
