/**
 * The function table: one row per Lambda function. Each later stage adds its row here, together
 * with its route in events/routes.json (queue-fed), or a `webhook` / `schedule` trigger.
 *
 * Environment: the stack sets EVENT_BUS_NAME (putEvents access), CLUSTER_NAME (kubernetes),
 * PIPELINE_CONFIG (bundlePipelineConfig) and the `parameters` a row lists; `environment` is only
 * for what is the row's own (bucket names, key prefixes).
 */
import { FunctionSpec } from './function-spec';

export const PROCESSED_PREFIX = 'processed/';
export const STATE_PREFIX = 'state/';
export const LEDGER_PREFIX = 'ledger/';

export const FUNCTIONS: readonly FunctionSpec[] = [
  {
    name: 'data-arrival',
    description: 'Validates, cleans, dedupes and splits a data object into a dataset version; emits DatasetReady/DatasetRejected',
    crate: 'functions/data-arrival',
    // Large objects are staged in /tmp and processed in one invocation.
    memoryMb: 2048,
    timeoutSeconds: 900,
    ephemeralStorageMib: 10240,
    // One object per invocation: each can take minutes, and a failure retries only that object.
    queue: { batchSize: 1 },
    bundlePipelineConfig: true,
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      PROCESSED_PREFIX,
      STATE_PREFIX,
    }),
    access: (ctx) => [
      { kind: 's3Objects', bucket: 'data', actions: ['s3:GetObject', 's3:GetObjectVersion'], prefixes: ctx.datasetPrefixes },
      // Without ListBucket a missing (deleted) object reads as 403 instead of 404.
      { kind: 's3List', bucket: 'data', prefixes: ctx.datasetPrefixes },
      {
        kind: 's3Objects',
        bucket: 'artifact',
        actions: ['s3:GetObject', 's3:PutObject'],
        prefixes: [PROCESSED_PREFIX, `${STATE_PREFIX}data-arrival/`],
      },
      // The claim marker and the manifest are probed with GetObject: absent must read as 404.
      { kind: 's3List', bucket: 'artifact', prefixes: [PROCESSED_PREFIX, `${STATE_PREFIX}data-arrival/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'build-image',
    description:
      "Builds a model's trainer image at a pushed commit: a rootless BuildKit Job on EKS pushing <image>:<commit> to ECR; emits ImageBuildSubmitted, or ImageBuilt at once when ECR has that tag already",
    crate: 'functions/build-image',
    memoryMb: 256,
    timeoutSeconds: 60,
    // A few API calls per push (ECR, Secrets Manager, two Secrets and a Job applied); pushes are rare.
    queue: { batchSize: 5 },
    // Each model's source block (repository, context, Dockerfile, image, namespace).
    bundlePipelineConfig: true,
    kubernetes: { groups: ['mlops-build'] },
    parameters: ['buildNamespace'],
    // Cloned by the build pod: the token goes into the Kubernetes Secret mlops-git-auth (a BuildKit build secret).
    secrets: ['gitToken'],
    access: () => [
      // The registry token (12 h) the build pushes with, in the Secret mlops-registry-auth: its
      // rights are exactly these, on the models' source repositories only.
      { kind: 'ecrPush' },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'launch-training',
    description:
      "Applies a model's training workload (Job, PyTorchJob or TrainJob) on EKS for a DatasetReady version, or for a new ImageBuilt on its dataset's latest ready version; emits TrainingJobSubmitted",
    crate: 'functions/launch-training',
    memoryMb: 512,
    timeoutSeconds: 60,
    // Two routes feed the queue: dataset-ready and image-built.
    queue: { batchSize: 5 },
    // Per-model training settings; a model's training.cluster / training.namespace override the defaults.
    bundlePipelineConfig: true,
    kubernetes: { groups: ['mlops-training'] },
    parameters: ['mlflowUrl', 'trainingNamespace'],
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      STATE_PREFIX,
    }),
    access: () => [
      // ImageBuilt: the dataset's latest ready version, data-arrival's pointer
      // (state/data-arrival/latest/<dataset>.json); read only. The trainer reads the data itself
      // with its own (IRSA / Pod Identity) role.
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject'], prefixes: [`${STATE_PREFIX}data-arrival/latest/`] },
      // A dataset with no ready version yet has no pointer: absent must read as 404, not 403.
      { kind: 's3List', bucket: 'artifact', prefixes: [`${STATE_PREFIX}data-arrival/latest/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'training-watch',
    description:
      'Lists the training workloads and image builds it launched; emits TrainingJobSucceeded/Failed, TrainingJobStalled for pods Pending too long, ImageBuilt/ImageBuildFailed',
    crate: 'functions/training-watch',
    memoryMb: 512,
    timeoutSeconds: 120,
    schedule: { expression: 'rate(1 minute)' },
    bundlePipelineConfig: true,
    // mlops-training in the training namespace; mlops-build-watch in the build namespace (the image
    // build Jobs, their pods and the pods' logs).
    kubernetes: { groups: ['mlops-training', 'mlops-build-watch'] },
    parameters: ['mlflowUrl', 'trainingNamespace', 'buildNamespace', 'stallAfterSeconds'],
    access: () => [{ kind: 'putEvents' }],
  },
  {
    name: 'vllm-scaler',
    description:
      "Every minute (~every 15 s within one run) and on DeploymentHealthy: reads each served model's vLLM metrics (pod proxy or Prometheus), applies the LLM-aware policy, patches its Deployment's scale or HPA/ScaledObject bounds; emits ServingScaled",
    crate: 'functions/vllm-scaler',
    memoryMb: 256,
    // Four evaluations 15 s apart, then room to finish the last one.
    timeoutSeconds: 75,
    schedule: { expression: 'rate(1 minute)' },
    // DeploymentHealthy (route deployment-healthy): one evaluation of that model at once, so no
    // batching window. Releases are rare; two concurrent batches at most, beside the scheduled run.
    queue: { batchSize: 5, maxConcurrency: 2 },
    bundlePipelineConfig: true,
    kubernetes: { groups: ['mlops-serving'] },
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      STATE_PREFIX,
    }),
    access: () => [
      // The policy's state per model (state/vllm-scaler/<namespace>/<deployment>.json), written
      // with If-Match / If-None-Match.
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [`${STATE_PREFIX}vllm-scaler/`] },
      // A model's first run probes its absent state with GetObject: absent must read as 404, not 403.
      { kind: 's3List', bucket: 'artifact', prefixes: [`${STATE_PREFIX}vllm-scaler/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'mlflow-webhook',
    description: 'Verifies signed MLflow model-registry webhooks (HMAC-SHA256, timestamp skew, delivery ids once); emits ModelVersionCreated/TagSet/AliasChanged',
    crate: 'functions/mlflow-webhook',
    memoryMb: 256,
    timeoutSeconds: 15,
    webhook: { signedBy: 'mlflowWebhookSecret' },
    secrets: ['mlflowWebhookSecret'],
    bundlePipelineConfig: true,
    parameters: ['mlflowUrl'],
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      STATE_PREFIX,
    }),
    access: () => [
      // Delivery-id markers (processed once).
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [`${STATE_PREFIX}mlflow-webhook/`] },
      { kind: 's3List', bucket: 'artifact', prefixes: [`${STATE_PREFIX}mlflow-webhook/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'git-webhook',
    description: 'Verifies signed push webhooks of the manifests repo (GitHub X-Hub-Signature-256 / GitLab token, delivery ids once); emits GitPushed with the Argo CD applications the push touched',
    crate: 'functions/git-webhook',
    memoryMb: 256,
    timeoutSeconds: 15,
    webhook: { signedBy: 'gitWebhookSecret' },
    secrets: ['gitWebhookSecret'],
    bundlePipelineConfig: true,
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      STATE_PREFIX,
    }),
    access: () => [
      // Delivery-id markers (processed once).
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [`${STATE_PREFIX}git-webhook/`] },
      { kind: 's3List', bucket: 'artifact', prefixes: [`${STATE_PREFIX}git-webhook/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'validate-model',
    description: "Judges a new model version against its model's validation gate and the champion; tags the verdict, moves the challenger alias; emits ModelValidated/ModelRejected",
    crate: 'functions/validate-model',
    memoryMb: 256,
    timeoutSeconds: 60,
    queue: { batchSize: 5 },
    bundlePipelineConfig: true,
    parameters: ['mlflowUrl'],
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      PROCESSED_PREFIX,
      STATE_PREFIX,
    }),
    access: () => [
      // Dataset manifests (read) and the per-version claim markers.
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject'], prefixes: [PROCESSED_PREFIX] },
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [`${STATE_PREFIX}validate-model/`] },
      { kind: 's3List', bucket: 'artifact', prefixes: [PROCESSED_PREFIX, `${STATE_PREFIX}validate-model/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'promote-model',
    description: "Commits a validated version's release file to the GitOps manifests repo (git2 over HTTPS, token from Secrets Manager); emits ModelPromoted/PromotionFailed",
    crate: 'functions/promote-model',
    memoryMb: 512,
    timeoutSeconds: 120,
    // The bare clone of the manifests repo lives in /tmp while the container lives.
    ephemeralStorageMib: 2048,
    queue: { batchSize: 5 },
    bundlePipelineConfig: true,
    secrets: ['gitToken'],
    parameters: ['mlflowUrl'],
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      STATE_PREFIX,
      WORK_DIR: '/tmp',
    }),
    access: () => [
      // Per-version claim markers.
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [`${STATE_PREFIX}promote-model/`] },
      { kind: 's3List', bucket: 'artifact', prefixes: [`${STATE_PREFIX}promote-model/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'deploy-sync',
    description:
      'Syncs the Argo CD applications a manifests push touches and re-checks them through delayed messages on its own queue: Healthy moves the champion alias, Degraded/failed/deadline reverts the release commit; emits DeploymentHealthy/RolledBack/Failed/Skipped',
    crate: 'functions/deploy-sync',
    memoryMb: 512,
    timeoutSeconds: 120,
    // Reverts go through a bare clone of the manifests repo in /tmp, like promote-model's.
    ephemeralStorageMib: 2048,
    queue: { batchSize: 5, delayedSelfMessages: true },
    bundlePipelineConfig: true,
    secrets: ['gitToken', 'argocdToken'],
    parameters: ['mlflowUrl'],
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      STATE_PREFIX,
      WORK_DIR: '/tmp',
    }),
    access: () => [
      // Once-per-key claims, verdicts and the latest revision per application.
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [`${STATE_PREFIX}deploy-sync/`] },
      { kind: 's3List', bucket: 'artifact', prefixes: [`${STATE_PREFIX}deploy-sync/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'registry-poller',
    description: 'Lists new versions of the configured models in the MLflow registry (for registries without webhooks); emits ModelVersionCreated once per version',
    crate: 'functions/registry-poller',
    memoryMb: 256,
    timeoutSeconds: 60,
    schedule: { expression: 'rate(1 minute)' },
    bundlePipelineConfig: true,
    parameters: ['mlflowUrl'],
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      STATE_PREFIX,
    }),
    access: () => [
      { kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [`${STATE_PREFIX}registry-poller/`] },
      { kind: 's3List', bucket: 'artifact', prefixes: [`${STATE_PREFIX}registry-poller/`] },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'ledger',
    description: "Appends every pipeline event to its run's history in the artifact bucket",
    crate: 'functions/ledger',
    memoryMb: 256,
    timeoutSeconds: 30,
    queue: { batchSize: 10 },
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      LEDGER_PREFIX,
    }),
    access: () => [{ kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [LEDGER_PREFIX] }],
  },
];
