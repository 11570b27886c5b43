/**
 * Deploy-time parameters: each comes from CDK context (`-c key=value` or cdk.json) or from the
 * stack props, with the documented default below. infra/README.md lists the same keys; a test
 * fails when the two drift apart.
 */
import * as path from 'node:path';
import { Architecture } from 'aws-cdk-lib/aws-lambda';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Node } from 'constructs';

/** The repository root (the directory holding the Cargo workspace, events/ and samples/). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

export interface Parameters {
  /** EKS cluster the Kubernetes-facing functions talk to. */
  readonly clusterName: string;
  /** Namespace where training workloads (Job, PyTorchJob, TrainJob) run. */
  readonly trainingNamespace: string;
  /** Seconds a training workload's pods may stay Pending before training-watch reports it stalled. */
  readonly stallAfterSeconds: number;
  /** Namespace where serving Deployments (MLflow model server, vLLM) run. */
  readonly servingNamespace: string;
  /** Namespace where image builds (rootless BuildKit Jobs) run. */
  readonly buildNamespace: string;
  /** MLflow tracking/registry base URL, reachable from Lambda. */
  readonly mlflowUrl: string;
  /** The Git "manifests" repository Argo CD deploys from. */
  readonly manifestsRepo: string;
  /** Branch of the manifests repository that releases are committed to. */
  readonly manifestsBranch: string;
  /** Argo CD API base URL, reachable from Lambda. */
  readonly argocdUrl: string;
  /** Pipeline config bundled into the functions that read it; relative to the repo root or absolute. */
  readonly pipelineConfig: string;
  /**
   * `create`: the stack creates the ECR repository of each model's `source.image` that is in its own
   * account and region (others are imported); `import`: they all exist already, none is created.
   */
  readonly sourceRepositories: SourceRepositories;
  /** Lambda CPU architecture: `arm64` or `x86_64`. */
  readonly architecture: Architecture;
  /** Name of the custom EventBridge bus. */
  readonly busName: string;
  /** Prefix of the Secrets Manager secret names. */
  readonly secretPrefix: string;
  /** Days the bus archive keeps events for replay (0 = forever). */
  readonly archiveRetentionDays: number;
  /** Days CloudWatch keeps each function's logs. */
  readonly logRetentionDays: number;
  /** Receives of one SQS message before it moves to the DLQ. */
  readonly maxReceiveCount: number;
  /** `RUST_LOG` given to every function. */
  readonly rustLog: string;
  /** Optional SNS topic ARN that the alarms notify; empty = alarms without actions. */
  readonly alarmTopicArn: string;
}

export type SourceRepositories = 'create' | 'import';

export const DEFAULT_PARAMETERS: Parameters = {
  clusterName: 'ml-prod',
  trainingNamespace: 'training',
  stallAfterSeconds: 1800,
  servingNamespace: 'serving',
  buildNamespace: 'builds',
  mlflowUrl: 'https://mlflow.example.com',
  manifestsRepo: 'https://github.com/example/ml-manifests.git',
  manifestsBranch: 'main',
  argocdUrl: 'https://argocd.example.com',
  pipelineConfig: 'samples/pipeline.yaml',
  sourceRepositories: 'create',
  architecture: Architecture.ARM_64,
  busName: 'mlops',
  secretPrefix: 'mlops/',
  archiveRetentionDays: 90,
  logRetentionDays: 30,
  maxReceiveCount: 5,
  rustLog: 'info',
  alarmTopicArn: '',
};

/** Every parameter key, in documentation order. */
export const PARAMETER_KEYS = Object.keys(DEFAULT_PARAMETERS) as (keyof Parameters)[];

export function parseArchitecture(value: string): Architecture {
  switch (value.toLowerCase()) {
    case 'arm64':
    case 'arm_64':
      return Architecture.ARM_64;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return Architecture.X86_64;
    default:
      throw new Error(`parameter 'architecture' must be arm64 or x86_64, got '${value}'`);
  }
}

function parseSourceRepositories(value: unknown): SourceRepositories {
  if (value === 'create' || value === 'import') return value;
  throw new Error(`parameter 'sourceRepositories' must be create or import, got '${String(value)}'`);
}

function parseCount(key: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`parameter '${key}' must be an integer in ${min}..${max}, got '${String(value)}'`);
  }
  return n;
}

function parseString(key: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new Error(`parameter '${key}' must be a string, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Resolves parameters: explicit `overrides` (stack props) win over context, context over defaults.
 * Context values given on the command line arrive as strings and are converted here.
 */
export function resolveParameters(node: Node | undefined, overrides: Partial<Parameters> = {}): Parameters {
  const raw = (key: keyof Parameters): unknown => {
    if (overrides[key] !== undefined) return overrides[key];
    const fromContext = node?.tryGetContext(key);
    return fromContext !== undefined ? fromContext : DEFAULT_PARAMETERS[key];
  };
  const architecture = raw('architecture');
  const params: Parameters = {
    clusterName: parseString('clusterName', raw('clusterName')),
    trainingNamespace: parseString('trainingNamespace', raw('trainingNamespace')),
    // At least the watch's period (it looks once a minute), at most a week.
    stallAfterSeconds: parseCount('stallAfterSeconds', raw('stallAfterSeconds'), 60, 604800),
    servingNamespace: parseString('servingNamespace', raw('servingNamespace')),
    buildNamespace: parseString('buildNamespace', raw('buildNamespace')),
    mlflowUrl: parseString('mlflowUrl', raw('mlflowUrl')),
    manifestsRepo: parseString('manifestsRepo', raw('manifestsRepo')),
    manifestsBranch: parseString('manifestsBranch', raw('manifestsBranch')),
    argocdUrl: parseString('argocdUrl', raw('argocdUrl')),
    pipelineConfig: parseString('pipelineConfig', raw('pipelineConfig')),
    sourceRepositories: parseSourceRepositories(raw('sourceRepositories')),
    architecture: architecture instanceof Architecture ? architecture : parseArchitecture(String(architecture)),
    busName: parseString('busName', raw('busName')),
    secretPrefix: parseString('secretPrefix', raw('secretPrefix')),
    archiveRetentionDays: parseCount('archiveRetentionDays', raw('archiveRetentionDays'), 0, 100000),
    logRetentionDays: parseCount('logRetentionDays', raw('logRetentionDays'), 1, 9999),
    maxReceiveCount: parseCount('maxReceiveCount', raw('maxReceiveCount'), 1, 1000),
    rustLog: parseString('rustLog', raw('rustLog')),
    alarmTopicArn: parseString('alarmTopicArn', raw('alarmTopicArn')),
  };
  const retentions = Object.values(RetentionDays).filter((v): v is number => typeof v === 'number');
  if (!retentions.includes(params.logRetentionDays)) {
    throw new Error(
      `parameter 'logRetentionDays' must be one of CloudWatch's retention periods (${retentions.join(', ')}), got ${params.logRetentionDays}`,
    );
  }
  for (const key of ['clusterName', 'trainingNamespace', 'servingNamespace', 'buildNamespace', 'busName', 'pipelineConfig'] as const) {
    if (params[key].trim() === '') throw new Error(`parameter '${key}' must not be empty`);
  }
  return params;
}

/** Absolute path of the pipeline config file named by the parameters. */
export function pipelineConfigPath(params: Parameters): string {
  return path.resolve(REPO_ROOT, params.pipelineConfig);
}
