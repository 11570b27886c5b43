/**
 * Every kind at once, with non-default parameters: the real rows (queue-fed, queue-fed + Kubernetes,
 * scheduled + Kubernetes, queue-fed + scheduled + Kubernetes, webhooks) plus test-only rows for
 * combinations no real row has: a webhook row reading a parameter with its own environment, a
 * scheduled row with a schedule input, and a queue-fed + scheduled row with a batching window,
 * secrets and no bus access. The stack takes the table as a prop; these rows ride on top of the
 * real ones. One synth for the file; the template is also written for cfn-lint (npm run lint:cfn).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { Architecture } from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parse, stringify } from 'yaml';
import { FunctionSpec, SECRETS, SecretId } from '../lib/function-spec';
import { FUNCTIONS } from '../lib/functions';
import { MlopsStack } from '../lib/mlops-stack';
import { REPO_ROOT } from '../lib/parameters';
import { loadRoutes, Route } from '../lib/routes';
import { actionsOf, allStatements, asArray, Json, logicalId, roleStatements, synth } from './helpers';
import { expectEveryQueueHasADlq, expectFunctionWiring } from './wiring';

const FAKE_CRATE = 'functions/ledger';

export const EXTRA_ROWS: FunctionSpec[] = [
  {
    name: 'fake-mlflow-webhook',
    description: 'test row: MLflow registry webhook',
    crate: FAKE_CRATE,
    memoryMb: 256,
    timeoutSeconds: 10,
    webhook: { signedBy: 'mlflowWebhookSecret' },
    parameters: ['mlflowUrl'],
    environment: () => ({ MODEL_STAGE: 'registry' }),
    access: () => [{ kind: 'putEvents' }],
  },
  {
    name: 'fake-git-webhook',
    description: 'test row: Git push webhook',
    crate: FAKE_CRATE,
    memoryMb: 256,
    timeoutSeconds: 10,
    webhook: { signedBy: 'gitWebhookSecret' },
    access: () => [{ kind: 'putEvents' }],
  },
  {
    name: 'fake-watch',
    description: 'test row: scheduled poller that reads training workloads',
    crate: FAKE_CRATE,
    memoryMb: 512,
    timeoutSeconds: 50,
    schedule: { expression: 'rate(1 minute)', input: { scope: 'all' } },
    kubernetes: { groups: ['mlops-training'] },
  },
  {
    name: 'fake-scaler',
    description: 'test row: queue-fed and scheduled, scales serving, reads the Argo CD and Git tokens',
    crate: FAKE_CRATE,
    memoryMb: 256,
    timeoutSeconds: 60,
    queue: { batchSize: 5, maxBatchingWindowSeconds: 5, maxConcurrency: 2 },
    schedule: { expression: 'cron(0/5 * * * ? *)' },
    kubernetes: { groups: ['mlops-serving'] },
    secrets: ['argocdToken', 'gitToken'],
  },
];

export const EXTRA_ROUTES: Route[] = [
  {
    name: 'fake-deployments',
    bus: 'mlops',
    description: 'test route',
    pattern: { source: ['mlops.deploy-sync'], 'detail-type': ['DeploymentHealthy'] },
    target: 'fake-scaler',
  },
];

const READERS: Record<SecretId, string[]> = {
  mlflowWebhookSecret: ['mlflow-webhook', 'fake-mlflow-webhook'],
  gitWebhookSecret: ['git-webhook', 'fake-git-webhook'],
  argocdToken: ['deploy-sync', 'fake-scaler'],
  gitToken: ['build-image', 'promote-model', 'deploy-sync', 'fake-scaler'],
};

const TOPIC = 'arn:aws:sns:us-east-1:123456789012:mlops-alerts';
let stack: MlopsStack;
let template: Template;

beforeAll(() => {
  const out = path.resolve(__dirname, '..', 'cdk.out.test');
  fs.mkdirSync(out, { recursive: true });
  // The sample config with its models' training.cluster / source.cluster moved to this test's
  // cluster (a model may only name the stack's cluster).
  const config = parse(fs.readFileSync(path.join(REPO_ROOT, 'samples', 'pipeline.yaml'), 'utf8'));
  type Placed = { cluster?: string } | undefined;
  for (const model of Object.values((config.models ?? {}) as Record<string, { training?: Placed; source?: Placed }>)) {
    for (const block of [model.training, model.source]) if (block?.cluster) block.cluster = 'test-cluster';
  }
  const pipelineConfig = path.join(out, 'pipeline.yaml');
  fs.writeFileSync(pipelineConfig, stringify(config));
  ({ stack, template } = synth({
    functions: [...FUNCTIONS, ...EXTRA_ROWS],
    routes: [...loadRoutes(), ...EXTRA_ROUTES],
    parameters: {
      clusterName: 'test-cluster',
      pipelineConfig,
      mlflowUrl: 'https://mlflow.test.internal',
      stallAfterSeconds: 600,
      architecture: Architecture.X86_64,
      logRetentionDays: 7,
      maxReceiveCount: 3,
      alarmTopicArn: TOPIC,
    },
  }));
  fs.writeFileSync(path.join(out, 'AllKinds.template.json'), JSON.stringify(template.toJSON(), null, 1));
});

const fnOf = (name: string) => stack.functions.get(name)!;
const getAtt = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });

test('each function has exactly the wiring its kind says', () => {
  expectFunctionWiring(template, stack);
});

test('every queue has a DLQ, including the schedule-only functions', () => {
  expectEveryQueueHasADlq(template, stack);
  for (const name of ['fake-watch', 'training-watch']) {
    expect(fnOf(name).queue).toBeUndefined();
    expect(fnOf(name).deadLetterQueue).toBeDefined();
  }
});

test('parameters reach the resources: architecture, retention, receives', () => {
  for (const f of Object.values(template.findResources('AWS::Lambda::Function'))) {
    expect(f.Properties.Architectures).toEqual(['x86_64']);
  }
  for (const g of Object.values(template.findResources('AWS::Logs::LogGroup'))) expect(g.Properties.RetentionInDays).toBe(7);
});

describe('webhooks', () => {
  test('a Function URL with auth NONE and an output per webhook function', () => {
    const outputs = template.findOutputs('*');
    for (const name of ['fake-mlflow-webhook', 'fake-git-webhook']) {
      const f = fnOf(name);
      expect(f.url).toBeDefined();
      const key = `${name.split('-').map((w) => w[0].toUpperCase() + w.slice(1)).join('')}WebhookUrl`;
      expect(outputs[key].Value).toEqual({ 'Fn::GetAtt': [logicalId(f.url!), 'FunctionUrl'] });
    }
    // The two test rows and the real mlflow-webhook and git-webhook.
    expect(Object.keys(outputs).filter((o) => o.endsWith('WebhookUrl'))).toHaveLength(4);
  });

  test('anyone may invoke the URL, and only through the URL', () => {
    const perms = Object.values(template.findResources('AWS::Lambda::Permission')).map((p) => p.Properties as Json);
    for (const name of ['fake-mlflow-webhook', 'fake-git-webhook']) {
      const mine = perms.filter((p) => JSON.stringify(p.FunctionName) === JSON.stringify(getAtt(logicalId(fnOf(name).fn))));
      // URL auth NONE needs both: InvokeFunctionUrl, and InvokeFunction restricted to URL calls.
      expect(mine.map((p) => p.Action).sort()).toEqual(['lambda:InvokeFunction', 'lambda:InvokeFunctionUrl']);
      for (const p of mine) {
        expect(p.Principal).toBe('*');
        if (p.Action === 'lambda:InvokeFunctionUrl') expect(p.FunctionUrlAuthType).toBe('NONE');
        else expect([p.Action, p.InvokedViaFunctionUrl]).toEqual(['lambda:InvokeFunction', true]);
      }
    }
  });
});

describe('secret isolation', () => {
  test.each(Object.keys(SECRETS) as SecretId[])('%s is readable by its functions and by nothing else', (id) => {
    const secretRef = { Ref: logicalId(stack.secrets[id]) };
    const expectedRoles = READERS[id].map((n) => logicalId(fnOf(n).role)).sort();

    // Identity side: exactly the listed roles are allowed GetSecretValue on it, on it alone.
    const allowed = new Set<string>();
    for (const { resource, type, statement } of allStatements(template)) {
      if (statement.Effect !== 'Allow' || !actionsOf(statement).some((a) => a.startsWith('secretsmanager:'))) continue;
      expect(type).toBe('AWS::IAM::Policy');
      expect(actionsOf(statement)).toEqual(['secretsmanager:GetSecretValue']);
      const resources = asArray(statement.Resource).map((r) => JSON.stringify(r));
      for (const r of resources) expect(r).toMatch(/^\{"Ref":"Secret/);
      if (!resources.includes(JSON.stringify(secretRef))) continue;
      const roles = (template.findResources('AWS::IAM::Policy')[resource].Properties.Roles as { Ref: string }[]).map((r) => r.Ref);
      roles.forEach((r) => allowed.add(r));
    }
    expect([...allowed].sort()).toEqual(expectedRoles);

    // Resource side: everyone else is denied the value, whatever their identity policies say.
    template.hasResourceProperties('AWS::SecretsManager::ResourcePolicy', {
      SecretId: secretRef,
      ResourcePolicy: {
        Statement: [
          {
            Sid: 'OnlyItsFunctionsReadTheValue',
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 'secretsmanager:GetSecretValue',
            Resource: secretRef,
            Condition: { ArnNotEquals: { 'aws:PrincipalArn': READERS[id].map((n) => getAtt(logicalId(fnOf(n).role))) } },
          },
        ],
      },
    });

    // The readers get the ARN, never the value.
    for (const n of READERS[id]) {
      const env = template.findResources('AWS::Lambda::Function')[logicalId(fnOf(n).fn)].Properties.Environment.Variables;
      expect(env[SECRETS[id].env]).toEqual(secretRef);
    }
  });
});

describe('schedules', () => {
  test('the scheduler role may invoke only its function and send only to its DLQ', () => {
    for (const name of ['training-watch', 'vllm-scaler', 'fake-watch', 'fake-scaler']) {
      const f = fnOf(name);
      const schedule = Object.values(template.findResources('AWS::Scheduler::Schedule')).find(
        (s) => JSON.stringify(s.Properties.Target.Arn) === JSON.stringify(getAtt(logicalId(f.fn))),
      )!;
      expect(schedule.Properties.FlexibleTimeWindow).toEqual({ Mode: 'OFF' });
      const roleId = schedule.Properties.Target.RoleArn['Fn::GetAtt'][0] as string;
      for (const s of roleStatements(template, roleId)) {
        for (const r of asArray(s.Resource)) {
          const text = JSON.stringify(r);
          expect(text.includes(logicalId(f.fn)) || text.includes(logicalId(f.deadLetterQueue!))).toBe(true);
        }
      }
    }
  });

  test('schedule input is the row input, or {}', () => {
    const inputs = Object.values(template.findResources('AWS::Scheduler::Schedule')).map((s) => JSON.parse(s.Properties.Target.Input));
    expect(inputs).toEqual(expect.arrayContaining([{ scope: 'all' }, {}]));
  });

  test('failed asynchronous runs land in the DLQ', () => {
    for (const name of ['training-watch', 'vllm-scaler', 'fake-watch', 'fake-scaler']) {
      const f = fnOf(name);
      template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
        FunctionName: { Ref: logicalId(f.fn) },
        DestinationConfig: { OnFailure: { Destination: getAtt(logicalId(f.deadLetterQueue!)) } },
      });
    }
  });
});

test('the stack sets the well-known variables from parameters and kinds; the row adds its own', () => {
  const envOf = (name: string) => template.findResources('AWS::Lambda::Function')[logicalId(fnOf(name).fn)].Properties.Environment.Variables;
  expect(envOf('fake-mlflow-webhook')).toEqual({
    RUST_LOG: 'info',
    MLFLOW_TRACKING_URI: 'https://mlflow.test.internal',
    EVENT_BUS_NAME: { Ref: logicalId(stack.bus) },
    MLFLOW_WEBHOOK_SECRET_ARN: { Ref: logicalId(stack.secrets.mlflowWebhookSecret) },
    MODEL_STAGE: 'registry',
  });
  expect(envOf('training-watch')).toEqual({
    RUST_LOG: 'info',
    PIPELINE_CONFIG: '/var/task/pipeline.yaml',
    CLUSTER_NAME: 'test-cluster',
    EVENT_BUS_NAME: { Ref: logicalId(stack.bus) },
    MLFLOW_TRACKING_URI: 'https://mlflow.test.internal',
    TRAINING_NAMESPACE: 'training',
    BUILD_NAMESPACE: 'builds',
    STALL_AFTER_SECONDS: '600',
  });
  // No bus access, no bus name; no Kubernetes, no cluster name.
  expect(envOf('fake-scaler').EVENT_BUS_NAME).toBeUndefined();
  expect(envOf('fake-git-webhook').CLUSTER_NAME).toBeUndefined();
});

describe('kubernetes', () => {
  test('access entries map exactly the Kubernetes rows to their groups', () => {
    const entries = Object.values(template.findResources('AWS::EKS::AccessEntry')).map((e) => e.Properties);
    const entry = (name: string, ...groups: string[]) => ({
      ClusterName: 'test-cluster',
      PrincipalArn: getAtt(logicalId(fnOf(name).role)),
      Type: 'STANDARD',
      KubernetesGroups: groups,
    });
    expect(entries).toEqual(
      expect.arrayContaining([
        entry('build-image', 'mlops-build'),
        entry('launch-training', 'mlops-training'),
        entry('training-watch', 'mlops-training', 'mlops-build-watch'),
        entry('vllm-scaler', 'mlops-serving'),
        entry('fake-watch', 'mlops-training'),
        entry('fake-scaler', 'mlops-serving'),
      ]),
    );
    expect(entries).toHaveLength(6);
  });

  test('eks:DescribeCluster on the one cluster ARN, only for Kubernetes rows', () => {
    const clusterArn = 'arn:aws:eks:us-east-1:123456789012:cluster/test-cluster';
    for (const f of stack.functions.values()) {
      const eksStatements = roleStatements(template, logicalId(f.role)).filter((s) => actionsOf(s).some((a) => a.startsWith('eks:')));
      if (f.spec.kubernetes) {
        expect(eksStatements).toEqual([{ Effect: 'Allow', Action: 'eks:DescribeCluster', Resource: stack.resolve(clusterArn) }]);
      } else {
        expect([f.spec.name, eksStatements]).toEqual([f.spec.name, []]);
      }
    }
  });
});

test('alarms notify the configured topic', () => {
  const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
  // Errors and throttles for every function, DLQ depth for those with a DLQ (not webhooks).
  const withDlq = [...stack.functions.values()].filter((f) => f.deadLetterQueue).length;
  expect(alarms.length).toBe(2 * stack.functions.size + withDlq);
  // Every function but the webhooks (two test rows, mlflow-webhook, git-webhook) has a queue or schedule DLQ.
  expect(withDlq).toBe(stack.functions.size - 4);
  for (const a of alarms) expect(a.Properties.AlarmActions).toEqual([TOPIC]);
});

test('no policy statement allows a "*" resource or a wildcard action, but the ECR registry token', () => {
  const stars: string[][] = [];
  for (const { resource, statement } of allStatements(template)) {
    if (statement.Effect !== 'Allow') continue;
    // ecr:GetAuthorizationToken has no resource-level permissions: its statement alone may name "*".
    if (asArray(statement.Resource).includes('*')) stars.push([resource, ...actionsOf(statement)]);
    else expect([resource, asArray(statement.Resource)]).toEqual([resource, expect.not.arrayContaining(['*'])]);
    for (const a of actionsOf(statement)) expect([resource, a]).toEqual([resource, expect.not.stringContaining('*')]);
  }
  expect(stars).toEqual([[expect.stringMatching(/^BuildImageRoleDefaultPolicy/), 'ecr:GetAuthorizationToken']]);
});

test('cdk-nag AwsSolutionsChecks finds nothing unacknowledged', () => {
  const report = new AwsSolutionsChecks().validateScope(stack);
  expect(report.violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
});
