/**
 * Builds a function's Lambda resource: `RustFunction` (cargo-lambda-cdk, runs `cargo lambda build`)
 * for deployments, or, with `skipBundling`, a plain `lambda.Function` over a stub package for
 * offline synth and tests. Both have the same runtime, architecture, handler and package layout
 * (bootstrap, plus pipeline.yaml next to it for the functions that bundle it).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AssetHashType, DockerImage } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { BUNDLED_PIPELINE_CONFIG, FunctionSpec } from './function-spec';
import { REPO_ROOT } from './parameters';

export const RUNTIME = 'provided.al2023';
export const HANDLER = 'bootstrap';
const STUB_DIR = path.resolve(__dirname, '..', 'stub');

/** Everything about the Lambda function except its code. */
export type FunctionOptions = Omit<lambda.FunctionOptions, 'architecture'> & { readonly architecture: lambda.Architecture };

export interface CodeOptions {
  readonly skipBundling: boolean;
  /** Absolute path of the pipeline config, for rows with bundlePipelineConfig. */
  readonly pipelineConfigFile: string;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * cargo-lambda-cdk command hooks that put the files a row needs next to `bootstrap`. They run on
 * the host (local bundling), where the config path exists.
 */
export function extraFilesHooks(spec: FunctionSpec, opts: CodeOptions) {
  return {
    beforeBundling: (): string[] => [],
    afterBundling: (_inputDir: string, outputDir: string): string[] =>
      spec.bundlePipelineConfig
        ? [`cp ${shellQuote(opts.pipelineConfigFile)} ${shellQuote(path.join(outputDir, BUNDLED_PIPELINE_CONFIG))}`]
        : [],
  };
}

/**
 * Where cargo finds the `lambda` subcommand: a `cargo-lambda` executable on PATH or in
 * $CARGO_HOME/bin. Looked up without running anything.
 */
export function findCargoLambda(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = (env.PATH ?? '').split(path.delimiter).filter(Boolean);
  dirs.push(path.join(env.CARGO_HOME ?? path.join(env.HOME ?? '', '.cargo'), 'bin'));
  for (const dir of dirs) {
    const candidate = path.join(dir, 'cargo-lambda');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function createFunction(scope: Construct, id: string, spec: FunctionSpec, props: FunctionOptions, opts: CodeOptions): lambda.Function {
  if (!opts.skipBundling) {
    // Without it cargo-lambda-cdk falls back to Docker, which cannot build these crates: the
    // container sees only the crate directory, not the workspace or the pipeline config.
    if (!findCargoLambda()) {
      throw new Error(
        `function '${spec.name}': cargo-lambda is not installed (pip install cargo-lambda), so the Rust crates ` +
          'cannot be built; install it, or synthesize with -c skipBundling=true (not deployable)',
      );
    }
    const manifestPath = path.join(REPO_ROOT, spec.crate, 'Cargo.toml');
    if (!fs.existsSync(manifestPath)) {
      throw new Error(`function '${spec.name}': crate '${spec.crate}' has no Cargo.toml (${manifestPath})`);
    }
    return new RustFunction(scope, id, {
      ...props,
      runtime: RUNTIME,
      manifestPath,
      binaryName: spec.binary ?? spec.name,
      bundling: {
        architecture: props.architecture,
        commandHooks: extraFilesHooks(spec, opts),
      },
    });
  }
  const extra = spec.bundlePipelineConfig ? [[opts.pipelineConfigFile, BUNDLED_PIPELINE_CONFIG]] : [];
  const code = lambda.Code.fromAsset(STUB_DIR, {
    assetHashType: AssetHashType.OUTPUT,
    bundling: {
      // Never pulled: local bundling always succeeds.
      image: DockerImage.fromRegistry('scratch'),
      // Not run; it names the files so that CDK's bundling cache (keyed by source and options,
      // not by the `local` callback) tells packages with different contents apart.
      command: ['stub', ...extra.map(([from, to]) => `${from}=>${to}`)],
      local: {
        tryBundle(outputDir: string): boolean {
          fs.copyFileSync(path.join(STUB_DIR, HANDLER), path.join(outputDir, HANDLER));
          fs.chmodSync(path.join(outputDir, HANDLER), 0o755);
          for (const [from, to] of extra) fs.copyFileSync(from, path.join(outputDir, to));
          return true;
        },
      },
    },
  });
  return new lambda.Function(scope, id, {
    ...props,
    runtime: new lambda.Runtime(RUNTIME, lambda.RuntimeFamily.OTHER),
    handler: HANDLER,
    code,
  });
}
