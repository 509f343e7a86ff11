//! Rotation policies on a moving clock: schedules, auto-generated values, grace periods.

use std::sync::Arc;
use std::time::Duration;

use scaivault_core::ErrorCode;
use scaivault_core::time::Timestamp;
use scaivault_crypto::KdfParams;
use scaivault_engine::{
    Caller, Engine, ManualClock, RotationOutcome, RotationPolicyRequest, WriteRequest,
};
use scaivault_store::Vault;

const DAY: u64 = 86_400;

fn setup() -> (tempfile::TempDir, Arc<Engine>, Arc<ManualClock>) {
    let dir = tempfile::tempdir().unwrap();
    let vault =
        Arc::new(Vault::create(&dir.path().join("v.db"), b"pw-rot", KdfParams::FLOOR).unwrap());
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let e = Arc::new(Engine::load(vault, clock.clone()).unwrap());
    (dir, e, clock)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn policy(json: serde_json::Value) -> RotationPolicyRequest {
    serde_json::from_value(json).unwrap()
}

fn write(v: serde_json::Value) -> WriteRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn auto_generate_rotates_on_schedule_and_the_old_value_lives_for_the_grace_period() {
    let (_d, e, clock) = setup();
    let root = Caller::local_operator();
    rt().block_on(async {
        let p = e
            .create_rotation_policy(&root, policy(serde_json::json!({"name": "quarterly", "interval": "90d", "grace_period": "48h", "auto_generate": true, "fields": ["password"]})))
            .await
            .unwrap();
        assert_eq!(p.policy.id, "rot_quarterly");
        assert_eq!(p.policy.interval_seconds, 90 * DAY);
        let path = "environments/production/billing/database";
        e.write_secret(&root, path, write(serde_json::json!({"data": {"user": "billing", "password": "initial-pw"}}))).await.unwrap();
        e.assign_rotation(&root, "rot_quarterly", path).await.unwrap();

        clock.advance(Duration::from_secs(89 * DAY));
        assert!(e.rotation_tick().await.unwrap().is_empty(), "not due yet");
        clock.advance(Duration::from_secs(DAY + 1));
        let done = e.rotation_tick().await.unwrap();
        assert_eq!(done.len(), 1);
        assert!(
            matches!(done[0], RotationOutcome::Completed { old_version: 1, new_version: 2, .. }),
            "{done:?}"
        );

        let cur = e.read_secret(&root, path, None).unwrap().data.to_value();
        assert_eq!(cur["user"], "billing", "fields not named by the policy are kept");
        let new_pw = cur["password"].as_str().unwrap().to_owned();
        assert_eq!(new_pw.len(), 32);
        assert_ne!(new_pw, "initial-pw");
        assert_eq!(e.read_secret(&root, path, Some(1)).unwrap().data.to_value()["password"], "initial-pw", "readable during grace");

        clock.advance(Duration::from_secs(47 * 3600));
        assert!(e.read_secret(&root, path, Some(1)).is_ok());
        assert!(e.rotation_tick().await.unwrap().is_empty(), "the next rotation is 90 days away");
        clock.advance(Duration::from_secs(2 * 3600));
        assert_eq!(e.read_secret(&root, path, Some(1)).unwrap_err().code, ErrorCode::VersionNotFound, "not after the grace period");
        assert_eq!(e.read_secret(&root, path, None).unwrap().version, 2);

        let status = e.rotation_status(&root, Some(path)).unwrap();
        assert_eq!((status.secrets[0].version, status.secrets[0].due), (2, false));
        let logs = e.query_audit(&root, &scaivault_engine::AuditQuery { action: Some("rotate".into()), ..Default::default() }).unwrap();
        assert_eq!(logs.logs[0].identity_id.as_deref(), Some("system:rotation-scheduler"));
        let text = serde_json::to_string(&logs).unwrap();
        assert!(!text.contains(&new_pw), "a generated value reached the audit log");
    });
}

#[test]
fn a_manual_write_counts_as_the_rotation_and_policies_can_be_managed() {
    let (_d, e, clock) = setup();
    let root = Caller::local_operator();
    rt().block_on(async {
        e.create_rotation_policy(&root, policy(serde_json::json!({"name": "weekly", "interval": "7d", "grace_period": "24h"}))).await.unwrap();
        e.write_secret(&root, "app/key", write(serde_json::json!({"data": {"value": "one"}, "options": {"rotation_policy_id": "rot_weekly"}}))).await.unwrap();
        assert_eq!(e.get_rotation_policy(&root, "rot_weekly").unwrap().secrets, Some(vec!["app/key".to_owned()]));
        clock.advance(Duration::from_secs(8 * DAY));
        assert!(e.rotation_tick().await.unwrap().is_empty(), "without auto_generate the scheduler waits for a write");
        assert!(e.rotation_status(&root, None).unwrap().secrets[0].due);
        assert_eq!(e.rotate_now(&root, "rot_weekly", None).await.unwrap_err().code, ErrorCode::InvalidRequest);
        e.write_secret(&root, "app/key", write(serde_json::json!({"data": {"value": "two"}}))).await.unwrap();
        assert_eq!(e.read_secret(&root, "app/key", Some(1)).unwrap().data.to_value()["value"], "one");
        clock.advance(Duration::from_secs(25 * 3600));
        assert_eq!(e.read_secret(&root, "app/key", Some(1)).unwrap_err().code, ErrorCode::VersionNotFound);
        assert!(!e.rotation_status(&root, None).unwrap().secrets[0].due);

        let err = e
            .write_secret(&root, "app/other", write(serde_json::json!({"data": {"value": "x"}, "options": {"rotation_policy_id": "rot_nope"}})))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::RotationPolicyNotFound);
        assert_eq!(e.read_secret(&root, "app/other", None).unwrap_err().code, ErrorCode::SecretNotFound, "the failed write wrote nothing");

        e.set_rotation_active(&root, "rot_weekly", false).await.unwrap();
        assert!(e.list_rotation_policies(&root, true, None, None).unwrap().data.is_empty());
        e.delete_rotation_policy(&root, "rot_weekly").await.unwrap();
        assert_eq!(e.get_rotation_policy(&root, "rot_weekly").unwrap_err().code, ErrorCode::RotationPolicyNotFound);
        // Detached: history is readable again like any secret's.
        e.write_secret(&root, "app/key", write(serde_json::json!({"data": {"value": "three"}}))).await.unwrap();
        assert!(e.read_secret(&root, "app/key", Some(2)).is_ok());
        for bad in [serde_json::json!({"name": "x", "interval": "soon"}), serde_json::json!({"name": "bad name", "interval": "1d"}), serde_json::json!({"name": "y"})] {
            assert!(e.create_rotation_policy(&root, policy(bad)).await.is_err());
        }
    });
}

/// The scheduler and `rotate` reaching the same due secret at the same moment take turns:
/// each rotation that runs completes, none is reported failed, and the versions follow one
/// another.
#[test]
fn the_scheduler_and_rotate_now_take_turns_on_one_secret() {
    let (_d, e, clock) = setup();
    let root = Caller::local_operator();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        e.create_rotation_policy(&root, policy(serde_json::json!({"name": "daily", "interval": "1d", "auto_generate": true, "fields": ["password"]})))
            .await
            .unwrap();
        for i in 0..8 {
            let path = format!("app/db-{i}");
            e.write_secret(&root, &path, write(serde_json::json!({"data": {"password": "initial"}}))).await.unwrap();
            e.assign_rotation(&root, "rot_daily", &path).await.unwrap();
        }
        clock.advance(Duration::from_secs(DAY + 1));
        let tick = tokio::spawn({
            let e = e.clone();
            async move { e.rotation_tick().await.unwrap() }
        });
        let now = tokio::spawn({
            let (e, root) = (e.clone(), root.clone());
            async move { e.rotate_now(&root, "rot_daily", None).await.unwrap() }
        });
        let (ticked, rotated) = (tick.await.unwrap(), now.await.unwrap());
        let reports: Vec<&RotationOutcome> = ticked.iter().chain(&rotated.rotated).collect();
        assert!(
            reports.iter().all(|r| matches!(r, RotationOutcome::Completed { .. })),
            "{reports:#?}"
        );
        for i in 0..8 {
            let path = format!("app/db-{i}");
            let status = e.rotation_status(&root, Some(&path)).unwrap();
            assert!(status.secrets[0].rotation.is_none(), "{status:?}");
            let runs = reports.iter().filter(|r| r.secret_path() == path).count();
            // rotate_now always rotates; the scheduler only if it came first.
            assert!((1..=2).contains(&runs), "{path}: {runs}");
            assert_eq!(e.read_secret(&root, &path, None).unwrap().version, 1 + runs as u64);
        }
    });
}
