/**
 * The deploy path: RustFunction (cargo-lambda-cdk) instead of the stub. Nothing is built here:
 * cargo-lambda-cdk's "is cargo-lambda installed" probe is answered in advance (so no `cargo` runs)
 * and CDK is told to bundle no stack (`aws:cdk:bundling-stacks` = []). What is checked is what
 * would run at deploy time, and that the Lambda settings equal the stub path's.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { Architecture, AssetCode } from 'aws-cdk-lib/aws-lambda';
import { Bundling } from 'cargo-lambda-cdk/lib/bundling';
import { FUNCTIONS } from '../lib/functions';
import { MlopsStack } from '../lib/mlops-stack';
import { REPO_ROOT } from '../lib/parameters';
import { logicalId, newApp, synth } from './helpers';

/** AssetCode keeps its options private; the test reads them anyway. */
interface CapturedCode {
  readonly path: string;
  readonly options: { bundling: { command: string[] } };
}
let real: MlopsStack;
let codes: CapturedCode[];

const savedPath = process.env.PATH;

beforeAll(() => {
  // A placeholder `cargo-lambda` on PATH satisfies the stack's check; it is never executed.
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-cargo-lambda-'));
  fs.writeFileSync(path.join(bin, 'cargo-lambda'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  process.env.PATH = `${bin}${path.delimiter}${savedPath}`;
  (Bundling as unknown as { runsLocally?: boolean }).runsLocally = true;
  const spy = jest.spyOn(Bundling, 'bundle');
  real = new MlopsStack(newApp({ 'aws:cdk:bundling-stacks': [] }), 'Real', {
    env: { account: '123456789012', region: 'us-east-1' },
    parameters: { architecture: Architecture.X86_64 },
  });
  codes = spy.mock.results.map((r) => r.value as AssetCode as unknown as CapturedCode);
  spy.mockRestore();
});

afterAll(() => {
  Bundling.clearRunsLocallyCache();
  process.env.PATH = savedPath;
});

test('without cargo-lambda, a deployable synth fails with a message saying what to do', () => {
  const before = process.env.PATH;
  process.env.PATH = '/nonexistent';
  const saved = process.env.CARGO_HOME;
  process.env.CARGO_HOME = '/nonexistent';
  try {
    expect(() => new MlopsStack(newApp(), 'NoCargoLambda', { env: { region: 'us-east-1' } })).toThrow(
      "function 'data-arrival': cargo-lambda is not installed (pip install cargo-lambda)",
    );
  } finally {
    process.env.CARGO_HOME = saved;
    process.env.PATH = before;
  }
});

test('RustFunction and the stub give the same runtime, handler, architecture and settings', () => {
  const realFns = Template.fromStack(real).findResources('AWS::Lambda::Function');
  const { stack: stub, template } = synth({ parameters: { architecture: Architecture.X86_64 } });
  const stubFns = template.findResources('AWS::Lambda::Function');
  for (const spec of FUNCTIONS) {
    const { Code: _realCode, ...realProps } = realFns[logicalId(real.functions.get(spec.name)!.fn)].Properties;
    const { Code: _stubCode, ...stubProps } = stubFns[logicalId(stub.functions.get(spec.name)!.fn)].Properties;
    expect(realProps).toEqual(stubProps);
    expect(realProps).toMatchObject({ Runtime: 'provided.al2023', Handler: 'bootstrap', Architectures: ['x86_64'] });
  }
});

test('each crate is built with cargo lambda from its own directory, and the config is copied next to bootstrap', () => {
  expect(codes).toHaveLength(FUNCTIONS.length);
  const config = path.join(REPO_ROOT, 'samples', 'pipeline.yaml');
  FUNCTIONS.forEach((spec, i) => {
    expect(codes[i].path).toBe(path.join(REPO_ROOT, spec.crate));
    const [shell, flag, command] = codes[i].options.bundling.command;
    expect([shell, flag]).toEqual(['bash', '-c']);
    const steps = command.split(' && ');
    expect(steps[0]).toBe(`cargo lambda build --lambda-dir /asset-output --release --x86-64 --bin ${spec.name} --flatten ${spec.name}`);
    expect(steps.slice(1)).toEqual(spec.bundlePipelineConfig ? [`cp '${config}' '/asset-output/pipeline.yaml'`] : []);
  });
});
