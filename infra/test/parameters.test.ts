/** Parameters: defaults, context strings, and the README documenting every one (and every function). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Architecture } from 'aws-cdk-lib/aws-lambda';
import { FUNCTIONS } from '../lib/functions';
import { PARAMETER_ENV } from '../lib/function-spec';
import { DEFAULT_PARAMETERS, PARAMETER_KEYS, resolveParameters } from '../lib/parameters';
import { newApp } from './helpers';

test('defaults apply when nothing is given', () => {
  expect(resolveParameters(undefined)).toEqual(DEFAULT_PARAMETERS);
  expect(DEFAULT_PARAMETERS.architecture).toBe(Architecture.ARM_64);
});

test('context values (strings from -c key=value) are converted; props win over context', () => {
  const app = newApp({ architecture: 'x86_64', maxReceiveCount: '3', clusterName: 'from-context', mlflowUrl: 'https://mlflow.internal' });
  const p = resolveParameters(app.node, { clusterName: 'from-props' });
  expect(p.architecture).toBe(Architecture.X86_64);
  expect(p.maxReceiveCount).toBe(3);
  expect(p.clusterName).toBe('from-props');
  expect(p.mlflowUrl).toBe('https://mlflow.internal');
});

test('an out-of-range count is refused with the parameter name', () => {
  expect(() => resolveParameters(newApp({ maxReceiveCount: '0' }).node)).toThrow("parameter 'maxReceiveCount' must be an integer in 1..1000");
});

test('infra/README.md documents every parameter with its default', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  for (const key of PARAMETER_KEYS) {
    const value = DEFAULT_PARAMETERS[key];
    const shown = value instanceof Architecture ? value.name : String(value);
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${key}\``));
    expect([key, row]).toEqual([key, expect.stringContaining(shown === '' ? '(none)' : `\`${shown}\``)]);
  }
});

test('infra/README.md lists every function, with the parameter variables it reads', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const rows = readme.split('\n').filter((l) => /^\| `[a-z-]+` \| /.test(l));
  for (const spec of FUNCTIONS) {
    const row = rows.find((l) => l.startsWith(`| \`${spec.name}\` |`));
    expect([spec.name, row]).toEqual([spec.name, expect.any(String)]);
    for (const p of spec.parameters ?? []) expect([spec.name, row]).toEqual([spec.name, expect.stringContaining(`\`${PARAMETER_ENV[p].env}\``)]);
  }
});

test('stallAfterSeconds: a context string becomes a number', () => {
  expect(resolveParameters(newApp({ stallAfterSeconds: '900' }).node).stallAfterSeconds).toBe(900);
  expect(DEFAULT_PARAMETERS.stallAfterSeconds).toBe(1800);
});

test('buildNamespace and sourceRepositories: defaults, and context values', () => {
  expect([DEFAULT_PARAMETERS.buildNamespace, DEFAULT_PARAMETERS.sourceRepositories]).toEqual(['builds', 'create']);
  const p = resolveParameters(newApp({ buildNamespace: 'ci-builds', sourceRepositories: 'import' }).node);
  expect([p.buildNamespace, p.sourceRepositories]).toEqual(['ci-builds', 'import']);
  expect(() => resolveParameters(newApp({ buildNamespace: '' }).node)).toThrow("parameter 'buildNamespace' must not be empty");
});
