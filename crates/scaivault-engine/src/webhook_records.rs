//! What table `webhooks` holds: every consumer of events — webhooks (with their signing
//! secrets) and subscriptions (a webhook or a polled buffer owned by one identity, for the
//! paths it may read) — and the deliveries: the webhook delivery log and the subscriptions'
//! buffered events. Data only; `outbox` queues deliveries as changes commit, `webhooks` sends
//! them and serves the webhook API, `subscriptions` serves the subscription API.

use scaivault_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::events::Event;

/// Delivery attempts before a delivery is marked failed, and the waits between them.
pub const DELIVERY_ATTEMPTS: u32 = 6;

pub(crate) const RETRY_DELAYS: [u64; 5] = [30, 120, 600, 3600, 6 * 3600];

/// Consecutive failed deliveries after which a webhook's status is `failing`.
pub(crate) const FAILING_AFTER: u32 = 3;

/// Delivery log entries kept per webhook (the oldest finished ones go first).
pub(crate) const KEEP_DELIVERIES: usize = 1000;

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookFilters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: String,
    pub name: String,
    pub url: String,
    pub(crate) secret: Zeroizing<String>,
    /// The secret replaced by the last rotation of it, still sent as a second signature
    /// until `previous_secret_expires_at`.
    #[serde(default)]
    pub(crate) previous_secret: Option<Zeroizing<String>>,
    #[serde(default)]
    pub(crate) previous_secret_expires_at: Option<Timestamp>,
    pub events: Vec<String>,
    #[serde(default)]
    pub filters: WebhookFilters,
    pub enabled: bool,
    #[serde(default)]
    pub consecutive_failures: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set on a subscription (spec §2.9): what makes it one. A webhook has none; the webhook
    /// API neither lists nor changes subscriptions, and the subscription API no webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subscription: Option<SubscriptionSpec>,
}

/// A subscription's owner, paths and kind of delivery. It is delivered only the events whose
/// path matches one of its globs **and** that its owner's policies let it read — checked as
/// the event is queued and again as it is sent or polled, so a narrowed policy holds back
/// what was queued before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SubscriptionSpec {
    pub(crate) owner: String,
    pub(crate) paths: Vec<String>,
    pub(crate) delivery: SubscriptionDelivery,
    /// `paths` compiled (every event raised is matched against them on the writer thread).
    #[serde(skip)]
    pub(crate) globs: Vec<scaivault_core::glob::Glob>,
}

impl SubscriptionSpec {
    /// Compiles `paths`; a record read back from the file is compiled once, at load.
    pub(crate) fn compile(&mut self) -> scaivault_core::Result<()> {
        self.globs = self
            .paths
            .iter()
            .map(|p| scaivault_core::glob::Glob::parse(p))
            .collect::<scaivault_core::Result<_>>()?;
        Ok(())
    }

    /// Whether one of the globs matches `path`.
    pub(crate) fn covers(&self, path: &str) -> bool {
        self.globs.iter().any(|g| g.matches(path))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum SubscriptionDelivery {
    /// Signed POSTs to the record's URL, as a webhook's (retries, allow-list, delivery log).
    Webhook,
    /// Kept for `GET …/poll` until acknowledged; past `buffer_size` the oldest is dropped.
    Polling { buffer_size: usize },
}

impl std::fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookRecord {
    pub(crate) fn status(&self) -> &'static str {
        if !self.enabled {
            "disabled"
        } else if self.consecutive_failures >= FAILING_AFTER {
            "failing"
        } else {
            "healthy"
        }
    }

    /// Never the secret.
    pub(crate) fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id.clone(),
            name: self.name.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            filters: self.filters.clone(),
            enabled: self.enabled,
            status: self.status().to_owned(),
            previous_secret_expires_at: self.previous_secret_expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Success,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub seq: u64,
    pub webhook_id: String,
    pub event: Event,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub response_code: Option<u16>,
    pub last_error: Option<String>,
    pub duration_ms: Option<u64>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

impl DeliveryRecord {
    pub(crate) fn new(seq: u64, webhook_id: &str, event: &Event, now: Timestamp) -> Self {
        DeliveryRecord {
            seq,
            webhook_id: webhook_id.to_owned(),
            event: event.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            response_code: None,
            last_error: None,
            duration_ms: None,
            created_at: now,
            delivered_at: None,
        }
    }

    pub(crate) fn view(&self) -> DeliveryView {
        DeliveryView {
            id: format!("dlv_{}", self.seq),
            webhook_id: self.webhook_id.clone(),
            event_id: self.event.event_id.clone(),
            event_type: self.event.event_type.clone(),
            timestamp: self.created_at,
            status: self.status,
            attempts: self.attempts,
            response_code: self.response_code,
            error: self.last_error.clone(),
            duration_ms: self.duration_ms,
            delivered_at: self.delivered_at,
            next_attempt_at: (self.status == DeliveryStatus::Pending)
                .then_some(self.next_attempt_at),
        }
    }
}

/// Table `webhooks` holds both kinds of record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WebhookItem {
    Hook(WebhookRecord),
    Delivery(DeliveryRecord),
}

pub(crate) fn hook_key(id: &str) -> Vec<u8> {
    let mut k = b"hook/".to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

pub(crate) fn delivery_key(seq: u64) -> Vec<u8> {
    format!("dlv/{seq:020}").into_bytes()
}

/// A webhook as the API shows it: never its signing secret.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookView {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub filters: WebhookFilters,
    pub enabled: bool,
    /// `healthy`, `failing` (3 failed deliveries in a row) or `disabled`.
    pub status: String,
    /// Until when the previous signing secret also signs, after a rotation of it.
    pub previous_secret_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `GET /v1/webhooks/{id}`: the webhook with its last day's deliveries summed up.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookDetail {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub statistics: WebhookStatistics,
    pub last_delivery: Option<LastDelivery>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookStatistics {
    pub deliveries_24h: usize,
    pub success_rate_24h: Option<f64>,
    pub avg_latency_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LastDelivery {
    pub id: String,
    pub timestamp: Timestamp,
    pub status: DeliveryStatus,
    pub response_code: Option<u16>,
}

/// `GET /v1/webhooks`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// One delivery in the log: the event it carried is named, never included.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryView {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub timestamp: Timestamp,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    pub delivered_at: Option<Timestamp>,
    /// For a delivery still pending: when it is tried next.
    pub next_attempt_at: Option<Timestamp>,
}

/// `GET /v1/webhooks/{id}/deliveries`, newest first.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// `POST /v1/webhooks/{id}/test`: the one attempt made.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookTested {
    pub delivery_id: String,
    pub status: DeliveryStatus,
    pub response_code: Option<u16>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}
