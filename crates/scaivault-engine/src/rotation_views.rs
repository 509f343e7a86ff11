//! What the rotation API answers: policies as shown (their backend secrets masked), where a
//! secret stands in its rotation, and what one rotation did. Typed, so the HTTP layer, the
//! OpenAPI document and the CLI read one definition of each shape.

use scaivault_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rotation_state::{JobStatus, RotationJob, RotationPolicy, Step, looks_secret};

/// A rotation policy as the API shows it: a backend setting whose name says it is secret
/// (a webhook's signing secret, a password) is shown as `********`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationPolicyView {
    #[serde(flatten)]
    pub policy: RotationPolicy,
    /// How many secrets are attached.
    pub secrets_count: usize,
    /// The attached secrets' paths (`GET /v1/rotation/policies/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
}

impl RotationPolicyView {
    pub(crate) fn new(p: &RotationPolicy, secrets_count: usize) -> RotationPolicyView {
        let mut policy = p.clone();
        for (k, v) in policy.backend_config.iter_mut() {
            if looks_secret(k) {
                *v = Value::String("********".into());
            }
        }
        RotationPolicyView {
            policy,
            secrets_count,
            secrets: None,
        }
    }
}

/// `GET /v1/rotation/policies`: a page of policies by name.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationPolicyList {
    pub data: Vec<RotationPolicyView>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// `POST /v1/rotation/policies/{id}/secrets`: a secret attached, and when it rotates next.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationAssignment {
    pub policy_id: String,
    pub secret_path: String,
    pub last_rotated_at: Option<Timestamp>,
    pub next_rotation_at: Option<Timestamp>,
}

/// Where a rotation in progress (or failed) stands; never its pending value.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobView {
    pub state: JobState,
    /// The last step that completed.
    pub step_completed: Step,
    /// The version current when the rotation started.
    pub from_version: u64,
    pub attempts: u32,
    /// When the scheduler tries again (a running rotation only).
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// After a failure past `set`: whether the backend restored the current value.
    pub reverted: Option<bool>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A rotation's state: failed, or which step it waits to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Failed,
    PendingSet,
    PendingTest,
    PendingFinish,
}

impl From<&RotationJob> for JobView {
    fn from(j: &RotationJob) -> JobView {
        JobView {
            state: match (j.status, j.step) {
                (JobStatus::Failed, _) => JobState::Failed,
                (_, Step::Created) => JobState::PendingSet,
                (_, Step::Applied) => JobState::PendingTest,
                (_, Step::Tested) => JobState::PendingFinish,
            },
            step_completed: j.step,
            from_version: j.from_version,
            attempts: j.attempts,
            next_attempt_at: (j.status == JobStatus::Running).then_some(j.next_attempt_at),
            last_error: j.last_error.clone(),
            reverted: j.reverted,
            started_at: j.started_at,
            updated_at: j.updated_at,
        }
    }
}

/// `GET /v1/rotation/status`: every attached secret (or the one asked for).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationStatus {
    pub secrets: Vec<SecretRotation>,
}

/// One attached secret's rotation state.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretRotation {
    pub secret_path: String,
    pub policy_id: String,
    /// The current version.
    pub version: u64,
    /// The last rotation, or the secret's creation.
    pub last_rotated_at: Timestamp,
    pub next_rotation_at: Timestamp,
    pub due: bool,
    /// The version the last rotation replaced, readable until `grace_until`.
    pub previous_version: Option<u64>,
    pub grace_until: Option<Timestamp>,
    pub auto_generate: bool,
    pub is_active: bool,
    pub backend: Option<String>,
    /// A rotation in progress or failed.
    pub rotation: Option<JobView>,
}

/// What one rotation did (`status`), per secret.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RotationOutcome {
    /// The new value is the current version.
    Completed {
        secret_path: String,
        old_version: u64,
        new_version: u64,
    },
    /// Waiting for its next attempt (a backend step failed and will be retried).
    Pending {
        secret_path: String,
        rotation: Option<JobView>,
    },
    /// Given up: the current value stays; `error` says why.
    Failed {
        secret_path: String,
        error: String,
        rotation: Option<JobView>,
    },
    /// It could not run at all (the secret could not be read, say); the others went on.
    Error {
        secret_path: String,
        policy_id: String,
        error: OutcomeError,
    },
}

/// Why a rotation could not run: an error code from the catalogue and its message.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutcomeError {
    pub code: String,
    pub message: String,
}

impl RotationOutcome {
    pub fn secret_path(&self) -> &str {
        match self {
            RotationOutcome::Completed { secret_path, .. }
            | RotationOutcome::Pending { secret_path, .. }
            | RotationOutcome::Failed { secret_path, .. }
            | RotationOutcome::Error { secret_path, .. } => secret_path,
        }
    }
}

/// `POST /v1/rotation/policies/{id}/rotate`: each secret rotated.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotateResult {
    pub policy_id: String,
    pub rotated: Vec<RotationOutcome>,
}
