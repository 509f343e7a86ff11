//! Rotation policies: per-secret schedules from the last rotation, auto-generated values, and
//! the grace period during which the replaced version stays readable (spec §1.6).
//!
//! Built here: policies (`rot_<name>`), attach/detach, the scheduler tick (driven by the
//! engine's clock, so tests move time instead of waiting), rotate-now, status. Any write to an
//! attached secret counts as its rotation (the spec's inferred rule for a manual `PUT`): the
//! version it replaces stays readable for the grace period, older ones do not. Not built yet:
//! rotation backends (the four-step create/set/test/finish against an external system),
//! secret-policy recipes, `warn_before` events and webhooks.

use std::time::Duration;

use futures_util::StreamExt as _;
use scaivault_core::duration::{format_duration, parse_duration, parse_duration_list};
use scaivault_core::path::SecretPath;
use scaivault_core::scope::Scope;
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode, Result};
use scaivault_store::Table;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::rotation_job::{Initiator, Outcome};
use crate::rotation_state::{
    JobStatus, RotationPolicy, RotationRecord, assignment_key, attach_in, not_found, notice_key,
};
use crate::rotation_views::{
    JobView, OutcomeError, RotateResult, RotationAssignment, RotationOutcome, RotationPolicyList,
    RotationPolicyView, RotationStatus, SecretRotation,
};
use crate::{Caller, Engine, encode, read, write};

const DEFAULT_GRACE: &str = "48h";

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicyRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub grace_period: Option<String>,
    #[serde(default)]
    pub warn_before: Option<String>,
    #[serde(default)]
    pub auto_generate: Option<bool>,
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    #[serde(default)]
    pub secret_policy_id: Option<String>,
    #[serde(default)]
    pub webhook_ids: Option<Vec<String>>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub backend_config: Option<Map<String, Value>>,
}

impl Engine {
    fn policy_view(&self, p: &RotationPolicy) -> RotationPolicyView {
        let count = read(&self.rotation)
            .assigned
            .values()
            .filter(|id| **id == p.id)
            .count();
        RotationPolicyView::new(p, count)
    }

    fn find_rotation_policy(&self, id: &str) -> Result<RotationPolicy> {
        let state = read(&self.rotation);
        state
            .policies
            .get(id)
            .or_else(|| state.policies.values().find(|p| p.name == id))
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    async fn save_rotation_policy(&self, p: RotationPolicy) -> Result<RotationPolicyView> {
        let state = self.rotation.clone();
        let stored = p.clone();
        self.vault
            .write(move |tx| {
                tx.put(
                    Table::Rotation,
                    stored.id.as_bytes(),
                    &encode(&RotationRecord::Policy(stored.clone())),
                );
                tx.on_commit(move || {
                    write(&state).policies.insert(stored.id.clone(), stored);
                });
                Ok::<_, Error>(())
            })
            .await?;
        Ok(self.policy_view(&p))
    }

    /// Rotation policies by name, a page at a time (`limit`, `cursor`).
    pub fn list_rotation_policies(
        &self,
        caller: &Caller,
        active_only: bool,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<RotationPolicyList> {
        self.authorize(caller, Scope::Admin, None)?;
        let policies: Vec<RotationPolicy> = read(&self.rotation)
            .policies
            .values()
            .filter(|p| !active_only || p.is_active)
            .cloned()
            .collect();
        let keyed = policies
            .iter()
            .map(|p| (p.name.clone(), self.policy_view(p)))
            .collect();
        let page = crate::cursor::page(keyed, limit, cursor)?;
        Ok(RotationPolicyList {
            data: page.items,
            cursor: page.cursor,
            has_more: page.has_more,
        })
    }

    pub fn get_rotation_policy(&self, caller: &Caller, id: &str) -> Result<RotationPolicyView> {
        self.authorize(caller, Scope::Admin, None)?;
        let p = self.find_rotation_policy(id)?;
        let mut v = self.policy_view(&p);
        let secrets: Vec<String> = read(&self.rotation)
            .assigned
            .iter()
            .filter(|(_, pid)| **pid == p.id)
            .map(|(path, _)| path.clone())
            .collect();
        v.secrets = Some(secrets);
        Ok(v)
    }

    fn apply_request(&self, p: &mut RotationPolicy, req: RotationPolicyRequest) -> Result<()> {
        if let Some(b) = req.backend {
            if b.is_empty() {
                p.backend = None;
            } else if self.plugins.rotation_backend(&b).is_none() {
                return Err(Error::new(
                    ErrorCode::ValidationError,
                    format!("no plugin provides the rotation backend {b:?}"),
                )
                .with("fields", json!({ "backend": "unknown rotation backend" })));
            } else {
                p.backend = Some(b);
            }
        }
        if let Some(cfg) = req.backend_config {
            for (k, v) in &cfg {
                if v.is_object() || v.is_array() || v.is_null() {
                    return Err(Error::new(
                        ErrorCode::ValidationError,
                        format!("backend_config.{k} must be a string, number or boolean"),
                    ));
                }
            }
            if let Some(ap) = cfg.get("admin_secret_path") {
                SecretPath::parse(ap.as_str().unwrap_or_default())?;
            }
            p.backend_config = cfg;
        }
        if let Some(sp) = req.secret_policy_id {
            if sp.is_empty() {
                p.secret_policy_id = None;
            } else {
                p.secret_policy_id = Some(self.find_secret_policy(&sp)?.id);
            }
        }
        if let Some(ids) = req.webhook_ids {
            let hooks = read(&self.events.state);
            // Webhooks only: a subscription receives what its owner may read, never what a
            // rotation policy sends it regardless of its paths.
            let is_webhook = |id: &String| {
                hooks
                    .hooks
                    .get(id)
                    .is_some_and(|h| h.subscription.is_none())
            };
            if let Some(missing) = ids.iter().find(|id| !is_webhook(id)) {
                return Err(Error::new(
                    ErrorCode::WebhookNotFound,
                    format!("no webhook {missing}"),
                ));
            }
            p.webhook_ids = ids;
        }
        if let Some(i) = req.interval {
            p.interval_seconds = parse_duration(&i)?.as_secs();
            p.interval = i;
        }
        if let Some(g) = req.grace_period {
            p.grace_period_seconds = parse_duration(&g)?.as_secs();
            p.grace_period = g;
        }
        if let Some(w) = req.warn_before {
            parse_duration_list(&w)?;
            p.warn_before = Some(w);
        }
        if let Some(a) = req.auto_generate {
            p.auto_generate = a;
        }
        if let Some(f) = req.fields {
            if f.is_empty() {
                return Err(Error::new(
                    ErrorCode::ValidationError,
                    "fields, when given, names at least one data field",
                ));
            }
            p.fields = Some(f);
        }
        if let Some(d) = req.description {
            p.description = d;
        }
        Ok(())
    }

    pub async fn create_rotation_policy(
        &self,
        caller: &Caller,
        req: RotationPolicyRequest,
    ) -> Result<RotationPolicyView> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let name = req
            .name
            .clone()
            .ok_or_else(|| Error::new(ErrorCode::ValidationError, "name is required"))?;
        scaivault_core::policy::validate_name(&name)
            .map_err(|e| Error::new(ErrorCode::ValidationError, e.message))?;
        if req.interval.is_none() {
            return Err(Error::new(
                ErrorCode::ValidationError,
                "interval is required (e.g. 90d)",
            ));
        }
        let id = format!("rot_{name}");
        if read(&self.rotation).policies.contains_key(&id) {
            return Err(Error::new(
                ErrorCode::PolicyExists,
                format!("a rotation policy named {name} exists"),
            ));
        }
        let now = self.now();
        let grace = parse_duration(DEFAULT_GRACE).expect("valid default");
        let mut p = RotationPolicy {
            id,
            name,
            description: String::new(),
            interval: String::new(),
            interval_seconds: 0,
            grace_period: format_duration(grace),
            grace_period_seconds: grace.as_secs(),
            warn_before: None,
            auto_generate: false,
            fields: None,
            backend: None,
            backend_config: Map::new(),
            webhook_ids: Vec::new(),
            secret_policy_id: None,
            is_active: true,
            created_at: now,
            updated_at: now,
        };
        self.apply_request(&mut p, req)?;
        self.save_rotation_policy(p).await
    }

    pub async fn update_rotation_policy(
        &self,
        caller: &Caller,
        id: &str,
        req: RotationPolicyRequest,
    ) -> Result<RotationPolicyView> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let mut p = self.find_rotation_policy(id)?;
        if req.name.as_ref().is_some_and(|n| *n != p.name) {
            return Err(Error::new(
                ErrorCode::ValidationError,
                "a rotation policy's name is part of its id and cannot change",
            ));
        }
        self.apply_request(&mut p, req)?;
        p.updated_at = self.now();
        self.save_rotation_policy(p).await
    }

    pub async fn set_rotation_active(
        &self,
        caller: &Caller,
        id: &str,
        active: bool,
    ) -> Result<RotationPolicyView> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let mut p = self.find_rotation_policy(id)?;
        p.is_active = active;
        p.updated_at = self.now();
        self.save_rotation_policy(p).await
    }

    /// Deletes a policy; its secrets are detached.
    pub async fn delete_rotation_policy(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let p = self.find_rotation_policy(id)?;
        let paths: Vec<String> = read(&self.rotation)
            .assigned
            .iter()
            .filter(|(_, pid)| **pid == p.id)
            .map(|(path, _)| path.clone())
            .collect();
        for path in &paths {
            self.detach(path).await?;
        }
        let state = self.rotation.clone();
        let pid = p.id.clone();
        self.vault
            .write(move |tx| {
                tx.delete(Table::Rotation, pid.as_bytes());
                tx.on_commit(move || {
                    write(&state).policies.remove(&pid);
                });
                Ok::<_, Error>(())
            })
            .await
    }

    /// Attaches a secret: its schedule starts from its last rotation (or now).
    pub async fn assign_rotation(
        &self,
        caller: &Caller,
        id: &str,
        path: &str,
    ) -> Result<RotationAssignment> {
        let grant = self.may_attach_rotation(caller)?;
        let _change = self.config_change().await;
        let p = self.find_rotation_policy(id)?;
        let path = SecretPath::parse(path)?.as_str().to_owned();
        let now = self.now();
        let state = self.rotation.clone();
        let heads = self.heads.clone();
        let (pid, sp) = (p.id.clone(), path.clone());
        let last = self
            .vault
            .write(move |tx| {
                let mut head = crate::secrets::head_in(tx, &sp)?.ok_or_else(|| {
                    Error::new(ErrorCode::SecretNotFound, format!("no secret at {sp}"))
                        .with("path", sp.as_str())
                })?;
                attach_in(tx, &grant, &state, &mut head, &pid, &sp, now)?;
                crate::secrets::put_head(tx, &heads, &head);
                Ok::<_, Error>(head.last_rotated_at)
            })
            .await?;
        let next = last.map(|l| l.plus(Duration::from_secs(p.interval_seconds)));
        Ok(RotationAssignment {
            policy_id: p.id,
            secret_path: path,
            last_rotated_at: last,
            next_rotation_at: next,
        })
    }

    pub async fn unassign_rotation(&self, caller: &Caller, id: &str, path: &str) -> Result<()> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let p = self.find_rotation_policy(id)?;
        if read(&self.rotation).assigned.get(path) != Some(&p.id) {
            return Err(Error::new(
                ErrorCode::SecretNotFound,
                format!("{path} is not attached to {}", p.id),
            ));
        }
        self.detach(path).await
    }

    async fn detach(&self, path: &str) -> Result<()> {
        let state = self.rotation.clone();
        let heads = self.heads.clone();
        let sp = path.to_owned();
        self.vault
            .write(move |tx| {
                if let Some(mut head) = crate::secrets::head_in(tx, &sp)? {
                    head.rotation_policy_id = None;
                    head.previous_version = None;
                    head.grace_until = None;
                    crate::secrets::put_head(tx, &heads, &head);
                }
                tx.delete(Table::Rotation, &assignment_key(&sp));
                tx.on_commit(move || {
                    write(&state).assigned.remove(&sp);
                });
                Ok::<_, Error>(())
            })
            .await
    }

    /// Per-secret rotation state, for one path or every attached secret.
    pub fn rotation_status(&self, caller: &Caller, path: Option<&str>) -> Result<RotationStatus> {
        self.authorize(caller, Scope::Admin, None)?;
        let assigned: Vec<(String, String)> = {
            let s = read(&self.rotation);
            s.assigned
                .iter()
                .filter(|(p, _)| path.is_none_or(|want| want == p.as_str()))
                .map(|(p, id)| (p.clone(), id.clone()))
                .collect()
        };
        let now = self.now();
        let mut out = Vec::new();
        for (p, pid) in assigned {
            let Some(head) = self.load_head(&p)? else {
                continue;
            };
            let policy = self.find_rotation_policy(&pid)?;
            let last = head.last_rotated_at.unwrap_or(head.created_at);
            let next = last.plus(Duration::from_secs(policy.interval_seconds));
            out.push(SecretRotation {
                rotation: self.job(&p).as_ref().map(JobView::from),
                secret_path: p,
                policy_id: pid,
                version: head.current_version,
                last_rotated_at: last,
                next_rotation_at: next,
                due: now >= next,
                previous_version: head.previous_version,
                grace_until: head.grace_until,
                auto_generate: policy.auto_generate,
                is_active: policy.is_active,
                backend: policy.backend,
            });
        }
        Ok(RotationStatus { secrets: out })
    }

    /// Rotates now: one attached secret, or all of a policy's. Needs `auto_generate`.
    pub async fn rotate_now(
        &self,
        caller: &Caller,
        id: &str,
        path: Option<&str>,
    ) -> Result<RotateResult> {
        self.authorize(caller, Scope::Admin, None)?;
        let p = self.find_rotation_policy(id)?;
        if !p.auto_generate {
            return Err(Error::invalid_request(format!(
                "{} does not auto-generate values: write the new value with `scaivault secrets write PATH …` (PUT /v1/secrets/{{path}}); that write is the rotation",
                p.id
            )));
        }
        let targets: Vec<String> = read(&self.rotation)
            .assigned
            .iter()
            .filter(|(sp, pid)| **pid == p.id && path.is_none_or(|want| want == sp.as_str()))
            .map(|(sp, _)| sp.clone())
            .collect();
        if let Some(want) = path
            && targets.is_empty()
        {
            return Err(Error::new(
                ErrorCode::SecretNotFound,
                format!("{want} is not attached to {}", p.id),
            ));
        }
        // One secret's failure is that secret's answer; the others still rotate.
        let single = path.is_some();
        let by = Initiator::of(caller);
        let rotated: Vec<RotationOutcome> = futures_util::stream::iter(targets)
            .map(|sp| {
                let (p, by) = (&p, &by);
                async move {
                    let _turn = self.rotation_turn(&sp).await;
                    self.rotate_one(p, &sp, by).await.map_err(|e| (sp, e))
                }
            })
            .buffered(ROTATIONS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|r| match r {
                Ok(v) => Ok(v),
                Err((_, e)) if single => Err(e),
                Err((sp, e)) => Ok(item_error(&p.id, &sp, &e)),
            })
            .collect::<Result<_>>()?;
        Ok(RotateResult {
            policy_id: p.id,
            rotated,
        })
    }

    /// Rotate-now for one secret (`POST /v1/rotate/{path}`, `scaivault secrets rotate`): the
    /// caller needs `secrets:rotate` and a policy granting `rotate` on the path, not `admin`;
    /// the secret's own rotation policy says how (its generator and backend), as the
    /// scheduler would do it.
    pub async fn rotate_secret(&self, caller: &Caller, path: &str) -> Result<RotateResult> {
        let path = self.authorize_path(
            caller,
            path,
            Scope::SecretsRotate,
            scaivault_core::scope::Permission::Rotate,
        )?;
        let path = path.as_str();
        let attached = read(&self.rotation).assigned.get(path).cloned();
        let Some(id) = attached else {
            if self.load_head(path)?.is_none() {
                return Err(
                    Error::new(ErrorCode::SecretNotFound, format!("no secret at {path}"))
                        .with("path", path),
                );
            }
            return Err(Error::invalid_request(format!(
                "{path} has no rotation policy to rotate it by: attach one with `scaivault rotation assign POLICY {path}`, or write the new value with `scaivault secrets write`"
            ))
            .with("path", path));
        };
        let p = self.find_rotation_policy(&id)?;
        if !p.auto_generate {
            return Err(Error::invalid_request(format!(
                "{} does not auto-generate values: write the new value with `scaivault secrets write {path} …`; that write is the rotation",
                p.id
            )));
        }
        let _turn = self.rotation_turn(path).await;
        let outcome = self.rotate_one(&p, path, &Initiator::of(caller)).await?;
        Ok(RotateResult {
            policy_id: p.id,
            rotated: vec![outcome],
        })
    }

    /// Starts (or resumes) the rotation of one secret and drives it as far as it can go now.
    /// The caller holds [`Engine::rotation_turn`].
    async fn rotate_one(
        &self,
        p: &RotationPolicy,
        path: &str,
        by: &Initiator,
    ) -> Result<RotationOutcome> {
        self.create_job(p, path).await?;
        self.outcome_view(path, self.drive_job(path, None, by).await?)
    }

    fn outcome_view(&self, path: &str, o: Outcome) -> Result<RotationOutcome> {
        let secret_path = path.to_owned();
        Ok(match o {
            Outcome::Completed {
                old_version,
                new_version,
            } => RotationOutcome::Completed {
                secret_path,
                old_version,
                new_version,
            },
            Outcome::Pending => RotationOutcome::Pending {
                secret_path,
                rotation: self.job(path).as_ref().map(JobView::from),
            },
            Outcome::Failed(why) => RotationOutcome::Failed {
                secret_path,
                error: why,
                rotation: self.job(path).as_ref().map(JobView::from),
            },
        })
    }

    /// Drives a rotation in progress by at most `steps` steps: lets tests stop between steps
    /// as a crash would, then resume from the file.
    #[cfg(any(test, feature = "test-hooks"))]
    pub async fn advance_rotation(&self, path: &str, steps: usize) -> Result<RotationOutcome> {
        let _turn = self.rotation_turn(path).await;
        let o = self
            .drive_job(path, Some(steps), &Initiator::scheduler())
            .await?;
        self.outcome_view(path, o)
    }

    /// Starts a rotation job without driving it (tests of the state machine).
    #[cfg(any(test, feature = "test-hooks"))]
    pub async fn begin_rotation(&self, id: &str, path: &str) -> Result<JobView> {
        let p = self.find_rotation_policy(id)?;
        let _turn = self.rotation_turn(path).await;
        Ok(JobView::from(&self.create_job(&p, path).await?))
    }

    /// One pass of the scheduler: resumes every rotation in progress whose next attempt is
    /// due (including those a restart interrupted), and starts one for every due secret of
    /// every active auto-generating policy. A failed rotation is retried at its next interval
    /// (or at once with `rotate`). Returns what happened. Called by the server every few
    /// seconds; tests call it after moving the clock.
    pub async fn rotation_tick(&self) -> Result<Vec<RotationOutcome>> {
        let now = self.now();
        let work: Vec<(RotationPolicy, String)> = {
            let s = read(&self.rotation);
            s.assigned
                .iter()
                .filter_map(|(path, pid)| {
                    s.policies
                        .get(pid)
                        .filter(|p| p.is_active)
                        .map(|p| (p.clone(), path.clone()))
                })
                .collect()
        };
        // Secrets rotate side by side, a few at a time (each may wait on its backend for up
        // to its timeout); one that fails is logged and reported, and the pass goes on.
        let done: Vec<Option<RotationOutcome>> = futures_util::stream::iter(work)
            .map(|(p, path)| async move {
                match self.tick_one(&p, &path, now).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(policy = %p.id, secret_path = %path, code = e.code.as_str(),
                            "the scheduler could not rotate one secret; the pass goes on");
                        Some(item_error(&p.id, &path, &e))
                    }
                }
            })
            .buffered(ROTATIONS_AT_ONCE)
            .collect()
            .await;
        Ok(done.into_iter().flatten().collect())
    }

    /// The scheduler's work on one secret: its notices, then its rotation if one is due (or
    /// in progress and due for its next attempt).
    async fn tick_one(
        &self,
        p: &RotationPolicy,
        path: &str,
        now: Timestamp,
    ) -> Result<Option<RotationOutcome>> {
        // Whether it is due is decided in turn: a rotation someone started meanwhile
        // (`rotate`) has either finished, and the secret is no longer due, or is running.
        let _turn = self.rotation_turn(path).await;
        let Some(head) = self.load_head(path)? else {
            return Ok(None);
        };
        if head.deleted_at.is_some() {
            return Ok(None);
        }
        let interval = Duration::from_secs(p.interval_seconds);
        let cycle = head.last_rotated_at.unwrap_or(head.created_at);
        self.send_notices(p, path, cycle, now).await?;
        Ok(match self.job(path) {
            _ if !p.auto_generate => None,
            Some(j) if j.status == JobStatus::Running => {
                if j.next_attempt_at <= now {
                    let o = self.drive_job(path, None, &Initiator::scheduler()).await?;
                    Some(self.outcome_view(path, o)?)
                } else {
                    None
                }
            }
            Some(j) => {
                if now >= j.updated_at.plus(interval) {
                    Some(self.rotate_one(p, path, &Initiator::scheduler()).await?)
                } else {
                    None
                }
            }
            None => {
                let due = head
                    .last_rotated_at
                    .unwrap_or(head.created_at)
                    .plus(interval);
                if now >= due {
                    Some(self.rotate_one(p, path, &Initiator::scheduler()).await?)
                } else {
                    None
                }
            }
        })
    }
}

/// Rotations the scheduler (or `rotate` on a whole policy) runs at once.
const ROTATIONS_AT_ONCE: usize = 4;

/// What a rotation that could not run reports in place of its outcome.
fn item_error(policy_id: &str, path: &str, e: &Error) -> RotationOutcome {
    RotationOutcome::Error {
        secret_path: path.to_owned(),
        policy_id: policy_id.to_owned(),
        error: OutcomeError {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
        },
    }
}

impl Engine {
    /// `rotation.due` at each `warn_before` threshold and when due (`due_now`), and
    /// `rotation.overdue` once the grace period has passed without a rotation (policies that
    /// do not auto-generate wait for a `PUT`). Each is sent once per cycle, recorded in the file.
    async fn send_notices(
        &self,
        p: &RotationPolicy,
        path: &str,
        cycle: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let due = cycle.plus(Duration::from_secs(p.interval_seconds));
        let mut wanted: Vec<(String, Value, &str)> = Vec::new();
        if let Some(w) = &p.warn_before {
            for (raw, d) in w.split(',').zip(parse_duration_list(w)?) {
                if now >= due.minus(d) && now < due {
                    wanted.push((
                        format!("warn:{}", raw.trim()),
                        json!({ "threshold": raw.trim(), "due_at": due, "due_now": false }),
                        "rotation.due",
                    ));
                }
            }
        }
        if now >= due && !p.auto_generate {
            wanted.push((
                "due_now".into(),
                json!({ "due_at": due, "due_now": true }),
                "rotation.due",
            ));
            let grace_end = due.plus(Duration::from_secs(p.grace_period_seconds));
            if now >= grace_end {
                wanted.push((
                    "overdue".into(),
                    json!({ "due_at": due, "overdue_since": grace_end }),
                    "rotation.overdue",
                ));
            }
        }
        let already: Vec<String> = match read(&self.rotation).notices.get(path) {
            Some((c, sent)) if *c == cycle => sent.clone(),
            _ => Vec::new(),
        };
        let fresh: Vec<_> = wanted
            .into_iter()
            .filter(|(k, _, _)| !already.contains(k))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let mut sent = already;
        let mut events = Vec::new();
        for (key, mut data, kind) in fresh {
            data["rotation_policy_id"] = json!(p.id);
            events.push(crate::events::Event::new(
                kind,
                crate::rotation_job::SCHEDULER,
                Some(path),
                data,
                now,
            ));
            sent.push(key);
        }
        let record = RotationRecord::Notices {
            secret_path: path.to_owned(),
            cycle,
            sent: sent.clone(),
        };
        let (state, key) = (self.rotation.clone(), path.to_owned());
        let (sink, hooks) = (self.events.clone(), p.webhook_ids.clone());
        // The record of what was sent and the deliveries are one transaction: a crash cannot
        // mark a notice sent that no webhook will receive, nor send one twice.
        self.vault
            .write(move |tx| {
                tx.put(Table::Rotation, &notice_key(&key), &encode(&record));
                sink.enqueue_in(tx, events, &hooks, now);
                tx.on_commit(move || {
                    write(&state).notices.insert(key, (cycle, sent));
                });
                Ok::<_, Error>(())
            })
            .await?;
        Ok(())
    }
}
