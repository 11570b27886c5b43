//! deploy-sync against the Argo CD double of `argocd.rs` (contract: argo-cd's
//! `assets/swagger.json`, CONTRACTS §7) and a real Git server (`git http-backend` on loopback,
//! seeded from samples/manifests-repo/): every push starts from a real promotion commit made by
//! promote-model, and rollbacks are real reverts pushed to that server. Store, bus, re-check
//! queue and registry are in memory (the moto/MLflow path runs in `pipeline.rs`).

use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use mlops::adapter::argocd::ArgoCdClient;
use mlops::adapter::git::Git2Remote;
use mlops::adapter::memory::{MemoryBus, MemoryQueue, MemoryStore};
use mlops::config::{ArgoCdConfig, PipelineConfig};
use mlops::event::{GitPushed, ModelPromoted, ReleaseRef};
use mlops::stage::deploy::promote::Promoted;
use mlops::stage::deploy::sync::{
    CHECK, DeploySettings, DeploySync, Deployed, DeploymentCheck, NO_ARGOCD,
};
use secrecy::SecretString;

use crate::argocd::{ArgoDouble, Script, TOKEN as ARGO_TOKEN};
use crate::deploy::{FakeRegistry, TOKEN, World, git, validated, world};

const APP: &str = "fraud-detection";
const MODEL: &str = "fraud-detection";
const RELEASE: &str = "deployments/mlflow/fraud-detection/release.yaml";

struct Deploy {
    w: World,
    argo: ArgoDouble,
    client: ArgoCdClient,
    pipeline: PipelineConfig,
    settings: DeploySettings,
    queue: MemoryQueue,
    /// The release file before the promotion.
    before: String,
    promoted: ModelPromoted,
}

async fn deploy(script: Script, auto_sync: bool, deadline: u64) -> Deploy {
    let w = world(TOKEN).await;
    let before = w.show(RELEASE);
    let old = git(&w.bare, &["rev-parse", "main"]).trim().to_owned();
    let Promoted::Promoted(promoted) = w
        .stage()
        .handle(&validated(MODEL, "3", "run-deploy"))
        .await
        .expect("promote")
    else {
        panic!("not promoted")
    };
    let argo = ArgoDouble::start().await;
    argo.app(APP, script, auto_sync, &old);
    argo.set_head(APP, &promoted.commit);
    let mut pipeline = w.pipeline.clone();
    pipeline.argocd = Some(ArgoCdConfig {
        server: argo.url.clone(),
        app_namespace: None,
        check_every: 1,
        deadline,
    });
    let client =
        ArgoCdClient::new(&argo.url, SecretString::from(ARGO_TOKEN), None).expect("client");
    let settings = DeploySettings {
        artifact_bucket: w.settings.artifact_bucket.clone(),
        state_prefix: w.settings.state_prefix.clone(),
        claim_lease: Duration::from_secs(60),
        author: w.settings.author.clone(),
    };
    Deploy {
        w,
        argo,
        client,
        pipeline,
        settings,
        queue: MemoryQueue::default(),
        before,
        promoted,
    }
}

fn pushed(p: &ModelPromoted) -> GitPushed {
    GitPushed {
        schema_version: "1".into(),
        run_id: p.run_id.clone(),
        repo: p.repo.clone(),
        ref_: "refs/heads/main".into(),
        revision: p.commit.clone(),
        applications: vec![APP.into()],
        delivery_id: format!("delivery-{}", p.commit),
        rollback_of: None,
        releases: vec![ReleaseRef {
            application: APP.into(),
            model: p.model.clone(),
            version: p.version.clone(),
            commit: p.commit.clone(),
        }],
    }
}

type Stage<'a> =
    DeploySync<'a, ArgoCdClient, Git2Remote, FakeRegistry, MemoryBus, MemoryStore, MemoryQueue>;

impl Deploy {
    fn stage(&self) -> Stage<'_> {
        self.stage_with(Some(&self.client))
    }

    fn stage_with<'a>(&'a self, argocd: Option<&'a ArgoCdClient>) -> Stage<'a> {
        DeploySync {
            pipeline: &self.pipeline,
            settings: &self.settings,
            argocd,
            git: &self.w.git,
            registry: &self.w.registry,
            bus: &self.w.bus,
            store: &self.w.store,
            queue: &self.queue,
        }
    }

    /// The re-checks deploy-sync sent itself, each with the configured delay.
    fn take_checks(&self) -> Vec<DeploymentCheck> {
        self.queue
            .take()
            .into_iter()
            .map(|(body, delay)| {
                assert_eq!(delay, Duration::from_secs(1), "check_every");
                let env: EventBridgeEvent<serde_json::Value> =
                    serde_json::from_str(&body).expect("an EventBridge envelope");
                assert_eq!(env.detail_type, CHECK);
                assert_eq!(env.source, "mlops.deploy-sync");
                serde_json::from_value(env.detail).expect("a DeploymentCheck")
            })
            .collect()
    }

    /// Handles the push, then every re-check it schedules (sleeping `pause` between rounds).
    async fn run(&self, p: &GitPushed, pause: Duration) -> Vec<Deployed> {
        let stage = self.stage();
        let mut out = stage.handle_push(p).await.expect("push");
        for _ in 0..50 {
            let checks = self.take_checks();
            if checks.is_empty() {
                return out;
            }
            for c in checks {
                out.push(stage.handle_check(&c).await.expect("check"));
            }
            tokio::time::sleep(pause).await;
        }
        panic!("still checking after 50 rounds: {out:?}")
    }

    fn events(&self, detail_type: &str) -> Vec<serde_json::Value> {
        self.w
            .bus
            .events()
            .into_iter()
            .filter(|e| e.detail_type == detail_type)
            .map(|e| e.detail)
            .collect()
    }

    fn deployment_events(&self) -> Vec<String> {
        self.w
            .bus
            .events()
            .into_iter()
            .map(|e| e.detail_type)
            .filter(|t| t.starts_with("Deployment"))
            .collect()
    }

    fn alias(&self) -> Option<String> {
        self.w
            .registry
            .aliases
            .lock()
            .expect("lock")
            .get(&(MODEL.to_owned(), "champion".to_owned()))
            .cloned()
    }

    fn tag(&self, key: &str) -> Option<String> {
        self.w
            .registry
            .tags
            .lock()
            .expect("lock")
            .get(&(MODEL.to_owned(), "3".to_owned(), key.to_owned()))
            .cloned()
    }

    fn head(&self) -> String {
        git(&self.w.bare, &["rev-parse", "main"]).trim().to_owned()
    }
}

fn checking(out: &[Deployed]) -> usize {
    out.iter()
        .filter(|d| matches!(d, Deployed::Checking { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_at_once_moves_the_champion_and_tags_the_version() {
    let d = deploy(Script::Healthy, false, 600).await;
    let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
    assert!(matches!(out.last(), Some(Deployed::Healthy(_))), "{out:?}");
    assert_eq!(
        d.argo.syncs(),
        [(APP.to_owned(), d.promoted.commit.clone())]
    );
    assert_eq!(d.deployment_events(), ["DeploymentHealthy"]);
    let h = &d.events("DeploymentHealthy")[0];
    assert_eq!(h["model"], MODEL);
    assert_eq!(h["version"], "3");
    assert_eq!(h["revision"], d.promoted.commit.as_str());
    assert_eq!(h["run_id"], "run-deploy");
    assert_eq!(d.alias().as_deref(), Some("3"));
    assert_eq!(d.tag("mlops.deployment.status").as_deref(), Some("healthy"));
    assert_eq!(d.head(), d.promoted.commit, "nothing reverted");
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressing_then_healthy_is_checked_again_until_healthy() {
    let d = deploy(Script::ProgressingThen(3), false, 600).await;
    let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
    assert!(matches!(out.last(), Some(Deployed::Healthy(_))), "{out:?}");
    // The push requests the sync and schedules a check; three looks see it Running.
    assert_eq!(checking(&out), 4, "{out:?}");
    assert_eq!(d.argo.syncs().len(), 1);
    assert_eq!(d.deployment_events(), ["DeploymentHealthy"]);
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_on_the_old_revision_before_the_sync_starts_does_not_count() {
    let d = deploy(Script::NotStartedThen(2), false, 600).await;
    let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
    // Two looks at a Healthy, Synced app on the old revision with the request pending.
    assert_eq!(checking(&out), 3, "{out:?}");
    assert!(matches!(out.last(), Some(Deployed::Healthy(_))), "{out:?}");
    let looks = d.argo.gets().iter().filter(|(_, refresh)| !refresh).count();
    assert_eq!(looks, 3, "judged healthy only on the third look");
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_reverts_the_promotion_and_the_revert_is_never_rolled_back() {
    let d = deploy(Script::Degraded, false, 600).await;
    d.w.registry
        .aliases
        .lock()
        .expect("lock")
        .insert((MODEL.into(), "champion".into()), "2".into());
    let commits = d.w.commits();
    let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
    let Some(Deployed::RolledBack(r)) = out.last() else {
        panic!("not rolled back: {out:?}")
    };
    // The revert is on the served repository's branch, on top of the promotion.
    let head = d.head();
    assert_eq!(r.revert_revision.as_deref(), Some(head.as_str()));
    assert_eq!(d.w.commits(), commits + 1);
    assert_eq!(
        git(&d.w.bare, &["rev-parse", "main~1"]).trim(),
        d.promoted.commit
    );
    let msg = git(&d.w.bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        msg.contains(&format!("Mlops-Rollback-Of: {}", d.promoted.commit)),
        "{msg}"
    );
    assert!(msg.contains("Mlops-Run-Id: run-deploy"), "{msg}");
    assert!(
        !msg.contains("Mlops-Model-Version"),
        "a revert is not a release: {msg}"
    );
    assert_eq!(d.w.show(RELEASE), d.before, "the release file is back");
    assert!(r.reason.contains("progress deadline"), "{}", r.reason);
    assert_eq!(d.alias().as_deref(), Some("2"), "the champion did not move");
    assert_eq!(
        d.tag("mlops.deployment.status").as_deref(),
        Some("rolled_back")
    );
    assert!(
        d.tag("mlops.deployment.message")
            .is_some_and(|m| m.contains("progress deadline"))
    );
    assert_eq!(d.deployment_events(), ["DeploymentRolledBack"]);

    // The revert's own push (git-webhook marks it `rollback_of`) is synced and watched; still
    // Degraded, it is reported and never reverted again.
    let revert = GitPushed {
        revision: head.clone(),
        rollback_of: Some(d.promoted.commit.clone()),
        releases: vec![],
        delivery_id: "delivery-revert".into(),
        ..pushed(&d.promoted)
    };
    let out = d.run(&revert, Duration::ZERO).await;
    let Some(Deployed::Failed(f)) = out.last() else {
        panic!("not failed: {out:?}")
    };
    assert!(f.reason.contains("never rolled back"), "{}", f.reason);
    assert_eq!(d.head(), head, "no second revert");
    assert_eq!(d.w.commits(), commits + 1);
    assert_eq!(
        d.argo.syncs(),
        [
            (APP.to_owned(), d.promoted.commit.clone()),
            (APP.to_owned(), head.clone())
        ]
    );
    assert_eq!(
        d.deployment_events(),
        ["DeploymentRolledBack", "DeploymentFailed"]
    );
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_operation_is_rolled_back_with_argo_cds_message() {
    let d = deploy(Script::OperationFailed, false, 600).await;
    let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
    let Some(Deployed::RolledBack(r)) = out.last() else {
        panic!("not rolled back: {out:?}")
    };
    assert!(r.reason.contains("failed to apply"), "{}", r.reason);
    assert_eq!(d.w.show(RELEASE), d.before);
    assert_eq!(d.alias(), None);
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_operation_in_progress_is_asked_again_later() {
    let d = deploy(Script::BusyThen(2), false, 600).await;
    let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
    assert!(matches!(out.last(), Some(Deployed::Healthy(_))), "{out:?}");
    assert_eq!(d.argo.refused_syncs(), 2);
    assert_eq!(d.argo.syncs().len(), 1);
    assert_eq!(d.deployment_events(), ["DeploymentHealthy"]);
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_healthy_by_the_deadline_is_rolled_back() {
    let d = deploy(Script::NeverDone, false, 2).await;
    let out = d
        .run(&pushed(&d.promoted), Duration::from_millis(700))
        .await;
    let Some(Deployed::RolledBack(r)) = out.last() else {
        panic!("not rolled back: {out:?}")
    };
    assert!(r.reason.contains("deadline"), "{}", r.reason);
    assert!(checking(&out) >= 2, "{out:?}");
    assert_eq!(d.w.show(RELEASE), d.before);
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_fails_the_deployment_without_a_rollback() {
    for status in [401, 403] {
        let d = deploy(Script::Refuse(status), false, 600).await;
        let head = d.head();
        let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
        let [Deployed::Failed(f)] = out.as_slice() else {
            panic!("{status}: {out:?}")
        };
        assert!(f.reason.contains(&status.to_string()), "{}", f.reason);
        assert!(f.reason.contains("refused"), "{}", f.reason);
        assert_eq!(d.head(), head, "{status}: nothing reverted");
        assert_eq!(d.alias(), None);
        assert_eq!(d.tag("mlops.deployment.status"), None);
        assert!(d.argo.syncs().is_empty());
        assert!(d.take_checks().is_empty(), "no retry storm");
        d.argo.assert_no_violations();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_concurrent_pushes_and_checks_act_once() {
    let d = deploy(Script::ProgressingThen(1), false, 600).await;
    let p = pushed(&d.promoted);
    let stage = d.stage();
    let (a, b) = tokio::join!(stage.handle_push(&p), stage.handle_push(&p));
    // One owns the sync; the other is told to retry (in flight) or finds it done.
    let outcomes = [a, b];
    assert_eq!(
        outcomes
            .iter()
            .filter(|r| matches!(r.as_deref(), Ok([Deployed::Checking { .. }])))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(matches!(
        stage.handle_push(&p).await.expect("redelivered").as_slice(),
        [Deployed::Ignored(_)]
    ));
    assert_eq!(d.argo.syncs().len(), 1);
    // A duplicated check message: the copy is ignored, so the chain does not double.
    let checks = d.take_checks();
    assert_eq!(checks.len(), 1);
    let first = stage.handle_check(&checks[0]).await.expect("check");
    let copy = stage.handle_check(&checks[0]).await.expect("copy");
    assert!(matches!(first, Deployed::Checking { .. }), "{first:?}");
    assert!(matches!(copy, Deployed::Ignored(_)), "{copy:?}");
    let next = d.take_checks();
    assert_eq!(next.len(), 1, "one chain");
    let (x, y) = tokio::join!(stage.handle_check(&next[0]), stage.handle_check(&next[0]));
    let healthy = [&x, &y]
        .iter()
        .filter(|r| matches!(r, Ok(Deployed::Healthy(_))))
        .count();
    assert_eq!(healthy, 1, "{x:?} {y:?}");
    assert_eq!(d.deployment_events(), ["DeploymentHealthy"]);
    assert!(d.take_checks().is_empty());
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_unavailable_is_retried_by_redelivery_and_then_synced_once() {
    use mlops::error::{Classify, ErrorClass};
    let d = deploy(Script::UnavailableThen(2), false, 600).await;
    let p = pushed(&d.promoted);
    let stage = d.stage();
    for _ in 0..2 {
        let err = stage.handle_push(&p).await.expect_err("503");
        assert_eq!(err.class(), ErrorClass::Transient, "{err}");
        assert!(err.to_string().contains("503"), "{err}");
    }
    // The claim was released each time: the redelivery does the work.
    assert!(matches!(
        stage.handle_push(&p).await.expect("redelivered").as_slice(),
        [Deployed::Checking { .. }]
    ));
    for c in d.take_checks() {
        assert!(matches!(
            stage.handle_check(&c).await.expect("check"),
            Deployed::Healthy(_)
        ));
    }
    assert_eq!(d.argo.syncs().len(), 1);
    assert_eq!(d.deployment_events(), ["DeploymentHealthy"]);
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_push_is_watched_but_never_reverted() {
    let d = deploy(Script::Degraded, false, 600).await;
    let head = d.head();
    let person = GitPushed {
        run_id: "run-person".into(),
        releases: vec![],
        ..pushed(&d.promoted)
    };
    let out = d.run(&person, Duration::ZERO).await;
    let Some(Deployed::Failed(f)) = out.last() else {
        panic!("{out:?}")
    };
    assert!(f.reason.contains("a push by a person"), "{}", f.reason);
    assert_eq!(f.model, None);
    assert_eq!(d.head(), head);
    assert_eq!(d.alias(), None);
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_synced_app_is_refreshed_not_synced() {
    let d = deploy(Script::Healthy, true, 600).await;
    let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
    assert!(matches!(out.last(), Some(Deployed::Healthy(_))), "{out:?}");
    assert!(
        d.argo.syncs().is_empty(),
        "no manual sync of an auto-synced app"
    );
    assert_eq!(d.argo.gets().first(), Some(&(APP.to_owned(), true)));
    assert_eq!(d.alias().as_deref(), Some("3"));
    d.argo.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_champion_is_left_alone() {
    let d = deploy(Script::Healthy, false, 600).await;
    d.w.registry
        .aliases
        .lock()
        .expect("lock")
        .insert((MODEL.into(), "champion".into()), "5".into());
    let out = d.run(&pushed(&d.promoted), Duration::ZERO).await;
    let Some(Deployed::Healthy(h)) = out.last() else {
        panic!("{out:?}")
    };
    assert!(h.message.contains("stays on the newer v5"), "{}", h.message);
    assert_eq!(d.alias().as_deref(), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_push_supersedes_a_deployment_still_in_progress() {
    let d = deploy(Script::NeverDone, false, 600).await;
    let first = pushed(&d.promoted);
    let stage = d.stage();
    stage.handle_push(&first).await.expect("first");
    let pending = d.take_checks();
    let later = GitPushed {
        revision: "9".repeat(40),
        delivery_id: "later".into(),
        releases: vec![],
        ..first.clone()
    };
    stage.handle_push(&later).await.expect("later");
    let out = stage.handle_check(&pending[0]).await.expect("check");
    let Deployed::Skipped(s) = out else {
        panic!("{out:?}")
    };
    assert!(s.reason.contains("superseded"), "{}", s.reason);
    assert_eq!(d.head(), d.promoted.commit, "nothing reverted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_argo_cd_every_push_is_skipped_and_nothing_is_asked() {
    let d = deploy(Script::Healthy, false, 600).await;
    let stage = d.stage_with(None);
    let out = stage.handle_push(&pushed(&d.promoted)).await.expect("push");
    let [Deployed::Skipped(s)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(s.reason, NO_ARGOCD);
    assert_eq!(s.version.as_deref(), Some("3"));
    assert!(d.argo.gets().is_empty() && d.argo.syncs().is_empty());
    assert!(d.take_checks().is_empty());
    assert_eq!(d.alias(), None);
    assert_eq!(d.deployment_events(), ["DeploymentSkipped"]);
}

/// The rollback end to end on the dev stack: moto (bus, queues with real `DelaySeconds`,
/// ledger), a real MLflow server, the manifests repo served by `git http-backend` whose
/// post-receive hook delivers signed GitHub pushes to git-webhook, and deploy-sync pointed at
/// the Argo CD double, which reports the synced release Degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_a_degraded_release_is_reverted_in_the_served_repo_and_nothing_loops() {
    use mlops::adapter::eventbridge::EventBridgeBus;
    use mlops::adapter::mlflow::MlflowRegistry;
    use mlops::adapter::s3::S3Store;
    use mlops::event::{BusEvent, ModelValidated};
    use mlops::port::{EventBus, ModelRegistry};
    use mlops::stage::ledger::Ledger;

    let mut local = mlops::cli::dev::local::LocalStack::start(&crate::harness::prefix("rollback"))
        .await
        .expect("local stack");
    let bare = local.manifests_bare.clone();
    let release_before = git(&bare, &["show", &format!("main:{RELEASE}")]);
    let old = git(&bare, &["rev-parse", "main"]).trim().to_owned();
    let argo = ArgoDouble::start().await;
    argo.app(APP, Script::Degraded, false, &old);
    local.deploy.argocd =
        Some(ArgoCdClient::new(&argo.url, SecretString::from(ARGO_TOKEN), None).expect("client"));
    local.deploy.pipeline.argocd = Some(ArgoCdConfig {
        server: argo.url.clone(),
        app_namespace: None,
        check_every: 1,
        deadline: 600,
    });

    // The registry: v1 is the champion, v2 the validated candidate.
    let mlflow = &local.mlflow.endpoint;
    let http = reqwest::Client::new();
    let call = |path: &str, body: serde_json::Value| {
        let req = http
            .post(format!("{mlflow}/api/2.0/mlflow/{path}"))
            .json(&body);
        async move {
            let r = req.send().await.expect("mlflow");
            assert!(
                r.status().is_success(),
                "{}",
                r.text().await.unwrap_or_default()
            );
        }
    };
    call(
        "registered-models/create",
        serde_json::json!({"name": MODEL}),
    )
    .await;
    for _ in 0..2 {
        call(
            "model-versions/create",
            serde_json::json!({"name": MODEL, "source": "s3://models/fraud-detection/model"}),
        )
        .await;
    }
    call(
        "registered-models/alias",
        serde_json::json!({"name": MODEL, "alias": "champion", "version": "1"}),
    )
    .await;

    let run_id = "run-e2e-rollback";
    let bus = EventBridgeBus::new(
        aws_sdk_eventbridge::Client::new(&local.sdk),
        &local.stack.bus,
    );
    bus.put(&[BusEvent::new(&ModelValidated {
        schema_version: "1".into(),
        run_id: run_id.into(),
        model: MODEL.into(),
        version: "2".into(),
        champion_version: Some("1".into()),
        checks: vec![],
    })
    .expect("event")])
        .await
        .expect("put");

    let store = S3Store::new(mlops::adapter::aws::s3_client(&local.sdk));
    let ledger = Ledger {
        store: &store,
        bucket: &local.stack.artifact_bucket,
        prefix: "ledger/",
    };
    let count = |entries: &[mlops::stage::ledger::Entry], t: &str| {
        entries.iter().filter(|e| e.detail_type == t).count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let entries = loop {
        if local.pump().await.expect("pump") == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let entries = ledger.timeline(run_id).await.expect("timeline");
        // The revert's own push is watched too, and reported, never reverted again.
        if count(&entries, "DeploymentRolledBack") == 1 && count(&entries, "DeploymentFailed") == 1
        {
            break entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rollback: {:#?}",
            entries.iter().map(|e| &e.detail_type).collect::<Vec<_>>()
        );
    };
    let rolled: serde_json::Value = entries
        .iter()
        .find(|e| e.detail_type == "DeploymentRolledBack")
        .map(|e| e.detail.clone())
        .expect("rolled back");
    let promotion = entries
        .iter()
        .find(|e| e.detail_type == "ModelPromoted")
        .map(|e| e.detail["commit"].as_str().unwrap_or_default().to_owned())
        .expect("promoted");

    // The revert is the served repository's head, on top of the promotion, with the release
    // file as it was.
    let head = git(&bare, &["rev-parse", "main"]).trim().to_owned();
    assert_eq!(rolled["revert_revision"], head.as_str());
    assert_eq!(git(&bare, &["rev-parse", "main~1"]).trim(), promotion);
    let msg = git(&bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        msg.contains(&format!("Mlops-Rollback-Of: {promotion}")),
        "{msg}"
    );
    assert_eq!(
        git(&bare, &["show", &format!("main:{RELEASE}")]),
        release_before
    );
    // The alias did not move; the version says why.
    let registry = MlflowRegistry::new(mlflow, |_| None).expect("registry");
    assert_eq!(
        registry
            .alias(MODEL, "champion")
            .await
            .expect("alias")
            .as_deref(),
        Some("1")
    );
    let v2 = registry
        .version(MODEL, "2")
        .await
        .expect("v2")
        .expect("exists");
    assert_eq!(
        v2.tags.get("mlops.deployment.status").map(String::as_str),
        Some("rolled_back")
    );
    assert!(
        v2.tags
            .get("mlops.deployment.message")
            .is_some_and(|m| m.contains("progress deadline")),
        "{:?}",
        v2.tags
    );
    assert_eq!(
        argo.syncs(),
        [
            (APP.to_owned(), promotion.clone()),
            (APP.to_owned(), head.clone())
        ]
    );

    // Nothing loops: more rounds change nothing.
    let commits = git(&bare, &["rev-list", "--count", "main"]);
    let settle = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < settle {
        if local.pump().await.expect("pump") == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let after = ledger.timeline(run_id).await.expect("timeline");
    for (t, n) in [
        ("ModelPromoted", 1),
        ("GitPushed", 2),
        ("DeploymentRolledBack", 1),
        ("DeploymentFailed", 1),
        ("DeploymentHealthy", 0),
        ("PromotionFailed", 0),
    ] {
        assert_eq!((t, count(&after, t)), (t, n));
    }
    assert_eq!(git(&bare, &["rev-list", "--count", "main"]), commits);
    assert_eq!(argo.syncs().len(), 2);
    argo.assert_no_violations();
}
