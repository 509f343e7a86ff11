//! One rotation of one secret, as a persisted state machine (design decision 8):
//!
//! create (the new value is stored as the job's pending value, not yet current) → set (the
//! backend applies it to the external system) → test (the backend proves it works) → finish
//! (the pending value becomes the current version, the previous one keeps its grace period).
//!
//! The job record, pending value included, is durable in the vault file before each next step
//! starts, so a crash or restart resumes from the recorded step with the same pending value.
//! A failed step is retried with exponential backoff and jitter; after [`MAX_ATTEMPTS`] (or at
//! once for a failure the backend calls final) the job is marked failed, the current value is
//! untouched, and if the backend had already applied the pending value it is asked to put the
//! current one back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::backends::{AdminCredential, BackendServices};

/// Who automatic rotations are by, in versions, events and the audit log.
pub(crate) const SCHEDULER: &str = "system:rotation-scheduler";

/// Who a rotation is finished (or given up) for: the scheduler, or the caller of a rotate-now,
/// whose identity and request the new version, the events and the audit entry then name.
#[derive(Debug, Clone)]
pub(crate) struct Initiator {
    pub actor: String,
    pub request_id: Option<String>,
}

impl Initiator {
    pub(crate) fn scheduler() -> Initiator {
        Initiator {
            actor: SCHEDULER.into(),
            request_id: None,
        }
    }

    pub(crate) fn of(caller: &Caller) -> Initiator {
        Initiator {
            actor: caller.identity_id.to_string(),
            request_id: caller.request_id.clone(),
        }
    }
}
use crate::events::Event;
use crate::records::SecretData;
use crate::rotation_state::{
    JobStatus, RotationJob, RotationPolicy, RotationRecord, Step, job_key, regenerate,
};
use crate::{
    AuditInput, Caller, Engine, Error, ErrorCode, Result, WriteRequest, encode, read, write,
};

/// Attempts of one step before the rotation is marked failed.
pub const MAX_ATTEMPTS: u32 = 5;
const BACKOFF_BASE: Duration = Duration::from_secs(30);
const BACKOFF_CAP: Duration = Duration::from_secs(3600);

/// How a drive of a job ended.
#[derive(Debug)]
pub enum Outcome {
    Completed {
        old_version: u64,
        new_version: u64,
    },
    /// Waiting for a retry (or stopped by a step limit in tests).
    Pending,
    Failed(String),
}

fn backoff(attempts: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let d = exp.min(BACKOFF_CAP);
    d.mul_f64(scaivault_crypto::jitter(0.8, 1.2))
}

impl Engine {
    /// Rotations finished since the vault was opened: `(completed, failed)`.
    pub fn rotations_finished(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.rotations[0].load(Relaxed),
            self.rotations[1].load(Relaxed),
        )
    }

    pub(crate) fn job(&self, path: &str) -> Option<RotationJob> {
        read(&self.rotation).jobs.get(path).cloned()
    }

    async fn save_job(&self, job: RotationJob) -> Result<()> {
        self.save_job_with(job, |_| Ok(())).await
    }

    /// Saves the job and whatever `extra` writes (a failure's event and audit entry) in one
    /// transaction.
    async fn save_job_with(
        &self,
        job: RotationJob,
        extra: impl FnOnce(&mut scaivault_store::WriteTx<'_, '_>) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let state = self.rotation.clone();
        self.vault
            .write(move |tx| {
                tx.put(
                    scaivault_store::Table::Rotation,
                    &job_key(&job.secret_path),
                    &encode(&RotationRecord::Job(job.clone())),
                );
                extra(tx)?;
                tx.on_commit(move || {
                    write(&state).jobs.insert(job.secret_path.clone(), job);
                });
                Ok::<_, Error>(())
            })
            .await
    }

    /// Step one: the new value is made and recorded as pending. Replaces a failed job.
    pub(crate) async fn create_job(&self, p: &RotationPolicy, path: &str) -> Result<RotationJob> {
        if let Some(j) = self.job(path)
            && j.status == JobStatus::Running
        {
            return Ok(j);
        }
        let current = self
            .load_head(path)?
            .ok_or_else(|| Error::new(ErrorCode::SecretNotFound, format!("no secret at {path}")))?;
        let old = self
            .read_secret(&Caller::local_operator(), path, None)?
            .data
            .to_value();
        let data = match &p.secret_policy_id {
            // The recipe's fields replace those of the current value; the others (a user name,
            // a host) stay.
            Some(sp) => {
                let recipe = self.find_secret_policy(sp)?;
                let mut data = old.as_object().cloned().unwrap_or_default();
                data.extend(self.run_recipe(&recipe.fields).await?);
                Value::Object(data)
            }
            None => regenerate(p, path, &old)?,
        };
        let now = self.now();
        let job = RotationJob {
            policy_id: p.id.clone(),
            secret_path: path.to_owned(),
            from_version: current.current_version,
            secret_type: current.secret_type.clone(),
            step: Step::Created,
            status: JobStatus::Running,
            pending: SecretData::from_json_text(
                serde_json::to_string(&data).map_err(|_| Error::internal("pending value"))?,
            ),
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            reverted: None,
            started_at: now,
            updated_at: now,
        };
        self.save_job(job.clone()).await?;
        Ok(job)
    }

    /// Runs the job's remaining steps (at most `max_steps` of them) until it completes, waits
    /// for a retry, or fails.
    pub(crate) async fn drive_job(
        &self,
        path: &str,
        max_steps: Option<usize>,
        by: &Initiator,
    ) -> Result<Outcome> {
        let mut steps = 0;
        loop {
            let Some(mut job) = self.job(path) else {
                return Ok(Outcome::Pending);
            };
            if job.status == JobStatus::Failed {
                return Ok(Outcome::Failed(job.last_error.unwrap_or_default()));
            }
            if max_steps.is_some_and(|m| steps >= m) || job.next_attempt_at > self.now() {
                return Ok(Outcome::Pending);
            }
            steps += 1;
            let policy = read(&self.rotation).policies.get(&job.policy_id).cloned();
            let Some(policy) = policy else {
                return self
                    .fail_job(job, "its rotation policy was deleted".into(), false, by)
                    .await;
            };
            let backend = policy.backend.clone();
            let result = match (job.step, &backend) {
                (Step::Created, None) | (Step::Applied, None) => Ok(Step::Tested),
                (Step::Created, Some(b)) => self
                    .call_backend(&policy, b, "set", &job, &job.pending)
                    .await
                    .map(|_| Step::Applied),
                (Step::Applied, Some(b)) => self
                    .call_backend(&policy, b, "test", &job, &job.pending)
                    .await
                    .map(|_| Step::Tested),
                (Step::Tested, _) => return self.finish_job(&policy, job, by).await,
            };
            match result {
                Ok(next) => {
                    job.step = next;
                    job.attempts = 0;
                    job.last_error = None;
                    job.updated_at = self.now();
                    self.save_job(job).await?;
                }
                Err(e) => {
                    let retryable = e.details.get("retryable") == Some(&Value::Bool(true))
                        || e.code == ErrorCode::PluginFailed
                            && e.details.get("reason") != Some(&json!("plugin_error"))
                        || e.code == ErrorCode::ServiceUnavailable;
                    job.attempts += 1;
                    let what = format!(
                        "{} failed: {}",
                        if job.step == Step::Created {
                            "set"
                        } else {
                            "test"
                        },
                        e.message
                    );
                    if retryable && job.attempts < MAX_ATTEMPTS {
                        job.last_error = Some(what);
                        job.next_attempt_at = self.now().plus(backoff(job.attempts));
                        job.updated_at = self.now();
                        self.save_job(job).await?;
                        return Ok(Outcome::Pending);
                    }
                    let applied = job.step == Step::Applied;
                    return self.fail_job(job, what, applied, by).await;
                }
            }
        }
    }

    /// Marks the job failed, keeps the current value, and if the backend had applied the
    /// pending value, asks it to put the current one back.
    async fn fail_job(
        &self,
        mut job: RotationJob,
        why: String,
        applied: bool,
        by: &Initiator,
    ) -> Result<Outcome> {
        if applied {
            let policy = read(&self.rotation).policies.get(&job.policy_id).cloned();
            if let Some(p) = policy
                && let Some(b) = p.backend.clone()
            {
                let current = self
                    .read_secret(&Caller::local_operator(), &job.secret_path, None)?
                    .data;
                job.reverted = Some(
                    self.call_backend(&p, &b, "set", &job, &current)
                        .await
                        .is_ok(),
                );
            }
        }
        job.status = JobStatus::Failed;
        job.last_error = Some(why.clone());
        job.updated_at = self.now();
        let mut extra = Map::new();
        extra.insert("event".into(), json!("rotation.failed"));
        extra.insert("rotation_policy_id".into(), json!(job.policy_id));
        extra.insert("step".into(), json!(job.step));
        extra.insert("attempts".into(), json!(job.attempts));
        extra.insert("error".into(), json!(why));
        if let Some(r) = job.reverted {
            extra.insert("reverted".into(), json!(r));
        }
        tracing::warn!(path = %job.secret_path, policy = %job.policy_id, "rotation failed: {why}");
        let path = job.secret_path.clone();
        let hooks = read(&self.rotation)
            .policies
            .get(&job.policy_id)
            .map(|p| p.webhook_ids.clone())
            .unwrap_or_default();
        let now = self.now();
        let event = Event::new(
            "rotation.failed",
            &by.actor,
            Some(&path),
            json!({ "rotation_policy_id": job.policy_id, "step": job.step, "attempts": job.attempts,
                    "error": why, "reverted": job.reverted }),
            now,
        )
        .in_request(by.request_id.as_deref());
        let audit = AuditInput {
            action: "rotation_failed".into(),
            identity_id: Some(by.actor.clone()),
            secret_path: Some(path),
            success: false,
            request_id: format!("rotation:{}", now.0),
            extra_data: extra,
            ..Default::default()
        };
        let (sink, clock) = (self.events.clone(), self.clock.clone());
        // The failed job, its event and its audit entry stand or fall together.
        self.save_job_with(job, move |tx| {
            sink.enqueue_in(tx, vec![event], &hooks, now);
            crate::audit::append(tx, audit, &*clock).map(drop)
        })
        .await?;
        self.rotations[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Outcome::Failed(why))
    }

    /// The last step: the pending value becomes current, the job is removed and the rotation
    /// audited, all in one transaction. A write since the job began makes it fail instead
    /// (the check-and-set on `from_version`).
    async fn finish_job(
        &self,
        p: &RotationPolicy,
        job: RotationJob,
        by: &Initiator,
    ) -> Result<Outcome> {
        let req: WriteRequest = serde_json::from_value(json!({
            "data": job.pending.to_value(),
            "secret_type": job.secret_type,
            "options": { "cas": job.from_version },
        }))
        .map_err(|_| Error::internal("could not build the rotation write"))?;
        let mut system = Caller::local_operator();
        system.identity_id =
            scaivault_core::identity::IdentityId::parse("sa:rotation-scheduler").expect("valid");
        let (path, from, pid, now) = (
            job.secret_path.clone(),
            job.from_version,
            p.id.clone(),
            self.now(),
        );
        let state = self.rotation.clone();
        let backend = p.backend.clone();
        let sink = self.events.clone();
        let clock = self.clock.clone();
        let (hooks, pname, grace) = (
            p.webhook_ids.clone(),
            p.name.clone(),
            p.grace_period_seconds,
        );
        let (actor, request_id) = (by.actor.clone(), by.request_id.clone());
        let written = self
            .write_secret_with(&system, &by.actor, &path, req, move |tx, out| {
                tx.delete(scaivault_store::Table::Rotation, &job_key(&out.path));
                let mut extra = Map::new();
                extra.insert("event".into(), json!("rotation.completed"));
                extra.insert("old_version".into(), from.into());
                extra.insert("new_version".into(), out.version.into());
                extra.insert("rotation_policy_id".into(), pid.clone().into());
                if let Some(b) = backend {
                    extra.insert("backend".into(), b.into());
                }
                crate::audit::append(
                    tx,
                    AuditInput {
                        action: "rotate".into(),
                        identity_id: Some(actor.clone()),
                        secret_path: Some(out.path.clone()),
                        success: true,
                        request_id: format!("{pid}:{}", out.version),
                        extra_data: extra,
                        ..Default::default()
                    },
                    &*clock,
                )?;
                let data = json!({
                    "old_version": from, "new_version": out.version, "rotation_policy_id": pid,
                    "rotation_policy_name": pname, "auto_generated": true,
                    "grace_period_ends": now.plus(Duration::from_secs(grace)),
                });
                let events = vec![
                    Event::new("secret.rotated", &actor, Some(&out.path), data.clone(), now)
                        .in_request(request_id.as_deref()),
                    Event::new("rotation.completed", &actor, Some(&out.path), data, now)
                        .in_request(request_id.as_deref()),
                ];
                sink.enqueue_in(tx, events, &hooks, now);
                let p2 = out.path.clone();
                tx.on_commit(move || {
                    write(&state).jobs.remove(&p2);
                });
                Ok(())
            })
            .await;
        match written {
            Ok(w) => {
                self.rotations[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Outcome::Completed {
                    old_version: from,
                    new_version: w.version,
                })
            }
            Err(e) if e.code == ErrorCode::VersionConflict => {
                self.fail_job(
                    job,
                    "superseded: the secret was written after this rotation began; the external system may hold the pending value".into(),
                    false,
                    by,
                )
                .await
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `op` of the policy's backend plugin in the sandbox, off the async workers.
    async fn call_backend(
        &self,
        p: &RotationPolicy,
        backend: &str,
        op: &str,
        job: &RotationJob,
        value: &SecretData,
    ) -> Result<Value> {
        let plugin = self.plugins.rotation_backend(backend).ok_or_else(|| {
            Error::new(
                ErrorCode::PluginNotFound,
                format!("no plugin provides the rotation backend {backend:?}"),
            )
        })?;
        let mut admin = BTreeMap::new();
        if let Some(ap) = p
            .backend_config
            .get("admin_secret_path")
            .and_then(Value::as_str)
        {
            let v = self
                .read_secret(&Caller::local_operator(), ap, None)?
                .data
                .to_value();
            let field = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| v.get(*n).and_then(Value::as_str))
                    .map(str::to_owned)
            };
            let (Some(user), Some(password)) = (field(&["username", "user"]), field(&["password"]))
            else {
                return Err(Error::new(
                    ErrorCode::ValidationError,
                    format!("{ap} (admin_secret_path) needs username and password fields"),
                ));
            };
            admin.insert(
                ap.to_owned(),
                AdminCredential {
                    user,
                    password: Zeroizing::new(password),
                },
            );
            // The vault read a credential on the backend's behalf: that is a read like any other.
            let mut extra = Map::new();
            extra.insert("purpose".into(), json!("rotation backend admin credential"));
            extra.insert("rotation_policy_id".into(), json!(p.id));
            extra.insert("for_path".into(), json!(job.secret_path));
            self.record_audit(AuditInput {
                action: "read".into(),
                identity_id: Some(SCHEDULER.into()),
                secret_path: Some(ap.to_owned()),
                success: true,
                request_id: format!("rotation:{}", self.now().0),
                extra_data: extra,
                ..Default::default()
            })
            .await?;
        }
        let services = Arc::new(BackendServices {
            clock: self.clock.clone(),
            allow_hosts: self.allow_hosts.clone(),
            admin,
            runtime: tokio::runtime::Handle::current(),
        });
        // A transient copy of the value: the sandbox's memory is reset after the call.
        let input = json!({
            "config": p.backend_config,
            "secret_path": job.secret_path,
            "policy_id": p.id,
            "from_version": job.from_version,
            "attempt": job.attempts + 1,
            "pending": value.to_value(),
        });
        let host = self.plugins.clone();
        let op = op.to_owned();
        tokio::task::spawn_blocking(move || host.call(&plugin, &op, &input, services))
            .await
            .map_err(|_| Error::internal("backend call panicked"))?
    }
}
