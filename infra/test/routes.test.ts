/** Placeholder substitution walks the JSON; it never edits a serialized token. */
import { Stack, Token } from 'aws-cdk-lib';
import { loadRoutes, substitutePlaceholders } from '../lib/routes';

test('routes.json is read as the one list of rules', () => {
  const routes = loadRoutes();
  expect(routes.map((r) => [r.name, r.bus, r.target])).toEqual([
    ['s3-object-created', 'default', 'data-arrival'],
    ['dataset-ready', 'mlops', 'launch-training'],
    ['model-code-pushed', 'mlops', 'build-image'],
    ['image-built', 'mlops', 'launch-training'],
    ['model-version-created', 'mlops', 'validate-model'],
    ['model-validated', 'mlops', 'promote-model'],
    ['git-pushed', 'mlops', 'deploy-sync'],
    ['deployment-healthy', 'mlops', 'vllm-scaler'],
    ['ledger-all', 'mlops', 'ledger'],
  ]);
});

test('the code-push path: a push builds the image, a built image retrains', () => {
  const byName = new Map(loadRoutes().map((r) => [r.name, r]));
  expect(byName.get('model-code-pushed')!.pattern).toEqual({ source: ['mlops.git-webhook'], 'detail-type': ['ModelCodePushed'] });
  // training-watch when a build Job finished; build-image itself when ECR had the commit's image already.
  expect(byName.get('image-built')!.pattern).toEqual({ source: ['mlops.training-watch', 'mlops.build-image'], 'detail-type': ['ImageBuilt'] });
  // launch-training is fed by two routes (one queue): a new dataset version, and a new image.
  expect(loadRoutes().filter((r) => r.target === 'launch-training').map((r) => r.name)).toEqual(['dataset-ready', 'image-built']);
});

test('a whole-string placeholder becomes the value itself (a token stays a token)', () => {
  const stack = new Stack();
  const token = Token.asString({ Ref: 'Bucket' });
  const out = substitutePlaceholders({ detail: { bucket: { name: ['{{data_bucket}}'] } } }, { data_bucket: token }, 'r');
  expect(stack.resolve(out)).toEqual({ detail: { bucket: { name: [{ Ref: 'Bucket' }] } } });
});

test('placeholders inside longer strings, arrays and nested objects are all replaced', () => {
  const stack = new Stack();
  const token = Token.asString({ Ref: 'Bucket' });
  const pattern = {
    source: ['aws.s3'],
    detail: { object: { key: [{ prefix: 'x/{{data_bucket}}/' }] }, n: [{ numeric: ['>', 0] }], e: [{ exists: true }], z: [null] },
  };
  const out = stack.resolve(substitutePlaceholders(pattern, { data_bucket: token }, 'r'));
  expect(out.detail.object.key[0].prefix).toEqual({ 'Fn::Join': ['', ['x/', { Ref: 'Bucket' }, '/']] });
  expect(out.detail.n).toEqual([{ numeric: ['>', 0] }]);
  expect(out.detail.e).toEqual([{ exists: true }]);
  expect(out.detail.z).toEqual([null]);
  expect(out.source).toEqual(['aws.s3']);
});

test('the input pattern is not modified', () => {
  const pattern = { detail: { b: ['{{data_bucket}}'] } };
  substitutePlaceholders(pattern, { data_bucket: 'bucket' }, 'r');
  expect(pattern).toEqual({ detail: { b: ['{{data_bucket}}'] } });
});
