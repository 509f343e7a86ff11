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
    "policy.violation",
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
    /// The reference's tenancy: one vault is one tenant of one partner. (Deliveries queued
    /// before these fields existed read back with them.)
    #[serde(default = "local_tenant")]
    pub tenant_id: String,
    #[serde(default = "local_partner")]
    pub partner_id: String,
    pub identity_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn local_tenant() -> String {
    crate::caller::LOCAL_TENANT.to_owned()
}

fn local_partner() -> String {
    crate::caller::LOCAL_PARTNER.to_owned()
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
            tenant_id: crate::caller::LOCAL_TENANT.to_owned(),
            partner_id: crate::caller::LOCAL_PARTNER.to_owned(),
            identity_id: identity_id.to_owned(),
            path: path.map(str::to_owned),
            data,
            request_id: None,
        }
    }

    /// The event of a request: it carries the request's id, to find it in the audit log.
    pub fn in_request(mut self, request_id: Option<&str>) -> Event {
        self.request_id = request_id.map(str::to_owned);
        self
    }
}

#[cfg(test)]
mod envelope_tests {
    use super::*;

    #[test]
    fn a_delivery_queued_before_the_tenancy_fields_reads_back() {
        let old = r#"{"event_id":"evt_1","event_type":"secret.created","timestamp":"2026-01-01T00:00:00Z","identity_id":"user:root","data":{}}"#;
        let e: Event = serde_json::from_str(old).unwrap();
        assert_eq!(
            (e.tenant_id.as_str(), e.partner_id.as_str()),
            ("tnt_local", "ptn_local")
        );
    }
}
