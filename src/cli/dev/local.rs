//! The local stack shared by `mlops dev demo` and `mlops dev up`: moto provisioned from
//! `events/routes.json`, a real MLflow server with a webhook registered on it (a generated
//! secret, delivered to the same receiver the `mlflow-webhook` Lambda runs, served on a loopback
//! port), and every function run in-process against its queue.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;

use super::git_http::{
    GitHttp, GitHttpConfig, github_push_payload, install_push_spool, seed_bare_repo,
};
use super::mlflow::{Mlflow, find_mlflow};
use super::moto::{Moto, find_moto};
use super::stack::{Routes, Stack, StackSpec, provision};
use super::webhook::{StaticSecret, serve};
use super::worker::poll_once;
use crate::adapter::argocd::ArgoCdClient;
use crate::adapter::ecr::EcrRegistry;
use crate::adapter::git::Git2Remote;
use crate::adapter::local_exec::LocalCluster;
use crate::adapter::mlflow::MlflowRegistry;
use crate::adapter::sqs::SqsDelayQueue;
use crate::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use crate::cli::{ROUTES_JSON, timeline};
use crate::config::GitConfig;
use crate::config::{
    LedgerSettings, PipelineConfig, PollSettings, TrainingSettings, ValidateSettings,
};
use crate::lambda::build_image::BuildImageFn;
use crate::lambda::deploy_sync::DeploySyncFn;
use crate::lambda::sqs::EventHandler;
use crate::lambda::{
    data_arrival::DataArrivalFn, launch_training::LaunchTrainingFn, ledger::LedgerFn,
    promote_model::PromoteModelFn, registry_poller::RegistryPollerFn,
    training_watch::TrainingWatchFn, validate_model::ValidateModelFn,
};
use crate::port::GitAuthor;
use crate::stage::data_arrival::Settings;
use crate::stage::deploy::promote::PromoteSettings;
use crate::stage::deploy::push::PushHeaders;
use crate::stage::deploy::receive::{PushReceiver, PushReceiverSettings};
use crate::stage::deploy::sync::DeploySettings;
use crate::stage::registry::receive::{ReceiverSettings, WebhookReceiver};
use crate::stage::registry::webhook::Limits;

/// The pipeline config the local stack runs (the sample's, bundled into the binary).
pub const SAMPLE_PIPELINE: &str = include_str!("../../../samples/pipeline.yaml");

/// The ledger's handler, echoing each recorded event as one line when `on` (for `mlops dev up`).
pub struct Echo<H> {
    pub inner: H,
    pub on: bool,
}

impl<H: EventHandler> EventHandler for Echo<H> {
    type Error = H::Error;
    const NAME: &'static str = H::NAME;

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, H::Error> {
        let summary = self.inner.handle(event).await?;
        if self.on {
            let line = timeline::event_line(
                &event
                    .time
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default(),
                event.detail["run_id"].as_str().unwrap_or("-"),
                &event.source,
                &event.detail_type,
                &event.detail,
            );
            // A closed stdout must not fail the ledger; the record is already written.
            let _ = crate::cli::stdout(&(line + "\n"));
        }
        Ok(summary)
    }
}

/// The functions of the dev stack, wired to one moto.
pub struct DevFunctions {
    pub data_arrival: DataArrivalFn<S3Store, EventBridgeBus>,
    pub ledger: Echo<LedgerFn<S3Store>>,
}

/// Where the dev stack's training functions reach moto, MLflow and the Git server.
pub struct DevEndpoints<'a> {
    pub moto: &'a str,
    pub mlflow: &'a str,
    /// The Git server's token (the build clones the trainer repo with it).
    pub git_token: &'a str,
}

/// The training functions of the dev stack: the local executor stands in for EKS, and a real
/// MLflow server for the tracking server and registry.
pub struct DevTraining {
    /// build-image: the local executor "builds" by checking out the pushed commit; no registry.
    pub build: BuildImageFn<Arc<LocalCluster>, EcrRegistry, EventBridgeBus>,
    pub cluster: Arc<LocalCluster>,
    pub launch: LaunchTrainingFn<Arc<LocalCluster>, EventBridgeBus, S3Store>,
    pub watch: TrainingWatchFn<Arc<LocalCluster>, MlflowRegistry, EventBridgeBus>,
}

impl DevTraining {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        stack: &Stack,
        pipeline: PipelineConfig,
        endpoints: DevEndpoints<'_>,
        root: &Path,
        logs: &Path,
    ) -> anyhow::Result<DevTraining> {
        let DevEndpoints {
            moto,
            mlflow,
            git_token,
        } = endpoints;
        let python = root.join(".venv/bin/python");
        // The trainer reads s3:// URIs from moto with boto3, which honours AWS_ENDPOINT_URL.
        let env = [
            ("AWS_ENDPOINT_URL", moto),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("MLFLOW_DISABLE_TELEMETRY", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let cluster = Arc::new(LocalCluster::new(
            &pipeline,
            root.to_owned(),
            python,
            env,
            logs.to_owned(),
        ));
        let settings = TrainingSettings {
            pipeline_config: "samples/pipeline.yaml".into(),
            event_bus: stack.bus.clone(),
            mlflow_tracking_uri: mlflow.to_owned(),
            cluster_name: "local".into(),
            training_namespace: "training".into(),
            stall_after: Duration::from_secs(1800),
            build_namespace: "builds".into(),
            artifact_bucket: Some(stack.artifact_bucket.clone()),
            state_prefix: "state/".into(),
        };
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), &stack.bus);
        Ok(DevTraining {
            build: BuildImageFn {
                pipeline: pipeline.clone(),
                settings: settings.builds(),
                cluster: cluster.clone(),
                registry: None,
                git_token: secrecy::SecretString::from(git_token.to_owned()),
                bus: bus.clone(),
            },
            cluster: cluster.clone(),
            launch: LaunchTrainingFn {
                pipeline: pipeline.clone(),
                settings: settings.clone(),
                cluster: cluster.clone(),
                bus: bus.clone(),
                store: S3Store::new(aws::s3_client(sdk)),
            },
            watch: TrainingWatchFn {
                pipeline,
                registry: MlflowRegistry::new(mlflow, |_| None)?,
                settings,
                cluster,
                bus,
            },
        })
    }

    /// One round: the build queue, the launch queue, then a watch tick.
    pub async fn pump(&self, sqs: &aws_sdk_sqs::Client, stack: &Stack) -> anyhow::Result<usize> {
        let (b, _) = poll_once(sqs, &stack.queue("build-image")?.url, &self.build, 0).await?;
        let (n, _) = poll_once(sqs, &stack.queue("launch-training")?.url, &self.launch, 0).await?;
        let report = self.watch.tick().await?;
        Ok(b + n + report.emitted.len())
    }
}

/// The registry stage's queue- and schedule-driven functions: the poller and validate-model,
/// against the same MLflow server (the webhook receiver is [`LocalStack::webhook`]).
pub struct DevRegistry {
    pub poller: RegistryPollerFn<MlflowRegistry, EventBridgeBus, S3Store>,
    pub validate: ValidateModelFn<MlflowRegistry, EventBridgeBus, S3Store>,
}

impl DevRegistry {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        stack: &Stack,
        pipeline: PipelineConfig,
        mlflow: &str,
    ) -> anyhow::Result<DevRegistry> {
        let store = S3Store::new(aws::s3_client(sdk));
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), &stack.bus);
        Ok(DevRegistry {
            poller: RegistryPollerFn {
                pipeline: pipeline.clone(),
                settings: PollSettings {
                    pipeline_config: "samples/pipeline.yaml".into(),
                    event_bus: stack.bus.clone(),
                    mlflow_tracking_uri: mlflow.to_owned(),
                    artifact_bucket: stack.artifact_bucket.clone(),
                    state_prefix: "state/".into(),
                    lookback: Duration::from_secs(3600),
                    claim_lease: Duration::from_secs(60),
                },
                registry: MlflowRegistry::new(mlflow, |_| None)?,
                bus: bus.clone(),
                store: store.clone(),
            },
            validate: ValidateModelFn {
                pipeline,
                settings: ValidateSettings {
                    pipeline_config: "samples/pipeline.yaml".into(),
                    event_bus: stack.bus.clone(),
                    mlflow_tracking_uri: mlflow.to_owned(),
                    artifact_bucket: stack.artifact_bucket.clone(),
                    processed_prefix: "processed/".into(),
                    state_prefix: "state/".into(),
                    claim_lease: Duration::from_secs(60),
                },
                registry: MlflowRegistry::new(mlflow, |_| None)?,
                bus,
                store,
            },
        })
    }

    /// One round: a poller tick, then the validate-model queue.
    pub async fn pump(&self, sqs: &aws_sdk_sqs::Client, stack: &Stack) -> anyhow::Result<usize> {
        let report = self.poller.tick().await?;
        let (n, _) = poll_once(sqs, &stack.queue("validate-model")?.url, &self.validate, 0).await?;
        Ok(report.emitted.len() + n)
    }
}

impl DevFunctions {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        stack: &Stack,
        pipeline: PipelineConfig,
        work_dir: &Path,
    ) -> DevFunctions {
        let store = S3Store::new(aws::s3_client(sdk));
        DevFunctions {
            data_arrival: DataArrivalFn {
                pipeline,
                settings: Settings {
                    artifact_bucket: stack.artifact_bucket.clone(),
                    processed_prefix: "processed/".into(),
                    state_prefix: "state/".into(),
                    work_dir: work_dir.to_owned(),
                    claim_lease: Duration::from_secs(60),
                    limits: Default::default(),
                },
                store: store.clone(),
                bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), &stack.bus),
            },
            ledger: Echo {
                inner: LedgerFn {
                    settings: LedgerSettings {
                        artifact_bucket: stack.artifact_bucket.clone(),
                        ledger_prefix: "ledger/".into(),
                    },
                    store,
                },
                on: false,
            },
        }
    }

    /// One round over every function's queue; returns how many messages were handled.
    pub async fn pump(&self, sqs: &aws_sdk_sqs::Client, stack: &Stack) -> anyhow::Result<usize> {
        let (a, _) = poll_once(
            sqs,
            &stack.queue("data-arrival")?.url,
            &self.data_arrival,
            0,
        )
        .await?;
        let (b, _) = poll_once(sqs, &stack.queue("ledger")?.url, &self.ledger, 0).await?;
        Ok(a + b)
    }
}

/// promote-model of the local stack, pushing to the local manifests repo.
pub type DevPromote = PromoteModelFn<MlflowRegistry, Git2Remote, EventBridgeBus, S3Store>;

/// deploy-sync of the local stack: no Argo CD runs here, so it reports every push skipped
/// (tests plug an Argo CD double into `argocd` and `pipeline.argocd`).
pub type DevDeploy =
    DeploySyncFn<ArgoCdClient, Git2Remote, MlflowRegistry, EventBridgeBus, S3Store, SqsDelayQueue>;

/// git-webhook of the local stack.
pub type DevPushReceiver = PushReceiver<StaticSecret, EventBridgeBus, S3Store>;

/// The `mlflow-webhook` receiver of the local stack.
pub type DevWebhook = WebhookReceiver<StaticSecret, MlflowRegistry, EventBridgeBus, S3Store>;

/// Everything `mlops dev demo` and `mlops dev up` run. Dropping it stops the servers.
pub struct LocalStack {
    pub sdk: aws_config::SdkConfig,
    pub stack: Stack,
    pub routes: Routes,
    pub pipeline: PipelineConfig,
    pub functions: DevFunctions,
    pub training: DevTraining,
    pub registry: DevRegistry,
    pub webhook: Arc<DevWebhook>,
    /// Where MLflow delivers its webhooks (`http://127.0.0.1:PORT/mlflow-webhook`).
    pub webhook_url: String,
    pub promote: DevPromote,
    pub deploy: DevDeploy,
    /// The manifests repo (`git http-backend` on loopback, token auth), seeded from
    /// `samples/manifests-repo/`, and its bare repository on disk.
    pub manifests_repo: String,
    pub manifests_bare: PathBuf,
    pub git: GitHttp,
    /// Receives the manifests repo's pushes: its `post-receive` hook records them in
    /// `push_spool`, and [`LocalStack::pump`] delivers each as a signed GitHub push webhook.
    pub push_receiver: DevPushReceiver,
    /// The dev token of the Git server (the demo pushes a code change with it).
    pub git_token: String,
    /// The models' source repositories served by [`LocalStack::git`].
    pub trainer_repos: Vec<TrainerRepo>,
    push_secret: Vec<u8>,
    spools: Vec<PushSpool>,
    pub sqs: aws_sdk_sqs::Client,
    pub logs: PathBuf,
    server: tokio::task::JoinHandle<()>,
    pub mlflow: Mlflow,
    pub moto: Moto,
    // Last: the servers above keep their files here until they stop.
    pub work: tempfile::TempDir,
}

impl LocalStack {
    /// Starts moto and MLflow from the project's `.venv`, provisions the stack under `prefix`,
    /// serves the webhook receiver and registers it on MLflow with a fresh secret.
    pub async fn start(prefix: &str) -> anyhow::Result<LocalStack> {
        let moto_bin = find_moto(None);
        let root = moto_bin
            .ancestors()
            .nth(3)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ".".into());
        let moto = Moto::start(&moto_bin)?;
        let work = tempfile::tempdir()?;
        let mlflow = Mlflow::start(&find_mlflow(&moto_bin), &work.path().join("mlflow")).await?;
        let sdk = aws::local(&moto.endpoint).await;
        let routes = Routes::parse(ROUTES_JSON)?;
        let spec = StackSpec {
            prefix: prefix.into(),
            max_receive_count: 3,
            visibility_timeout_secs: 2,
        };
        let stack = provision(&sdk, &spec, &routes).await?;
        let mut pipeline = PipelineConfig::from_yaml(SAMPLE_PIPELINE, "samples/pipeline.yaml")?;

        // The manifests repo and the trainers' source repos: a real Git server, pushed to and
        // cloned from with a token like a forge.
        let git_root = work.path().join("git");
        let manifests_bare = seed_bare_repo(
            &git_root,
            "ml-manifests",
            "main",
            &root.join("samples/manifests-repo"),
        )?;
        let token = format!("dev-{}", uuid::Uuid::new_v4().simple());
        let git = super::git_http::serve(GitHttpConfig {
            root: git_root.clone(),
            credentials: Some(("x-access-token".into(), token.clone())),
            before_push: None,
        })
        .await?;
        let manifests_repo = format!("{}/ml-manifests.git", git.base);
        let mut spools = vec![PushSpool {
            spool: install_push_spool(&manifests_bare)?,
            bare: manifests_bare.clone(),
            url: manifests_repo.clone(),
            delivered: Default::default(),
        }];
        // Each model's source repo is served locally, seeded from samples/trainer/.
        let mut trainer_repos = Vec::new();
        for (model, m) in pipeline.models.iter_mut() {
            let Some(src) = m.source.as_mut() else {
                continue;
            };
            let name = src
                .repo
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("trainer")
                .trim_end_matches(".git")
                .to_owned();
            let bare =
                seed_bare_repo(&git_root, &name, &src.branch, &root.join("samples/trainer"))?;
            src.repo = format!("{}/{name}.git", git.base);
            spools.push(PushSpool {
                spool: install_push_spool(&bare)?,
                bare: bare.clone(),
                url: src.repo.clone(),
                delivered: Default::default(),
            });
            trainer_repos.push(TrainerRepo {
                model: model.clone(),
                url: src.repo.clone(),
                bare,
                branch: src.branch.clone(),
            });
        }
        let functions = DevFunctions::new(&sdk, &stack, pipeline.clone(), work.path());
        let logs = work.path().join("training-logs");
        let registry = DevRegistry::new(&sdk, &stack, pipeline.clone(), &mlflow.endpoint)?;
        let training = DevTraining::new(
            &sdk,
            &stack,
            pipeline.clone(),
            DevEndpoints {
                moto: &moto.endpoint,
                mlflow: &mlflow.endpoint,
                git_token: &token,
            },
            &root,
            &logs,
        )?;

        // A secret per stack, as an operator would generate for a real server.
        let secret = format!(
            "whsec-{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let webhook = Arc::new(WebhookReceiver::new(
            pipeline.clone(),
            ReceiverSettings {
                artifact_bucket: stack.artifact_bucket.clone(),
                state_prefix: "state/".into(),
                limits: Limits::default(),
                secret_refresh: Duration::from_secs(60),
                claim_lease: Duration::from_secs(60),
            },
            StaticSecret(secret.clone().into_bytes()),
            MlflowRegistry::new(&mlflow.endpoint, |_| None)?,
            EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &stack.bus),
            S3Store::new(aws::s3_client(&sdk)),
        ));
        webhook
            .load_secret()
            .await
            .map_err(|e| anyhow::anyhow!("webhook secret: {e}"))?;
        let (addr, server): (SocketAddr, _) = serve(webhook.clone()).await?;
        let webhook_url = format!("http://{addr}/mlflow-webhook");
        super::mlflow::register_webhook(&mlflow.endpoint, &webhook_url, &secret).await?;

        let mut promote_pipeline = pipeline.clone();
        promote_pipeline.git = Some(GitConfig {
            manifests_repo: manifests_repo.clone(),
            branch: "main".into(),
        });
        let push_secret = format!("whsec-{}", uuid::Uuid::new_v4().simple()).into_bytes();
        let push_receiver = PushReceiver::new(
            promote_pipeline.clone(),
            PushReceiverSettings {
                artifact_bucket: stack.artifact_bucket.clone(),
                state_prefix: "state/".into(),
                max_body: 1 << 20,
                secret_refresh: Duration::from_secs(60),
                claim_lease: Duration::from_secs(60),
            },
            StaticSecret(push_secret.clone()),
            EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &stack.bus),
            S3Store::new(aws::s3_client(&sdk)),
        );
        push_receiver
            .load_secret()
            .await
            .map_err(|e| anyhow::anyhow!("push webhook secret: {e}"))?;
        let author = GitAuthor {
            name: "mlops pipeline".into(),
            email: "mlops-pipeline@localhost".into(),
        };
        let deploy = DeploySyncFn {
            pipeline: promote_pipeline.clone(),
            settings: DeploySettings {
                artifact_bucket: stack.artifact_bucket.clone(),
                state_prefix: "state/".into(),
                claim_lease: Duration::from_secs(60),
                author: author.clone(),
            },
            argocd: None,
            git: Git2Remote::new(
                &manifests_repo,
                "x-access-token",
                Some(secrecy::SecretString::from(token.clone())),
                &work.path().join("git-work-deploy"),
            )?,
            registry: MlflowRegistry::new(&mlflow.endpoint, |_| None)?,
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &stack.bus),
            store: S3Store::new(aws::s3_client(&sdk)),
            queue: SqsDelayQueue::new(
                aws_sdk_sqs::Client::new(&sdk),
                &stack.queue("deploy-sync")?.url,
            ),
        };
        let token_for_demo = token.clone();
        let promote = PromoteModelFn {
            pipeline: promote_pipeline,
            settings: PromoteSettings {
                artifact_bucket: stack.artifact_bucket.clone(),
                state_prefix: "state/".into(),
                claim_lease: Duration::from_secs(60),
                author,
            },
            registry: MlflowRegistry::new(&mlflow.endpoint, |_| None)?,
            git: Git2Remote::new(
                &manifests_repo,
                "x-access-token",
                Some(secrecy::SecretString::from(token)),
                &work.path().join("git-work"),
            )?,
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &stack.bus),
            store: S3Store::new(aws::s3_client(&sdk)),
        };
        Ok(LocalStack {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sdk,
            stack,
            routes,
            pipeline,
            functions,
            training,
            registry,
            webhook,
            webhook_url,
            promote,
            deploy,
            manifests_repo,
            manifests_bare,
            git,
            git_token: token_for_demo,
            trainer_repos,
            push_receiver,
            push_secret,
            spools,
            logs,
            server,
            mlflow,
            moto,
            work,
        })
    }

    /// One round over every function; returns how many messages and emitted events there were.
    pub async fn pump(&self) -> anyhow::Result<usize> {
        let n = self.functions.pump(&self.sqs, &self.stack).await?
            + self.training.pump(&self.sqs, &self.stack).await?
            + self.registry.pump(&self.sqs, &self.stack).await?
            + poll_once(
                &self.sqs,
                &self.stack.queue("promote-model")?.url,
                &self.promote,
                0,
            )
            .await?
            .0;
        let n = n + self.deliver_pushes().await?;
        let n = n + poll_once(
            &self.sqs,
            &self.stack.queue("deploy-sync")?.url,
            &self.deploy,
            0,
        )
        .await?
        .0;
        // Drain the ledger once more so what the others emitted is on the record.
        Ok(n + self.functions.pump(&self.sqs, &self.stack).await?)
    }

    /// Delivers the pushes each served repository's hook recorded since the last call, each as
    /// a signed GitHub push webhook to git-webhook; returns how many.
    async fn deliver_pushes(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for spool in &self.spools {
            n += self.deliver_spool(spool).await?;
        }
        Ok(n)
    }

    async fn deliver_spool(&self, s: &PushSpool) -> anyhow::Result<usize> {
        use std::sync::atomic::Ordering;
        let Ok(spool) = std::fs::read_to_string(&s.spool) else {
            return Ok(0);
        };
        let lines: Vec<&str> = spool.lines().filter(|l| !l.trim().is_empty()).collect();
        let done = s.delivered.load(Ordering::SeqCst);
        for line in lines.iter().skip(done) {
            let mut parts = line.split_whitespace();
            let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let body = github_push_payload(&s.bare, old, new, refname, &s.url)?;
            let signature = self.sign_push(&body)?;
            let delivery = uuid::Uuid::new_v4().to_string();
            let reply = self
                .push_receiver
                .receive(
                    &PushHeaders {
                        content_type: Some("application/json"),
                        github_event: Some("push"),
                        github_delivery: Some(&delivery),
                        hub_signature_256: Some(&signature),
                        ..Default::default()
                    },
                    &body,
                )
                .await;
            if reply.status >= 300 {
                anyhow::bail!("git-webhook answered {}: {}", reply.status, reply.message);
            }
        }
        s.delivered.store(lines.len(), Ordering::SeqCst);
        Ok(lines.len() - done.min(lines.len()))
    }

    /// Signs `body` as GitHub would for this stack's git-webhook (the tests redeliver pushes).
    pub fn sign_push(&self, body: &[u8]) -> anyhow::Result<String> {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.push_secret)?;
        mac.update(body);
        Ok(format!(
            "sha256={}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }
}

/// A served repository whose `post-receive` hook records pushes for [`LocalStack::pump`].
struct PushSpool {
    bare: PathBuf,
    url: String,
    spool: PathBuf,
    delivered: std::sync::atomic::AtomicUsize,
}

/// A model's source repository in the dev stack.
#[derive(Debug, Clone)]
pub struct TrainerRepo {
    pub model: String,
    pub url: String,
    pub bare: PathBuf,
    pub branch: String,
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.server.abort();
    }
}
