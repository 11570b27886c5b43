/**
 * Reads what the infrastructure needs from the pipeline config (samples/pipeline.yaml by default):
 * the S3 prefix of each dataset, which scopes data-arrival's read access to the data bucket.
 * The Rust code owns the full schema; this only checks the fields it uses.
 */
import * as fs from 'node:fs';
import { parse } from 'yaml';

export interface PipelineConfigSummary {
  /** Absolute path of the file, bundled next to the functions' bootstrap. */
  readonly path: string;
  /** Dataset name → S3 key prefix, in file order. */
  readonly datasetPrefixes: ReadonlyMap<string, string>;
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
  return { path: file, datasetPrefixes: prefixes };
}
