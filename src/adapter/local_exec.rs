//! The dev stack's stand-in for EKS (like Kubeflow's local runner): applying a workload runs the
//! trainer's command as a local process with the same environment contract, and its exit status
//! becomes the workload's terminal condition (`Complete` or `Failed`), so `training-watch` reads
//! it exactly as it reads a Job.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use chrono::Utc;
use tokio::process::{Child, Command};

use crate::config::{PipelineConfig, WorkloadKind};
use crate::port::{Cluster, ClusterError, Condition, PendingPod, WorkloadState};
use crate::stage::training::Workload;
use crate::stage::training::workload::ANN_MODEL;

struct LocalJob {
    state: WorkloadState,
    child: Option<Child>,
    log: PathBuf,
}

pub struct LocalCluster {
    /// Working directory of the trainer processes (the repository root).
    pub root: PathBuf,
    /// What `python` in a command means (the project's virtualenv).
    pub python: PathBuf,
    /// Extra environment, e.g. `AWS_ENDPOINT_URL` and credentials for the local S3.
    pub env: Vec<(String, String)>,
    pub log_dir: PathBuf,
    commands: HashMap<String, Vec<String>>,
    jobs: Mutex<BTreeMap<String, LocalJob>>,
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
        let commands = pipeline
            .models
            .iter()
            .filter_map(|(m, c)| {
                c.training.as_ref().map(|t| {
                    (
                        m.clone(),
                        t.local
                            .as_ref()
                            .map(|l| l.command.clone())
                            .unwrap_or_else(|| t.command.clone()),
                    )
                })
            })
            .collect();
        LocalCluster {
            root,
            python,
            env,
            log_dir,
            commands,
            jobs: Mutex::new(BTreeMap::new()),
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

    /// Reaps finished processes into terminal conditions.
    fn refresh(job: &mut LocalJob) {
        let Some(child) = job.child.as_mut() else {
            return;
        };
        let Ok(Some(status)) = child.try_wait() else {
            return;
        };
        job.child = None;
        let (type_, reason, message) = if status.success() {
            (
                "Complete",
                "CompletionsReached",
                "the trainer exited with status 0".to_owned(),
            )
        } else {
            (
                "Failed",
                "BackoffLimitExceeded",
                format!(
                    "the trainer exited with {status}; log: {}",
                    job.log.display()
                ),
            )
        };
        job.state.conditions.push(Condition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message),
        });
        job.state.finished = Some(Utc::now());
    }
}

impl Cluster for LocalCluster {
    async fn apply(&self, w: &Workload) -> Result<(), ClusterError> {
        let key = Self::key(&w.namespace, &w.name);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.contains_key(&key) {
            return Ok(());
        }
        let model = w.object["metadata"]["annotations"][ANN_MODEL]
            .as_str()
            .unwrap_or_default();
        let Some(cmd) = self.commands.get(model).filter(|c| !c.is_empty()) else {
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
        std::fs::create_dir_all(&self.log_dir).map_err(|e| ClusterError::Connect {
            cluster: "local".into(),
            source: Box::new(e),
        })?;
        let log = self.log_dir.join(format!("{}.log", w.name));
        let out = std::fs::File::create(&log).map_err(|e| ClusterError::Connect {
            cluster: "local".into(),
            source: Box::new(e),
        })?;
        let err = out.try_clone().map_err(|e| ClusterError::Connect {
            cluster: "local".into(),
            source: Box::new(e),
        })?;
        let child = Command::new(&program)
            .args(&cmd[1..])
            .current_dir(&self.root)
            .envs(w.env.iter().cloned())
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ClusterError::Rejected {
                status: 422,
                reason: "Invalid".into(),
                message: format!("cannot run {}: {e}", program.display()),
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
        jobs.insert(
            key,
            LocalJob {
                state,
                child: Some(child),
                log,
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
            Self::refresh(j);
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
                Self::refresh(j);
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
}
