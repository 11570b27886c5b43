//! Git push webhooks of the manifests repo (CONTRACTS §8): GitHub (`X-Hub-Signature-256`,
//! HMAC-SHA256 of the raw body) and GitLab (`X-Gitlab-Token`, the shared secret itself), verified
//! in constant time; `ping` answered; only the configured repository and branch; the changed
//! paths of every commit mapped to the Argo CD applications of the models whose
//! `manifests_path` they touch. The pipeline's own commits carry `Mlops-Run-Id:` trailers, so a
//! push of a release continues its run and a push by a person starts a new one.
//!
//! This module is pure: the `git-webhook` handler ([`super::receive`]) puts it behind a Function
//! URL.

use std::collections::{BTreeMap, BTreeSet};

use hmac::{KeyInit, Mac};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::PipelineConfig;
use crate::event::ReleaseRef;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Paths whose change concerns every application of the repo (shared kustomize bases).
pub const SHARED_PREFIXES: &[&str] = &["base/"];

/// The headers a push webhook may carry, as received (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct PushHeaders<'a> {
    pub content_type: Option<&'a str>,
    pub github_event: Option<&'a str>,
    pub github_delivery: Option<&'a str>,
    pub hub_signature_256: Option<&'a str>,
    pub gitlab_event: Option<&'a str>,
    pub gitlab_token: Option<&'a str>,
    pub gitlab_event_uuid: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    GitLab,
}

/// A verified delivery: which forge, which event, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub forge: Forge,
    pub event: String,
    pub delivery: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushRefusal {
    #[error("neither X-Hub-Signature-256 (GitHub) nor X-Gitlab-Token (GitLab) is present")]
    Unsigned,
    #[error("the signature does not match")]
    BadSignature,
    #[error("malformed header {header}: {why}")]
    BadHeader { header: &'static str, why: String },
    #[error("content type {0:?}: configure the webhook to send application/json")]
    NotJson(String),
    #[error("malformed body: {0}")]
    Malformed(String),
}

impl PushRefusal {
    pub fn status(&self) -> u16 {
        match self {
            PushRefusal::Unsigned | PushRefusal::BadSignature | PushRefusal::BadHeader { .. } => {
                401
            }
            PushRefusal::NotJson(_) => 415,
            PushRefusal::Malformed(_) => 400,
        }
    }
}

/// Verifies a delivery against the current (and, during a rotation, previous) secrets.
pub fn verify(
    h: &PushHeaders<'_>,
    body: &[u8],
    secrets: &[&[u8]],
) -> Result<Verified, PushRefusal> {
    let verified = if let Some(sig) = h.hub_signature_256 {
        let hex_sig = sig
            .trim()
            .strip_prefix("sha256=")
            .ok_or_else(|| PushRefusal::BadHeader {
                header: "X-Hub-Signature-256",
                why: "expected sha256=<hex>".into(),
            })?;
        let mac = hex::decode(hex_sig).map_err(|_| PushRefusal::BadHeader {
            header: "X-Hub-Signature-256",
            why: "not hex".into(),
        })?;
        let ok = secrets.iter().any(|s| {
            HmacSha256::new_from_slice(s)
                .map(|mut m| {
                    m.update(body);
                    m.verify_slice(&mac).is_ok()
                })
                .unwrap_or(false)
        });
        if !ok {
            return Err(PushRefusal::BadSignature);
        }
        Verified {
            forge: Forge::GitHub,
            event: h.github_event.unwrap_or_default().to_owned(),
            delivery: h.github_delivery.unwrap_or_default().to_owned(),
        }
    } else if let Some(token) = h.gitlab_token {
        let ok = secrets
            .iter()
            .any(|s| bool::from(token.as_bytes().ct_eq(s)));
        if !ok {
            return Err(PushRefusal::BadSignature);
        }
        Verified {
            forge: Forge::GitLab,
            event: h.gitlab_event.unwrap_or_default().to_owned(),
            delivery: h.gitlab_event_uuid.unwrap_or_default().to_owned(),
        }
    } else {
        return Err(PushRefusal::Unsigned);
    };
    // Checked after the signature, so an unsigned caller learns nothing else.
    let ct = h.content_type.unwrap_or_default();
    if !ct
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(PushRefusal::NotJson(ct.to_owned()));
    }
    Ok(verified)
}

/// One commit of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCommit {
    pub id: String,
    pub message: String,
    /// Added, modified and removed paths.
    pub paths: Vec<String>,
}

/// A push, in the terms both forges share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Every URL the payload gives for the repository.
    pub repo_urls: Vec<String>,
    pub ref_: String,
    /// The new tip; all zeros when the branch was deleted.
    pub after: String,
    pub commits: Vec<PushCommit>,
    /// The forge left commits out: every application of the repo is concerned.
    pub truncated: bool,
}

impl Push {
    pub fn deleted(&self) -> bool {
        self.after.bytes().all(|b| b == b'0')
    }
}

#[derive(Deserialize)]
struct RawCommit {
    id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
}

#[derive(Deserialize)]
struct GitHubRepo {
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct GitHubPush {
    #[serde(rename = "ref")]
    ref_: String,
    after: String,
    #[serde(default)]
    commits: Vec<RawCommit>,
    repository: GitHubRepo,
}

#[derive(Deserialize)]
struct GitLabProject {
    #[serde(default)]
    git_http_url: Option<String>,
    #[serde(default)]
    web_url: Option<String>,
}

#[derive(Deserialize)]
struct GitLabPush {
    #[serde(rename = "ref")]
    ref_: String,
    after: String,
    #[serde(default)]
    commits: Vec<RawCommit>,
    #[serde(default)]
    total_commits_count: Option<u64>,
    project: GitLabProject,
}

/// GitHub sends at most this many commits in a push payload.
const GITHUB_MAX_COMMITS: usize = 2048;

fn commits(raw: Vec<RawCommit>) -> Vec<PushCommit> {
    raw.into_iter()
        .map(|c| PushCommit {
            id: c.id,
            message: c.message,
            paths: c
                .added
                .into_iter()
                .chain(c.modified)
                .chain(c.removed)
                .collect(),
        })
        .collect()
}

/// Parses a verified push payload.
pub fn parse_push(forge: Forge, body: &[u8]) -> Result<Push, PushRefusal> {
    let malformed = |e: serde_json::Error| PushRefusal::Malformed(e.to_string());
    Ok(match forge {
        Forge::GitHub => {
            let p: GitHubPush = serde_json::from_slice(body).map_err(malformed)?;
            let truncated = p.commits.len() >= GITHUB_MAX_COMMITS;
            Push {
                repo_urls: [p.repository.clone_url, p.repository.html_url]
                    .into_iter()
                    .flatten()
                    .collect(),
                ref_: p.ref_,
                after: p.after,
                commits: commits(p.commits),
                truncated,
            }
        }
        Forge::GitLab => {
            let p: GitLabPush = serde_json::from_slice(body).map_err(malformed)?;
            let truncated = p
                .total_commits_count
                .is_some_and(|n| n > p.commits.len() as u64);
            Push {
                repo_urls: [p.project.git_http_url, p.project.web_url]
                    .into_iter()
                    .flatten()
                    .collect(),
                ref_: p.ref_,
                after: p.after,
                commits: commits(p.commits),
                truncated,
            }
        }
    })
}

/// `https://Host/org/repo(.git)(/)` → `host/org/repo`, to compare repository URLs.
pub fn normalize_repo_url(url: &str) -> String {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(url)
        .trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    // Drop user info.
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    match rest.split_once('/') {
        Some((host, path)) => format!("{}/{path}", host.to_ascii_lowercase()),
        None => rest.to_ascii_lowercase(),
    }
}

/// What a push means for the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Not the manifests repo, another branch, or a branch deletion.
    Ignored(String),
    /// The Argo CD applications concerned (sorted), and the run it belongs to.
    Applications {
        applications: Vec<String>,
        revision: String,
        /// From the commits' `Mlops-Run-Id:` trailer (the newest one); `None` for a push by a
        /// person (the handler mints a run id).
        run_id: Option<String>,
        /// The pipeline's promotion commits in the push, the newest per model.
        releases: Vec<ReleaseRef>,
    },
}

/// Maps a push of the manifests repo to the applications it concerns.
pub fn applications(pipeline: &PipelineConfig, push: &Push) -> PushOutcome {
    let Some(git) = &pipeline.git else {
        return PushOutcome::Ignored("no git.manifests_repo configured".into());
    };
    let ours = normalize_repo_url(&git.manifests_repo);
    if !push.repo_urls.iter().any(|u| normalize_repo_url(u) == ours) {
        return PushOutcome::Ignored(format!(
            "a push to {:?}, not the manifests repo",
            push.repo_urls.first().map(String::as_str).unwrap_or("?")
        ));
    }
    if push.ref_ != format!("refs/heads/{}", git.branch) {
        return PushOutcome::Ignored(format!("a push to {}, not {}", push.ref_, git.branch));
    }
    if push.deleted() {
        return PushOutcome::Ignored(format!("{} was deleted", push.ref_));
    }
    let apps: Vec<(&str, &str)> = pipeline
        .models
        .values()
        .filter_map(|m| m.serving.as_ref())
        .map(|s| {
            (
                s.manifests_path.trim_end_matches('/'),
                s.argocd_app.as_str(),
            )
        })
        .collect();
    let mut concerned = BTreeSet::new();
    let everything = push.truncated || push.commits.is_empty();
    for path in push.commits.iter().flat_map(|c| &c.paths) {
        if SHARED_PREFIXES.iter().any(|p| path.starts_with(p)) {
            concerned.extend(apps.iter().map(|(_, a)| *a));
        }
        for (dir, app) in &apps {
            if path
                .strip_prefix(dir)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            {
                concerned.insert(*app);
            }
        }
    }
    if everything {
        concerned.extend(apps.iter().map(|(_, a)| *a));
    }
    if concerned.is_empty() {
        return PushOutcome::Ignored("the push touches no application's manifests".into());
    }
    let mut releases = BTreeMap::new();
    for c in &push.commits {
        let (Some(model), Some(version)) = (
            trailer(&c.message, "Mlops-Model"),
            trailer(&c.message, "Mlops-Model-Version"),
        ) else {
            continue;
        };
        let Some(serving) = pipeline.models.get(&model).and_then(|m| m.serving.as_ref()) else {
            continue;
        };
        let release = ReleaseRef {
            application: serving.argocd_app.clone(),
            model: model.clone(),
            version,
            commit: c.id.clone(),
        };
        releases.insert(model, release);
    }
    PushOutcome::Applications {
        applications: concerned.into_iter().map(str::to_owned).collect(),
        revision: push.after.clone(),
        run_id: push
            .commits
            .iter()
            .rev()
            .find_map(|c| trailer(&c.message, "Mlops-Run-Id")),
        releases: releases.into_values().collect(),
    }
}

/// A model whose trainer code a push changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChange {
    pub model: String,
    /// The push's paths under the model's build context (empty when the forge left the list
    /// out: the push is then taken as a change).
    pub changed: Vec<String>,
}

/// What a push to a repository means for the code-push path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeOutcome {
    /// The repository is no model's source.
    NotASource,
    /// A source repository, but nothing to build (another branch, a deletion, no path under
    /// any build context, the pipeline's own commit).
    Ignored(String),
    /// The models to rebuild at `commit`, the pushed tip.
    Changes {
        commit: String,
        changes: Vec<CodeChange>,
    },
}

/// The models whose source repository, branch and build context a push changed.
pub fn code_changes(pipeline: &PipelineConfig, push: &Push) -> CodeOutcome {
    let urls: Vec<String> = push
        .repo_urls
        .iter()
        .map(|u| normalize_repo_url(u))
        .collect();
    let sources: Vec<(&String, &crate::config::SourceConfig)> = pipeline
        .models
        .iter()
        .filter_map(|(n, m)| m.source.as_ref().map(|s| (n, s)))
        .filter(|(_, s)| urls.contains(&normalize_repo_url(&s.repo)))
        .collect();
    if sources.is_empty() {
        return CodeOutcome::NotASource;
    }
    if push.deleted() {
        return CodeOutcome::Ignored(format!("{} was deleted", push.ref_));
    }
    if !push.commits.is_empty()
        && push
            .commits
            .iter()
            .all(|c| trailer(&c.message, "Mlops-Run-Id").is_some())
    {
        return CodeOutcome::Ignored("the push holds only the pipeline's own commits".into());
    }
    let everything = push.truncated || push.commits.is_empty();
    let mut changes = Vec::new();
    let mut branches = BTreeSet::new();
    for (model, src) in sources {
        if push.ref_ != format!("refs/heads/{}", src.branch) {
            branches.insert(src.branch.as_str());
            continue;
        }
        let changed: BTreeSet<&String> = push
            .commits
            .iter()
            .flat_map(|c| &c.paths)
            .filter(|p| src.concerns(p))
            .collect();
        if everything || !changed.is_empty() {
            changes.push(CodeChange {
                model: model.clone(),
                changed: changed.into_iter().cloned().collect(),
            });
        }
    }
    if changes.is_empty() {
        return CodeOutcome::Ignored(if branches.is_empty() {
            "the push changes no model's build context or Dockerfile".into()
        } else {
            format!(
                "a push to {}, not a source branch ({})",
                push.ref_,
                branches.into_iter().collect::<Vec<_>>().join(", ")
            )
        });
    }
    CodeOutcome::Changes {
        commit: push.after.clone(),
        changes,
    }
}

/// The value of a `Key: value` trailer in the last paragraph of a commit message.
pub fn trailer(message: &str, key: &str) -> Option<String> {
    let last = message.trim_end().rsplit("\n\n").next()?;
    last.lines().rev().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim().eq_ignore_ascii_case(key) && !v.trim().is_empty()).then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = r#"
datasets: {}
git: {manifests_repo: "https://github.com/example/ml-manifests.git"}
models:
  fraud-detection:
    training: {image: x}
    source: {repo: "https://github.com/example/fraud-trainer.git", image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-trainer"}
  churn:
    training: {image: x}
    source: {repo: "https://github.com/example/models.git", branch: release, context: churn/trainer, dockerfile: docker/Dockerfile, image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn"}
  ranker:
    training: {image: x}
    source: {repo: "https://github.com/example/models.git", branch: release, context: ranker, image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/ranker"}
"#;

    fn push(url: &str, ref_: &str, paths: &[&[&str]]) -> Push {
        Push {
            repo_urls: vec![url.into()],
            ref_: ref_.into(),
            after: "a".repeat(40),
            commits: paths
                .iter()
                .enumerate()
                .map(|(i, p)| PushCommit {
                    id: format!("{i}"),
                    message: "change".into(),
                    paths: p.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
            truncated: false,
        }
    }

    #[test]
    fn a_push_is_a_code_change_only_under_a_models_context_on_its_branch() {
        let p = PipelineConfig::from_yaml(SOURCES, "t").expect("config");
        let trainer = "https://github.com/example/fraud-trainer.git";
        let monorepo = "https://GitHub.com/example/models";
        let changed = |o: CodeOutcome| match o {
            CodeOutcome::Changes { changes, commit } => {
                assert_eq!(commit, "a".repeat(40));
                changes
                    .into_iter()
                    .map(|c| (c.model, c.changed))
                    .collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        // A context of `.`: any path.
        assert_eq!(
            changed(code_changes(
                &p,
                &push(trainer, "refs/heads/main", &[&["train.py"]])
            )),
            [("fraud-detection".to_owned(), vec!["train.py".to_owned()])]
        );
        // A monorepo: each model its own context and Dockerfile, over several commits.
        assert_eq!(
            changed(code_changes(
                &p,
                &push(
                    monorepo,
                    "refs/heads/release",
                    &[
                        &["churn/trainer/fit.py", "README.md"],
                        &["churn/trainer/docker/Dockerfile", "ranker/model.py"]
                    ]
                )
            )),
            [
                (
                    "churn".to_owned(),
                    vec![
                        "churn/trainer/docker/Dockerfile".to_owned(),
                        "churn/trainer/fit.py".to_owned()
                    ]
                ),
                ("ranker".to_owned(), vec!["ranker/model.py".to_owned()])
            ]
        );
        // A sibling directory whose name starts like the context is not the context.
        assert!(matches!(
            code_changes(
                &p,
                &push(
                    monorepo,
                    "refs/heads/release",
                    &[&["churn/trainer-old/x.py", "rankers/y"]]
                )
            ),
            CodeOutcome::Ignored(_)
        ));
        // Another branch, a deletion, the pipeline's own commits: ignored, with why.
        let CodeOutcome::Ignored(why) =
            code_changes(&p, &push(trainer, "refs/heads/dev", &[&["train.py"]]))
        else {
            panic!()
        };
        assert!(why.contains("refs/heads/dev"), "{why}");
        let mut deleted = push(trainer, "refs/heads/main", &[]);
        deleted.after = "0".repeat(40);
        assert!(matches!(
            code_changes(&p, &deleted),
            CodeOutcome::Ignored(_)
        ));
        let mut ours = push(trainer, "refs/heads/main", &[&["train.py"]]);
        ours.commits[0].message = "Bump\n\nMlops-Run-Id: run-1\n".into();
        assert!(matches!(code_changes(&p, &ours), CodeOutcome::Ignored(_)));
        // A forge that left the commit list out: every model of the repo is rebuilt.
        let mut truncated = push(monorepo, "refs/heads/release", &[]);
        truncated.truncated = true;
        assert_eq!(changed(code_changes(&p, &truncated)).len(), 2);
        // Not a source repo at all: the manifests path decides.
        assert_eq!(
            code_changes(
                &p,
                &push(
                    "https://github.com/example/ml-manifests.git",
                    "refs/heads/main",
                    &[&["a"]]
                )
            ),
            CodeOutcome::NotASource
        );
    }

    #[test]
    fn githubs_published_test_vector_verifies() {
        // docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = PushHeaders {
            content_type: Some("application/json"),
            github_event: Some("push"),
            github_delivery: Some("d-1"),
            hub_signature_256: Some(sig),
            ..Default::default()
        };
        let v = verify(&h, b"Hello, World!", &[b"It's a Secret to Everybody"]).expect("valid");
        assert_eq!(v.forge, Forge::GitHub);
        assert_eq!(v.delivery, "d-1");
        // Tampered body, wrong secret, a rotated-out secret still listed as previous.
        assert_eq!(
            verify(&h, b"Hello, World?", &[b"It's a Secret to Everybody"]),
            Err(PushRefusal::BadSignature)
        );
        assert_eq!(
            verify(&h, b"Hello, World!", &[b"another secret"]),
            Err(PushRefusal::BadSignature)
        );
        assert!(
            verify(
                &h,
                b"Hello, World!",
                &[b"new", b"It's a Secret to Everybody"]
            )
            .is_ok()
        );
        // Form-encoded: refused after the signature check.
        let form = PushHeaders {
            content_type: Some("application/x-www-form-urlencoded"),
            ..h
        };
        assert_eq!(
            verify(&form, b"Hello, World!", &[b"It's a Secret to Everybody"])
                .map_err(|e| e.status()),
            Err(415)
        );
        for bad in ["757107ea", "sha256=zz", "sha1=757107ea"] {
            let h = PushHeaders {
                hub_signature_256: Some(bad),
                ..h
            };
            assert_eq!(
                verify(&h, b"Hello, World!", &[b"It's a Secret to Everybody"])
                    .map_err(|e| e.status()),
                Err(401),
                "{bad}"
            );
        }
        let unsigned = PushHeaders {
            hub_signature_256: None,
            ..h
        };
        assert_eq!(verify(&unsigned, b"x", &[b"s"]), Err(PushRefusal::Unsigned));
    }

    #[test]
    fn gitlab_tokens_compare_whole() {
        let h = PushHeaders {
            content_type: Some("application/json"),
            gitlab_event: Some("Push Hook"),
            gitlab_token: Some("tok-123"),
            gitlab_event_uuid: Some("u-1"),
            ..Default::default()
        };
        assert_eq!(
            verify(&h, b"{}", &[b"tok-123"]).expect("ok").forge,
            Forge::GitLab
        );
        for wrong in ["tok-12", "tok-1234", "", "TOK-123"] {
            let h = PushHeaders {
                gitlab_token: Some(wrong),
                ..h
            };
            assert_eq!(
                verify(&h, b"{}", &[b"tok-123"]),
                Err(PushRefusal::BadSignature)
            );
        }
    }

    #[test]
    fn trailers_come_from_the_last_paragraph() {
        let m = "Promote fraud v3\n\nBody mentions Mlops-Run-Id: nope\n\nMlops-Run-Id: run-1\nMlops-Model-Version: 3\n";
        assert_eq!(trailer(m, "Mlops-Run-Id").as_deref(), Some("run-1"));
        assert_eq!(trailer(m, "mlops-model-version").as_deref(), Some("3"));
        assert_eq!(trailer("Fix a typo", "Mlops-Run-Id"), None);
        assert_eq!(trailer("", "Mlops-Run-Id"), None);
    }

    #[test]
    fn repo_urls_compare_across_spellings() {
        let a = normalize_repo_url("https://GitHub.com/example/ml-manifests.git");
        for b in [
            "https://github.com/example/ml-manifests",
            "http://github.com/example/ml-manifests/",
            "https://x-access-token:t@github.com/example/ml-manifests.git",
        ] {
            assert_eq!(normalize_repo_url(b), a, "{b}");
        }
        assert_ne!(
            normalize_repo_url("https://github.com/example/ml-manifests-2"),
            a
        );
    }

    const CONFIG: &str = r#"
datasets: {}
git: {manifests_repo: "https://github.com/example/ml-manifests.git", branch: main}
models:
  fraud-detection:
    serving: {engine: mlflow, manifests_path: deployments/mlflow/fraud-detection, argocd_app: fraud-detection}
  mistral-7b-support:
    serving: {engine: vllm, manifests_path: deployments/vllm/mistral-7b-support/, argocd_app: vllm-mistral-7b-support}
"#;

    fn github(reference: &str, repo: &str, commits: serde_json::Value) -> Push {
        let body = serde_json::json!({
            "ref": reference,
            "before": "1111111111111111111111111111111111111111",
            "after": "2222222222222222222222222222222222222222",
            "commits": commits,
            "repository": {"clone_url": repo, "html_url": repo.trim_end_matches(".git")},
        });
        parse_push(Forge::GitHub, body.to_string().as_bytes()).expect("push")
    }

    fn commit(message: &str, modified: &[&str]) -> serde_json::Value {
        serde_json::json!({"id": "c", "message": message, "added": [], "removed": [], "modified": modified})
    }

    #[test]
    fn pushes_map_to_the_applications_whose_manifests_they_touch() {
        let p = PipelineConfig::from_yaml(CONFIG, "test").expect("config");
        let repo = "https://github.com/example/ml-manifests.git";
        let release = "deployments/mlflow/fraud-detection/release.yaml";
        let ours = commit(
            "Promote fraud-detection v3\n\nMlops-Run-Id: run-7\nMlops-Model: fraud-detection\nMlops-Model-Version: 3\n",
            &[release],
        );
        assert_eq!(
            applications(
                &p,
                &github("refs/heads/main", repo, serde_json::json!([ours]))
            ),
            PushOutcome::Applications {
                applications: vec!["fraud-detection".into()],
                revision: "2222222222222222222222222222222222222222".into(),
                run_id: Some("run-7".into()),
                releases: vec![ReleaseRef {
                    application: "fraud-detection".into(),
                    model: "fraud-detection".into(),
                    version: "3".into(),
                    commit: "c".into(),
                }],
            }
        );
        // A person edits a shared base: every application, and no run id.
        let base = commit("Bump the vLLM image", &["base/vllm/deployment.yaml"]);
        let PushOutcome::Applications {
            applications: a,
            run_id,
            releases,
            ..
        } = applications(
            &p,
            &github("refs/heads/main", repo, serde_json::json!([base])),
        )
        else {
            panic!("not mapped")
        };
        assert_eq!(a, ["fraud-detection", "vllm-mistral-7b-support"]);
        assert_eq!(run_id, None);
        assert!(releases.is_empty(), "a person's push releases nothing");
        // A prefix of a directory name is not that directory.
        let near = commit(
            "x",
            &[
                "deployments/vllm/mistral-7b-support-old/x.yaml",
                "README.md",
            ],
        );
        assert!(matches!(
            applications(
                &p,
                &github("refs/heads/main", repo, serde_json::json!([near]))
            ),
            PushOutcome::Ignored(_)
        ));
        // Another branch, another repository, a deleted branch.
        let c = || serde_json::json!([commit("x", &[release])]);
        assert!(matches!(
            applications(&p, &github("refs/heads/dev", repo, c())),
            PushOutcome::Ignored(_)
        ));
        assert!(matches!(
            applications(
                &p,
                &github(
                    "refs/heads/main",
                    "https://github.com/example/other.git",
                    c()
                )
            ),
            PushOutcome::Ignored(_)
        ));
        let mut deleted = github("refs/heads/main", repo, c());
        deleted.after = "0".repeat(40);
        assert!(matches!(
            applications(&p, &deleted),
            PushOutcome::Ignored(_)
        ));
        // A truncated list concerns every application.
        let mut truncated = github(
            "refs/heads/main",
            repo,
            serde_json::json!([commit("x", &["README.md"])]),
        );
        truncated.truncated = true;
        assert!(matches!(
            applications(&p, &truncated),
            PushOutcome::Applications { ref applications, .. } if applications.len() == 2
        ));
    }

    #[test]
    fn gitlab_pushes_parse_and_report_truncation() {
        let body = serde_json::json!({
            "object_kind": "push",
            "ref": "refs/heads/main",
            "before": "1111111111111111111111111111111111111111",
            "after": "3333333333333333333333333333333333333333",
            "total_commits_count": 25,
            "commits": [commit("x", &["deployments/vllm/mistral-7b-support/release.yaml"])],
            "project": {"git_http_url": "https://gitlab.com/example/ml-manifests.git", "web_url": "https://gitlab.com/example/ml-manifests"},
        });
        let push = parse_push(Forge::GitLab, body.to_string().as_bytes()).expect("push");
        assert!(push.truncated);
        assert_eq!(push.commits[0].paths.len(), 1);
        assert!(parse_push(Forge::GitLab, b"payload=%7B%7D").is_err());
        assert!(parse_push(Forge::GitHub, b"{\"ref\": 1}").is_err());
    }
}
