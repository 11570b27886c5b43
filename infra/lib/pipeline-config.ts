/**
 * Reads what the infrastructure needs from the pipeline config (samples/pipeline.yaml by default):
 * the S3 prefix of each dataset, which scopes data-arrival's read access to the data bucket, and
 * each model's `training.cluster` / `training.namespace` overrides, which must stay within the
 * cluster and RBAC the training functions are given. The Rust code owns the full schema; this only
 * checks the fields it uses.
 */
import * as fs from 'node:fs';
import { parse } from 'yaml';

export interface PipelineConfigSummary {
  /** Absolute path of the file, bundled next to the functions' bootstrap. */
  readonly path: string;
  /** Dataset name → S3 key prefix, in file order. */
  readonly datasetPrefixes: ReadonlyMap<string, string>;
  /** Model name → its `training.cluster` / `training.namespace`, for models that set either. */
  readonly trainingOverrides: ReadonlyMap<string, TrainingOverride>;
}

export interface TrainingOverride {
  readonly cluster?: string;
  readonly namespace?: string;
}

function isMap(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

function trainingOverrides(doc: unknown, file: string): Map<string, TrainingOverride> {
  const out = new Map<string, TrainingOverride>();
  const models = isMap(doc) ? doc.models : undefined;
  if (!isMap(models)) return out;
  for (const [name, model] of Object.entries(models)) {
    const training = isMap(model) ? model.training : undefined;
    if (!isMap(training)) continue;
    const o: { cluster?: string; namespace?: string } = {};
    for (const key of ['cluster', 'namespace'] as const) {
      const v = training[key];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'string' || v.trim() === '') {
        throw new Error(`pipeline config '${file}': model '${name}' training.${key} must be a non-empty string`);
      }
      o[key] = v;
    }
    if (o.cluster !== undefined || o.namespace !== undefined) out.set(name, o);
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
  return { path: file, datasetPrefixes: prefixes, trainingOverrides: trainingOverrides(doc, file) };
}
