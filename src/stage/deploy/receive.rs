//! `git-webhook`: a push to the manifests repo in, `GitPushed` out, an HTTP status back; a push
//! to a model's source repository that changes its build context, `ModelCodePushed` out (one per
//! model; other branches and unrelated paths are ignored with a log line).
//!
//! 401 for a missing or wrong signature/token, 415 for a form-encoded body, 413 over the body
//! limit, 400 for a malformed one (nothing emitted for any of them); 200 for `ping`; 202 for
//! other events, other repositories or branches and pushes that touch no application; 202 once
//! `GitPushed` is on the bus; 200 for a delivery already processed (the forges redeliver with
//! the same id); 503 (retried by the forge) when the store or the bus fails.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::push::{
    CodeOutcome, Forge, PushHeaders, PushOutcome, PushRefusal, applications, code_changes,
    parse_push, trailer, verify,
};
use crate::config::PipelineConfig;
use crate::error::BoxError;
use crate::event::{BusEvent, GitPushed, ModelCodePushed, SCHEMA_VERSION, new_run_id};
use crate::port::{EventBus, ObjectStore};
use crate::stage::claim::{Claim, Claims};
use crate::stage::registry::receive::Reply;
use crate::stage::secret::{SecretCache, SecretSource};

/// The trailer of the pipeline's rollback commits, naming the promotion they revert.
pub const ROLLBACK_TRAILER: &str = "Mlops-Rollback-Of";

#[derive(Debug, Clone)]
pub struct PushReceiverSettings {
    pub artifact_bucket: String,
    pub state_prefix: String,
    /// Largest body accepted (GitHub caps payloads at 25 MB; ours are far smaller).
    pub max_body: usize,
    pub secret_refresh: Duration,
    pub claim_lease: Duration,
}

pub struct PushReceiver<K, B, S> {
    pub pipeline: PipelineConfig,
    pub settings: PushReceiverSettings,
    pub secrets: SecretCache<K>,
    pub bus: B,
    pub store: S,
}

fn reply(status: u16, message: impl Into<String>) -> Reply {
    Reply {
        status,
        message: message.into(),
    }
}

impl<K: SecretSource, B: EventBus, S: ObjectStore> PushReceiver<K, B, S> {
    pub fn new(
        pipeline: PipelineConfig,
        settings: PushReceiverSettings,
        secrets: K,
        bus: B,
        store: S,
    ) -> Self {
        PushReceiver {
            secrets: SecretCache::new(secrets, settings.secret_refresh),
            pipeline,
            settings,
            bus,
            store,
        }
    }

    pub async fn load_secret(&self) -> Result<(), BoxError> {
        self.secrets.load().await
    }

    pub async fn receive(&self, h: &PushHeaders<'_>, body: &[u8]) -> Reply {
        if body.len() > self.settings.max_body {
            return reply(
                413,
                format!(
                    "the body is over the limit of {} bytes",
                    self.settings.max_body
                ),
            );
        }
        let verified = match self
            .secrets
            .verify(
                |keys| verify(h, body, keys),
                |e| *e == PushRefusal::BadSignature,
            )
            .await
        {
            Ok(v) => v,
            Err(r) => {
                tracing::warn!(refusal = %r, "push delivery refused");
                return reply(r.status(), r.to_string());
            }
        };
        let is_push = match verified.forge {
            Forge::GitHub => verified.event == "push",
            Forge::GitLab => verified.event == "Push Hook",
        };
        if verified.forge == Forge::GitHub && verified.event == "ping" {
            return reply(200, "pong");
        }
        if !is_push {
            return reply(202, format!("event {:?} is not handled", verified.event));
        }
        let push = match parse_push(verified.forge, body) {
            Ok(p) => p,
            Err(r) => return reply(r.status(), r.to_string()),
        };
        match code_changes(&self.pipeline, &push) {
            CodeOutcome::NotASource => {}
            CodeOutcome::Ignored(why) => {
                tracing::info!(%why, "code push ignored");
                return reply(202, why);
            }
            CodeOutcome::Changes { commit, changes } => {
                return self
                    .code_pushed(&verified.delivery, &push, commit, changes)
                    .await;
            }
        }
        let (apps, revision, run_id, releases) = match applications(&self.pipeline, &push) {
            PushOutcome::Ignored(why) => {
                tracing::info!(%why, "push ignored");
                return reply(202, why);
            }
            PushOutcome::Applications {
                applications,
                revision,
                run_id,
                releases,
            } => (applications, revision, run_id, releases),
        };
        // The delivery id when the forge sends one, else the revision (same push, same key).
        let delivery = if verified.delivery.is_empty() {
            revision.clone()
        } else {
            verified.delivery.clone()
        };
        let mut hash = Sha256::new();
        hash.update(delivery.as_bytes());
        let key = format!(
            "{}git-webhook/deliveries/{}.json",
            self.settings.state_prefix,
            hex::encode(hash.finalize())
        );
        let claims = Claims {
            store: &self.store,
            bucket: &self.settings.artifact_bucket,
            lease: self.settings.claim_lease,
        };
        let run_id = run_id.unwrap_or_else(new_run_id);
        let (etag, run_id) = match claims.claim(&key, &run_id).await {
            Ok(Claim::Owned { etag, run_id }) => (etag, run_id),
            Ok(Claim::Done { .. }) => return reply(200, "delivery already processed"),
            Ok(Claim::Busy { .. }) => return reply(503, "the same delivery is in flight"),
            Err(e) => return reply(503, format!("claiming the delivery: {e}")),
        };
        let event = GitPushed {
            schema_version: SCHEMA_VERSION.into(),
            run_id: run_id.clone(),
            repo: self
                .pipeline
                .git
                .as_ref()
                .map(|g| g.manifests_repo.clone())
                .unwrap_or_default(),
            ref_: push.ref_.clone(),
            revision,
            applications: apps,
            delivery_id: delivery,
            rollback_of: push
                .commits
                .iter()
                .rev()
                .find_map(|c| trailer(&c.message, ROLLBACK_TRAILER)),
            releases,
        };
        let event = match BusEvent::new(&event) {
            Ok(e) => e,
            Err(e) => return reply(500, format!("encoding the event: {e}")),
        };
        if let Err(e) = self.bus.put(std::slice::from_ref(&event)).await {
            if let Err(re) = claims.release(&key, &etag, &run_id).await {
                tracing::warn!(error = %re, "releasing the delivery claim failed");
            }
            return reply(503, format!("putting the event: {e}"));
        }
        if let Err(e) = claims.finish(&key, &etag, &run_id, "GitPushed").await {
            tracing::warn!(error = %e, "recording the delivery failed");
        }
        reply(202, "GitPushed emitted")
    }

    fn claims(&self) -> Claims<'_, S> {
        Claims {
            store: &self.store,
            bucket: &self.settings.artifact_bucket,
            lease: self.settings.claim_lease,
        }
    }

    fn delivery_key(&self, delivery: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(delivery.as_bytes());
        format!(
            "{}git-webhook/deliveries/{}.json",
            self.settings.state_prefix,
            hex::encode(hash.finalize())
        )
    }

    /// A push to models' source repositories: one `ModelCodePushed` per model, once per
    /// delivery (the same claim as a manifests push).
    async fn code_pushed(
        &self,
        delivery: &str,
        push: &super::push::Push,
        commit: String,
        changes: Vec<super::push::CodeChange>,
    ) -> Reply {
        let delivery = if delivery.is_empty() {
            commit.clone()
        } else {
            delivery.to_owned()
        };
        let key = self.delivery_key(&delivery);
        let claims = self.claims();
        let (etag, run_id) = match claims.claim(&key, &new_run_id()).await {
            Ok(Claim::Owned { etag, run_id }) => (etag, run_id),
            Ok(Claim::Done { .. }) => return reply(200, "delivery already processed"),
            Ok(Claim::Busy { .. }) => return reply(503, "the same delivery is in flight"),
            Err(e) => return reply(503, format!("claiming the delivery: {e}")),
        };
        let several = changes.len() > 1;
        let mut events = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let repo = self
                .pipeline
                .models
                .get(&c.model)
                .and_then(|m| m.source.as_ref())
                .map(|s| s.repo.clone())
                .unwrap_or_default();
            let detail = ModelCodePushed {
                schema_version: SCHEMA_VERSION.into(),
                // One pipeline run per model a push changes.
                run_id: if several {
                    format!("{run_id}-{i}")
                } else {
                    run_id.clone()
                },
                model: c.model.clone(),
                repo,
                ref_: push.ref_.clone(),
                commit: commit.clone(),
                changed: c.changed.clone(),
                delivery_id: delivery.clone(),
            };
            match BusEvent::new(&detail) {
                Ok(e) => events.push(e),
                Err(e) => return reply(500, format!("encoding the event: {e}")),
            }
        }
        if let Err(e) = self.bus.put(&events).await {
            if let Err(re) = claims.release(&key, &etag, &run_id).await {
                tracing::warn!(error = %re, "releasing the delivery claim failed");
            }
            return reply(503, format!("putting the events: {e}"));
        }
        if let Err(e) = claims.finish(&key, &etag, &run_id, "ModelCodePushed").await {
            tracing::warn!(error = %e, "recording the delivery failed");
        }
        let models: Vec<&str> = changes.iter().map(|c| c.model.as_str()).collect();
        reply(
            202,
            format!("ModelCodePushed emitted for {}", models.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use hmac::{KeyInit, Mac};

    use super::*;
    use crate::adapter::memory::{MemoryBus, MemoryStore};
    use crate::cli::dev::webhook::StaticSecret;

    const SECRET: &[u8] = b"push-secret";
    const CONFIG: &str = r#"
datasets: {}
git: {manifests_repo: "https://github.com/example/ml-manifests.git", branch: main}
models:
  fraud-detection:
    serving: {engine: mlflow, manifests_path: deployments/mlflow/fraud-detection, argocd_app: fraud-detection}
    training: {image: x}
    source: {repo: "https://github.com/example/fraud-trainer.git", context: src, image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-trainer"}
"#;

    fn receiver() -> PushReceiver<StaticSecret, MemoryBus, MemoryStore> {
        PushReceiver::new(
            PipelineConfig::from_yaml(CONFIG, "test").expect("config"),
            PushReceiverSettings {
                artifact_bucket: "artifacts".into(),
                state_prefix: "state/".into(),
                max_body: 64 << 10,
                secret_refresh: Duration::from_secs(60),
                claim_lease: Duration::from_secs(60),
            },
            StaticSecret(SECRET.to_vec()),
            MemoryBus::default(),
            MemoryStore::default(),
        )
    }

    fn sign(body: &[u8]) -> String {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("key");
        m.update(body);
        format!("sha256={}", hex::encode(m.finalize().into_bytes()))
    }

    fn push_body(message: &str, path: &str) -> Vec<u8> {
        serde_json::json!({
            "ref": "refs/heads/main",
            "before": "1111111111111111111111111111111111111111",
            "after": "2222222222222222222222222222222222222222",
            "commits": [{"id": "2222222222222222222222222222222222222222", "message": message,
                         "added": [], "removed": [], "modified": [path]}],
            "repository": {"clone_url": "https://github.com/example/ml-manifests.git"},
        })
        .to_string()
        .into_bytes()
    }

    async fn deliver(
        r: &PushReceiver<StaticSecret, MemoryBus, MemoryStore>,
        event: &str,
        id: &str,
        body: &[u8],
        sig: Option<&str>,
    ) -> u16 {
        let h = PushHeaders {
            content_type: Some("application/json"),
            github_event: Some(event),
            github_delivery: Some(id),
            hub_signature_256: sig,
            ..Default::default()
        };
        r.receive(&h, body).await.status
    }

    fn code_push(paths: &[&str]) -> Vec<u8> {
        serde_json::json!({
            "ref": "refs/heads/main",
            "before": "1111111111111111111111111111111111111111",
            "after": "3333333333333333333333333333333333333333",
            "commits": [{"id": "3333333333333333333333333333333333333333", "message": "Tune C",
                         "added": [], "removed": [], "modified": paths}],
            "repository": {"clone_url": "https://github.com/example/fraud-trainer.git"},
        })
        .to_string()
        .into_bytes()
    }

    #[tokio::test]
    async fn a_code_push_is_one_model_code_pushed_per_delivery() {
        let r = receiver();
        r.load_secret().await.expect("secret");
        let body = code_push(&["src/train.py", "README.md"]);
        let sig = sign(&body);
        // Same checks as a manifests push: unsigned and mis-signed are refused.
        assert_eq!(deliver(&r, "push", "c1", &body, None).await, 401);
        assert_eq!(
            deliver(&r, "push", "c1", &body, Some(&sign(b"other"))).await,
            401
        );
        assert_eq!(deliver(&r, "push", "c1", &body, Some(&sig)).await, 202);
        assert_eq!(deliver(&r, "push", "c1", &body, Some(&sig)).await, 200);
        let events = r.bus.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail_type, "ModelCodePushed");
        assert_eq!(events[0].source, "mlops.git-webhook");
        let e: ModelCodePushed = serde_json::from_value(events[0].detail.clone()).expect("detail");
        assert_eq!(e.model, "fraud-detection");
        assert_eq!(e.commit, "3".repeat(40));
        assert_eq!(e.changed, ["src/train.py"]);
        assert_eq!(e.delivery_id, "c1");
        // Outside the context: a log line and 202, nothing on the bus.
        let docs = code_push(&["README.md"]);
        assert_eq!(
            deliver(&r, "push", "c2", &docs, Some(&sign(&docs))).await,
            202
        );
        assert_eq!(r.bus.events().len(), 1);
    }

    #[test]
    fn a_source_repo_that_is_the_manifests_repo_is_refused() {
        let text = CONFIG.replace(
            "https://github.com/example/fraud-trainer.git",
            "https://github.com/example/ml-manifests",
        );
        let err = PipelineConfig::from_yaml(&text, "t").expect_err("refused");
        assert!(err.to_string().contains("never both"), "{err}");
    }

    #[tokio::test]
    async fn a_signed_push_is_one_event_and_hostile_ones_are_nothing() {
        let r = receiver();
        r.load_secret().await.expect("secret");
        let release = "deployments/mlflow/fraud-detection/release.yaml";
        let body = push_body(
            "Promote fraud-detection v3\n\nMlops-Run-Id: run-9\nMlops-Model-Version: 3\n",
            release,
        );
        let sig = sign(&body);
        // Hostile first: unsigned, mis-signed, tampered, form-encoded, oversized, not JSON.
        assert_eq!(deliver(&r, "push", "d1", &body, None).await, 401);
        assert_eq!(
            deliver(&r, "push", "d1", &body, Some("sha256=00")).await,
            401
        );
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(deliver(&r, "push", "d1", &tampered, Some(&sig)).await, 401);
        let form = format!("payload={}", String::from_utf8_lossy(&body)).into_bytes();
        let h = PushHeaders {
            content_type: Some("application/x-www-form-urlencoded"),
            github_event: Some("push"),
            github_delivery: Some("d1"),
            hub_signature_256: Some(&sign(&form)),
            ..Default::default()
        };
        assert_eq!(r.receive(&h, &form).await.status, 415);
        let big = vec![b' '; (64 << 10) + 1];
        assert_eq!(
            deliver(&r, "push", "d1", &big, Some(&sign(&big))).await,
            413
        );
        assert_eq!(
            deliver(&r, "push", "d1", b"[1,", Some(&sign(b"[1,"))).await,
            400
        );
        assert!(r.bus.events().is_empty());

        // ping, then the real push, then its redelivery.
        assert_eq!(
            deliver(&r, "ping", "p", b"{}", Some(&sign(b"{}"))).await,
            200
        );
        assert_eq!(deliver(&r, "push", "d1", &body, Some(&sig)).await, 202);
        assert_eq!(deliver(&r, "push", "d1", &body, Some(&sig)).await, 200);
        let events = r.bus.events();
        assert_eq!(events.len(), 1);
        let e: GitPushed = serde_json::from_value(events[0].detail.clone()).expect("detail");
        assert_eq!(e.run_id, "run-9");
        assert_eq!(e.applications, ["fraud-detection"]);
        assert_eq!(e.rollback_of, None);

        // A person's push of an unmapped file, and a push of another event type: nothing.
        let readme = push_body("Fix a typo", "README.md");
        assert_eq!(
            deliver(&r, "push", "d2", &readme, Some(&sign(&readme))).await,
            202
        );
        assert_eq!(deliver(&r, "issues", "d3", &body, Some(&sig)).await, 202);
        assert_eq!(r.bus.events().len(), 1);

        // Our own rollback: marked, so deploy-sync never reverts it again.
        let revert = push_body(
            "Roll back fraud-detection v3\n\nMlops-Run-Id: run-9\nMlops-Rollback-Of: abc123\n",
            release,
        );
        assert_eq!(
            deliver(&r, "push", "d4", &revert, Some(&sign(&revert))).await,
            202
        );
        let e: GitPushed =
            serde_json::from_value(r.bus.events()[1].detail.clone()).expect("detail");
        assert_eq!(e.rollback_of.as_deref(), Some("abc123"));
        assert_eq!(e.run_id, "run-9");
    }

    #[tokio::test]
    async fn gitlab_pushes_are_accepted_with_the_token() {
        let r = receiver();
        r.load_secret().await.expect("secret");
        let body = serde_json::json!({
            "object_kind": "push",
            "ref": "refs/heads/main",
            "before": "1111111111111111111111111111111111111111",
            "after": "3333333333333333333333333333333333333333",
            "total_commits_count": 1,
            "commits": [{"id": "3333333333333333333333333333333333333333", "message": "Edit",
                         "added": ["deployments/mlflow/fraud-detection/hpa.yaml"], "modified": [], "removed": []}],
            "project": {"git_http_url": "https://github.com/example/ml-manifests.git"},
        })
        .to_string();
        let h = |token| PushHeaders {
            content_type: Some("application/json"),
            gitlab_event: Some("Push Hook"),
            gitlab_token: Some(token),
            gitlab_event_uuid: Some("g-1"),
            ..Default::default()
        };
        assert_eq!(r.receive(&h("wrong"), body.as_bytes()).await.status, 401);
        let secret = std::str::from_utf8(SECRET).expect("utf8");
        assert_eq!(r.receive(&h(secret), body.as_bytes()).await.status, 202);
        let e: GitPushed =
            serde_json::from_value(r.bus.events()[0].detail.clone()).expect("detail");
        assert!(
            e.run_id.starts_with("run-"),
            "a person's push gets a fresh run id"
        );
        assert_eq!(e.revision, "3333333333333333333333333333333333333333");
    }
}
