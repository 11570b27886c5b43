/**
 * The stack as deployed today: the real function table (lib/functions.ts), events/routes.json and
 * samples/pipeline.yaml. One synth for the whole file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { FUNCTIONS } from '../lib/functions';
import { MlopsStack } from '../lib/mlops-stack';
import { REPO_ROOT } from '../lib/parameters';
import { loadRoutes } from '../lib/routes';
import { SECRETS } from '../lib/function-spec';
import { actionsOf, allStatements, asArray, Json, logicalId, roleStatements, synth } from './helpers';
import { expectEveryQueueHasADlq, expectFunctionWiring } from './wiring';

let stack: MlopsStack;
let template: Template;

beforeAll(() => {
  ({ stack, template } = synth());
});

const fnOf = (name: string) => stack.functions.get(name)!;
const getAtt = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });
const objectsUnder = (bucketId: string, prefix: string) => ({ 'Fn::Join': ['', [getAtt(bucketId), `/${prefix}*`]] });

describe('functions', () => {
  test('the stack has one function per row of the table', () => {
    expect([...stack.functions.keys()]).toEqual(FUNCTIONS.map((f) => f.name));
  });

  test('each function has exactly the wiring its kind says', () => {
    expectFunctionWiring(template, stack);
  });

  test('data-arrival: sizing, environment and the bundled pipeline config', () => {
    const f = template.findResources('AWS::Lambda::Function')[logicalId(fnOf('data-arrival').fn)].Properties;
    expect(f.MemorySize).toBe(2048);
    expect(f.Timeout).toBe(900);
    expect(f.EphemeralStorage).toEqual({ Size: 10240 });
    expect(f.Architectures).toEqual(['arm64']);
    expect(f.Environment.Variables).toEqual({
      RUST_LOG: 'info',
      PIPELINE_CONFIG: '/var/task/pipeline.yaml',
      ARTIFACT_BUCKET: { Ref: logicalId(stack.artifactBucket) },
      EVENT_BUS_NAME: { Ref: logicalId(stack.bus) },
      PROCESSED_PREFIX: 'processed/',
      STATE_PREFIX: 'state/',
    });
    // The package really holds the config at the path PIPELINE_CONFIG names.
    const assembly = (stack.node.root as App).synth();
    const assetDir = path.join(assembly.directory, `asset.${String(f.Code.S3Key).replace(/\.zip$/, '')}`);
    expect(fs.readdirSync(assetDir).sort()).toEqual(['bootstrap', 'pipeline.yaml']);
    expect(fs.readFileSync(path.join(assetDir, 'pipeline.yaml'), 'utf8')).toBe(
      fs.readFileSync(path.join(REPO_ROOT, 'samples', 'pipeline.yaml'), 'utf8'),
    );
  });

  test('ledger: sizing and environment, no bundled config', () => {
    const f = template.findResources('AWS::Lambda::Function')[logicalId(fnOf('ledger').fn)].Properties;
    expect([f.MemorySize, f.Timeout, f.EphemeralStorage]).toEqual([256, 30, undefined]);
    expect(f.Environment.Variables).toEqual({
      RUST_LOG: 'info',
      ARTIFACT_BUCKET: { Ref: logicalId(stack.artifactBucket) },
      LEDGER_PREFIX: 'ledger/',
    });
  });

  test('the queue visibility timeout is at least 6x the function timeout', () => {
    const q = template.findResources('AWS::SQS::Queue')[logicalId(fnOf('data-arrival').queue!)].Properties;
    expect(q.VisibilityTimeout).toBe(5400);
  });
});

describe('least privilege', () => {
  test('data-arrival may do exactly what it needs', () => {
    const f = fnOf('data-arrival');
    const data = logicalId(stack.dataBucket);
    const artifact = logicalId(stack.artifactBucket);
    expect(roleStatements(template, logicalId(f.role))).toEqual([
      { Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: getAtt(logicalId(f.logGroup)) },
      {
        Effect: 'Allow',
        Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'],
        Resource: getAtt(logicalId(f.queue!)),
      },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:GetObjectVersion'],
        // Both dataset prefixes of samples/pipeline.yaml (minimizePolicies sorts them).
        Resource: expect.arrayContaining([
          objectsUnder(data, 'incoming/transactions/'),
          objectsUnder(data, 'incoming/transactions-parquet/'),
        ]),
      },
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: getAtt(data),
        Condition: { StringLike: { 's3:prefix': ['incoming/transactions/*', 'incoming/transactions-parquet/*'] } },
      },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject'],
        Resource: [objectsUnder(artifact, 'processed/'), objectsUnder(artifact, 'state/data-arrival/')],
      },
      { Effect: 'Allow', Action: 'events:PutEvents', Resource: getAtt(logicalId(stack.bus)) },
    ]);
    const reads = roleStatements(template, logicalId(f.role)).find((s) => actionsOf(s).includes('s3:GetObjectVersion'))!;
    expect(asArray(reads.Resource)).toHaveLength(2);
  });

  test('ledger may do exactly what it needs', () => {
    const f = fnOf('ledger');
    expect(roleStatements(template, logicalId(f.role))).toEqual([
      { Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: getAtt(logicalId(f.logGroup)) },
      {
        Effect: 'Allow',
        Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'],
        Resource: getAtt(logicalId(f.queue!)),
      },
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: objectsUnder(logicalId(stack.artifactBucket), 'ledger/') },
    ]);
  });

  test('roles carry no managed policies', () => {
    for (const role of Object.values(template.findResources('AWS::IAM::Role'))) {
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    }
  });

  test('no policy statement allows a "*" resource or a wildcard action', () => {
    const statements = allStatements(template);
    expect(statements.length).toBeGreaterThan(10);
    for (const { resource, statement } of statements) {
      if (statement.Effect !== 'Allow') continue;
      // No action used here requires Resource "*"; a future one must be added to this list with its reason.
      const needsStar: string[] = [];
      for (const r of asArray(statement.Resource)) {
        if (r === '*') expect([resource, actionsOf(statement)]).toEqual([resource, expect.arrayContaining(needsStar)]);
      }
      for (const a of actionsOf(statement)) expect([resource, a]).toEqual([resource, expect.not.stringContaining('*')]);
    }
  });
});

describe('secrets', () => {
  test('the four secrets exist under mlops/', () => {
    const names = Object.values(template.findResources('AWS::SecretsManager::Secret')).map((s) => s.Properties.Name);
    expect(names.sort()).toEqual(Object.values(SECRETS).map((s) => `mlops/${s.name}`).sort());
  });

  test('no function reads any secret yet, and every secret denies its value to everyone', () => {
    for (const s of allStatements(template)) {
      if (s.statement.Effect === 'Allow') expect(actionsOf(s.statement)).not.toContain('secretsmanager:GetSecretValue');
    }
    for (const secret of Object.values(stack.secrets)) {
      template.hasResourceProperties('AWS::SecretsManager::ResourcePolicy', {
        SecretId: { Ref: logicalId(secret) },
        ResourcePolicy: {
          Statement: [
            {
              Effect: 'Deny',
              Principal: { AWS: '*' },
              Action: 'secretsmanager:GetSecretValue',
              Resource: { Ref: logicalId(secret) },
              Condition: Match.absent(),
              Sid: 'OnlyItsFunctionsReadTheValue',
            },
          ],
        },
      });
    }
  });
});

describe('event plumbing', () => {
  const routes = loadRoutes();

  test('the custom bus exists with an archive of every event', () => {
    template.hasResourceProperties('AWS::Events::EventBus', { Name: 'mlops' });
    template.hasResourceProperties('AWS::Events::Archive', {
      SourceArn: getAtt(logicalId(stack.bus)),
      EventPattern: { account: [stack.resolve(stack.account)] },
      RetentionDays: 90,
    });
  });

  test('each route in routes.json becomes exactly one rule on its bus, targeting its function queue', () => {
    const rules = template.findResources('AWS::Events::Rule');
    expect(Object.keys(rules)).toHaveLength(routes.length);
    for (const route of routes) {
      const mine = Object.values(rules).filter((r) => String(r.Properties.Description).startsWith(`${route.name}:`));
      expect([route.name, mine.length]).toEqual([route.name, 1]);
      const rule = mine[0].Properties;
      expect(rule.EventBusName).toEqual(route.bus === 'default' ? 'default' : { Ref: logicalId(stack.bus) });
      const f = fnOf(route.target);
      expect(rule.Targets).toEqual([
        { Id: 'Target0', Arn: getAtt(logicalId(f.queue!)), DeadLetterConfig: { Arn: getAtt(logicalId(f.deadLetterQueue!)) } },
      ]);
    }
  });

  test('patterns are routes.json verbatim, with {{data_bucket}} replaced by the data bucket', () => {
    const json = JSON.stringify(routes.map((r) => r.pattern));
    const expected = JSON.parse(json.replace(/"\{\{data_bucket\}\}"/g, JSON.stringify({ Ref: logicalId(stack.dataBucket) })));
    const rules = Object.values(template.findResources('AWS::Events::Rule'));
    routes.forEach((route, i) => {
      const rule = rules.find((r) => String(r.Properties.Description).startsWith(`${route.name}:`))!;
      expect(rule.Properties.EventPattern).toEqual(expected[i]);
    });
    const s3 = rules.find((r) => String(r.Properties.Description).startsWith('s3-object-created:'))!;
    expect(s3.Properties.EventBusName).toBe('default');
    expect(s3.Properties.EventPattern.detail.bucket.name).toEqual([{ Ref: logicalId(stack.dataBucket) }]);
  });

  test('EventBridge may send to each target queue only from its rule', () => {
    for (const route of routes) {
      const f = fnOf(route.target);
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: logicalId(f.queue!) }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Allow',
              Principal: { Service: 'events.amazonaws.com' },
              Action: ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'],
              Condition: { ArnEquals: { 'aws:SourceArn': getAtt(logicalId(stack.rules.get(route.name)!)) } },
            }),
          ]),
        },
      });
    }
  });

  test('every queue has a DLQ', () => {
    expectEveryQueueHasADlq(template, stack);
  });
});

describe('storage', () => {
  test.each([
    ['data', () => stack.dataBucket],
    ['artifact', () => stack.artifactBucket],
  ])('the %s bucket is encrypted, versioned, private, TLS-only and access-logged', (_name, bucket) => {
    const id = logicalId(bucket());
    const props = template.findResources('AWS::S3::Bucket')[id].Properties;
    expect(props.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm).toBe('AES256');
    expect(props.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(props.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(props.LoggingConfiguration.DestinationBucketName).toEqual({ Ref: logicalId(stack.accessLogsBucket) });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: id },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  test('only the data bucket sends EventBridge notifications', () => {
    const buckets = template.findResources('AWS::S3::Bucket');
    expect(buckets[logicalId(stack.dataBucket)].Properties.NotificationConfiguration).toEqual({
      EventBridgeConfiguration: { EventBridgeEnabled: true },
    });
    expect(buckets[logicalId(stack.artifactBucket)].Properties.NotificationConfiguration).toBeUndefined();
    // Set natively: no notifications custom resource (and its Lambda with s3:PutBucketNotification on *).
    expect(Object.keys(template.findResources('Custom::S3BucketNotifications'))).toHaveLength(0);
  });
});

describe('operations', () => {
  test('each function has error and throttle alarms, and an alarm on its DLQ depth', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties as Json);
    for (const f of stack.functions.values()) {
      const fnRef = { Ref: logicalId(f.fn) };
      for (const metric of ['Errors', 'Throttles']) {
        const hits = alarms.filter(
          (a) => a.MetricName === metric && JSON.stringify(a.Dimensions) === JSON.stringify([{ Name: 'FunctionName', Value: fnRef }]),
        );
        expect([f.spec.name, metric, hits.length]).toEqual([f.spec.name, metric, 1]);
        expect(hits[0]).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' });
      }
      const dlq = alarms.filter(
        (a) =>
          a.MetricName === 'ApproximateNumberOfMessagesVisible' &&
          JSON.stringify(a.Dimensions) === JSON.stringify([{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(f.deadLetterQueue!), 'QueueName'] } }]),
      );
      expect([f.spec.name, dlq.length]).toEqual([f.spec.name, 1]);
    }
  });

  test('outputs name the buckets, the bus and each function and DLQ', () => {
    const outputs = Object.keys(template.findOutputs('*'));
    expect(outputs).toEqual(
      expect.arrayContaining([
        'DataBucketName',
        'ArtifactBucketName',
        'EventBusName',
        'EventBusArn',
        'DataArrivalFunctionName',
        'DataArrivalDeadLetterQueueUrl',
        'LedgerFunctionName',
        'LedgerDeadLetterQueueUrl',
      ]),
    );
    expect(outputs.filter((o) => o.endsWith('WebhookUrl'))).toEqual([]);
  });
});

describe('cdk-nag', () => {
  test('AwsSolutionsChecks finds nothing unacknowledged', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });

  test('every acknowledgment carries a reason', () => {
    const acks: [string, string][] = [];
    const visit = (c: import('constructs').IConstruct) => {
      for (const m of c.node.metadata) {
        if (m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY) {
          for (const [id, reason] of Object.entries(m.data as Record<string, string>)) acks.push([id, reason]);
        }
      }
      c.node.children.forEach(visit);
    };
    visit(stack);
    expect(acks.length).toBeGreaterThan(0);
    for (const [id, reason] of acks) expect([id, reason.length >= 20]).toEqual([id, true]);
    // The only rules acknowledged today (README "cdk-nag"): a new one must be documented there too.
    const rules = new Set(acks.map(([id]) => id.replace(/^annotation::/i, '').replace(/\[.*$/, '')));
    expect([...rules].sort()).toEqual(['AwsSolutions-IAM5', 'AwsSolutions-SMG4']);
  });
});
