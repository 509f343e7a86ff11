//! Prometheus metrics, kept in atomics and a small map; rendered as text on `/v1/metrics`.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A static label per method, so counting a request allocates nothing.
fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "PUT" => "PUT",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    active: AtomicI64,
    rate_limited: Mutex<BTreeMap<&'static str, u64>>,
    /// Reads by secret type (types are few: the built-ins and the installed plugins').
    secret_reads: RwLock<HashMap<String, AtomicU64>>,
    pub secret_writes: AtomicU64,
    /// Passes of the webhook delivery worker (each attempts every delivery due when it starts).
    pub delivery_passes: AtomicU64,
    /// Unseal attempts refused for a wrong passphrase, key file or recovery key.
    pub unseal_failures: AtomicU64,
}

/// What the engine counts, for the exposition.
pub(crate) struct EngineGauges {
    pub secrets: usize,
    pub deliveries_pending: usize,
    pub deliveries_in_flight: usize,
    /// Long-polls of subscriptions waiting now.
    pub polls_waiting: usize,
    /// Deliveries not queued: their webhook had too many waiting.
    pub deliveries_not_queued: u64,
    /// `(completed, failed)`.
    pub rotations: (u64, u64),
    /// Whether this node runs the once-per-vault work (several nodes on one database).
    pub leads: bool,
    /// A vault on a database: its pool and the time spent waiting for it.
    pub database: Option<scaivault_store::DatabaseStats>,
}

impl Metrics {
    /// Counts `n` reads of secrets of type `secret_type`.
    pub fn secret_read(&self, secret_type: &str, n: u64) {
        if let Some(c) = self
            .secret_reads
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(secret_type)
        {
            c.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.secret_reads
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(secret_type.to_owned())
            .or_default()
            .fetch_add(n, Ordering::Relaxed);
    }

    pub fn begin(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self, method: &str, category: &'static str, status: u16, seconds: f64) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method_label(method), category, status))
            .or_default() += 1;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn rate_limited(&self, category: &'static str) {
        *self
            .rate_limited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(category)
            .or_default() += 1;
    }

    /// The text exposition. `engine_gauges` (secrets, pending deliveries, webhooks being
    /// delivered to) are absent while the vault is sealed.
    pub fn render(&self, engine: Option<EngineGauges>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP scaivault_requests_total HTTP requests by method, path category and status.\n",
        );
        out.push_str("# TYPE scaivault_requests_total counter\n");
        for ((m, c, s), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "scaivault_requests_total{{method=\"{m}\",path_category=\"{c}\",status=\"{s}\"}} {n}"
            );
        }
        out.push_str("# HELP scaivault_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE scaivault_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "scaivault_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "scaivault_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "scaivault_request_duration_seconds_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "scaivault_request_duration_seconds_count {count}");
        out.push_str("# HELP scaivault_unseal_failures_total Unseal attempts with a wrong key.\n");
        out.push_str("# TYPE scaivault_unseal_failures_total counter\n");
        let _ = writeln!(
            out,
            "scaivault_unseal_failures_total {}",
            self.unseal_failures.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE scaivault_active_requests gauge\n");
        let _ = writeln!(
            out,
            "scaivault_active_requests {}",
            self.active.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE scaivault_rate_limit_hits_total counter\n");
        for (c, n) in self
            .rate_limited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "scaivault_rate_limit_hits_total{{category=\"{c}\"}} {n}"
            );
        }
        if let Some(g) = &engine {
            out.push_str("# TYPE scaivault_secrets_total gauge\n");
            let _ = writeln!(
                out,
                "scaivault_secrets_total{{tenant=\"local\"}} {}",
                g.secrets
            );
        }
        out.push_str("# TYPE scaivault_secret_reads_total counter\n");
        let reads = self.secret_reads.read().unwrap_or_else(|p| p.into_inner());
        let mut types: Vec<_> = reads.iter().collect();
        types.sort_by(|a, b| a.0.cmp(b.0));
        for (t, n) in types {
            let _ = writeln!(
                out,
                "scaivault_secret_reads_total{{tenant=\"local\",secret_type=\"{}\"}} {}",
                label(t),
                n.load(Ordering::Relaxed)
            );
        }
        drop(reads);
        out.push_str("# TYPE scaivault_secret_writes_total counter\n");
        let _ = writeln!(
            out,
            "scaivault_secret_writes_total{{tenant=\"local\"}} {}",
            self.secret_writes.load(Ordering::Relaxed)
        );
        if let Some(g) = &engine {
            out.push_str("# HELP scaivault_secret_rotations_total Rotations finished since the vault was opened, by outcome.\n");
            out.push_str("# TYPE scaivault_secret_rotations_total counter\n");
            let _ = writeln!(
                out,
                "scaivault_secret_rotations_total{{status=\"completed\"}} {}\nscaivault_secret_rotations_total{{status=\"failed\"}} {}",
                g.rotations.0, g.rotations.1
            );
            metric(
                &mut out,
                "scaivault_webhook_deliveries_pending",
                "gauge",
                "Webhook deliveries not yet delivered or given up.",
                g.deliveries_pending as u64,
            );
            metric(
                &mut out,
                "scaivault_webhook_deliveries_in_flight",
                "gauge",
                "Webhooks being delivered to now.",
                g.deliveries_in_flight as u64,
            );
            metric(
                &mut out,
                "scaivault_subscription_polls_waiting",
                "gauge",
                "Long-polls of subscriptions waiting for an event now.",
                g.polls_waiting as u64,
            );
            if let Some(db) = &g.database {
                metric(
                    &mut out,
                    "scaivault_database_connections_in_use",
                    "gauge",
                    "Pooled database connections checked out now.",
                    db.connections_in_use as u64,
                );
                metric(
                    &mut out,
                    "scaivault_database_connections_max",
                    "gauge",
                    "The most pooled database connections this node opens.",
                    db.connections_max as u64,
                );
                metric(
                    &mut out,
                    "scaivault_database_calls_total",
                    "counter",
                    "Calls to the database waited for (statements and transaction steps).",
                    db.calls,
                );
                out.push_str("# HELP scaivault_database_call_seconds_total Seconds spent waiting for the database's answers (divide by the calls for the mean latency).\n");
                out.push_str("# TYPE scaivault_database_call_seconds_total counter\n");
                let _ = writeln!(
                    out,
                    "scaivault_database_call_seconds_total {:.6}",
                    db.call_seconds
                );
            }
            metric(
                &mut out,
                "scaivault_node_leader",
                "gauge",
                "1 if this node runs the rotation schedule, expiry passes and webhook deliveries (always, on a file; one node of several on a database).",
                u64::from(g.leads),
            );
            metric(
                &mut out,
                "scaivault_webhook_deliveries_not_queued_total",
                "counter",
                "Deliveries not queued because their webhook already had the most it may have waiting.",
                g.deliveries_not_queued,
            );
        }
        metric(
            &mut out,
            "scaivault_webhook_delivery_passes_total",
            "counter",
            "Passes of the webhook delivery worker.",
            self.delivery_passes.load(Ordering::Relaxed),
        );
        out
    }
}

/// A label value as the text format needs it: `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One unlabelled metric with its help and type lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}
