//! Subscriptions (spec §2.9): an identity's own feed of the events on paths it may read,
//! sent to a webhook or kept in a buffer it long-polls and acknowledges.
//!
//! Where webhooks are an admin's (every event, any path), a subscription is any identity's
//! with `subscriptions:write`, so what it receives is bounded by what its owner may read: an
//! event is queued only if its path matches one of the subscription's globs and the owner's
//! policies grant `read` on it, and checked again when it is sent or polled. A subscription is
//! stored as a webhook record with a [`SubscriptionSpec`], so queueing, durability, retries
//! and the outbound allow-list are the webhooks' own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use scaivault_core::glob::Glob;
use scaivault_core::scope::{Permission, Scope};
use scaivault_core::time::Timestamp;
use scaivault_store::Table;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use crate::events::Event;
use crate::webhook_records::{
    SubscriptionDelivery, SubscriptionSpec, WebhookFilters, WebhookItem, WebhookRecord,
    delivery_key, hook_key,
};
use crate::webhooks::validation;
use crate::{Caller, Engine, Error, ErrorCode, Result, encode, read, write};

/// A polling buffer's size when the request names none (the reference's default).
pub const DEFAULT_BUFFER_SIZE: usize = 1000;
/// The largest buffer: events are kept in memory (and in the file) until acknowledged.
pub const MAX_BUFFER_SIZE: usize = 10_000;
/// Subscriptions one identity may own, and all of them together: each costs a match per
/// event raised and, polled, up to its buffer in memory.
pub const MAX_SUBSCRIPTIONS_PER_OWNER: usize = 20;
pub const MAX_SUBSCRIPTIONS: usize = 500;
/// Globs one subscription may name.
pub const MAX_PATHS: usize = 50;
/// Long-polls one identity may hold open at once (each holds a connection).
pub const MAX_POLLS_PER_OWNER: usize = 4;
/// The longest and the default long-poll wait, in seconds, and the events one poll returns.
pub const MAX_POLL_TIMEOUT: u64 = 60;
pub const DEFAULT_POLL_TIMEOUT: u64 = 30;
pub const DEFAULT_MAX_EVENTS: usize = 100;
pub const MAX_MAX_EVENTS: usize = 1000;
/// Event ids one acknowledgement may name.
pub const MAX_ACK: usize = 1000;

/// No `Debug`: a webhook delivery carries its signing secret.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    pub name: Option<String>,
    /// Globs, as in policy rules (`apps/billing/**`).
    pub paths: Option<Vec<String>>,
    /// Event types, `secret.*` or `*` (`secret.accessed` only when named).
    pub events: Option<Vec<String>>,
    pub delivery: Option<DeliveryRequest>,
    pub filters: Option<WebhookFilters>,
    /// `false` pauses the subscription: nothing is queued for it meanwhile.
    pub enabled: Option<bool>,
}

#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRequest {
    /// `webhook` or `polling`; fixed once created.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Webhook delivery: an HTTPS URL on the operator's outbound allow-list.
    pub url: Option<String>,
    /// Webhook delivery: the signing secret (write-only, 16 characters or more).
    pub secret: Option<String>,
    /// Polling delivery: events kept until acknowledged (default 1000, at most 10,000);
    /// past it the oldest is dropped.
    pub buffer_size: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionDeliveryView {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_size: Option<usize>,
    /// Polling delivery: events waiting to be acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffered: Option<usize>,
}

/// A subscription as the API shows it: never a webhook delivery's signing secret.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionView {
    pub id: String,
    pub name: String,
    /// `active`, `paused` (disabled), or `failing` (a webhook delivery failed 3 times in a row).
    pub status: String,
    /// The owner: the only identity that polls it, and whose policies decide what it gets.
    pub identity_id: String,
    pub paths: Vec<String>,
    pub events: Vec<String>,
    pub delivery: SubscriptionDeliveryView,
    pub filters: WebhookFilters,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `GET /v1/subscriptions`: the caller's own (an admin's: all).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// What `GET …/poll` asks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    pub timeout: Option<u64>,
    pub since_event_id: Option<String>,
    pub max_events: Option<usize>,
}

/// `GET …/poll`: events in the order they were raised, in the spec's envelope.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PollResult {
    #[schemars(with = "Vec<serde_json::Value>")]
    pub events: Vec<Event>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub event_ids: Vec<String>,
}

/// `POST …/ack`: how many of the named events were in the buffer (and are now gone).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Acknowledged {
    pub acknowledged: usize,
}

fn not_found(id: &str) -> Error {
    Error::new(
        ErrorCode::SubscriptionNotFound,
        format!("no subscription {id}"),
    )
    .with("subscription_id", id)
}

/// Long-polls held open, per owner; a slot is given back when dropped.
#[derive(Default)]
pub(crate) struct PollSlots(Mutex<HashMap<String, usize>>);

pub(crate) struct PollSlot<'a> {
    slots: &'a PollSlots,
    owner: String,
}

impl PollSlots {
    fn take(&self, owner: &str) -> Result<PollSlot<'_>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(owner.to_owned()).or_default();
        if *n >= MAX_POLLS_PER_OWNER {
            return Err(Error::new(
                ErrorCode::RateLimited,
                format!("{MAX_POLLS_PER_OWNER} long-polls by this identity are already waiting"),
            )
            .with("retry_after", 1)
            .with("max", MAX_POLLS_PER_OWNER));
        }
        *n += 1;
        Ok(PollSlot {
            slots: self,
            owner: owner.to_owned(),
        })
    }
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.slots.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.owner);
            }
        }
    }
}

fn check_paths(paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Err(validation("paths", "must name at least one path glob"));
    }
    if paths.len() > MAX_PATHS {
        return Err(validation(
            "paths",
            &format!("at most {MAX_PATHS} globs per subscription"),
        ));
    }
    for p in paths {
        Glob::parse(p).map_err(|e| {
            let why = e.message.clone();
            e.with("fields", json!({ "paths": why }))
        })?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(validation("name", "must be 1 to 128 characters"));
    }
    Ok(())
}

fn check_buffer(size: usize) -> Result<usize> {
    if size == 0 || size > MAX_BUFFER_SIZE {
        return Err(validation(
            "delivery.buffer_size",
            &format!("must be between 1 and {MAX_BUFFER_SIZE}"),
        ));
    }
    Ok(size)
}

/// The event types a subscription may name: those that carry a path (a subscription is
/// path-scoped) and are not audit-grade (`secret.accessed` says who read what,
/// `policy.violation` who was refused; both go to admin webhooks only — and anyone can raise
/// them by the thousand, which would flush a subscriber's buffer).
const SUBSCRIBABLE: &[&str] = &[
    "secret.created",
    "secret.updated",
    "secret.deleted",
    "secret.rotated",
    "secret.expiring",
    "secret.expired",
    "rotation.due",
    "rotation.overdue",
    "rotation.completed",
    "rotation.failed",
];

fn check_events(events: &[String]) -> Result<()> {
    Engine::check_events(events)?;
    for e in events {
        let ok =
            e == "*" || e == "secret.*" || e == "rotation.*" || SUBSCRIBABLE.contains(&e.as_str());
        if !ok {
            return Err(validation(
                "events",
                &format!(
                    "{e:?} cannot be subscribed to: subscriptions receive secret and rotation events on their paths (secret.accessed, policy.violation and policy events go to admin webhooks)"
                ),
            )
            .with("allowed", SUBSCRIBABLE.to_vec()));
        }
    }
    Ok(())
}

/// Filters are matched against every event: bounded.
fn check_filters(f: &WebhookFilters) -> Result<()> {
    let long = |s: &str| s.len() > 256;
    if f.tags.len() > 20 || f.tags.iter().any(|t| long(t)) {
        return Err(validation(
            "filters.tags",
            "at most 20 tags of 256 characters",
        ));
    }
    if f.path_prefix.as_deref().is_some_and(long) || f.secret_type.as_deref().is_some_and(long) {
        return Err(validation(
            "filters",
            "path_prefix and secret_type are at most 256 characters",
        ));
    }
    Ok(())
}

/// The delivery kind a request names, checked before anything else about the delivery.
fn delivery_kind(kind: Option<&str>) -> Result<Option<&str>> {
    match kind {
        None | Some("webhook") | Some("polling") => Ok(kind),
        Some(other) => Err(validation(
            "delivery.type",
            &format!("{other:?} is not a delivery type: webhook or polling"),
        )),
    }
}

/// Re-labels a webhook check's error with the subscription's field name.
fn as_delivery_field(e: Error, field: &str) -> Error {
    if e.code != ErrorCode::ValidationError {
        return e;
    }
    let problem = e
        .message
        .split_once(": ")
        .map_or(e.message.clone(), |(_, p)| p.to_owned());
    validation(field, &problem)
}

impl Engine {
    /// A subscription's webhook URL: a webhook's rules, and no credentials in it (they would
    /// be shown to whoever reads the subscription; the signing secret is what authenticates).
    fn check_delivery_url(&self, url: &str) -> Result<()> {
        self.check_url(url)
            .map_err(|e| as_delivery_field(e, "delivery.url"))?;
        if reqwest::Url::parse(url)
            .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
        {
            return Err(validation(
                "delivery.url",
                "must not carry credentials; the signing secret authenticates deliveries",
            ));
        }
        Ok(())
    }
}

impl WebhookRecord {
    fn subscription_view(&self, buffered: usize) -> Option<SubscriptionView> {
        let sub = self.subscription.as_ref()?;
        let delivery = match sub.delivery {
            SubscriptionDelivery::Webhook => SubscriptionDeliveryView {
                kind: "webhook".into(),
                url: Some(self.url.clone()),
                buffer_size: None,
                buffered: None,
            },
            SubscriptionDelivery::Polling { buffer_size } => SubscriptionDeliveryView {
                kind: "polling".into(),
                url: None,
                buffer_size: Some(buffer_size),
                buffered: Some(buffered),
            },
        };
        let status = match self.status() {
            "healthy" => "active",
            "disabled" => "paused",
            other => other,
        };
        Some(SubscriptionView {
            id: self.id.clone(),
            name: self.name.clone(),
            status: status.to_owned(),
            identity_id: sub.owner.clone(),
            paths: sub.paths.clone(),
            events: self.events.clone(),
            delivery,
            filters: self.filters.clone(),
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Engine {
    /// The ids of the subscriptions `owner` owns.
    pub(crate) fn subscriptions_of(&self, owner: &str) -> Vec<String> {
        read(&self.events.state)
            .hooks
            .values()
            .filter(|h| h.subscription.as_ref().is_some_and(|s| s.owner == owner))
            .map(|h| h.id.clone())
            .collect()
    }

    /// Ends every long-poll with what it has (the server is shutting down: its clients get an
    /// answer, not a cut connection). Polls that start afterwards answer at once.
    pub fn end_long_polls(&self) {
        self.polls_ending
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.events.polled.notify_waiters();
    }

    /// Deliveries not queued because their webhook had too many waiting, for metrics.
    pub fn deliveries_not_queued(&self) -> u64 {
        self.events
            .not_queued
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Long-polls waiting now, for metrics.
    pub fn polls_waiting(&self) -> usize {
        self.poll_slots
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    fn subscription_view(&self, h: &WebhookRecord) -> SubscriptionView {
        let buffered = read(&self.events.state)
            .buffers
            .get(&h.id)
            .map_or(0, |b| b.len());
        h.subscription_view(buffered)
            .expect("only subscriptions are viewed as one")
    }

    /// The subscription `id`, if the caller owns it or (`admin_too`) holds `admin`. Anyone
    /// else is told it does not exist: ids are not probed through this API.
    fn find_subscription(
        &self,
        caller: &Caller,
        id: &str,
        admin_too: bool,
    ) -> Result<WebhookRecord> {
        let h = read(&self.events.state)
            .hooks
            .get(id)
            .filter(|h| h.subscription.is_some())
            .cloned()
            .ok_or_else(|| not_found(id))?;
        let owner = h
            .subscription
            .as_ref()
            .is_some_and(|s| s.owner == caller.identity_id.as_str());
        if owner || admin_too && caller.scopes.is_admin() {
            Ok(h)
        } else if caller.scopes.is_admin() {
            Err(Error::new(
                ErrorCode::AccessDenied,
                "only a subscription's owner consumes its events",
            )
            .with("subscription_id", id))
        } else {
            Err(not_found(id))
        }
    }

    pub async fn create_subscription(
        &self,
        caller: &Caller,
        req: SubscriptionRequest,
    ) -> Result<SubscriptionView> {
        self.authorize(caller, Scope::SubscriptionsWrite, None)?;
        let name = req.name.ok_or_else(|| validation("name", "is required"))?;
        check_name(&name)?;
        let paths = req
            .paths
            .ok_or_else(|| validation("paths", "is required"))?;
        check_paths(&paths)?;
        let events = req
            .events
            .ok_or_else(|| validation("events", "is required"))?;
        check_events(&events)?;
        let filters = req.filters.unwrap_or_default();
        check_filters(&filters)?;
        let delivery = req
            .delivery
            .ok_or_else(|| validation("delivery", "is required"))?;
        let (kind, url, secret) = match delivery_kind(delivery.kind.as_deref())? {
            Some("webhook") => {
                if delivery.buffer_size.is_some() {
                    return Err(validation(
                        "delivery.buffer_size",
                        "only applies to polling delivery",
                    ));
                }
                let url = delivery.url.ok_or_else(|| {
                    validation("delivery.url", "is required for webhook delivery")
                })?;
                self.check_delivery_url(&url)?;
                let secret = delivery.secret.ok_or_else(|| {
                    validation("delivery.secret", "is required for webhook delivery")
                })?;
                Self::check_secret(&secret).map_err(|e| as_delivery_field(e, "delivery.secret"))?;
                (SubscriptionDelivery::Webhook, url, secret)
            }
            Some(_) => {
                if delivery.url.is_some() || delivery.secret.is_some() {
                    return Err(validation(
                        "delivery.url",
                        "url and secret only apply to webhook delivery",
                    ));
                }
                let size = check_buffer(delivery.buffer_size.unwrap_or(DEFAULT_BUFFER_SIZE))?;
                (
                    SubscriptionDelivery::Polling { buffer_size: size },
                    String::new(),
                    String::new(),
                )
            }
            None => {
                return Err(validation(
                    "delivery.type",
                    "is required: webhook or polling",
                ));
            }
        };
        let mut spec = SubscriptionSpec {
            owner: caller.identity_id.to_string(),
            paths,
            delivery: kind,
            globs: Vec::new(),
        };
        spec.compile()?;
        let _change = self.config_change().await;
        {
            let s = read(&self.events.state);
            let subs = s.hooks.values().filter_map(|h| h.subscription.as_ref());
            let (all, own) = subs.fold((0, 0), |(a, o), sub| {
                (a + 1, o + usize::from(sub.owner == spec.owner))
            });
            if own >= MAX_SUBSCRIPTIONS_PER_OWNER || all >= MAX_SUBSCRIPTIONS {
                return Err(Error::new(
                    ErrorCode::ValidationError,
                    format!(
                        "at most {MAX_SUBSCRIPTIONS_PER_OWNER} subscriptions per identity and {MAX_SUBSCRIPTIONS} in all; delete one first"
                    ),
                )
                .with("max_per_identity", MAX_SUBSCRIPTIONS_PER_OWNER)
                .with("max_total", MAX_SUBSCRIPTIONS)
                .with("owned", own));
            }
        }
        let id: [u8; 8] = scaivault_crypto::unique_id_bytes();
        let now = self.now();
        let h = WebhookRecord {
            id: format!("sub_{}", hex::encode(id)),
            name,
            url,
            secret: Zeroizing::new(secret),
            previous_secret: None,
            previous_secret_expires_at: None,
            events,
            filters,
            enabled: req.enabled.unwrap_or(true),
            consecutive_failures: 0,
            created_at: now,
            updated_at: now,
            subscription: Some(spec),
        };
        self.save_webhook(h.clone()).await?;
        Ok(self.subscription_view(&h))
    }

    pub fn list_subscriptions(&self, caller: &Caller) -> Result<SubscriptionList> {
        self.authorize(caller, Scope::SubscriptionsRead, None)?;
        let all = caller.scopes.is_admin();
        let mine: Vec<WebhookRecord> = read(&self.events.state)
            .hooks
            .values()
            .filter(|h| {
                h.subscription
                    .as_ref()
                    .is_some_and(|s| all || s.owner == caller.identity_id.as_str())
            })
            .cloned()
            .collect();
        Ok(SubscriptionList {
            subscriptions: mine.iter().map(|h| self.subscription_view(h)).collect(),
            cursor: None,
            has_more: false,
        })
    }

    pub fn get_subscription(&self, caller: &Caller, id: &str) -> Result<SubscriptionView> {
        self.authorize(caller, Scope::SubscriptionsRead, None)?;
        let h = self.find_subscription(caller, id, true)?;
        Ok(self.subscription_view(&h))
    }

    pub async fn update_subscription(
        &self,
        caller: &Caller,
        id: &str,
        req: SubscriptionRequest,
    ) -> Result<SubscriptionView> {
        self.authorize(caller, Scope::SubscriptionsWrite, None)?;
        let _change = self.config_change().await;
        let mut h = self.find_subscription(caller, id, true)?;
        let Some(sub) = h.subscription.as_mut() else {
            return Err(not_found(id));
        };
        // An admin stops another identity's feed (pauses or deletes it); where its events go
        // and which they are stay its owner's: an admin must not read a service's feed
        // through a URL or a glob it sets.
        if sub.owner != caller.identity_id.as_str() {
            let only_enabled = req.name.is_none()
                && req.paths.is_none()
                && req.events.is_none()
                && req.delivery.is_none()
                && req.filters.is_none();
            if !only_enabled {
                return Err(Error::new(
                    ErrorCode::AccessDenied,
                    "only a subscription's owner changes it; an admin may pause it (enabled: false) or delete it",
                )
                .with("subscription_id", id));
            }
        }
        if let Some(n) = req.name {
            check_name(&n)?;
            h.name = n;
        }
        if let Some(p) = req.paths {
            check_paths(&p)?;
            sub.paths = p;
            sub.compile()?;
        }
        if let Some(e) = req.events {
            check_events(&e)?;
            h.events = e;
        }
        if let Some(f) = req.filters {
            check_filters(&f)?;
            h.filters = f;
        }
        if let Some(en) = req.enabled {
            h.enabled = en;
            if en {
                h.consecutive_failures = 0;
            }
        }
        if let Some(d) = req.delivery {
            match (sub.delivery, delivery_kind(d.kind.as_deref())?) {
                (_, None)
                | (SubscriptionDelivery::Webhook, Some("webhook"))
                | (SubscriptionDelivery::Polling { .. }, Some("polling")) => {}
                _ => {
                    return Err(validation(
                        "delivery.type",
                        "cannot change; create another subscription",
                    ));
                }
            }
            match &mut sub.delivery {
                SubscriptionDelivery::Webhook => {
                    if d.buffer_size.is_some() {
                        return Err(validation(
                            "delivery.buffer_size",
                            "only applies to polling delivery",
                        ));
                    }
                    if let Some(u) = d.url {
                        self.check_delivery_url(&u)?;
                        h.url = u;
                    }
                    if let Some(s) = d.secret {
                        Self::check_secret(&s)
                            .map_err(|e| as_delivery_field(e, "delivery.secret"))?;
                        h.secret = Zeroizing::new(s);
                    }
                }
                SubscriptionDelivery::Polling { buffer_size } => {
                    if d.url.is_some() || d.secret.is_some() {
                        return Err(validation(
                            "delivery.url",
                            "url and secret only apply to webhook delivery",
                        ));
                    }
                    if let Some(size) = d.buffer_size {
                        *buffer_size = check_buffer(size)?;
                    }
                }
            }
        }
        h.updated_at = self.now();
        // A smaller buffer drops its oldest events, in the same transaction as the change:
        // none can come back after a restart.
        let size = h.subscription.as_ref().and_then(|s| match s.delivery {
            SubscriptionDelivery::Polling { buffer_size } => Some(buffer_size),
            SubscriptionDelivery::Webhook => None,
        });
        let drop: Vec<u64> = match size {
            Some(size) => read(&self.events.state)
                .buffers
                .get(id)
                .map_or(Vec::new(), |b| {
                    b.keys()
                        .take(b.len().saturating_sub(size))
                        .copied()
                        .collect()
                }),
            None => Vec::new(),
        };
        let state = self.events.state.clone();
        let record = h.clone();
        self.vault
            .write(move |tx| {
                tx.put(
                    Table::Webhooks,
                    &hook_key(&record.id),
                    &encode(&WebhookItem::Hook(record.clone())),
                );
                for seq in &drop {
                    tx.delete(Table::Webhooks, &delivery_key(*seq));
                }
                tx.on_commit(move || {
                    let mut s = write(&state);
                    if let Some(buf) = s.buffers.get_mut(&record.id) {
                        for seq in &drop {
                            buf.remove(seq);
                        }
                    }
                    s.hooks.insert(record.id.clone(), record);
                });
                Ok::<_, Error>(())
            })
            .await?;
        Ok(self.subscription_view(&h))
    }

    pub async fn delete_subscription(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorize(caller, Scope::SubscriptionsWrite, None)?;
        let _change = self.config_change().await;
        self.find_subscription(caller, id, true)?;
        self.remove_consumer(id).await
    }

    /// Long-polls a polling subscription: answers at once with the buffered events after
    /// `since_event_id` (all unacknowledged ones when it is absent, acknowledged or dropped),
    /// else waits up to `timeout` seconds for one. Owner only. Events stay buffered until
    /// acknowledged, so a consumer that crashed before its ack gets them again.
    pub async fn poll_subscription(
        &self,
        caller: &Caller,
        id: &str,
        q: PollQuery,
    ) -> Result<PollResult> {
        self.authorize(caller, Scope::SubscriptionsRead, None)?;
        let h = self.find_subscription(caller, id, false)?;
        if !matches!(
            h.subscription.as_ref().map(|s| s.delivery),
            Some(SubscriptionDelivery::Polling { .. })
        ) {
            return Err(Error::invalid_request(
                "this subscription delivers to a webhook; only polling subscriptions are polled",
            ));
        }
        let timeout = q.timeout.unwrap_or(DEFAULT_POLL_TIMEOUT);
        if timeout > MAX_POLL_TIMEOUT {
            return Err(Error::invalid_request(format!(
                "timeout is at most {MAX_POLL_TIMEOUT} seconds"
            )));
        }
        let max = q.max_events.unwrap_or(DEFAULT_MAX_EVENTS);
        if max == 0 || max > MAX_MAX_EVENTS {
            return Err(Error::invalid_request(format!(
                "max_events must be between 1 and {MAX_MAX_EVENTS}"
            )));
        }
        let _slot = self.poll_slots.take(caller.identity_id.as_str())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let shared = scaivault_store::database_url(self.vault.path()).is_some();
        loop {
            // Registered before the buffer is looked at: an event committed in between
            // still wakes this poll.
            let woken = self.events.polled.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            // Events other nodes queued, and a token revoked there, reach this node's memory
            // only by following their commits (a file: nothing to follow).
            self.follow()?;
            let may_read = self.checker(caller, Permission::Read);
            let (events, has_more) = {
                let s = read(&self.events.state);
                if !s.hooks.contains_key(id) {
                    return Err(not_found(id));
                }
                let buf = s.buffers.get(id);
                let all = buf.into_iter().flat_map(|b| b.values());
                let start = q.since_event_id.as_deref().and_then(|since| {
                    buf?.values()
                        .find(|d| d.event.event_id == since)
                        .map(|d| d.seq)
                });
                let mut out: Vec<Event> = all
                    .filter(|d| start.is_none_or(|s| d.seq > s))
                    .filter(|d| d.event.path.as_deref().is_some_and(&may_read))
                    .take(max + 1)
                    .map(|d| d.event.clone())
                    .collect();
                let more = out.len() > max;
                out.truncate(max);
                (out, more)
            };
            let ending = self.polls_ending.load(std::sync::atomic::Ordering::SeqCst);
            if !events.is_empty() || ending || tokio::time::Instant::now() >= deadline {
                // A token revoked (or an identity deleted) while the poll waited gets nothing
                // raised since.
                if !self.still_authenticated(caller) {
                    return Err(Error::new(
                        ErrorCode::TokenRevoked,
                        "the token was revoked while the poll waited",
                    ));
                }
                return Ok(PollResult { events, has_more });
            }
            // On a database several nodes share, another node's commit wakes nothing here:
            // look again each second.
            let next = match shared {
                true => deadline.min(tokio::time::Instant::now() + Duration::from_secs(1)),
                false => deadline,
            };
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Removes the named events from the subscription's buffer; ids not in it (acknowledged
    /// before, or dropped) are ignored. Owner only.
    pub async fn ack_subscription(
        &self,
        caller: &Caller,
        id: &str,
        req: AckRequest,
    ) -> Result<Acknowledged> {
        self.authorize(caller, Scope::SubscriptionsRead, None)?;
        self.find_subscription(caller, id, false)?;
        if req.event_ids.len() > MAX_ACK {
            return Err(validation(
                "event_ids",
                &format!("at most {MAX_ACK} per acknowledgement"),
            ));
        }
        let named: std::collections::HashSet<&str> =
            req.event_ids.iter().map(String::as_str).collect();
        let (seqs, dropped): (Vec<u64>, Vec<u64>) = {
            let s = read(&self.events.state);
            let seqs = s
                .buffers
                .get(id)
                .into_iter()
                .flat_map(|b| b.values())
                .filter(|d| named.contains(d.event.event_id.as_str()))
                .map(|d| d.seq)
                .collect();
            (seqs, s.dropped.clone())
        };
        if seqs.is_empty() {
            return Ok(Acknowledged { acknowledged: 0 });
        }
        let state = self.events.state.clone();
        let (key, n) = (id.to_owned(), seqs.len());
        self.vault
            .write(move |tx| {
                // Events dropped from a buffer go too: once some are acknowledged, a dropped
                // one left in the file would fit in the buffer again after a restart.
                for seq in seqs.iter().chain(&dropped) {
                    tx.delete(Table::Webhooks, &delivery_key(*seq));
                }
                tx.on_commit(move || {
                    let mut s = write(&state);
                    if let Some(buf) = s.buffers.get_mut(&key) {
                        for seq in seqs {
                            buf.remove(&seq);
                        }
                    }
                    s.dropped.retain(|seq| !dropped.contains(seq));
                });
                Ok::<_, Error>(())
            })
            .await?;
        Ok(Acknowledged { acknowledged: n })
    }
}
