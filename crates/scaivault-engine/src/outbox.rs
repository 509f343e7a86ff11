//! The outbox: each event raised by a change is matched against the webhooks and
//! subscriptions, and one delivery per match is written in the same transaction as the change
//! (a committed change always has its deliveries; an uncommitted one has none). The delivery
//! worker in `webhooks` sends the pending ones; a polling subscription's wait in its buffer
//! for `subscriptions` to hand out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use scaivault_core::identity::IdentityId;
use scaivault_core::policy::{CompiledPolicy, Context, Subject, evaluate};
use scaivault_core::scope::Permission;
use scaivault_core::time::Timestamp;
use scaivault_store::{Table, WriteTx};
use serde_json::Value;

use crate::events::Event;
use crate::identities::IdentityIndex;
use crate::webhook_records::{
    DeliveryRecord, DeliveryStatus, SubscriptionDelivery, WebhookItem, WebhookRecord, delivery_key,
};
use crate::{encode, read, write};

/// The webhooks and the pending deliveries, as loaded from the file and kept in step with it.
#[derive(Default)]
pub(crate) struct WebhookState {
    /// Webhooks and subscriptions, by id.
    pub(crate) hooks: BTreeMap<String, WebhookRecord>,
    pub(crate) pending: BTreeMap<u64, DeliveryRecord>,
    /// Webhook id → sequence numbers of its finished deliveries (the records stay in the
    /// file): the delivery log is pruned and read by key, never by decrypting the table.
    pub(crate) finished: BTreeMap<String, std::collections::BTreeSet<u64>>,
    /// Polling subscription id → its unacknowledged events, oldest first.
    pub(crate) buffers: HashMap<String, BTreeMap<u64, DeliveryRecord>>,
    /// Buffered events dropped (past a buffer's size) whose records are still in the file:
    /// the next change that queues events deletes them. Memory holds the bound exactly; the
    /// file catches up one change later.
    pub(crate) dropped: Vec<u64>,
}

impl WebhookState {
    /// Adds a polled event to its subscription's buffer, dropping the oldest past its size.
    pub(crate) fn buffer(&mut self, d: DeliveryRecord, size: usize) {
        let buf = self.buffers.entry(d.webhook_id.clone()).or_default();
        buf.insert(d.seq, d);
        while buf.len() > size {
            if let Some((seq, _)) = buf.pop_first() {
                self.dropped.push(seq);
            }
        }
    }

    /// The buffer size of `id` if it is a polling subscription.
    pub(crate) fn polled(&self, id: &str) -> Option<usize> {
        match self.hooks.get(id)?.subscription.as_ref()?.delivery {
            SubscriptionDelivery::Polling { buffer_size } => Some(buffer_size),
            SubscriptionDelivery::Webhook => None,
        }
    }
}

/// Who may read what, as the policies and identities stand: a subscription's owner is checked
/// without a token (it is not making a request when its events are queued or sent).
#[derive(Clone)]
pub(crate) struct Readers {
    pub(crate) policies: Arc<RwLock<Arc<Vec<CompiledPolicy>>>>,
    pub(crate) identities: Arc<RwLock<IdentityIndex>>,
}

impl Readers {
    /// Whether `owner`'s policies (its own bindings and its groups') let it read `path` now.
    /// The root reads everything; a deleted identity nothing.
    pub(crate) fn may_read(&self, owner: &str, path: &str, now: Timestamp) -> bool {
        if owner == crate::caller::ROOT_IDENTITY {
            return true;
        }
        let Ok(identity_id) = IdentityId::parse(owner) else {
            return false;
        };
        let groups = {
            let ids = read(&self.identities);
            if !ids.by_id.contains_key(owner) {
                return false;
            }
            ids.groups(owner)
        };
        let policies = read(&self.policies).clone();
        let ctx = Context {
            source_ip: None,
            mfa_verified: false,
            now,
        };
        let subject = Subject {
            identity_id,
            groups,
        };
        evaluate(&policies, &subject, path, Permission::Read, &ctx).allowed
    }
}

/// Where events go: cheap to clone into a write job.
#[derive(Clone)]
pub(crate) struct EventSink {
    pub(crate) state: Arc<RwLock<WebhookState>>,
    pub(crate) seq: Arc<AtomicU64>,
    /// Wakes the webhook delivery worker.
    pub(crate) notify: Arc<tokio::sync::Notify>,
    /// Wakes every long-poll when buffered events were committed.
    pub(crate) polled: Arc<tokio::sync::Notify>,
    pub(crate) readers: Readers,
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

fn matches(h: &WebhookRecord, e: &Event, extra: &[String], readers: &Readers) -> bool {
    if !h.enabled {
        return false;
    }
    let targeted = h.subscription.is_none() && extra.contains(&h.id);
    if !targeted && !subscribed(&h.events, &e.event_type) {
        return false;
    }
    if let Some(sub) = &h.subscription {
        // Path-scoped: an event without a path (a policy change) is no subscription's.
        let Some(path) = e.path.as_deref() else {
            return false;
        };
        let globbed = sub
            .paths
            .iter()
            .any(|g| scaivault_core::glob::Glob::parse(g).is_ok_and(|g| g.matches(path)));
        if !globbed || !readers.may_read(&sub.owner, path, e.timestamp) {
            return false;
        }
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
        // (Subscriptions count: they are enabled consumers like any webhook.)
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
        // Each record with the buffer size of its polling subscription (None: a webhook's).
        let (records, dropped): (Vec<(DeliveryRecord, Option<usize>)>, Vec<u64>) = {
            let s = read(&self.state);
            if s.hooks.is_empty() {
                return;
            }
            let records = events
                .iter()
                .flat_map(|e| {
                    s.hooks
                        .values()
                        .filter(|h| matches(h, e, extra, &self.readers))
                        .map(|h| {
                            let d = DeliveryRecord::new(
                                self.seq.fetch_add(1, Ordering::SeqCst),
                                &h.id,
                                e,
                                now,
                            );
                            (d, s.polled(&h.id))
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>();
            // The events these push out of a full buffer (its oldest) are deleted in this
            // transaction, with any dropped earlier and not yet deleted.
            let mut dropped = s.dropped.clone();
            let mut added: HashMap<&str, usize> = HashMap::new();
            for (r, size) in &records {
                if size.is_some() {
                    *added.entry(r.webhook_id.as_str()).or_default() += 1;
                }
            }
            for (id, n) in added {
                if let (Some(size), Some(buf)) = (s.polled(id), s.buffers.get(id)) {
                    let over = (buf.len() + n).saturating_sub(size);
                    dropped.extend(buf.keys().take(over).copied());
                }
            }
            (records, dropped)
        };
        if records.is_empty() {
            return;
        }
        for (r, _) in &records {
            tx.put(
                Table::Webhooks,
                &delivery_key(r.seq),
                &encode(&WebhookItem::Delivery(r.clone())),
            );
        }
        for seq in &dropped {
            tx.delete(Table::Webhooks, &delivery_key(*seq));
        }
        let (state, notify, polled) =
            (self.state.clone(), self.notify.clone(), self.polled.clone());
        tx.on_commit(move || {
            let mut s = write(&state);
            let mut buffered = false;
            for (r, buffer) in records {
                match buffer {
                    Some(size) => {
                        s.buffer(r, size);
                        buffered = true;
                    }
                    None if r.status == DeliveryStatus::Pending => {
                        s.pending.insert(r.seq, r);
                    }
                    None => {}
                }
            }
            // (After the buffers were trimmed: what this transaction deleted is done with.)
            let deleted: std::collections::HashSet<u64> = dropped.into_iter().collect();
            s.dropped.retain(|seq| !deleted.contains(seq));
            drop(s);
            notify.notify_one();
            if buffered {
                polled.notify_waiters();
            }
        });
    }
}
