//! The audit log: one entry per request, in the vault file, hash-chained.
//!
//! Each entry carries the SHA-256 of its predecessor and its own hash over everything it says,
//! so changing, removing or reordering an entry breaks the chain at that entry. The chain's
//! head (last sequence number and hash) is a sealed record updated in the same batch as the
//! entries, so cutting the tail off is detected too; a checkpoint every 1024 entries lets a
//! verifier start from the last one. Entries go through the commit pipeline like every write:
//! a request is answered only once its entry is durable, and fails if it cannot be made so.

use std::collections::BTreeMap;

use scaivault_core::identity::IdentityType;
use scaivault_core::scope::Scope;
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode, Result};
use scaivault_crypto::sha256;
use scaivault_store::{StoreError, Table, WriteTx};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Caller, Clock, Engine, pack, store_err, unpack};

const HEAD_KEY: &[u8] = b"head";
const PRUNED_KEY: &[u8] = b"pruned-through";
pub const CHECKPOINT_EVERY: u64 = 1024;
pub const DEFAULT_QUERY_LIMIT: usize = 100;
pub const MAX_QUERY_LIMIT: usize = 1000;
/// Rows kept in each breakdown of a summary.
pub const SUMMARY_TOP: usize = 100;
/// Entries a summary reads at most: each costs ~3.5 µs to open and decode (measured on the
/// 2-core machine of docs/PERFORMANCE.md), so about a second. A summary of a longer range
/// covers its newest part and says so (`complete: false`).
pub const SUMMARY_MAX_SCAN: usize = 250_000;
/// The window of the summary that comes with a secret's or an identity's trail.
pub const TRAIL_SUMMARY_DAYS: i64 = 30;

/// A SHA-256 digest: hex in JSON, raw bytes in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// On the wire: 64 hex digits.
impl schemars::JsonSchema for Hash32 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Hash32".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[0-9a-f]{64}$" })
    }
}

impl Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let bytes = hex::decode(&s).map_err(|_| serde::de::Error::custom("bad hex"))?;
            bytes
                .try_into()
                .map(Hash32)
                .map_err(|_| serde::de::Error::custom("bad length"))
        } else {
            <[u8; 32]>::deserialize(d).map(Hash32)
        }
    }
}

/// One audit entry, with the spec's fields (§1.8). Never a secret value.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub id: String,
    pub seq: u64,
    pub timestamp: Timestamp,
    pub action: String,
    pub identity_type: Option<IdentityType>,
    pub identity_id: Option<String>,
    pub secret_path: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
    pub duration_ms: u64,
    pub request_id: String,
    #[serde(with = "crate::records::json_text")]
    #[schemars(with = "Map<String, Value>")]
    pub extra_data: Map<String, Value>,
    pub prev_hash: Hash32,
    pub hash: Hash32,
}

/// What a transport knows about a finished request.
#[derive(Debug, Clone, Default)]
pub struct AuditInput {
    pub action: String,
    pub identity_type: Option<IdentityType>,
    pub identity_id: Option<String>,
    pub secret_path: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
    pub duration_ms: u64,
    pub request_id: String,
    pub extra_data: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct ChainHead {
    seq: u64,
    hash: Hash32,
}

fn checkpoint_key(seq: u64) -> Vec<u8> {
    let mut k = b"checkpoint/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The entry's hash: SHA-256 over its postcard form with the hash field zeroed (the
/// predecessor's hash is inside it, which is what chains them).
fn entry_hash(e: &AuditEntry) -> Hash32 {
    let mut copy = e.clone();
    copy.hash = Hash32::default();
    Hash32(sha256(&pack(&copy)))
}

/// Filters of `GET /v1/audit/logs` (spec §2.7).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub from: Option<Timestamp>,
    #[serde(default)]
    pub to: Option<Timestamp>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub identity_id: Option<String>,
    #[serde(default)]
    pub identity_type: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Exactly this path (for `GET /v1/audit/secrets/{path}`).
    #[serde(default)]
    pub secret_path: Option<String>,
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub source_ip: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub cursor: Option<String>,
}

impl AuditQuery {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.from.is_none_or(|f| e.timestamp >= f)
            && self.to.is_none_or(|t| e.timestamp <= t)
            // `read,write`: either action.
            && self
                .action
                .as_ref()
                .is_none_or(|a| a.split(',').any(|one| one.trim() == e.action))
            && self
                .identity_id
                .as_ref()
                .is_none_or(|i| e.identity_id.as_ref() == Some(i))
            && self
                .identity_type
                .as_ref()
                .is_none_or(|t| e.identity_type.map(|x| x.as_str()) == Some(t.as_str()))
            && self.path_prefix.as_ref().is_none_or(|p| {
                e.secret_path
                    .as_ref()
                    .is_some_and(|s| s.starts_with(p.as_str()))
            })
            && self
                .secret_path
                .as_ref()
                .is_none_or(|p| e.secret_path.as_ref() == Some(p))
            && self.success.is_none_or(|s| e.success == s)
            && self
                .source_ip
                .as_ref()
                .is_none_or(|ip| e.source_ip.as_ref() == Some(ip))
            && self.request_id.as_ref().is_none_or(|r| &e.request_id == r)
    }
}

/// Filters of `GET /v1/audit/summary` (spec §2.7: `from`, `to`; `identity_id` and
/// `secret_path` narrow it to one identity or one secret).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    #[serde(default)]
    pub from: Option<Timestamp>,
    #[serde(default)]
    pub to: Option<Timestamp>,
    #[serde(default)]
    pub identity_id: Option<String>,
    #[serde(default)]
    pub secret_path: Option<String>,
}

/// The counts a summary gathers.
#[derive(Default)]
struct Tally {
    total: u64,
    failures: u64,
    first_at: Option<Timestamp>,
    last_at: Option<Timestamp>,
    by_action: std::collections::BTreeMap<String, u64>,
    by_identity: std::collections::HashMap<String, u64>,
    by_path: std::collections::HashMap<String, u64>,
    /// Keyed by hours since the epoch.
    by_hour: std::collections::BTreeMap<i64, u64>,
}

impl Tally {
    /// Entries come newest first.
    fn add(&mut self, e: AuditEntry) {
        self.total += 1;
        self.failures += u64::from(!e.success);
        self.last_at.get_or_insert(e.timestamp);
        self.first_at = Some(e.timestamp);
        *self.by_action.entry(e.action).or_default() += 1;
        *self
            .by_identity
            .entry(e.identity_id.unwrap_or_else(|| "-".into()))
            .or_default() += 1;
        if let Some(p) = e.secret_path {
            *self.by_path.entry(p).or_default() += 1;
        }
        *self
            .by_hour
            .entry(e.timestamp.unix_seconds().div_euclid(3600))
            .or_default() += 1;
    }

    fn into_summary(self, q: &SummaryQuery, complete: bool) -> AuditSummary {
        fn top(counts: std::collections::HashMap<String, u64>) -> BTreeMap<String, u64> {
            let mut rows: Vec<(String, u64)> = counts.into_iter().collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            rows.truncate(SUMMARY_TOP);
            rows.into_iter().collect()
        }
        let recent = self.by_hour.len().saturating_sub(SUMMARY_TOP);
        let by_hour = self
            .by_hour
            .into_iter()
            .skip(recent)
            .map(|(h, n)| (Timestamp::from_unix_seconds(h * 3600).to_rfc3339(), n))
            .collect();
        AuditSummary {
            total_events: self.total,
            successful_events: self.total - self.failures,
            failures: self.failures,
            first_at: self.first_at,
            last_at: self.last_at,
            by_action: self.by_action,
            by_identity: top(self.by_identity),
            by_path: top(self.by_path),
            by_hour,
            from: q.from,
            to: q.to,
            identity_id: q.identity_id.clone(),
            secret_path: q.secret_path.clone(),
            complete,
        }
    }
}

/// `GET /v1/audit/summary`: counts over a time range, by action, identity, path and hour.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditSummary {
    pub total_events: u64,
    /// `total_events - failures`, as the reference names it.
    pub successful_events: u64,
    pub failures: u64,
    pub first_at: Option<Timestamp>,
    pub last_at: Option<Timestamp>,
    pub by_action: BTreeMap<String, u64>,
    /// The largest rows only (see `SUMMARY_TOP`); `-` for entries without an identity.
    pub by_identity: BTreeMap<String, u64>,
    pub by_path: BTreeMap<String, u64>,
    /// The most recent hours, keyed by the hour's start.
    pub by_hour: BTreeMap<String, u64>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub identity_id: Option<String>,
    pub secret_path: Option<String>,
    /// Whether the whole range was read (at most `SUMMARY_MAX_SCAN` entries are).
    pub complete: bool,
}

/// `GET /v1/audit/logs`: entries newest first, a page at a time.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditPage {
    pub logs: Vec<AuditEntry>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// `GET /v1/audit/secrets/{path}` and `/v1/audit/identities/{id}`: a page of the trail, with
/// its last 30 days summed up.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditTrail {
    #[serde(flatten)]
    pub page: AuditPage,
    pub summary: AuditSummary,
}

/// `POST /v1/audit/prune`: what went.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditPruned {
    pub removed: u64,
    /// The checkpoint the chain is now verified from.
    pub pruned_through: u64,
    pub before: Timestamp,
}

/// What `audit verify` found.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub verified: u64,
    pub from_seq: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// The first entry where the chain breaks, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Appends an entry; its time is read here, on the writer thread, so that timestamps follow
/// the chain's order (queries by time rely on it), whatever the request did before.
pub(crate) fn append(
    tx: &mut WriteTx<'_, '_>,
    input: AuditInput,
    clock: &dyn Clock,
) -> std::result::Result<AuditEntry, Error> {
    let head: ChainHead = match tx.get(Table::AuditState, HEAD_KEY).map_err(store_err)? {
        Some(p) => unpack(Table::AuditState, p.as_bytes())?,
        None => ChainHead::default(),
    };
    let seq = head.seq + 1;
    let now = clock.now();
    let mut entry = AuditEntry {
        id: format!("log_{seq:012}"),
        seq,
        timestamp: now,
        action: input.action,
        identity_type: input.identity_type,
        identity_id: input.identity_id,
        secret_path: input.secret_path,
        source_ip: input.source_ip,
        user_agent: input.user_agent.map(|u| u.chars().take(256).collect()),
        success: input.success,
        duration_ms: input.duration_ms,
        request_id: input.request_id,
        extra_data: input.extra_data,
        prev_hash: head.hash,
        hash: Hash32::default(),
    };
    // The hash is the last field and postcard writes [u8; 32] as 32 raw bytes, so the entry
    // is packed once: hashed with a zero hash, which is then overwritten in place.
    let mut bytes = pack(&entry);
    let n = bytes.len();
    let hash = sha256(&bytes);
    bytes[n - 32..].copy_from_slice(&hash);
    entry.hash = Hash32(hash);
    debug_assert_eq!(entry_hash(&entry), entry.hash);
    tx.put_ordered(Table::Audit, seq, &bytes);
    let new_head = ChainHead {
        seq,
        hash: entry.hash,
    };
    tx.put(Table::AuditState, HEAD_KEY, &pack(&new_head));
    if seq.is_multiple_of(CHECKPOINT_EVERY) {
        tx.put(Table::AuditState, &checkpoint_key(seq), &pack(&new_head));
    }
    Ok(entry)
}

impl Engine {
    /// Appends one entry; returns once it is durable. Fails closed.
    /// A successful read also raises `secret.accessed` for the webhooks that want it, in the
    /// same transaction.
    pub async fn record_audit(&self, input: AuditInput) -> Result<AuditEntry> {
        let clock = self.clock.clone();
        let (sink, accessed) = (self.events.clone(), self.audit_events(&[&input]));
        self.vault
            .write(move |tx| {
                let entry = append(tx, input, &*clock)?;
                if !accessed.is_empty() {
                    sink.enqueue_in(tx, accessed, &[], entry.timestamp);
                }
                Ok(entry)
            })
            .await
    }

    /// Appends several entries in one commit (a batch read's, one per path); returns once
    /// they are durable. Fails closed.
    pub async fn record_audits(&self, inputs: Vec<AuditInput>) -> Result<()> {
        let clock = self.clock.clone();
        let (sink, accessed) = (
            self.events.clone(),
            self.audit_events(&inputs.iter().collect::<Vec<_>>()),
        );
        self.vault
            .write(move |tx| {
                for input in inputs {
                    append(tx, input, &*clock)?;
                }
                if !accessed.is_empty() {
                    sink.enqueue_in(tx, accessed, &[], clock.now());
                }
                Ok(())
            })
            .await
    }

    /// The events audit entries raise: `secret.accessed` and `policy.violation`.
    fn audit_events(&self, inputs: &[&AuditInput]) -> Vec<crate::events::Event> {
        let mut events = self.accessed_events(inputs);
        events.extend(self.violation_events(inputs));
        events
    }

    /// `policy.violation` for each request refused by a scope, a policy or one of its
    /// conditions, as the reference has every denial emit it (if a webhook listens: a denial
    /// storm must not cost deliveries nobody wants). The refused action, its code and the
    /// path, never a value.
    fn violation_events(&self, inputs: &[&AuditInput]) -> Vec<crate::events::Event> {
        const DENIALS: &[&str] = &[
            "access_denied",
            "insufficient_scope",
            "ip_not_allowed",
            "time_window_violation",
            "mfa_required",
            "forbidden",
        ];
        if !self.events.wanted("policy.violation") {
            return Vec::new();
        }
        let now = self.now();
        inputs
            .iter()
            .filter(|i| !i.success)
            .filter_map(|i| {
                let code = i.extra_data.get("error_code")?.as_str()?;
                if !DENIALS.contains(&code) {
                    return None;
                }
                let data = json!({
                    "code": code,
                    "action": i.action,
                    "identity_type": i.identity_type,
                    "source_ip": i.source_ip,
                });
                let actor = i.identity_id.as_deref().unwrap_or("-");
                let event = crate::events::Event::new(
                    "policy.violation",
                    actor,
                    i.secret_path.as_deref(),
                    data,
                    now,
                )
                .in_request(Some(&i.request_id));
                Some(event)
            })
            .collect()
    }

    /// `secret.accessed` for each successful read among `inputs`, if any webhook listens for
    /// it (most do not, and a read should not pay for events nobody wants). Never a value:
    /// the version read, as the audit entry has it.
    fn accessed_events(&self, inputs: &[&AuditInput]) -> Vec<crate::events::Event> {
        if !self.events.wanted("secret.accessed") {
            return Vec::new();
        }
        let now = self.now();
        inputs
            .iter()
            .filter(|i| i.action == "read" && i.success)
            .filter_map(|i| {
                let path = i.secret_path.as_deref()?;
                let mut data = json!({
                    "version": i.extra_data.get("version"),
                    "identity_type": i.identity_type,
                });
                if i.extra_data.get("batch") == Some(&Value::Bool(true)) {
                    data["batch"] = Value::Bool(true);
                }
                let actor = i.identity_id.as_deref().unwrap_or("-");
                let mut event =
                    crate::events::Event::new("secret.accessed", actor, Some(path), data, now);
                event.request_id = Some(i.request_id.clone());
                Some(event)
            })
            .collect()
    }

    /// Refuses a log that holds an entry past the chain's head: the head was rolled back in
    /// the file (with the ledger that pins it) while the log was not, and the next appends
    /// would overwrite the log's tail with a chain that still looks whole. Run at unseal.
    pub(crate) fn check_audit_tail(&self) -> Result<()> {
        let head = self.audit_head()?;
        let mut last = None;
        self.vault
            .scan_ordered_rev(Table::Audit, None, &mut |seq, _| {
                last = Some(seq);
                false
            })
            .map_err(store_err)?;
        match last {
            Some(last) if last > head.seq => Err(Error::new(
                ErrorCode::IntegrityError,
                format!(
                    "the audit log holds entry {last} past its head ({}): the chain's state was rolled back in the file; restore the vault from a backup",
                    head.seq
                ),
            )),
            _ => Ok(()),
        }
    }

    fn audit_head(&self) -> Result<ChainHead> {
        match self
            .vault
            .get(Table::AuditState, HEAD_KEY)
            .map_err(store_err)?
        {
            Some(p) => unpack(Table::AuditState, p.as_bytes()),
            None => Ok(ChainHead::default()),
        }
    }

    /// Newest first, filtered, paginated by sequence number.
    pub fn query_audit(&self, caller: &Caller, q: &AuditQuery) -> Result<AuditPage> {
        self.authorize(caller, Scope::AuditRead, None)?;
        let limit = q.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        if limit == 0 || limit > MAX_QUERY_LIMIT {
            return Err(Error::invalid_request(format!(
                "limit must be between 1 and {MAX_QUERY_LIMIT}"
            )));
        }
        let before = match &q.cursor {
            Some(c) => Some(
                c.strip_prefix("seq_")
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        Error::new(
                            ErrorCode::InvalidCursor,
                            "the cursor is malformed; start again without one",
                        )
                    })?,
            ),
            None => None,
        };
        let mut logs = Vec::with_capacity(limit.min(256));
        let mut has_more = false;
        let mut failure = None;
        self.vault
            .scan_ordered_rev(Table::Audit, before, &mut |_, plain| {
                let e: AuditEntry = match unpack(Table::Audit, plain.as_bytes()) {
                    Ok(e) => e,
                    Err(err) => {
                        failure = Some(err);
                        return false;
                    }
                };
                if q.to.is_some_and(|t| e.timestamp > t) {
                    return true;
                }
                // Entries are in time order: past `from`, nothing older can match.
                if q.from.is_some_and(|f| e.timestamp < f) {
                    return false;
                }
                if !q.matches(&e) {
                    return true;
                }
                if logs.len() == limit {
                    has_more = true;
                    return false;
                }
                logs.push(e);
                true
            })
            .map_err(store_err)?;
        if let Some(e) = failure {
            return Err(e);
        }
        let cursor = if has_more {
            logs.last().map(|e: &AuditEntry| format!("seq_{}", e.seq))
        } else {
            None
        };
        Ok(AuditPage {
            logs,
            cursor,
            has_more,
        })
    }

    /// Counts over a time range (optionally of one identity or one secret): by action,
    /// identity, path and hour, with the failures. It answers "is this service reading from
    /// the vault, what, and since when". Bounded work: at most [`SUMMARY_MAX_SCAN`] entries,
    /// newest first, are read (`complete` says whether the range was covered), and each
    /// breakdown keeps its [`SUMMARY_TOP`] largest rows (by_hour: the most recent hours).
    pub fn audit_summary(&self, caller: &Caller, q: &SummaryQuery) -> Result<AuditSummary> {
        self.authorize(caller, Scope::AuditRead, None)?;
        // The time range is applied by the scan; the rest is a query's filter.
        let filter = AuditQuery {
            identity_id: q.identity_id.clone(),
            secret_path: q.secret_path.clone(),
            ..Default::default()
        };
        let mut tally = Tally::default();
        let (mut scanned, mut complete) = (0usize, true);
        let mut failure = None;
        self.vault
            .scan_ordered_rev(Table::Audit, None, &mut |_, plain| {
                if scanned == SUMMARY_MAX_SCAN {
                    complete = false;
                    return false;
                }
                scanned += 1;
                let e: AuditEntry = match unpack(Table::Audit, plain.as_bytes()) {
                    Ok(e) => e,
                    Err(err) => {
                        failure = Some(err);
                        return false;
                    }
                };
                if q.to.is_some_and(|t| e.timestamp > t) {
                    return true;
                }
                // Entries are in time order: past `from`, nothing older counts.
                if q.from.is_some_and(|f| e.timestamp < f) {
                    return false;
                }
                if filter.matches(&e) {
                    tally.add(e);
                }
                true
            })
            .map_err(store_err)?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(tally.into_summary(q, complete))
    }

    /// The summary that `GET /v1/audit/secrets/{path}` and `/v1/audit/identities/{id}` add
    /// to their trail: the last [`TRAIL_SUMMARY_DAYS`] days of that secret or identity.
    pub fn trail_summary(
        &self,
        caller: &Caller,
        identity_id: Option<String>,
        secret_path: Option<String>,
    ) -> Result<AuditSummary> {
        let since = self.now().unix_seconds() - TRAIL_SUMMARY_DAYS * 86_400;
        self.audit_summary(
            caller,
            &SummaryQuery {
                from: Some(Timestamp::from_unix_seconds(since)),
                to: None,
                identity_id,
                secret_path,
            },
        )
    }

    /// Walks the chain (from the first entry, or with `fast` from the last checkpoint) and
    /// reports the first entry where it breaks, or the count verified and the head hash.
    pub fn verify_audit(&self, caller: &Caller, fast: bool) -> Result<VerifyReport> {
        self.authorize(caller, Scope::AuditRead, None)?;
        let head = self.audit_head()?;
        // After pruning, the chain is anchored at the checkpoint the pruning stopped at.
        let pruned = self.pruned_through()?;
        let start = if fast && head.seq >= CHECKPOINT_EVERY {
            let cp_seq = head.seq - head.seq % CHECKPOINT_EVERY;
            match self
                .vault
                .get(Table::AuditState, &checkpoint_key(cp_seq))
                .map_err(store_err)?
            {
                Some(p) => Some(unpack::<ChainHead>(Table::AuditState, p.as_bytes())?),
                None => None,
            }
        } else if pruned > 0 {
            match self
                .vault
                .get(Table::AuditState, &checkpoint_key(pruned))
                .map_err(store_err)?
            {
                Some(p) => Some(unpack::<ChainHead>(Table::AuditState, p.as_bytes())?),
                None => {
                    return Err(Error::new(
                        ErrorCode::IntegrityError,
                        format!(
                            "the audit log was pruned through entry {pruned} but its checkpoint is missing"
                        ),
                    ));
                }
            }
        } else {
            None
        };
        let mut report = VerifyReport {
            ok: true,
            verified: 0,
            from_seq: start.map_or(1, |c| c.seq + 1),
            head_seq: head.seq,
            head_hash: head.hash.hex(),
            broken_at: None,
            problem: None,
        };
        let mut prev = start.unwrap_or_default();
        let mut expected_seq = report.from_seq;
        let mut problem: Option<(u64, String)> = None;
        let from_seq = report.from_seq;
        self.vault
            .scan_ordered(Table::Audit, &mut |seq, plain| {
                if seq < from_seq {
                    return true;
                }
                let fail = |why: String| Some((seq, why));
                let plain = match plain {
                    Ok(p) => p,
                    Err(e) => {
                        problem = fail(format!("entry {seq} does not authenticate: {e}"));
                        return false;
                    }
                };
                let e: AuditEntry = match unpack(Table::Audit, plain.as_bytes()) {
                    Ok(e) => e,
                    Err(_) => {
                        problem = fail(format!("entry {seq} does not decode"));
                        return false;
                    }
                };
                if seq != expected_seq || e.seq != seq {
                    problem = Some((
                        expected_seq,
                        format!("entry {expected_seq} is missing (found {seq} next)"),
                    ));
                    return false;
                }
                if e.prev_hash != prev.hash {
                    problem = fail(format!("entry {seq} does not chain to entry {}", seq - 1));
                    return false;
                }
                if entry_hash(&e) != e.hash {
                    problem = fail(format!(
                        "entry {seq} was altered: its hash does not match its contents"
                    ));
                    return false;
                }
                prev = ChainHead { seq, hash: e.hash };
                expected_seq += 1;
                report.verified += 1;
                true
            })
            .map_err(store_err)?;
        if problem.is_none() && (prev.seq != head.seq || prev.hash != head.hash) {
            problem = Some((
                prev.seq + 1,
                format!(
                    "the log ends at entry {} but its head says {}: entries were removed from the end",
                    prev.seq, head.seq
                ),
            ));
        }
        if let Some((at, why)) = problem {
            report.ok = false;
            report.broken_at = Some(at);
            report.problem = Some(why);
        }
        Ok(report)
    }

    fn pruned_through(&self) -> Result<u64> {
        match self
            .vault
            .get(Table::AuditState, PRUNED_KEY)
            .map_err(store_err)?
        {
            Some(p) => unpack::<u64>(Table::AuditState, p.as_bytes()),
            None => Ok(0),
        }
    }

    /// Removes entries older than `before`, up to the last checkpoint that is entirely older,
    /// so the rest of the chain still verifies from that checkpoint. Returns how many went.
    pub async fn prune_audit(&self, caller: &Caller, before: Timestamp) -> Result<AuditPruned> {
        self.authorize(caller, Scope::Admin, None)?;
        let done = self.pruned_through()?;
        // The newest checkpoint whose entry is older than the cutoff.
        let mut cut = done;
        let mut failure = None;
        self.vault
            .scan_ordered(Table::Audit, &mut |seq, plain| {
                if seq <= done || !seq.is_multiple_of(CHECKPOINT_EVERY) {
                    return true;
                }
                match plain
                    .map_err(store_err)
                    .and_then(|p| unpack::<AuditEntry>(Table::Audit, p.as_bytes()))
                {
                    Ok(e) if e.timestamp < before => {
                        cut = seq;
                        true
                    }
                    Ok(_) => false,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })
            .map_err(store_err)?;
        if let Some(e) = failure {
            return Err(e);
        }
        let mut removed = 0u64;
        // The oldest entry still there: a prune interrupted by a crash left some behind.
        let mut next = u64::MAX;
        self.vault
            .scan_ordered(Table::Audit, &mut |seq, _| {
                next = seq;
                false
            })
            .map_err(store_err)?;
        let mut first_batch = true;
        // Bounded transactions: a large prune never becomes one huge commit. The anchor is
        // written with the first batch, so verification never depends on entries about to go.
        while next <= cut {
            let end = (next + 9_999).min(cut);
            let anchor = std::mem::take(&mut first_batch);
            self.vault
                .write(move |tx| {
                    if anchor {
                        tx.put(Table::AuditState, PRUNED_KEY, &pack(&cut));
                    }
                    for seq in next..=end {
                        tx.delete_ordered(Table::Audit, seq);
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .map_err(store_err)?;
            removed += end - next + 1;
            next = end + 1;
        }
        Ok(AuditPruned {
            removed,
            pruned_through: cut,
            before,
        })
    }

    /// Test support: rewrites or removes entries with the vault's key, the way only someone
    /// holding the key could, so that tests can prove `verify_audit` notices.
    #[cfg(any(test, feature = "test-hooks"))]
    pub async fn tamper_audit_for_tests(&self, seq: u64, remove: bool) -> Result<()> {
        let entry: Option<AuditEntry> = match self
            .vault
            .get_ordered(Table::Audit, seq)
            .map_err(store_err)?
        {
            Some(p) => Some(unpack(Table::Audit, p.as_bytes())?),
            None => None,
        };
        let mut entry =
            entry.ok_or_else(|| Error::invalid_request(format!("no audit entry {seq}")))?;
        self.vault
            .write(move |tx| {
                if remove {
                    tx.delete_ordered(Table::Audit, seq);
                } else {
                    entry.success = !entry.success;
                    tx.put_ordered(Table::Audit, seq, &pack(&entry));
                }
                Ok::<_, StoreError>(())
            })
            .await
            .map_err(store_err)
    }
}

/// Builds the audit input for an engine call made by a caller (HTTP or local mode).
pub fn input_for(
    caller: Option<&Caller>,
    action: &str,
    path: Option<&str>,
    request_id: &str,
) -> AuditInput {
    AuditInput {
        action: action.to_owned(),
        identity_type: caller.map(|c| c.identity_type),
        identity_id: caller.map(|c| c.identity_id.to_string()),
        secret_path: path.map(str::to_owned),
        source_ip: caller.and_then(|c| c.source_ip).map(|ip| ip.to_string()),
        request_id: request_id.to_owned(),
        ..Default::default()
    }
}
