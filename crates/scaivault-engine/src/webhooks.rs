//! Webhooks (spec §2.8): subscriptions to events, delivered as signed POSTs with retries, and
//! their delivery log. Targets must be on the operator's outbound allow-list, like rotation
//! backends; the signing secret is write-only.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use scaivault_core::duration::parse_duration;
use scaivault_core::scope::Scope;
use scaivault_store::Table;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::events::{EVENT_TYPES, Event};
use crate::webhook_records::{
    DELIVERY_ATTEMPTS, DeliveryPage, DeliveryRecord, DeliveryStatus, KEEP_DELIVERIES, LastDelivery,
    RETRY_DELAYS, WebhookDetail, WebhookFilters, WebhookItem, WebhookList, WebhookRecord,
    WebhookStatistics, WebhookTested, WebhookView, delivery_key, hook_key,
};
use crate::{Caller, Engine, Error, ErrorCode, Result, decode, encode, read, write};

/// No `Debug`: it carries the signing secret.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    pub name: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub events: Option<Vec<String>>,
    pub filters: Option<WebhookFilters>,
    pub enabled: Option<bool>,
    /// With a new `secret`: how long the old one keeps signing too (e.g. `24h`).
    pub previous_secret_ttl: Option<String>,
}

pub(crate) fn validation(field: &str, problem: &str) -> Error {
    Error::new(ErrorCode::ValidationError, format!("{field}: {problem}"))
        .with("fields", json!({ field: problem }))
}

fn not_found(id: &str) -> Error {
    Error::new(ErrorCode::WebhookNotFound, format!("no webhook {id}")).with("webhook_id", id)
}

fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    let signed = [ts.as_bytes(), b".", body].concat();
    format!(
        "sha256={}",
        hex::encode(scaivault_crypto::hmac_sha256(secret.as_bytes(), &signed))
    )
}

/// Webhooks served at once (each delivery waits at most its timeout).
const WEBHOOKS_AT_ONCE: usize = 8;

/// A webhook marked in flight; unmarked when dropped (also if its task ends by a panic).
struct InFlight<'a> {
    engine: &'a Engine,
    webhook_id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.webhook_id.is_empty() {
            self.engine
                .delivering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.webhook_id);
        }
    }
}

impl Engine {
    /// Wakes when an event was queued (the server's delivery worker waits on it).
    /// Deliveries not yet delivered or given up (due now or waiting for a retry).
    pub fn deliveries_pending(&self) -> usize {
        read(&self.events.state).pending.len()
    }

    pub fn deliveries_queued(&self) -> Arc<tokio::sync::Notify> {
        self.events.notify.clone()
    }

    pub(crate) fn check_url(&self, url: &str) -> Result<()> {
        let u = reqwest::Url::parse(url).map_err(|_| validation("url", "is not a valid URL"))?;
        let host = u.host_str().unwrap_or_default().to_owned();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match u.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(validation(
                    "url",
                    "must be https (plain http only to a loopback address)",
                ));
            }
        }
        let port = u.port_or_known_default().unwrap_or(0);
        if !crate::backends::host_allowed(&self.allow_hosts, &host, port) {
            return Err(validation(
                "url",
                &format!(
                    "{host}:{port} is not on the operator's outbound allow-list (--allow-host)"
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn check_events(events: &[String]) -> Result<()> {
        if events.is_empty() {
            return Err(validation("events", "must name at least one event type"));
        }
        for e in events {
            let known = e == "*"
                || EVENT_TYPES.contains(&e.as_str())
                || e.strip_suffix(".*")
                    .is_some_and(|g| EVENT_TYPES.iter().any(|t| t.starts_with(&format!("{g}."))));
            if !known {
                return Err(validation("events", &format!("unknown event type {e:?}"))
                    .with("allowed", EVENT_TYPES.to_vec()));
            }
        }
        Ok(())
    }

    pub(crate) fn check_secret(secret: &str) -> Result<()> {
        if secret.len() < 16 {
            return Err(validation(
                "secret",
                "must be at least 16 characters (32 or more recommended)",
            ));
        }
        Ok(())
    }

    pub(crate) async fn save_webhook(&self, h: WebhookRecord) -> Result<WebhookView> {
        let state = self.events.state.clone();
        let view = h.view();
        self.vault
            .write(move |tx| {
                tx.put(
                    Table::Webhooks,
                    &hook_key(&h.id),
                    &encode(&WebhookItem::Hook(h.clone())),
                );
                tx.on_commit(move || {
                    write(&state).hooks.insert(h.id.clone(), h);
                });
                Ok::<_, Error>(())
            })
            .await?;
        Ok(view)
    }

    pub async fn create_webhook(
        &self,
        caller: &Caller,
        req: WebhookRequest,
    ) -> Result<WebhookView> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let name = req
            .name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| validation("name", "is required"))?;
        let url = req.url.ok_or_else(|| validation("url", "is required"))?;
        self.check_url(&url)?;
        let secret = req
            .secret
            .ok_or_else(|| validation("secret", "is required"))?;
        Self::check_secret(&secret)?;
        let events = req
            .events
            .ok_or_else(|| validation("events", "is required"))?;
        Self::check_events(&events)?;
        if req.previous_secret_ttl.is_some() {
            return Err(validation(
                "previous_secret_ttl",
                "only applies when changing a webhook's secret",
            ));
        }
        let id: [u8; 8] = scaivault_crypto::unique_id_bytes();
        let now = self.now();
        let h = WebhookRecord {
            id: format!("wh_{}", hex::encode(id)),
            name,
            url,
            secret: Zeroizing::new(secret),
            previous_secret: None,
            previous_secret_expires_at: None,
            events,
            filters: req.filters.unwrap_or_default(),
            enabled: req.enabled.unwrap_or(true),
            consecutive_failures: 0,
            created_at: now,
            updated_at: now,
            subscription: None,
        };
        self.save_webhook(h).await
    }

    /// A webhook (never a subscription: those have their own API and owners).
    fn find_webhook(&self, id: &str) -> Result<WebhookRecord> {
        read(&self.events.state)
            .hooks
            .get(id)
            .filter(|h| h.subscription.is_none())
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// The id of the webhook `id_or_name` names: its id, or the name of exactly one webhook
    /// (names need not be unique; an ambiguous one asks for the id).
    fn resolve_webhook(&self, id_or_name: &str) -> Result<String> {
        let s = read(&self.events.state);
        let mut hooks = s.hooks.values().filter(|h| h.subscription.is_none());
        if hooks.clone().any(|h| h.id == id_or_name) {
            return Ok(id_or_name.to_owned());
        }
        let named: Vec<&String> = hooks
            .by_ref()
            .filter(|h| h.name == id_or_name)
            .map(|h| &h.id)
            .collect();
        match named.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(not_found(id_or_name)),
            many => Err(Error::new(
                ErrorCode::ValidationError,
                format!(
                    "{} webhooks are named {id_or_name}; give the id",
                    many.len()
                ),
            )
            .with("ids", many.iter().map(|i| i.as_str()).collect::<Vec<_>>())),
        }
    }

    pub fn list_webhooks(&self, caller: &Caller) -> Result<WebhookList> {
        self.authorize(caller, Scope::Admin, None)?;
        let webhooks = read(&self.events.state)
            .hooks
            .values()
            .filter(|h| h.subscription.is_none())
            .map(WebhookRecord::view)
            .collect();
        Ok(WebhookList {
            webhooks,
            cursor: None,
            has_more: false,
        })
    }

    pub fn get_webhook(&self, caller: &Caller, id: &str) -> Result<WebhookDetail> {
        self.authorize(caller, Scope::Admin, None)?;
        let id = self.resolve_webhook(id)?;
        let id = id.as_str();
        let h = self.find_webhook(id)?;
        let day_ago = self.now().minus(Duration::from_secs(86_400));
        // Newest first: the first delivery older than a day ends the walk.
        let mut log = Vec::new();
        self.walk_deliveries(id, |d| {
            let recent = d.created_at >= day_ago;
            if recent || log.is_empty() {
                log.push(d);
            }
            recent
        })?;
        let recent: Vec<&DeliveryRecord> = log
            .iter()
            .filter(|d| d.created_at >= day_ago && d.status != DeliveryStatus::Pending)
            .collect();
        let ok = recent
            .iter()
            .filter(|d| d.status == DeliveryStatus::Success)
            .count();
        let latency: Vec<u64> = recent.iter().filter_map(|d| d.duration_ms).collect();
        Ok(WebhookDetail {
            webhook: h.view(),
            statistics: WebhookStatistics {
                deliveries_24h: recent.len(),
                success_rate_24h: (!recent.is_empty()).then(|| ok as f64 / recent.len() as f64),
                avg_latency_ms: (!latency.is_empty())
                    .then(|| latency.iter().sum::<u64>() / latency.len() as u64),
            },
            last_delivery: log.first().map(|d| LastDelivery {
                id: format!("dlv_{}", d.seq),
                timestamp: d.created_at,
                status: d.status,
                response_code: d.response_code,
            }),
        })
    }

    pub async fn update_webhook(
        &self,
        caller: &Caller,
        id: &str,
        req: WebhookRequest,
    ) -> Result<WebhookView> {
        self.authorize(caller, Scope::Admin, None)?;
        let id = self.resolve_webhook(id)?;
        let id = id.as_str();
        let _change = self.config_change().await;
        let mut h = self.find_webhook(id)?;
        if let Some(n) = req.name {
            if n.trim().is_empty() {
                return Err(validation("name", "must not be empty"));
            }
            h.name = n;
        }
        if let Some(u) = req.url {
            self.check_url(&u)?;
            h.url = u;
        }
        if let Some(e) = req.events {
            Self::check_events(&e)?;
            h.events = e;
        }
        if let Some(f) = req.filters {
            h.filters = f;
        }
        if let Some(en) = req.enabled {
            h.enabled = en;
            if en {
                h.consecutive_failures = 0;
            }
        }
        match (req.secret, req.previous_secret_ttl) {
            (Some(s), ttl) => {
                Self::check_secret(&s)?;
                if let Some(ttl) = ttl {
                    let d = parse_duration(&ttl)?;
                    h.previous_secret = Some(h.secret.clone());
                    h.previous_secret_expires_at = Some(self.now().plus(d));
                } else {
                    h.previous_secret = None;
                    h.previous_secret_expires_at = None;
                }
                h.secret = Zeroizing::new(s);
            }
            (None, Some(_)) => return Err(validation("previous_secret_ttl", "needs a new secret")),
            (None, None) => {}
        }
        h.updated_at = self.now();
        self.save_webhook(h).await
    }

    pub async fn delete_webhook(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorize(caller, Scope::Admin, None)?;
        let id = self.resolve_webhook(id)?;
        let id = id.as_str();
        let _change = self.config_change().await;
        self.find_webhook(id)?;
        self.remove_consumer(id).await
    }

    /// Deletes a webhook or subscription with every delivery it has: pending, finished and
    /// buffered. The caller holds the configuration turn.
    pub(crate) async fn remove_consumer(&self, id: &str) -> Result<()> {
        let state = self.events.state.clone();
        let key = id.to_owned();
        let (pending, finished): (Vec<u64>, Vec<u64>) = {
            let s = read(&self.events.state);
            (
                s.pending
                    .values()
                    .filter(|d| d.webhook_id == id)
                    .map(|d| d.seq)
                    .chain(
                        s.buffers
                            .get(id)
                            .into_iter()
                            .flat_map(|b| b.keys().copied()),
                    )
                    .collect(),
                s.finished
                    .get(id)
                    .map(|f| f.iter().copied().collect())
                    .unwrap_or_default(),
            )
        };
        self.vault
            .write(move |tx| {
                tx.delete(Table::Webhooks, &hook_key(&key));
                for seq in pending.iter().chain(&finished) {
                    tx.delete(Table::Webhooks, &delivery_key(*seq));
                }
                tx.on_commit(move || {
                    let mut s = write(&state);
                    s.hooks.remove(&key);
                    s.finished.remove(&key);
                    s.buffers.remove(&key);
                    for seq in pending {
                        s.remove_pending(seq);
                    }
                });
                Ok::<_, Error>(())
            })
            .await
    }

    /// The sequence numbers of one webhook's deliveries (pending and finished), newest first.
    fn delivery_seqs(&self, id: &str) -> Vec<u64> {
        let s = read(&self.events.state);
        let mut seqs: Vec<u64> = s
            .pending
            .values()
            .filter(|d| d.webhook_id == id)
            .map(|d| d.seq)
            .chain(s.finished.get(id).into_iter().flatten().copied())
            .collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs
    }

    /// Walks the delivery log of one webhook, newest first, record by record while `visit`
    /// returns true (a record pruned meanwhile is skipped).
    fn walk_deliveries(
        &self,
        id: &str,
        mut visit: impl FnMut(DeliveryRecord) -> bool,
    ) -> Result<()> {
        for seq in self.delivery_seqs(id) {
            let Some(plain) = self
                .vault
                .get(Table::Webhooks, &delivery_key(seq))
                .map_err(crate::store_err)?
            else {
                continue;
            };
            let WebhookItem::Delivery(d) =
                decode::<WebhookItem>(Table::Webhooks, plain.as_bytes())?
            else {
                continue;
            };
            if !visit(d) {
                break;
            }
        }
        Ok(())
    }

    pub fn list_deliveries(
        &self,
        caller: &Caller,
        id: &str,
        status: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage> {
        self.authorize(caller, Scope::Admin, None)?;
        let id = self.resolve_webhook(id)?;
        let id = id.as_str();
        self.find_webhook(id)?;
        let limit = limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(Error::invalid_request("limit must be between 1 and 1000"));
        }
        let before = match cursor {
            None => u64::MAX,
            Some(c) => crate::cursor::decode(c)?
                .parse::<u64>()
                .map_err(|_| Error::new(ErrorCode::InvalidCursor, "bad cursor"))?,
        };
        let want = match status {
            None => None,
            Some("pending") => Some(DeliveryStatus::Pending),
            Some("success") => Some(DeliveryStatus::Success),
            Some("failed") => Some(DeliveryStatus::Failed),
            Some(other) => {
                return Err(Error::invalid_request(format!(
                    "status {other:?} is not pending, success or failed"
                )));
            }
        };
        // One more than the page tells whether there is a next one.
        let mut all: Vec<DeliveryRecord> = Vec::with_capacity(limit + 1);
        self.walk_deliveries(id, |d| {
            if d.seq < before && want.is_none_or(|w| d.status == w) {
                all.push(d);
            }
            all.len() <= limit
        })?;
        let has_more = all.len() > limit;
        let deliveries = all.iter().take(limit).map(DeliveryRecord::view).collect();
        let cursor = has_more.then(|| crate::cursor::encode(&all[limit - 1].seq.to_string()));
        Ok(DeliveryPage {
            deliveries,
            cursor,
            has_more,
        })
    }

    /// Sends a `webhook.test` event now and reports how it went.
    pub async fn test_webhook(&self, caller: &Caller, id: &str) -> Result<WebhookTested> {
        self.authorize(caller, Scope::Admin, None)?;
        let id = self.resolve_webhook(id)?;
        let id = id.as_str();
        let h = self.find_webhook(id)?;
        let now = self.now();
        let event = Event::new(
            "webhook.test",
            &caller.identity_id.to_string(),
            None,
            json!({ "webhook_id": h.id }),
            now,
        )
        .in_request(caller.request_id.as_deref());
        let seq = self.events.seq.fetch_add(1, Ordering::SeqCst);
        let mut d = DeliveryRecord::new(seq, &h.id, &event, now);
        self.attempt(&h, &mut d).await;
        if d.status == DeliveryStatus::Pending {
            // A test is one attempt: it is not retried.
            d.status = DeliveryStatus::Failed;
        }
        let view = d.view();
        self.save_delivery(d, None).await?;
        Ok(WebhookTested {
            delivery_id: view.id,
            status: view.status,
            response_code: view.response_code,
            duration_ms: view.duration_ms,
            error: view.error,
        })
    }

    /// One delivery attempt: sign, POST, record the outcome on `d` (success, or pending with
    /// its next attempt, or failed after the last).
    async fn attempt(&self, h: &WebhookRecord, d: &mut DeliveryRecord) {
        let now = self.now();
        d.attempts += 1;
        let body = serde_json::to_vec(&d.event).unwrap_or_default();
        let ts = (now.0 / 1_000_000).to_string();
        let mut req = self
            .http
            .post(&h.url)
            .header("content-type", "application/json")
            .header("user-agent", "ScaiVault-Webhook/1.0")
            .header("x-scaivault-event-id", &d.event.event_id)
            .header("x-scaivault-event-type", &d.event.event_type)
            .header("x-scaivault-delivery-id", format!("dlv_{}", d.seq))
            .header("x-scaivault-timestamp", &ts)
            .header("x-scaivault-signature", sign(&h.secret, &ts, &body));
        if let (Some(prev), Some(until)) = (&h.previous_secret, h.previous_secret_expires_at)
            && now < until
        {
            req = req.header("x-scaivault-signature-previous", sign(prev, &ts, &body));
        }
        let started = Instant::now();
        // The allow-list is checked again at send time: the operator may have narrowed it.
        let allowed = self.check_url(&h.url).is_ok();
        let result = if allowed {
            Some(req.body(body).send().await)
        } else {
            None
        };
        d.duration_ms = Some(started.elapsed().as_millis() as u64);
        let failure = match result {
            None => Some("the URL is no longer on the outbound allow-list".to_owned()),
            Some(Ok(resp)) => {
                d.response_code = Some(resp.status().as_u16());
                if resp.status().is_success() {
                    None
                } else {
                    Some(format!("the receiver answered {}", resp.status().as_u16()))
                }
            }
            Some(Err(e)) => Some(if e.is_timeout() {
                "timed out".to_owned()
            } else {
                "could not connect".to_owned()
            }),
        };
        match failure {
            None => {
                d.status = DeliveryStatus::Success;
                d.delivered_at = Some(self.now());
                d.last_error = None;
            }
            Some(why) => {
                d.last_error = Some(why);
                if d.attempts >= DELIVERY_ATTEMPTS || !allowed {
                    d.status = DeliveryStatus::Failed;
                } else {
                    let wait = RETRY_DELAYS[(d.attempts as usize - 1).min(RETRY_DELAYS.len() - 1)];
                    d.next_attempt_at = self.now().plus(Duration::from_secs(wait));
                }
            }
        }
    }

    /// Records a delivery attempt's outcome. `health` (`Some(true)` after a success, `Some(false)`
    /// after a final failure) updates the webhook's failure count on the record as the writer
    /// holds it: an attempt can take seconds, and writing back the copy it started with would
    /// undo an edit made meanwhile (a rotated signing secret, a new URL, a disable).
    async fn save_delivery(&self, d: DeliveryRecord, health: Option<bool>) -> Result<()> {
        let state = self.events.state.clone();
        // Old finished entries beyond the kept window go in the same write.
        let prune: Vec<u64> = if d.status == DeliveryStatus::Pending {
            Vec::new()
        } else {
            // This one joins the finished log: keep the newest KEEP_DELIVERIES in all.
            let s = read(&self.events.state);
            let finished = s.finished.get(&d.webhook_id);
            let n = finished.map_or(0, |f| f.len());
            finished
                .into_iter()
                .flatten()
                .copied()
                .filter(|seq| *seq != d.seq)
                .take((n + 1).saturating_sub(KEEP_DELIVERIES))
                .collect()
        };
        self.vault
            .write(move |tx| {
                // The webhook may have been deleted while this delivery was under way (in an
                // earlier batch or earlier in this one): then the delivery goes with it, and
                // nothing may write its record back.
                let Some(stored) = tx.get(Table::Webhooks, &hook_key(&d.webhook_id))? else {
                    tx.delete(Table::Webhooks, &delivery_key(d.seq));
                    tx.on_commit(move || {
                        write(&state).remove_pending(d.seq);
                    });
                    return Ok(());
                };
                let hook = match (health, decode(Table::Webhooks, stored.as_bytes())?) {
                    (Some(ok), WebhookItem::Hook(mut h)) => {
                        let before = h.consecutive_failures;
                        h.consecutive_failures = if ok { 0 } else { before + 1 };
                        (h.consecutive_failures != before).then_some(h)
                    }
                    _ => None,
                };
                tx.put(
                    Table::Webhooks,
                    &delivery_key(d.seq),
                    &encode(&WebhookItem::Delivery(d.clone())),
                );
                for seq in &prune {
                    tx.delete(Table::Webhooks, &delivery_key(*seq));
                }
                if let Some(h) = &hook {
                    tx.put(
                        Table::Webhooks,
                        &hook_key(&h.id),
                        &encode(&WebhookItem::Hook(h.clone())),
                    );
                }
                tx.on_commit(move || {
                    let mut s = write(&state);
                    if d.status == DeliveryStatus::Pending {
                        s.add_pending(d);
                    } else {
                        s.remove_pending(d.seq);
                        let log = s.finished.entry(d.webhook_id.clone()).or_default();
                        log.insert(d.seq);
                        for seq in &prune {
                            log.remove(seq);
                        }
                    }
                    if let Some(h) = hook
                        && s.hooks.contains_key(&h.id)
                    {
                        s.hooks.insert(h.id.clone(), h);
                    }
                });
                Ok::<_, Error>(())
            })
            .await
    }

    /// Takes the due deliveries of webhooks that have none in flight, grouped by webhook in
    /// the order they were raised, and marks those webhooks in flight (at most
    /// [`WEBHOOKS_AT_ONCE`] in all). A webhook's deliveries thus go one at a time, in order,
    /// while different webhooks are served side by side.
    fn take_due(&self) -> Vec<(InFlight<'_>, Vec<DeliveryRecord>)> {
        let now = self.now();
        let state = read(&self.events.state);
        let mut flying = self.delivering.lock().unwrap_or_else(|p| p.into_inner());
        let mut groups: Vec<(String, Vec<DeliveryRecord>)> = Vec::new();
        for d in state.pending.values().filter(|d| d.next_attempt_at <= now) {
            if let Some((_, list)) = groups.iter_mut().find(|(id, _)| *id == d.webhook_id) {
                if list.len() < 64 {
                    list.push(d.clone());
                }
            } else if !flying.contains(&d.webhook_id) && flying.len() < WEBHOOKS_AT_ONCE {
                flying.insert(d.webhook_id.clone());
                groups.push((d.webhook_id.clone(), vec![d.clone()]));
            }
        }
        groups
            .into_iter()
            .map(|(id, list)| {
                (
                    InFlight {
                        engine: self,
                        webhook_id: id,
                    },
                    list,
                )
            })
            .collect()
    }

    /// Sends one webhook's deliveries in order; the first error it could not record is
    /// returned after the others were tried.
    async fn deliver_group(&self, list: Vec<DeliveryRecord>) -> Result<()> {
        let mut first = None;
        for d in list {
            if let Err(e) = self.deliver_one(d).await {
                tracing::warn!(
                    code = e.code.as_str(),
                    "could not record a webhook delivery; the pass goes on"
                );
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// One pass of deliveries, waited for: every due delivery of a webhook not already being
    /// served gets one attempt. Returns how many were attempted. (Tests call it; the server's
    /// worker uses [`Engine::dispatch_deliveries`], which does not wait.)
    pub async fn deliver_pending(&self) -> Result<usize> {
        let groups = self.take_due();
        let n = groups.iter().map(|(_, l)| l.len()).sum();
        let results =
            futures_util::future::join_all(groups.into_iter().map(|(flight, list)| async move {
                let r = self.deliver_group(list).await;
                drop(flight);
                r
            }))
            .await;
        results
            .into_iter()
            .find(|r| r.is_err())
            .unwrap_or(Ok(()))
            .map(|()| n)
    }

    /// The server's delivery worker: starts a task per webhook with due deliveries and none
    /// in flight, and returns at once, so a webhook whose endpoint takes its full timeout
    /// holds up neither the other webhooks nor deliveries queued meanwhile. A finished task
    /// wakes the worker for what is due next. Returns how many tasks it started.
    pub fn dispatch_deliveries(self: &Arc<Self>) -> usize {
        let groups: Vec<(String, Vec<DeliveryRecord>)> = self
            .take_due()
            .into_iter()
            .map(|(mut flight, list)| (std::mem::take(&mut flight.webhook_id), list))
            .collect();
        let n = groups.len();
        for (webhook_id, list) in groups {
            let engine = self.clone();
            tokio::spawn(async move {
                let flight = InFlight {
                    engine: &engine,
                    webhook_id,
                };
                let _ = engine.deliver_group(list).await;
                drop(flight);
                engine.events.notify.notify_one();
            });
        }
        n
    }

    /// Webhooks with deliveries being sent right now.
    pub fn deliveries_in_flight(&self) -> usize {
        self.delivering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Sends one delivery (or fails it if its webhook went away or was disabled) and records
    /// the outcome.
    async fn deliver_one(&self, mut d: DeliveryRecord) -> Result<()> {
        let Some(h) = read(&self.events.state).hooks.get(&d.webhook_id).cloned() else {
            d.status = DeliveryStatus::Failed;
            d.last_error = Some("the webhook was deleted".into());
            return self.save_delivery(d, None).await;
        };
        if !h.enabled {
            d.status = DeliveryStatus::Failed;
            d.last_error = Some("the webhook is disabled".into());
            return self.save_delivery(d, None).await;
        }
        // A subscription's owner must still be allowed to read what it is sent.
        if let Some(sub) = &h.subscription {
            let path = d.event.path.as_deref().unwrap_or_default();
            if !self.events.readers.may_read(&sub.owner, path, self.now()) {
                d.status = DeliveryStatus::Failed;
                d.last_error = Some("the subscription's owner may no longer read the path".into());
                return self.save_delivery(d, None).await;
            }
        }
        self.attempt(&h, &mut d).await;
        let health = match d.status {
            DeliveryStatus::Success => Some(true),
            DeliveryStatus::Failed => Some(false),
            DeliveryStatus::Pending => None,
        };
        self.save_delivery(d, health).await
    }
}
