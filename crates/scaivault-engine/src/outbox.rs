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
    /// Deliveries waiting to be sent; changed only through `add_pending`/`remove_pending`,
    /// which keep `pending_of` in step.
    pub(crate) pending: BTreeMap<u64, DeliveryRecord>,
    /// Consumer id → how many of its deliveries are pending (the bound on what one endpoint
    /// that never answers can make the vault hold).
    pending_of: HashMap<String, usize>,
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

/// Deliveries one webhook may have waiting; past it new events are not queued for it (and
/// counted): an endpoint that fails for hours, fed by events anyone can cause, must not fill
/// the file. A subscription's webhook gets the polled buffer's largest size (10,000, as
/// `subscriptions::MAX_BUFFER_SIZE`).
pub(crate) const MAX_PENDING_PER_WEBHOOK: usize = 10_000;
pub(crate) const MAX_PENDING_PER_SUBSCRIPTION: usize = 10_000;

impl WebhookState {
    pub(crate) fn add_pending(&mut self, d: DeliveryRecord) {
        let id = d.webhook_id.clone();
        if self.pending.insert(d.seq, d).is_none() {
            *self.pending_of.entry(id).or_default() += 1;
        }
    }

    pub(crate) fn remove_pending(&mut self, seq: u64) {
        if let Some(d) = self.pending.remove(&seq)
            && let Some(n) = self.pending_of.get_mut(&d.webhook_id)
        {
            *n -= 1;
            if *n == 0 {
                self.pending_of.remove(&d.webhook_id);
            }
        }
    }

    /// Whether `h` can take another pending delivery.
    fn has_room(&self, h: &WebhookRecord, queued_now: usize) -> bool {
        let cap = if h.subscription.is_some() {
            MAX_PENDING_PER_SUBSCRIPTION
        } else {
            MAX_PENDING_PER_WEBHOOK
        };
        self.pending_of.get(&h.id).copied().unwrap_or(0) + queued_now < cap
    }

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
    /// Deliveries not queued because their webhook had too many waiting.
    pub(crate) not_queued: Arc<AtomicU64>,
}

/// An event as a subscription receives it: a failed rotation's error text is the backend's
/// (hosts, users, configuration) and an admin's business; the path's reader learns that it
/// failed, at which step and how often.
fn for_subscriber(e: &Event) -> Event {
    let mut e = e.clone();
    if let Some(data) = e.data.as_object_mut() {
        data.remove("error");
    }
    e
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
        // Audit-grade events (who read what, who was refused) are for admin webhooks only,
        // whatever an old record says.
        if EXPLICIT_ONLY.contains(&e.event_type.as_str()) {
            return false;
        }
        if !sub.covers(path) || !readers.may_read(&sub.owner, path, e.timestamp) {
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
            let mut queued: HashMap<&str, usize> = HashMap::new();
            let mut records = Vec::new();
            for e in &events {
                for h in s
                    .hooks
                    .values()
                    .filter(|h| matches(h, e, extra, &self.readers))
                {
                    let polled = s.polled(&h.id);
                    if polled.is_none() {
                        let n = queued.entry(h.id.as_str()).or_default();
                        if !s.has_room(h, *n) {
                            self.not_queued.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        *n += 1;
                    }
                    let event = if h.subscription.is_some() {
                        for_subscriber(e)
                    } else {
                        e.clone()
                    };
                    let seq = self.seq.fetch_add(1, Ordering::SeqCst);
                    records.push((DeliveryRecord::new(seq, &h.id, &event, now), polled));
                }
            }
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
                    None if r.status == DeliveryStatus::Pending => s.add_pending(r),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook_records::WebhookRecord;

    fn hook(id: &str) -> WebhookRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "url": "https://example.com/", "secret": "s".repeat(16),
            "events": ["*"], "enabled": true,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn a_webhook_holds_at_most_its_cap_of_pending_deliveries() {
        let mut s = WebhookState::default();
        let h = hook("wh_1");
        let e = Event::new(
            "secret.created",
            "user:root",
            Some("a"),
            Value::Null,
            Timestamp(0),
        );
        for seq in 0..MAX_PENDING_PER_WEBHOOK as u64 {
            assert!(s.has_room(&h, 0));
            s.add_pending(DeliveryRecord::new(seq, "wh_1", &e, Timestamp(0)));
        }
        assert!(!s.has_room(&h, 0), "full");
        // Another webhook's room is its own.
        assert!(s.has_room(&hook("wh_2"), 0));
        // A delivery that finishes frees a place; one re-saved while pending takes none.
        s.add_pending(DeliveryRecord::new(3, "wh_1", &e, Timestamp(0)));
        assert!(!s.has_room(&h, 0));
        s.remove_pending(3);
        assert!(s.has_room(&h, 0));
        assert!(!s.has_room(&h, 1), "what this change queues counts too");
    }
}
