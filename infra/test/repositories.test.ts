/**
 * The ECR repositories of the models' source images: created by the stack when they are its own
 * (its account and region, parameter sourceRepositories=create), imported by ARN otherwise, and
 * build-image may push to exactly those. One synth per config.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ECR_PUSH_ACTIONS } from '../lib/function-spec';
import { MlopsStack, MlopsStackProps } from '../lib/mlops-stack';
import { parseEcrRepositoryUri } from '../lib/pipeline-config';
import { actionsOf, asArray, logicalId, newApp, roleStatements, synth } from './helpers';
import { expectFunctionWiring } from './wiring';

const DATASETS = 'datasets:\n  tx:\n    prefix: incoming/tx/\n    format: csv\n    model: fraud\n';
const HERE = '123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/fraud-trainer';
const OTHER_ACCOUNT = '210987654321.dkr.ecr.us-east-1.amazonaws.com/shared/trainer';
const OTHER_REGION = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud-trainer-eu';
const CHINA = '123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/fraud-trainer';

function config(images: Record<string, string>): string {
  const models = Object.entries(images)
    .map(([model, image]) => `  ${model}:\n    source:\n      repo: https://git.example/${model}.git\n      image: ${image}\n`)
    .join('');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-infra-'));
  const file = path.join(dir, 'pipeline.yaml');
  fs.writeFileSync(file, `${DATASETS}models:\n${models}`);
  return file;
}

/** build-image's ECR statements, resources as resolved JSON strings. */
function ecrStatementsOf(stack: MlopsStack, template: Template): { actions: string[]; resources: string[] }[] {
  return roleStatements(template, logicalId(stack.functions.get('build-image')!.role))
    .filter((s) => actionsOf(s).some((a) => a.startsWith('ecr:')))
    .map((s) => ({ actions: actionsOf(s), resources: asArray(s.Resource).map((r) => JSON.stringify(r)).sort() }));
}

const literal = (uri: string) => JSON.stringify(parseEcrRepositoryUri(uri)!.arn);

describe('one repository of the stack, others imported', () => {
  let stack: MlopsStack;
  let template: Template;
  beforeAll(() => {
    ({ stack, template } = synth({
      parameters: {
        pipelineConfig: config({ fraud: HERE, 'fraud-v2': HERE, shared: OTHER_ACCOUNT, eu: OTHER_REGION, cn: CHINA }),
      },
    }));
  });

  test('only the repository in the stack account and region is created, once for the two models that share it', () => {
    const repos = template.findResources('AWS::ECR::Repository');
    expect(Object.values(repos).map((r) => r.Properties.RepositoryName)).toEqual(['ml/fraud-trainer']);
    expect([...stack.sourceRepositories.keys()]).toEqual([HERE, OTHER_ACCOUNT, OTHER_REGION, CHINA]);
    const id = logicalId(stack.sourceRepositories.get(HERE)!);
    expect(Object.keys(repos)).toEqual([id]);
    expect(template.findOutputs('*').SourceRepositoryMlFraudTrainerUri.Description).toBe('Trainer image repository of fraud, fraud-v2');
  });

  test('build-image may push to the created one and to the imported ones by their exact ARNs, and to nothing else', () => {
    expect(ecrStatementsOf(stack, template)).toEqual([
      { actions: ['ecr:GetAuthorizationToken'], resources: ['"*"'] },
      {
        actions: [...ECR_PUSH_ACTIONS].sort(),
        resources: [
          JSON.stringify({ 'Fn::GetAtt': [logicalId(stack.sourceRepositories.get(HERE)!), 'Arn'] }),
          literal(OTHER_ACCOUNT),
          literal(OTHER_REGION),
          literal(CHINA),
        ].sort(),
      },
    ]);
    expect(parseEcrRepositoryUri(OTHER_ACCOUNT)!.arn).toBe('arn:aws:ecr:us-east-1:210987654321:repository/shared/trainer');
    expect(parseEcrRepositoryUri(CHINA)!.arn).toBe('arn:aws-cn:ecr:cn-north-1:123456789012:repository/fraud-trainer');
  });

  test('every row keeps the wiring its kind says, and cdk-nag finds nothing unacknowledged', () => {
    expectFunctionWiring(template, stack);
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });
});

test('sourceRepositories=import: no repository is created; build-image pushes to the exact ARNs', () => {
  const { stack, template } = synth({ parameters: { pipelineConfig: config({ fraud: HERE }), sourceRepositories: 'import' } });
  expect(Object.keys(template.findResources('AWS::ECR::Repository'))).toEqual([]);
  expect(ecrStatementsOf(stack, template)).toEqual([
    { actions: ['ecr:GetAuthorizationToken'], resources: ['"*"'] },
    { actions: [...ECR_PUSH_ACTIONS].sort(), resources: [literal(HERE)] },
  ]);
});

test('an account unknown at synth is taken to be the repository account: the repository is created', () => {
  const props: MlopsStackProps = { env: { region: 'us-east-1' }, skipBundling: true, parameters: { pipelineConfig: config({ fraud: HERE }) } };
  const template = Template.fromStack(new MlopsStack(newApp(), 'NoAccount', props));
  expect(Object.values(template.findResources('AWS::ECR::Repository')).map((r) => r.Properties.RepositoryName)).toEqual(['ml/fraud-trainer']);
});

test('no model with a source block: no repository, and build-image gets no ECR right at all', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-infra-'));
  const file = path.join(dir, 'pipeline.yaml');
  fs.writeFileSync(file, `${DATASETS}models:\n  fraud:\n    training:\n      namespace: training\n`);
  const { stack, template } = synth({ parameters: { pipelineConfig: file } });
  expect(stack.sourceRepositories.size).toBe(0);
  expect(Object.keys(template.findResources('AWS::ECR::Repository'))).toEqual([]);
  expect(ecrStatementsOf(stack, template)).toEqual([]);
  expectFunctionWiring(template, stack);
  const report = new AwsSolutionsChecks().validateScope(stack);
  expect(report.violations).toEqual([]);
});
