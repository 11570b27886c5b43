/**
 * Bad input fails synth with a message naming what is wrong. The stack validates before it makes
 * any resource, so these cost no synth.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FunctionSpec } from '../lib/function-spec';
import { FUNCTIONS } from '../lib/functions';
import { loadRoutes, Route } from '../lib/routes';
import { buildStack } from './helpers';

const routes = loadRoutes();
const row = (over: Partial<FunctionSpec>): FunctionSpec => ({
  name: 'extra',
  description: 'test row',
  crate: 'functions/ledger',
  memoryMb: 256,
  timeoutSeconds: 10,
  ...over,
});
const route = (over: Partial<Route>): Route => ({
  name: 'extra-route',
  bus: 'mlops',
  description: 'test route',
  pattern: { source: ['mlops.test'] },
  target: 'ledger',
  ...over,
});

function tmpFile(name: string, text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-infra-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

describe('the table and the routes must agree', () => {
  test('a route naming an unknown function', () => {
    expect(() => buildStack({ routes: [...routes, route({ name: 'to-nowhere', target: 'no-such-fn' })] })).toThrow(
      "route 'to-nowhere' targets unknown function 'no-such-fn'",
    );
  });

  test('a function with no route, URL or schedule', () => {
    expect(() => buildStack({ functions: [...FUNCTIONS, row({ name: 'orphan' })] })).toThrow(
      "function 'orphan' has no route, URL or schedule",
    );
  });

  test('a queue-fed function that no route targets', () => {
    expect(() => buildStack({ functions: [...FUNCTIONS, row({ name: 'unrouted', queue: {} })] })).toThrow(
      "function 'unrouted' is queue-fed but no route in routes.json targets it",
    );
  });

  test('a route targeting a function that is not queue-fed', () => {
    expect(() =>
      buildStack({
        functions: [...FUNCTIONS, row({ name: 'hook', webhook: { signedBy: 'gitWebhookSecret' } })],
        routes: [...routes, route({ name: 'to-hook', target: 'hook' })],
      }),
    ).toThrow("route 'to-hook' targets function 'hook', which is not queue-fed");
  });

  test('duplicate function or route names', () => {
    const ledger = FUNCTIONS.find((f) => f.name === 'ledger')!;
    expect(() => buildStack({ functions: [...FUNCTIONS, ledger] })).toThrow("function 'ledger' appears twice");
    const ledgerAll = routes.find((r) => r.name === 'ledger-all')!;
    expect(() => buildStack({ routes: [...routes, ledgerAll] })).toThrow("route 'ledger-all' appears twice");
  });

  test('an unknown placeholder in a pattern', () => {
    const bad = route({ name: 'bad-placeholder', pattern: { detail: { bucket: ['{{artifact_bucket}}'] } } });
    expect(() => buildStack({ routes: [...routes, bad] })).toThrow("route 'bad-placeholder': unknown placeholder '{{artifact_bucket}}'");
  });

  test('an unsupported top-level pattern key', () => {
    const bad = route({ name: 'bad-key', pattern: { detailType: ['X'] } });
    expect(() => buildStack({ routes: [...routes, bad] })).toThrow("route 'bad-key': unsupported top-level pattern key 'detailType'");
  });

  test('a malformed routes file names the route', () => {
    const file = tmpFile('routes.json', JSON.stringify({ routes: [{ name: 'r1', bus: 'other', pattern: {}, target: 'ledger' }] }));
    expect(() => loadRoutes(file)).toThrow(`route 'r1': 'bus' must be "default" or "mlops"`);
  });
});

describe('rows are checked', () => {
  test.each<[string, Partial<FunctionSpec>, string]>([
    ['memory', { memoryMb: 64 }, "function 'extra': memoryMb must be 128..10240"],
    ['timeout', { timeoutSeconds: 901 }, "function 'extra': timeoutSeconds must be 1..900"],
    ['ephemeral storage', { ephemeralStorageMib: 20000 }, "function 'extra': ephemeralStorageMib must be 512..10240"],
    ['batch size', { queue: { batchSize: 11 } }, "function 'extra': queue.batchSize must be 1..10"],
    ['schedule', { schedule: { expression: 'every minute' } }, "function 'extra': schedule.expression must be rate(...)"],
    ['system group', { schedule: { expression: 'rate(1 minute)' }, kubernetes: { groups: ['system:masters'] } }, "Kubernetes group 'system:masters' is reserved"],
    ['unbound group', { schedule: { expression: 'rate(1 minute)' }, kubernetes: { groups: ['mlops-admin'] } }, "Kubernetes group 'mlops-admin' has no RoleBinding"],
    ['name', { name: 'Bad_Name', schedule: { expression: 'rate(1 minute)' } }, "function 'Bad_Name': name must match"],
    ['description', { description: 'x'.repeat(257), schedule: { expression: 'rate(1 minute)' } }, "function 'extra': description is 257 characters; Lambda allows at most 256"],
  ])('%s', (_what, over, message) => {
    const fn = row({ ...over });
    const extraRoutes = fn.queue ? [route({ target: fn.name })] : [];
    expect(() => buildStack({ functions: [...FUNCTIONS, fn], routes: [...routes, ...extraRoutes] })).toThrow(message);
  });

  test('an environment that overrides a variable the stack manages', () => {
    const fn = row({ schedule: { expression: 'rate(1 minute)' }, environment: () => ({ GIT_TOKEN_SECRET_ARN: 'arn:x' }) });
    expect(() => buildStack({ functions: [...FUNCTIONS, fn] })).toThrow(
      "function 'extra': environment sets GIT_TOKEN_SECRET_ARN, which the stack manages",
    );
  });

  test('an environment that sets a well-known variable itself', () => {
    for (const name of ['EVENT_BUS_NAME', 'CLUSTER_NAME', 'MLFLOW_TRACKING_URI', 'STALL_AFTER_SECONDS']) {
      const fn = row({ schedule: { expression: 'rate(1 minute)' }, environment: () => ({ [name]: 'x' }) });
      expect(() => buildStack({ functions: [...FUNCTIONS, fn] })).toThrow(`function 'extra': environment sets ${name}, which the stack manages`);
    }
  });

  test('an unknown parameter', () => {
    const fn = row({ schedule: { expression: 'rate(1 minute)' }, parameters: ['busName' as never] });
    expect(() => buildStack({ functions: [...FUNCTIONS, fn] })).toThrow("function 'extra': unknown parameter 'busName'");
  });

  test('a wildcard in an access prefix', () => {
    const fn = row({
      schedule: { expression: 'rate(1 minute)' },
      access: () => [{ kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject'], prefixes: ['ledger/*'] }],
    });
    expect(() => buildStack({ functions: [...FUNCTIONS, fn] })).toThrow("function 'extra' artifact bucket access: prefix 'ledger/*'");
  });
});

describe('parameters and the pipeline config are checked', () => {
  test('a bad architecture', () => {
    expect(() => buildStack({}, { architecture: 'sparc' })).toThrow("parameter 'architecture' must be arm64 or x86_64, got 'sparc'");
  });

  test('a log retention CloudWatch does not offer', () => {
    expect(() => buildStack({}, { logRetentionDays: '45' })).toThrow("parameter 'logRetentionDays' must be one of");
  });

  test('a missing pipeline config', () => {
    expect(() => buildStack({ parameters: { pipelineConfig: '/nonexistent/pipeline.yaml' } })).toThrow(
      "pipeline config '/nonexistent/pipeline.yaml' does not exist",
    );
  });

  test('a stall threshold out of range', () => {
    expect(() => buildStack({}, { stallAfterSeconds: '30' })).toThrow("parameter 'stallAfterSeconds' must be an integer in 60..604800");
  });

  test('a training namespace the RBAC file does not bind the training group in', () => {
    expect(() => buildStack({}, { trainingNamespace: 'ml-train' })).toThrow(
      "function 'launch-training': namespace 'ml-train' (parameter trainingNamespace) has no RoleBinding for its Kubernetes group(s) mlops-training",
    );
  });

  test('a build namespace the RBAC file does not bind the build groups in', () => {
    // build-image is the first row reading it; training-watch (mlops-build-watch) is checked the same way.
    expect(() => buildStack({}, { buildNamespace: 'ci' })).toThrow(
      "function 'build-image': namespace 'ci' (parameter buildNamespace) has no RoleBinding for its Kubernetes group(s) mlops-build",
    );
  });

  test('a sourceRepositories value other than create or import', () => {
    expect(() => buildStack({}, { sourceRepositories: 'adopt' })).toThrow("parameter 'sourceRepositories' must be create or import, got 'adopt'");
  });

  const DATASETS = 'datasets:\n  tx:\n    prefix: incoming/tx/\n    format: csv\n    model: fraud\n';
  const IMAGE = '123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-trainer';
  const source = (fields: string) => `${DATASETS}models:\n  fraud:\n    source:\n      repo: https://git.example/t.git\n${fields}`;

  test("a model's source.namespace the RBAC file does not bind the build groups in", () => {
    const file = tmpFile('p.yaml', source(`      image: ${IMAGE}\n      namespace: gpu-builds\n`));
    expect(() => buildStack({ parameters: { pipelineConfig: file } })).toThrow(
      "function 'build-image': namespace 'gpu-builds' (model 'fraud' source.namespace) has no RoleBinding for its Kubernetes group(s) mlops-build",
    );
  });

  test("a model's source.cluster other than the stack's cluster", () => {
    const file = tmpFile('p.yaml', source(`      image: ${IMAGE}\n      cluster: ml-ci\n`));
    expect(() => buildStack({ parameters: { pipelineConfig: file } })).toThrow(
      "pipeline config: model 'fraud' source.cluster 'ml-ci' is not the stack's cluster 'ml-prod' (parameter clusterName)",
    );
  });

  test.each([
    ['a tag', `${IMAGE}:1.4.0`],
    ['a digest', `${IMAGE}@sha256:${'a'.repeat(64)}`],
    ['another registry', 'ghcr.io/example/fraud-trainer'],
    ['a wildcard', '123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-*'],
    ['no repository', '123456789012.dkr.ecr.us-east-1.amazonaws.com/'],
    ['an uppercase name', '123456789012.dkr.ecr.us-east-1.amazonaws.com/Fraud'],
  ])("a model's source.image with %s", (_what, image) => {
    const file = tmpFile('p.yaml', source(`      image: "${image}"\n`));
    expect(() => buildStack({ parameters: { pipelineConfig: file } })).toThrow(
      `pipeline config '${file}': model 'fraud' source.image ${JSON.stringify(image)} must be an ECR repository URI`,
    );
  });

  test("a model's source block without an image", () => {
    const file = tmpFile('p.yaml', source('      branch: main\n'));
    expect(() => buildStack({ parameters: { pipelineConfig: file } })).toThrow("model 'fraud' source.image undefined must be an ECR repository URI");
  });

  test("a model's training.namespace the RBAC file does not bind the training group in", () => {
    const file = tmpFile('p.yaml', `${DATASETS}models:\n  fraud:\n    training:\n      namespace: gpu-jobs\n`);
    expect(() => buildStack({ parameters: { pipelineConfig: file } })).toThrow(
      "function 'launch-training': namespace 'gpu-jobs' (model 'fraud' training.namespace) has no RoleBinding",
    );
  });

  test("a model's training.cluster other than the stack's cluster", () => {
    const file = tmpFile('p.yaml', `${DATASETS}models:\n  fraud:\n    training:\n      cluster: ml-gpu\n      namespace: training\n`);
    expect(() => buildStack({ parameters: { pipelineConfig: file } })).toThrow(
      "pipeline config: model 'fraud' training.cluster 'ml-gpu' is not the stack's cluster 'ml-prod' (parameter clusterName)",
    );
    // Naming the stack's own cluster and a bound namespace is fine.
    const same = tmpFile('p.yaml', `${DATASETS}models:\n  fraud:\n    training:\n      cluster: ml-prod\n      namespace: training\n`);
    expect(() => buildStack({ parameters: { pipelineConfig: same } })).not.toThrow();
  });

  test('a dataset without a prefix, or with a wildcard one', () => {
    const noPrefix = tmpFile('p.yaml', 'datasets:\n  tx:\n    format: csv\n');
    expect(() => buildStack({ parameters: { pipelineConfig: noPrefix } })).toThrow("dataset 'tx' has no 'prefix'");
    const star = tmpFile('p.yaml', 'datasets:\n  tx:\n    prefix: "incoming/*"\n');
    expect(() => buildStack({ parameters: { pipelineConfig: star } })).toThrow("dataset 'tx' prefix 'incoming/*' must be a plain key prefix");
  });
});
