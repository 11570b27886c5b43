//! The dev stack's stand-in for EKS (like Kubeflow's local runner): applying a workload runs the
//! trainer's command as a local process with the same environment contract, and its exit status
//! becomes the workload's terminal condition (`Complete` or `Failed`), so `training-watch` reads
//! it exactly as it reads a Job.
//!
//! An image build is a checkout: the commit of the build's Git context is cloned into a work
//! directory with the token of the build's Secret, its "digest" is a hash of the commit's tree,
//! and a training workload whose image is that digest runs the container's command from the
//! checkout, so the code that trains is the code that was pushed. No image is built or claimed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use chrono::Utc;
use tokio::process::{Child, Command};

use crate::config::{PipelineConfig, WorkloadKind};
use crate::port::workload::{
    ANN_GIT_COMMIT, ANN_GIT_REPO, ANN_IMAGE, ANN_MODEL, Purpose, Workload,
};
use crate::port::{
    Cluster, ClusterError, Condition, PendingPod, PodReport, SecretSpec, WorkloadState,
};

struct LocalJob {
    state: WorkloadState,
    child: Option<Child>,
    log: PathBuf,
    /// For an image build: the checkout it makes.
    checkout: Option<PathBuf>,
    report: Option<PodReport>,
}

pub struct LocalCluster {
    /// Working directory of the trainer processes (the repository root).
    pub root: PathBuf,
    /// What `python` in a command means (the project's virtualenv).
    pub python: PathBuf,
    /// Extra environment, e.g. `AWS_ENDPOINT_URL` and credentials for the local S3.
    pub env: Vec<(String, String)>,
    pub log_dir: PathBuf,
    /// Per model: `local.command`, run from the repository root for a data run.
    commands: HashMap<String, Vec<String>>,
    /// Per model: the container's `training.command`, run from a build's checkout for a code
    /// run, as the image built from it would run it.
    image_commands: HashMap<String, Vec<String>>,
    jobs: Mutex<BTreeMap<String, LocalJob>>,
    secrets: Mutex<BTreeMap<String, SecretSpec>>,
    /// What local "builds" produced: digest → the checkout the trainer runs from.
    built: Mutex<BTreeMap<String, PathBuf>>,
    version: Mutex<u64>,
}

impl LocalCluster {
    /// Commands per model: the training config's `local.command`, else the container's.
    pub fn new(
        pipeline: &PipelineConfig,
        root: PathBuf,
        python: PathBuf,
        env: Vec<(String, String)>,
        log_dir: PathBuf,
    ) -> Self {
        let trained = || {
            pipeline
                .models
                .iter()
                .filter_map(|(m, c)| c.training.as_ref().map(|t| (m.clone(), t)))
        };
        let commands = trained()
            .map(|(m, t)| {
                (
                    m,
                    t.local
                        .as_ref()
                        .map(|l| l.command.clone())
                        .unwrap_or_else(|| t.command.clone()),
                )
            })
            .collect();
        let image_commands = trained().map(|(m, t)| (m, t.command.clone())).collect();
        LocalCluster {
            root,
            python,
            env,
            log_dir,
            commands,
            image_commands,
            jobs: Mutex::new(BTreeMap::new()),
            secrets: Mutex::new(BTreeMap::new()),
            built: Mutex::new(BTreeMap::new()),
            version: Mutex::new(0),
        }
    }

    fn next_version(&self) -> String {
        let mut v = self.version.lock().unwrap_or_else(|p| p.into_inner());
        *v += 1;
        v.to_string()
    }

    fn key(namespace: &str, name: &str) -> String {
        format!("{namespace}/{name}")
    }

    /// The checkout a local build made for `digest`, if any.
    pub fn checkout_of(&self, digest: &str) -> Option<PathBuf> {
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    /// Reaps finished processes into terminal conditions.
    fn refresh(&self, job: &mut LocalJob) {
        let Some(child) = job.child.as_mut() else {
            return;
        };
        let Ok(Some(status)) = child.try_wait() else {
            return;
        };
        job.child = None;
        let tail = log_tail(&job.log);
        let mut ok = status.success();
        let mut message = None;
        if let (true, Some(dir)) = (ok, job.checkout.as_ref()) {
            // The "image" of a local build is its checkout; its digest is a content hash of the
            // commit's tree, so the same tree always "builds" the same digest.
            match tree_digest(dir) {
                Ok(digest) => {
                    self.built
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(digest.clone(), dir.clone());
                    message = Some(
                        serde_json::json!({
                            "containerimage.digest": digest,
                            "mlops.local.checkout": dir.display().to_string(),
                        })
                        .to_string(),
                    );
                }
                Err(e) => {
                    ok = false;
                    message = Some(format!("reading the checkout's tree: {e}"));
                }
            }
        }
        let what = if job.checkout.is_some() {
            "the build"
        } else {
            "the trainer"
        };
        let (type_, reason, condition_message) = if ok {
            (
                "Complete",
                "CompletionsReached",
                format!("{what} exited with status 0"),
            )
        } else {
            (
                "Failed",
                "BackoffLimitExceeded",
                format!("{what} exited with {status}; log: {}", job.log.display()),
            )
        };
        job.state.conditions.push(Condition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(condition_message),
        });
        job.state.finished = Some(Utc::now());
        job.report = Some(PodReport {
            pod: format!("{}-local", job.state.name),
            // FallbackToLogsOnError: a failure without a message reports the end of the log.
            termination_message: message.or_else(|| (!ok).then(|| tail.join("\n"))),
            exit_code: status.code(),
            reason: Some(if ok { "Completed" } else { "Error" }.into()),
            log_tail: tail,
        });
    }

    fn io(e: std::io::Error) -> ClusterError {
        ClusterError::Connect {
            cluster: "local".into(),
            source: Box::new(e),
        }
    }

    /// A build: clones the repository and checks out the commit into a work directory, with
    /// the Git token from the build's Secret sent as BuildKit sends it (Basic
    /// `x-access-token:<token>`, CONTRACTS §14.2). No image is built.
    fn build_command(&self, w: &Workload) -> Result<(Command, PathBuf), ClusterError> {
        let ann = |k: &str| {
            w.object["metadata"]["annotations"][k]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let (repo, commit) = (ann(ANN_GIT_REPO), ann(ANN_GIT_COMMIT));
        let container = &w.object["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        // The context's sub-directory, from BuildKit's `context=<url>#<ref>[:<subdir>]`.
        let subdir = args
            .iter()
            .find_map(|a| a.strip_prefix("context="))
            .and_then(|c| c.rsplit_once('#'))
            .and_then(|(_, r)| r.split_once(':'))
            .map(|(_, d)| d.to_owned());
        let secret = container["env"]
            .as_array()
            .and_then(|env| {
                env.iter().find_map(|e| {
                    let r = &e["valueFrom"]["secretKeyRef"];
                    Some((
                        r["name"].as_str()?.to_owned(),
                        r["key"].as_str()?.to_owned(),
                    ))
                })
            })
            .ok_or_else(|| ClusterError::Rejected {
                status: 422,
                reason: "Invalid".into(),
                message: "the build reads no Git token from a Secret".into(),
            })?;
        let token = self
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Self::key(&w.namespace, &secret.0))
            .and_then(|s| s.data.get(&secret.1).map(|v| v.0.clone()))
            .ok_or_else(|| ClusterError::Rejected {
                status: 422,
                reason: "CreateContainerConfigError".into(),
                message: format!(
                    "secret {}/{} has no key {}",
                    w.namespace, secret.0, secret.1
                ),
            })?;
        let dir = self.log_dir.join("builds").join(&w.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.parent().unwrap_or(&self.log_dir)).map_err(Self::io)?;
        use base64::Engine;
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(
                r#"set -e
git -c "http.extraHeader=Authorization: Basic $MLOPS_GIT_AUTH" clone --quiet --no-checkout "$MLOPS_GIT_REPO" "$MLOPS_CHECKOUT"
git -C "$MLOPS_CHECKOUT" -c advice.detachedHead=false checkout --quiet "$MLOPS_GIT_COMMIT"
echo "checked out $MLOPS_GIT_COMMIT of $MLOPS_GIT_REPO into $MLOPS_CHECKOUT (no image is built locally)""#,
            )
            .env("MLOPS_GIT_AUTH", auth)
            .env("MLOPS_GIT_REPO", &repo)
            .env("MLOPS_GIT_COMMIT", &commit)
            .env("MLOPS_CHECKOUT", &dir)
            .env("GIT_TERMINAL_PROMPT", "0");
        let checkout = match subdir {
            Some(d) if d != "." => dir.join(d),
            _ => dir,
        };
        Ok((cmd, checkout))
    }

    /// A training workload: `local.command` from the repository root, or, when its image is a
    /// local build's, the container's command from that checkout.
    fn training_command(&self, w: &Workload) -> Result<Command, ClusterError> {
        let meta = &w.object["metadata"]["annotations"];
        let model = meta[ANN_MODEL].as_str().unwrap_or_default();
        let checkout = meta[ANN_IMAGE]
            .as_str()
            .and_then(|i| i.rsplit_once('@'))
            .map(|(_, digest)| {
                self.checkout_of(digest)
                    .ok_or_else(|| ClusterError::Rejected {
                        status: 422,
                        reason: "ErrImagePull".into(),
                        message: format!("no local build produced {digest}"),
                    })
            })
            .transpose()?;
        let (commands, cwd) = match &checkout {
            Some(dir) => (&self.image_commands, dir.clone()),
            None => (&self.commands, self.root.clone()),
        };
        let Some(cmd) = commands.get(model).filter(|c| !c.is_empty()) else {
            return Err(ClusterError::Rejected {
                status: 422,
                reason: "Invalid".into(),
                message: format!("model {model} has no command to run locally"),
            });
        };
        let program = if cmd[0] == "python" {
            self.python.clone()
        } else {
            PathBuf::from(&cmd[0])
        };
        let mut c = Command::new(&program);
        c.args(&cmd[1..])
            .current_dir(cwd)
            .envs(w.env.iter().cloned());
        Ok(c)
    }
}

/// The last lines of a log file.
fn log_tail(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines
        .len()
        .saturating_sub(crate::adapter::kubernetes::LOG_TAIL_LINES as usize);
    lines[from..].iter().map(|l| (*l).to_owned()).collect()
}

/// `sha256:` of the checked-out commit's tree id.
fn tree_digest(dir: &std::path::Path) -> std::io::Result<String> {
    // A context sub-directory lives inside the clone: ask Git from there.
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD^{tree}"])
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    use sha2::Digest;
    Ok(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(out.stdout.trim_ascii()))
    ))
}

impl Cluster for LocalCluster {
    async fn apply(&self, w: &Workload) -> Result<(), ClusterError> {
        let key = Self::key(&w.namespace, &w.name);
        if self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
        {
            return Ok(());
        }
        let (mut command, checkout) = match w.purpose {
            Purpose::ImageBuild => {
                let (c, dir) = self.build_command(w)?;
                (c, Some(dir))
            }
            Purpose::Training => (self.training_command(w)?, None),
        };
        std::fs::create_dir_all(&self.log_dir).map_err(Self::io)?;
        let log = self.log_dir.join(format!("{}.log", w.name));
        let out = std::fs::File::create(&log).map_err(Self::io)?;
        let err = out.try_clone().map_err(Self::io)?;
        let child = command
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ClusterError::Rejected {
                status: 422,
                reason: "Invalid".into(),
                message: format!("cannot start {}: {e}", w.name),
            })?;
        let meta = &w.object["metadata"];
        let map = |v: &serde_json::Value| -> BTreeMap<String, String> {
            serde_json::from_value(v.clone()).unwrap_or_default()
        };
        let state = WorkloadState {
            kind: w.kind,
            cluster: w.cluster.clone(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            resource_version: self.next_version(),
            labels: map(&meta["labels"]),
            annotations: map(&meta["annotations"]),
            conditions: Vec::new(),
            created: Some(Utc::now()),
            finished: None,
        };
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key,
            LocalJob {
                state,
                child: Some(child),
                log,
                checkout,
                report: None,
            },
        );
        Ok(())
    }

    async fn get(
        &self,
        _kind: WorkloadKind,
        _cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkloadState>, ClusterError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(jobs.get_mut(&Self::key(namespace, name)).map(|j| {
            self.refresh(j);
            j.state.clone()
        }))
    }

    async fn list(
        &self,
        kind: WorkloadKind,
        _cluster: &str,
        namespace: &str,
    ) -> Result<Vec<WorkloadState>, ClusterError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(jobs
            .values_mut()
            .filter(|j| j.state.kind == kind && j.state.namespace == namespace)
            .map(|j| {
                self.refresh(j);
                j.state.clone()
            })
            .collect())
    }

    async fn annotate(
        &self,
        w: &WorkloadState,
        key: &str,
        value: &str,
    ) -> Result<bool, ClusterError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(j) = jobs.get_mut(&Self::key(&w.namespace, &w.name)) else {
            return Err(ClusterError::Rejected {
                status: 404,
                reason: "NotFound".into(),
                message: format!("{} not found", w.name),
            });
        };
        if !w.resource_version.is_empty() && w.resource_version != j.state.resource_version {
            return Ok(false);
        }
        j.state.annotations.insert(key.to_owned(), value.to_owned());
        j.state.resource_version = self.next_version();
        Ok(true)
    }

    async fn pending_pods(&self, _w: &WorkloadState) -> Result<Vec<PendingPod>, ClusterError> {
        // A local process starts at once.
        Ok(Vec::new())
    }

    async fn apply_secret(&self, s: &SecretSpec) -> Result<(), ClusterError> {
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Self::key(&s.namespace, &s.name), s.clone());
        Ok(())
    }

    async fn pod_report(&self, w: &WorkloadState) -> Result<Option<PodReport>, ClusterError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(jobs
            .get_mut(&Self::key(&w.namespace, &w.name))
            .and_then(|j| {
                self.refresh(j);
                j.report.clone()
            }))
    }
}
