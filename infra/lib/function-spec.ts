/**
 * The shape of one row of the function table (lib/functions.ts). A row says what a function is
 * (crate, sizing), how it is triggered (queue-fed from routes, webhook URL, schedule; a function may
 * have several), what it may touch (Access entries, secrets, Kubernetes groups) and its environment.
 * The stack turns rows into resources; nothing about a function is written anywhere else.
 */
import { Parameters } from './parameters';

/** Secrets Manager secrets the stack manages; functions get the ones they list by ARN. */
export const SECRETS = {
  mlflowWebhookSecret: {
    name: 'mlflow-webhook-secret',
    env: 'MLFLOW_WEBHOOK_SECRET_ARN',
    description: 'Signing secret of the MLflow model-registry webhook (HMAC-SHA256)',
  },
  gitWebhookSecret: {
    name: 'git-webhook-secret',
    env: 'GIT_WEBHOOK_SECRET_ARN',
    description: 'Signing secret of the manifests repository push webhook (GitHub X-Hub-Signature-256 / GitLab token)',
  },
  argocdToken: {
    name: 'argocd-token',
    env: 'ARGOCD_TOKEN_SECRET_ARN',
    description: 'Argo CD API token of the deploy-sync account',
  },
  gitToken: {
    name: 'git-token',
    env: 'GIT_TOKEN_SECRET_ARN',
    description: "Git token allowed to push release commits to the manifests repository and to clone the models' source repositories (image builds)",
  },
} as const;

export type SecretId = keyof typeof SECRETS;

/**
 * Environment variables the stack sets from a row's kinds (the value is fixed by the wiring it
 * makes, so a row cannot name another): `CLUSTER_NAME` for a `kubernetes` row (the cluster of its
 * access entry and eks:DescribeCluster), `EVENT_BUS_NAME` for a row with `putEvents` access (the
 * bus it may put to), `PIPELINE_CONFIG` for `bundlePipelineConfig`.
 */
export const CLUSTER_NAME_ENV = 'CLUSTER_NAME';
export const EVENT_BUS_NAME_ENV = 'EVENT_BUS_NAME';
export const PIPELINE_CONFIG_ENV = 'PIPELINE_CONFIG';

/** Deploy-time parameters a row may read (its `parameters`). */
export type EnvParameter = 'mlflowUrl' | 'trainingNamespace' | 'buildNamespace' | 'stallAfterSeconds';

/** A block of a model in the pipeline config whose `namespace` (and `cluster`) place a workload. */
export type ModelPlacement = 'training' | 'source';

/**
 * The fixed set of deploy-time parameters a function may be given, and the variable each becomes.
 * A row lists the ones it reads; names and values are the stack's, so no row spells them itself.
 * A later stage that needs another parameter adds it here (and to the README's function table).
 */
export const PARAMETER_ENV: Readonly<
  Record<EnvParameter, { readonly env: string; readonly kubernetesNamespace?: boolean; readonly overriddenBy?: ModelPlacement }>
> = {
  mlflowUrl: { env: 'MLFLOW_TRACKING_URI' },
  /**
   * A namespace: the row's Kubernetes groups must be bound there in k8s/rbac.yaml (checked at
   * synth), and in each model's `training.namespace` of the bundled pipeline config, which overrides it.
   */
  trainingNamespace: { env: 'TRAINING_NAMESPACE', kubernetesNamespace: true, overriddenBy: 'training' },
  /** The namespace of image builds; a model's `source.namespace` overrides it (checked the same way). */
  buildNamespace: { env: 'BUILD_NAMESPACE', kubernetesNamespace: true, overriddenBy: 'source' },
  stallAfterSeconds: { env: 'STALL_AFTER_SECONDS' },
};

export type BucketId = 'data' | 'artifact';

/** S3 object-level actions a row may ask for (on keys under prefixes). */
export type S3ObjectAction = 's3:GetObject' | 's3:GetObjectVersion' | 's3:PutObject' | 's3:DeleteObject';

/**
 * One permission a function needs, in terms of this stack's resources. The stack renders each to an
 * IAM statement on exactly those ARNs; there is deliberately no "raw statement" escape hatch.
 */
export type Access =
  /** Object actions on `bucket/<prefix>*` for each prefix. */
  | { readonly kind: 's3Objects'; readonly bucket: BucketId; readonly actions: readonly S3ObjectAction[]; readonly prefixes: readonly string[] }
  /** s3:ListBucket on the bucket, only for keys under the prefixes (s3:prefix condition). */
  | { readonly kind: 's3List'; readonly bucket: BucketId; readonly prefixes: readonly string[] }
  /** events:PutEvents on the custom bus. */
  | { readonly kind: 'putEvents' }
  /**
   * Push to (and pull from) the ECR repositories of the models' `source.image` in the bundled
   * pipeline config, and nothing else: ecr:GetAuthorizationToken (an action without resource-level
   * permissions, so on `*`) and the image actions of ECR_PUSH_ACTIONS on exactly those repositories.
   * The function mints a registry token that the build pod pushes with, so the token has exactly these
   * rights. No statement at all when no model has a `source` block.
   */
  | { readonly kind: 'ecrPush' };

/**
 * What `ecrPush` allows on the source repositories: DescribeImages (is `<image>:<commit>` there
 * already?), the pull actions (the registry cache `<image>:buildcache`, base layers of the previous
 * build) and the push actions (layers, then the manifest).
 */
export const ECR_PUSH_ACTIONS = [
  'ecr:DescribeImages',
  'ecr:BatchGetImage',
  'ecr:GetDownloadUrlForLayer',
  'ecr:BatchCheckLayerAvailability',
  'ecr:InitiateLayerUpload',
  'ecr:UploadLayerPart',
  'ecr:CompleteLayerUpload',
  'ecr:PutImage',
] as const;

/** The tag of the BuildKit registry cache in each source repository, rewritten by every build. */
export const BUILD_CACHE_TAG = 'buildcache';

export interface QueueTrigger {
  /** Messages per invocation (SQS allows 1..10 without a batching window). @default 10 */
  readonly batchSize?: number;
  /** Seconds to gather a batch. @default 0 */
  readonly maxBatchingWindowSeconds?: number;
  /** Upper bound of concurrent invocations from the queue (2..1000). @default unbounded */
  readonly maxConcurrency?: number;
  /**
   * The function sends itself delayed messages on this queue (re-checks without a sleeping
   * Lambda): sqs:SendMessage on it, and its URL in CHECK_QUEUE_URL. @default false
   */
  readonly delayedSelfMessages?: boolean;
}

/** Where a `delayedSelfMessages` function finds its own queue. */
export const CHECK_QUEUE_URL_ENV = 'CHECK_QUEUE_URL';

export interface WebhookTrigger {
  /**
   * Function URL with auth NONE: MLflow and GitHub cannot sign requests with SigV4; they sign the
   * body with a shared secret, which the function verifies (so it must list that secret).
   */
  readonly signedBy: SecretId;
}

export interface ScheduleTrigger {
  /** An EventBridge Scheduler expression: `rate(1 minute)`, `cron(...)`, `at(...)`. */
  readonly expression: string;
  /** JSON payload the function receives. @default {} */
  readonly input?: Record<string, unknown>;
}

/** What a row's `environment` and `access` callbacks can refer to. */
export interface FunctionContext {
  readonly params: Parameters;
  /** Data bucket name (token). */
  readonly dataBucketName: string;
  /** Artifact/ledger bucket name (token). */
  readonly artifactBucketName: string;
  /** Custom bus name. */
  readonly busName: string;
  /** Dataset S3 prefixes from the pipeline config. */
  readonly datasetPrefixes: readonly string[];
}

export interface FunctionSpec {
  /** Function name: the `target` of routes, the binary's name, and the stem of construct ids. */
  readonly name: string;
  readonly description: string;
  /** Crate directory relative to the repository root; holds the Cargo.toml. */
  readonly crate: string;
  /** Binary to build. @default name */
  readonly binary?: string;
  readonly memoryMb: number;
  readonly timeoutSeconds: number;
  /** /tmp size in MiB (512..10240). @default 512 */
  readonly ephemeralStorageMib?: number;

  /** Queue-fed: the routes targeting this function feed one SQS queue. */
  readonly queue?: QueueTrigger;
  /** HTTP webhook: a Function URL. */
  readonly webhook?: WebhookTrigger;
  /** Scheduled: an EventBridge Scheduler schedule. */
  readonly schedule?: ScheduleTrigger;

  /** Bundle the pipeline config next to `bootstrap` and point PIPELINE_CONFIG at it. */
  readonly bundlePipelineConfig?: boolean;
  /** Deploy-time parameters the function reads, as the variables PARAMETER_ENV names. */
  readonly parameters?: readonly EnvParameter[];
  /** Secrets the function reads (ARNs passed as `<NAME>_SECRET_ARN`). */
  readonly secrets?: readonly SecretId[];
  /**
   * Kubernetes groups its role is mapped to by an EKS access entry (also grants eks:DescribeCluster
   * on the cluster and sets CLUSTER_NAME).
   */
  readonly kubernetes?: { readonly groups: readonly string[] };
  /** Permissions beyond its own queue, log group and secrets. */
  readonly access?: (ctx: FunctionContext) => readonly Access[];
  /**
   * Row-specific environment (bucket names, key prefixes), beyond what the stack sets: RUST_LOG,
   * the kind-derived variables above, `parameters` and secret ARNs, none of which it may set.
   */
  readonly environment?: (ctx: FunctionContext) => Readonly<Record<string, string>>;
}

/** Directory (in the Lambda package, /var/task) and name of the bundled pipeline config. */
export const LAMBDA_TASK_ROOT = '/var/task';
export const BUNDLED_PIPELINE_CONFIG = 'pipeline.yaml';
