//! promote-model against a real Git server (`git http-backend` over smart HTTP on loopback,
//! seeded from `samples/manifests-repo/`), with the in-memory store and bus. The registry is a
//! small fake of the `ModelRegistry` port (the MLflow adapter itself is tested against a real
//! server in `registry.rs`): promote-model only reads a version's source and tags.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use mlops::adapter::git::Git2Remote;
use mlops::adapter::memory::{MemoryBus, MemoryStore};
use mlops::cli::dev::git_http::{GitHttp, GitHttpConfig, seed_bare_repo, serve};
use mlops::config::PipelineConfig;
use mlops::event::{ModelPromoted, ModelValidated, PromotionFailed};
use mlops::port::{
    GitAuthor, ModelRegistry, ModelVersion, RegistryError, RunRecord, VersionStatus,
};
use mlops::stage::deploy::promote::{PromoteModel, PromoteSettings, Promoted};
use secrecy::SecretString;

use crate::harness::{root, venv_python};

pub(crate) const TOKEN: &str = "ghs_deploy_test";

/// Versions, aliases and tags in memory; aliases and tags are recorded for deploy-sync's tests.
#[derive(Default)]
pub(crate) struct FakeRegistry {
    versions: Mutex<BTreeMap<(String, String), ModelVersion>>,
    pub(crate) aliases: Mutex<BTreeMap<(String, String), String>>,
    pub(crate) tags: Mutex<BTreeMap<(String, String, String), String>>,
}

impl FakeRegistry {
    pub(crate) fn add(&self, model: &str, version: &str, source: &str, tags: &[(&str, &str)]) {
        self.versions.lock().expect("lock").insert(
            (model.into(), version.into()),
            ModelVersion {
                model: model.into(),
                version: version.into(),
                status: VersionStatus::Ready,
                source: source.into(),
                mlflow_run_id: None,
                tags: tags
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                aliases: vec![],
                created_ms: 0,
            },
        );
    }
}

impl ModelRegistry for FakeRegistry {
    async fn version(&self, m: &str, v: &str) -> Result<Option<ModelVersion>, RegistryError> {
        Ok(self
            .versions
            .lock()
            .expect("lock")
            .get(&(m.to_owned(), v.to_owned()))
            .cloned())
    }
    async fn run(&self, _: &str) -> Result<Option<RunRecord>, RegistryError> {
        Ok(None)
    }
    async fn versions_since(&self, _: &str, _: i64) -> Result<Vec<ModelVersion>, RegistryError> {
        Ok(vec![])
    }
    async fn alias(&self, m: &str, a: &str) -> Result<Option<String>, RegistryError> {
        Ok(self
            .aliases
            .lock()
            .expect("lock")
            .get(&(m.to_owned(), a.to_owned()))
            .cloned())
    }
    async fn set_version_tag(
        &self,
        m: &str,
        v: &str,
        k: &str,
        value: &str,
    ) -> Result<(), RegistryError> {
        self.tags
            .lock()
            .expect("lock")
            .insert((m.into(), v.into(), k.into()), value.into());
        Ok(())
    }
    async fn set_alias(&self, m: &str, a: &str, v: &str) -> Result<(), RegistryError> {
        self.aliases
            .lock()
            .expect("lock")
            .insert((m.into(), a.into()), v.into());
        Ok(())
    }
}

pub(crate) struct World {
    _root: tempfile::TempDir,
    _work: tempfile::TempDir,
    pub(crate) bare: std::path::PathBuf,
    _http: GitHttp,
    pub(crate) pipeline: PipelineConfig,
    pub(crate) settings: PromoteSettings,
    pub(crate) git: Git2Remote,
    pub(crate) registry: FakeRegistry,
    pub(crate) bus: MemoryBus,
    pub(crate) store: MemoryStore,
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) async fn world(token: &str) -> World {
    let root_dir = tempfile::tempdir().expect("tmp");
    let bare = seed_bare_repo(
        root_dir.path(),
        "ml-manifests",
        "main",
        &root().join("samples/manifests-repo"),
    )
    .expect("seed");
    let http = serve(GitHttpConfig {
        root: root_dir.path().to_owned(),
        credentials: Some(("x-access-token".into(), TOKEN.into())),
        before_push: None,
    })
    .await
    .expect("serve");
    let url = format!("{}/ml-manifests.git", http.base);
    let yaml = format!(
        r#"
datasets: {{}}
git: {{manifests_repo: "{url}", branch: main}}
models:
  fraud-detection:
    serving: {{engine: mlflow, manifests_path: deployments/mlflow/fraud-detection, argocd_app: fraud-detection}}
  mistral-7b-support:
    serving: {{engine: vllm, manifests_path: deployments/vllm/mistral-7b-support, argocd_app: vllm-mistral-7b-support}}
  no-serving: {{}}
"#
    );
    let pipeline = PipelineConfig::from_yaml(&yaml, "test").expect("config");
    let work = tempfile::tempdir().expect("tmp");
    let git = Git2Remote::new(
        &url,
        "x-access-token",
        Some(SecretString::from(token.to_owned())),
        work.path(),
    )
    .expect("remote");
    World {
        _root: root_dir,
        _work: work,
        bare,
        _http: http,
        pipeline,
        settings: PromoteSettings {
            artifact_bucket: "artifacts".into(),
            state_prefix: "state/".into(),
            claim_lease: Duration::from_secs(60),
            author: GitAuthor {
                name: "mlops".into(),
                email: "mlops@example.com".into(),
            },
        },
        git,
        registry: FakeRegistry::default(),
        bus: MemoryBus::default(),
        store: MemoryStore::default(),
    }
}

impl World {
    pub(crate) fn stage(
        &self,
    ) -> PromoteModel<'_, FakeRegistry, Git2Remote, MemoryBus, MemoryStore> {
        PromoteModel {
            pipeline: &self.pipeline,
            settings: &self.settings,
            registry: &self.registry,
            git: &self.git,
            bus: &self.bus,
            store: &self.store,
        }
    }
    pub(crate) fn commits(&self) -> usize {
        git(&self.bare, &["rev-list", "--count", "main"])
            .trim()
            .parse()
            .expect("count")
    }
    pub(crate) fn show(&self, path: &str) -> String {
        git(&self.bare, &["show", &format!("main:{path}")])
    }
}

pub(crate) fn validated(model: &str, version: &str, run: &str) -> ModelValidated {
    ModelValidated {
        schema_version: "1".into(),
        run_id: run.into(),
        model: model.into(),
        version: version.into(),
        champion_version: None,
        checks: vec![],
    }
}

fn promoted(w: &World) -> Vec<ModelPromoted> {
    w.bus
        .events()
        .into_iter()
        .filter(|e| e.detail_type == "ModelPromoted")
        .map(|e| serde_json::from_value(e.detail).expect("detail"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validated_version_is_committed_once_and_renders_into_the_deployment() {
    let w = world(TOKEN).await;
    let before = w.commits();
    let v = validated("fraud-detection", "3", "run-abc");
    let Promoted::Promoted(p) = w.stage().handle(&v).await.expect("promote") else {
        panic!("not promoted")
    };
    assert_eq!(p.path, "deployments/mlflow/fraud-detection/release.yaml");
    assert_eq!(git(&w.bare, &["rev-parse", "main"]).trim(), p.commit);
    assert_eq!(w.commits(), before + 1);
    let msg = git(&w.bare, &["log", "-1", "--format=%B", "main"]);
    for trailer in [
        "Mlops-Run-Id: run-abc",
        "Mlops-Model: fraud-detection",
        "Mlops-Model-Version: 3",
    ] {
        assert!(msg.contains(trailer), "{msg}");
    }
    // Only the release file changed; files people edit are untouched.
    let changed = git(&w.bare, &["diff", "--name-only", "main~1", "main"]);
    assert_eq!(changed.trim(), p.path);

    // Redelivered: nothing new. With the claim lost too (another region, a wiped bucket),
    // the file already pins v3: no commit, and the event names the head that has it.
    assert!(matches!(
        w.stage().handle(&v).await.expect("again"),
        Promoted::Ignored(_)
    ));
    for k in w.store.keys("artifacts") {
        w.store.remove("artifacts", &k);
    }
    let Promoted::Promoted(again) = w.stage().handle(&v).await.expect("again") else {
        panic!("not promoted")
    };
    assert_eq!(again.commit, p.commit);
    assert_eq!(w.commits(), before + 1);
    assert_eq!(promoted(&w).len(), 2);

    // The release applies: kustomize renders the Deployment with the new version.
    let checkout = tempfile::tempdir().expect("tmp");
    git(
        Path::new("/"),
        &[
            "clone",
            "-q",
            &w.bare.display().to_string(),
            &checkout.path().display().to_string(),
        ],
    );
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", "deployments/mlflow/fraud-detection"])
        .current_dir(checkout.path())
        .output()
        .expect("kubectl (installed by .ci/run)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(rendered.contains("models:/fraud-detection/3"), "{rendered}");
    assert!(rendered.contains("mlops.io/run-id: run-abc"), "{rendered}");
    let mut validate = std::process::Command::new(venv_python())
        .args([
            root().join("tests/k8s_validate.py").display().to_string(),
            "--k8s".into(),
            "1.37".into(),
            "-".into(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("validator");
    use std::io::Write;
    validate
        .stdin
        .take()
        .expect("stdin")
        .write_all(&out.stdout)
        .expect("write");
    let v_out = validate.wait_with_output().expect("validator");
    assert!(
        v_out.status.success(),
        "{}",
        String::from_utf8_lossy(&v_out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_models_promoted_concurrently_both_land() {
    let w = world(TOKEN).await;
    w.registry.add(
        "mistral-7b-support",
        "5",
        "s3://models/mistral-7b-support/v5/",
        &[],
    );
    let before = w.commits();
    let a = validated("fraud-detection", "8", "run-a");
    let b = validated("mistral-7b-support", "5", "run-b");
    let (sa, sb) = (w.stage(), w.stage());
    let (ra, rb) = tokio::join!(sa.handle(&a), sb.handle(&b));
    assert!(matches!(ra, Ok(Promoted::Promoted(_))), "{ra:?}");
    assert!(matches!(rb, Ok(Promoted::Promoted(_))), "{rb:?}");
    assert_eq!(w.commits(), before + 2, "nothing lost");
    assert!(
        w.show("deployments/mlflow/fraud-detection/release.yaml")
            .contains("models:/fraud-detection/8")
    );
    assert!(
        w.show("deployments/vllm/mistral-7b-support/release.yaml")
            .contains("s3://models/mistral-7b-support/v5/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_never_replaces_a_newer_release() {
    let w = world(TOKEN).await;
    w.stage()
        .handle(&validated("fraud-detection", "10", "run-10"))
        .await
        .expect("v10");
    let before = w.commits();
    let out = w
        .stage()
        .handle(&validated("fraud-detection", "9", "run-9"))
        .await
        .expect("v9");
    assert!(
        matches!(out, Promoted::Ignored(ref r) if r.contains("older")),
        "{out:?}"
    );
    assert_eq!(w.commits(), before);
    assert!(
        w.show("deployments/mlflow/fraud-detection/release.yaml")
            .contains("models:/fraud-detection/10")
    );
    // Models without a serving block are not this stage's.
    assert!(matches!(
        w.stage()
            .handle(&validated("no-serving", "1", "r"))
            .await
            .expect("ignored"),
        Promoted::Ignored(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_problems_become_promotion_failed_once() {
    // The server refuses the token: one PromotionFailed, acked, no retry storm.
    let w = world("revoked-token").await;
    let v = validated("fraud-detection", "2", "run-x");
    let Promoted::Failed(f) = w.stage().handle(&v).await.expect("handled") else {
        panic!("not failed")
    };
    assert!(f.reason.contains("403"), "{}", f.reason);
    assert!(
        !f.reason.contains("revoked-token"),
        "token leaked: {}",
        f.reason
    );
    assert!(matches!(
        w.stage().handle(&v).await.expect("again"),
        Promoted::Ignored(_)
    ));
    let failed: Vec<PromotionFailed> = w
        .bus
        .events()
        .into_iter()
        .filter(|e| e.detail_type == "PromotionFailed")
        .map(|e| serde_json::from_value(e.detail).expect("detail"))
        .collect();
    assert_eq!(failed.len(), 1);

    // A vLLM version whose weights have no S3 URI: the reason says what to set.
    let w = world(TOKEN).await;
    let before = w.commits();
    w.registry
        .add("mistral-7b-support", "6", "models:/m-0123", &[]);
    let Promoted::Failed(f) = w
        .stage()
        .handle(&validated("mistral-7b-support", "6", "run-y"))
        .await
        .expect("handled")
    else {
        panic!("not failed")
    };
    assert!(f.reason.contains("mlops.model_uri"), "{}", f.reason);
    assert_eq!(w.commits(), before);
    // The tag fixes it for the next version.
    w.registry.add(
        "mistral-7b-support",
        "7",
        "models:/m-0456",
        &[("mlops.model_uri", "s3://weights/mistral/v7/")],
    );
    assert!(matches!(
        w.stage()
            .handle(&validated("mistral-7b-support", "7", "run-z"))
            .await
            .expect("handled"),
        Promoted::Promoted(_)
    ));
}
