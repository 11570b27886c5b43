//! When a sync is done: the completion condition of CONTRACTS §7, as `argocd app wait` checks it
//! and a Lambda must poll for it. Healthy counts only for the target revision, once the
//! operation finished and succeeded at that revision, the app was reconciled after it finished,
//! and it is Synced; a Healthy app still on the old revision (the sync not started yet) is not
//! done.

use chrono::{DateTime, Utc};

use crate::port::ArgoApplication;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncVerdict {
    Healthy,
    /// Not there yet; why, for the log.
    Wait(String),
    /// Roll back: the operation failed, or the app is Degraded after it finished.
    Failed(String),
}

fn time(s: &Option<String>) -> Option<DateTime<Utc>> {
    s.as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub fn judge(app: &ArgoApplication, target: &str) -> SyncVerdict {
    let st = &app.status;
    let Some(op) = &st.operation_state else {
        return SyncVerdict::Wait("no operation has run yet".into());
    };
    let at_target = op
        .sync_result
        .as_ref()
        .is_some_and(|r| r.revision == target);
    if app.operation.is_some() || !at_target {
        return SyncVerdict::Wait(format!(
            "the sync to {target} has not started (last operation: {} at {})",
            op.phase,
            op.sync_result
                .as_ref()
                .map(|r| r.revision.as_str())
                .unwrap_or("-")
        ));
    }
    match op.phase.as_str() {
        "Failed" | "Error" => {
            return SyncVerdict::Failed(format!(
                "the sync operation {}: {}",
                op.phase.to_lowercase(),
                op.message.as_deref().unwrap_or("no message")
            ));
        }
        "Succeeded" => {}
        other => return SyncVerdict::Wait(format!("the sync operation is {other}")),
    }
    let (Some(finished), reconciled) = (time(&op.finished_at), time(&st.reconciled_at)) else {
        return SyncVerdict::Wait("the operation has not finished".into());
    };
    if reconciled.is_none_or(|r| r < finished) {
        return SyncVerdict::Wait("not reconciled since the operation finished".into());
    }
    let message = st.health.message.as_deref().unwrap_or("no message");
    match st.health.status.as_str() {
        "Degraded" => SyncVerdict::Failed(format!("Degraded: {message}")),
        "Healthy" if st.sync.status == "Synced" => SyncVerdict::Healthy,
        "Healthy" => SyncVerdict::Wait(format!("Healthy but {}", st.sync.status)),
        other => SyncVerdict::Wait(format!("health {other}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "2222222222222222222222222222222222222222";
    const OLD: &str = "1111111111111111111111111111111111111111";

    /// An Application as Argo CD's API returns it (field names of `v1alpha1Application` in
    /// argo-cd's `assets/swagger.json`), with the fields each scenario sets.
    fn app(v: serde_json::Value) -> ArgoApplication {
        serde_json::from_value(v).expect("application")
    }

    fn finished(phase: &str, revision: &str, health: &str, reconciled: &str) -> ArgoApplication {
        app(serde_json::json!({
            "metadata": {"name": "fraud-detection", "namespace": "argocd"},
            "spec": {"project": "default"},
            "status": {
                "sync": {"status": "Synced", "revision": revision},
                "health": {"status": health, "message": "Deployment \"fraud-detection\" exceeded its progress deadline"},
                "reconciledAt": reconciled,
                "operationState": {
                    "operation": {"sync": {"revision": revision}},
                    "phase": phase,
                    "message": "successfully synced (all tasks run)",
                    "syncResult": {"revision": revision, "resources": []},
                    "startedAt": "2026-12-03T10:00:00Z",
                    "finishedAt": "2026-12-03T10:00:05Z"
                }
            }
        }))
    }

    #[test]
    fn healthy_at_the_target_after_reconciliation_is_done() {
        let a = finished("Succeeded", TARGET, "Healthy", "2026-12-03T10:00:06Z");
        assert_eq!(judge(&a, TARGET), SyncVerdict::Healthy);
    }

    #[test]
    fn progressing_waits_then_healthy() {
        let a = finished("Succeeded", TARGET, "Progressing", "2026-12-03T10:00:06Z");
        assert!(matches!(judge(&a, TARGET), SyncVerdict::Wait(_)));
    }

    #[test]
    fn healthy_on_the_old_revision_is_not_done() {
        // The sync was requested (`operation` set) but not started: still Healthy on OLD.
        let mut a = finished("Succeeded", OLD, "Healthy", "2026-12-03T10:00:06Z");
        assert!(matches!(judge(&a, TARGET), SyncVerdict::Wait(_)));
        a.operation = Some(serde_json::json!({"sync": {"revision": TARGET}}));
        assert!(matches!(judge(&a, TARGET), SyncVerdict::Wait(_)));
    }

    #[test]
    fn not_reconciled_since_the_operation_finished_waits() {
        let a = finished("Succeeded", TARGET, "Healthy", "2026-12-03T10:00:04Z");
        assert!(matches!(judge(&a, TARGET), SyncVerdict::Wait(_)));
        let mut a = finished("Succeeded", TARGET, "Healthy", "2026-12-03T10:00:06Z");
        a.status.reconciled_at = None;
        assert!(matches!(judge(&a, TARGET), SyncVerdict::Wait(_)));
    }

    #[test]
    fn degraded_and_failed_operations_fail_with_argo_cds_message() {
        let a = finished("Succeeded", TARGET, "Degraded", "2026-12-03T10:00:06Z");
        let SyncVerdict::Failed(why) = judge(&a, TARGET) else {
            panic!("not failed")
        };
        assert!(why.contains("progress deadline"), "{why}");
        for phase in ["Failed", "Error"] {
            let a = finished(phase, TARGET, "Healthy", "2026-12-03T10:00:06Z");
            assert!(
                matches!(judge(&a, TARGET), SyncVerdict::Failed(_)),
                "{phase}"
            );
        }
    }

    #[test]
    fn a_running_operation_waits() {
        let mut a = finished("Running", TARGET, "Progressing", "2026-12-03T10:00:06Z");
        if let Some(op) = a.status.operation_state.as_mut() {
            op.finished_at = None;
        }
        assert!(matches!(judge(&a, TARGET), SyncVerdict::Wait(_)));
        assert!(matches!(
            judge(&ArgoApplication::default(), TARGET),
            SyncVerdict::Wait(_)
        ));
    }
}
