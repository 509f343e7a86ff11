//! Events (spec §1.9): what changed, in the spec's envelope, never carrying a secret value.
//! Data only: `outbox` matches them against the webhooks and queues their deliveries.

use scaivault_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
