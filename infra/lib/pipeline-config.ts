/**
 * Reads what the infrastructure needs from the pipeline config (samples/pipeline.yaml by default):
 * the S3 prefix of each dataset, which scopes data-arrival's read access to the data bucket; each
 * model's `training.cluster` / `training.namespace` and `source.cluster` / `source.namespace`
 * overrides, which must stay within the cluster and RBAC the training and build functions are
 * given; and each model's `source.image`, the ECR repository its image builds push to (the stack
 * creates or imports it, and build-image may push to those repositories only). The Rust code owns
 * the full schema; this only checks the fields it uses.
 */
import * as fs from 'node:fs';
import { parse } from 'yaml';
import { ModelPlacement } from './function-spec';

export interface PipelineConfigSummary {
  /** Absolute path of the file, bundled next to the functions' bootstrap. */
  readonly path: string;
  /** Dataset name → S3 key prefix, in file order. */
  readonly datasetPrefixes: ReadonlyMap<string, string>;
  /**
   * Per block (`training`: the training workload, `source`: the image build), model name → its
   * `cluster` / `namespace` there, for models that set either.
   */
  readonly placements: Readonly<Record<ModelPlacement, ReadonlyMap<string, PlacementOverride>>>;
  /** Model name → the ECR repository its `source.image` names, for models with a `source` block, in file order. */
  readonly sourceImages: ReadonlyMap<string, EcrRepositoryRef>;
}

export interface PlacementOverride {
  readonly cluster?: string;
  readonly namespace?: string;
}

/** An ECR repository named by its URI `<account>.dkr.ecr.<region>.amazonaws.com[.cn]/<name>`. */
export interface EcrRepositoryRef {
  /** The URI as written (no tag, no digest). */
  readonly uri: string;
  readonly account: string;
  readonly region: string;
  readonly partition: 'aws' | 'aws-cn';
  /** The repository name (may contain `/`). */
  readonly name: string;
  /** `arn:<partition>:ecr:<region>:<account>:repository/<name>`. */
  readonly arn: string;
}

/** A repository URI; the name follows ECR's own rule (lowercase components, `/`-separated). */
const ECR_URI =
  /^(\d{12})\.dkr\.ecr\.([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(\.cn)?\/((?:[a-z0-9]+(?:[._-][a-z0-9]+)*\/)*[a-z0-9]+(?:[._-][a-z0-9]+)*)$/;

export function parseEcrRepositoryUri(uri: string): EcrRepositoryRef | undefined {
  const m = ECR_URI.exec(uri);
  if (!m || m[4].length < 2 || m[4].length > 256) return undefined;
  const [, account, region, cn, name] = m;
  const partition = cn ? 'aws-cn' : 'aws';
  return { uri, account, region, partition, name, arn: `arn:${partition}:ecr:${region}:${account}:repository/${name}` };
}

function isMap(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

function modelsOf(doc: unknown): [string, unknown][] {
  const models = isMap(doc) ? doc.models : undefined;
  return isMap(models) ? Object.entries(models) : [];
}

function placements(doc: unknown, file: string, block: ModelPlacement): Map<string, PlacementOverride> {
  const out = new Map<string, PlacementOverride>();
  for (const [name, model] of modelsOf(doc)) {
    const section = isMap(model) ? model[block] : undefined;
    if (!isMap(section)) continue;
    const o: { cluster?: string; namespace?: string } = {};
    for (const key of ['cluster', 'namespace'] as const) {
      const v = section[key];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'string' || v.trim() === '') {
        throw new Error(`pipeline config '${file}': model '${name}' ${block}.${key} must be a non-empty string`);
      }
      o[key] = v;
    }
    if (o.cluster !== undefined || o.namespace !== undefined) out.set(name, o);
  }
  return out;
}

function sourceImages(doc: unknown, file: string): Map<string, EcrRepositoryRef> {
  const out = new Map<string, EcrRepositoryRef>();
  for (const [name, model] of modelsOf(doc)) {
    const source = isMap(model) ? model.source : undefined;
    if (source === undefined || source === null) continue;
    if (!isMap(source)) throw new Error(`pipeline config '${file}': model '${name}' source must be a map`);
    const image = source.image;
    // The repository becomes an IAM resource ARN: it must be exactly one repository, no wildcard.
    const ref = typeof image === 'string' ? parseEcrRepositoryUri(image) : undefined;
    if (!ref) {
      throw new Error(
        `pipeline config '${file}': model '${name}' source.image ${JSON.stringify(image)} must be an ECR repository URI ` +
          '<account>.dkr.ecr.<region>.amazonaws.com/<repository> (no tag or digest: builds push <image>:<commit>)',
      );
    }
    out.set(name, ref);
  }
  return out;
}

export function loadPipelineConfig(file: string): PipelineConfigSummary {
  if (!fs.existsSync(file)) {
    throw new Error(`pipeline config '${file}' does not exist (parameter 'pipelineConfig')`);
  }
  let doc: unknown;
  try {
    doc = parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`pipeline config '${file}' is not valid YAML: ${(e as Error).message}`);
  }
  const datasets = (doc as { datasets?: unknown } | null)?.datasets;
  if (datasets === null || typeof datasets !== 'object' || Array.isArray(datasets)) {
    throw new Error(`pipeline config '${file}' has no 'datasets' map`);
  }
  const prefixes = new Map<string, string>();
  for (const [name, dataset] of Object.entries(datasets as Record<string, unknown>)) {
    const prefix = (dataset as { prefix?: unknown } | null)?.prefix;
    if (typeof prefix !== 'string' || prefix.trim() === '') {
      throw new Error(`pipeline config '${file}': dataset '${name}' has no 'prefix'`);
    }
    // The prefix becomes part of IAM resource ARNs and an s3:prefix condition, where `*` and `?`
    // are wildcards: a prefix containing them would grant more than the dataset.
    if (/[*?]/.test(prefix) || prefix.startsWith('/')) {
      throw new Error(
        `pipeline config '${file}': dataset '${name}' prefix '${prefix}' must be a plain key prefix (no leading '/', '*' or '?')`,
      );
    }
    prefixes.set(name, prefix);
  }
  if (prefixes.size === 0) {
    throw new Error(`pipeline config '${file}' declares no datasets`);
  }
  return {
    path: file,
    datasetPrefixes: prefixes,
    placements: { training: placements(doc, file, 'training'), source: placements(doc, file, 'source') },
    sourceImages: sourceImages(doc, file),
  };
}
