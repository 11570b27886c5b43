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

  test('data-arrival: sizing and environment', () => {
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
  });

  test('every function that bundles the pipeline config has it where PIPELINE_CONFIG says', () => {
    const assembly = (stack.node.root as App).synth();
    const fns = template.findResources('AWS::Lambda::Function');
    const bundling = FUNCTIONS.filter((spec) => spec.bundlePipelineConfig).map((spec) => spec.name);
    expect(bundling).toEqual(['data-arrival', 'build-image', 'launch-training', 'training-watch', 'vllm-scaler', 'mlflow-webhook', 'git-webhook', 'validate-model', 'promote-model', 'deploy-sync', 'registry-poller']);
    for (const spec of FUNCTIONS) {
      const f = fns[logicalId(fnOf(spec.name).fn)].Properties;
      const assetDir = path.join(assembly.directory, `asset.${String(f.Code.S3Key).replace(/\.zip$/, '')}`);
      const files = spec.bundlePipelineConfig ? ['bootstrap', 'pipeline.yaml'] : ['bootstrap'];
      expect([spec.name, fs.readdirSync(assetDir).sort()]).toEqual([spec.name, files]);
      if (spec.bundlePipelineConfig) {
        expect(fs.readFileSync(path.join(assetDir, 'pipeline.yaml'), 'utf8')).toBe(
          fs.readFileSync(path.join(REPO_ROOT, 'samples', 'pipeline.yaml'), 'utf8'),
        );
      }
    }
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

  test('build-image: sizing, environment, fed by model-code-pushed on the mlops bus in batches of 5', () => {
    const bi = fnOf('build-image');
    const f = template.findResources('AWS::Lambda::Function')[logicalId(bi.fn)].Properties;
    expect([f.MemorySize, f.Timeout, f.EphemeralStorage]).toEqual([256, 60, undefined]);
    expect(f.Description.length).toBeLessThanOrEqual(256);
    expect(f.Environment.Variables).toEqual({
      RUST_LOG: 'info',
      PIPELINE_CONFIG: '/var/task/pipeline.yaml',
      CLUSTER_NAME: 'ml-prod',
      EVENT_BUS_NAME: { Ref: logicalId(stack.bus) },
      BUILD_NAMESPACE: 'builds',
      // The Git token the build clones with (written into the Kubernetes Secret mlops-git-auth).
      GIT_TOKEN_SECRET_ARN: { Ref: logicalId(stack.secrets.gitToken) },
    });
    const queueId = logicalId(bi.queue!);
    const dlqId = logicalId(bi.deadLetterQueue!);
    expect(template.findResources('AWS::SQS::Queue')[queueId].Properties).toMatchObject({
      VisibilityTimeout: 360,
      RedrivePolicy: { deadLetterTargetArn: getAtt(dlqId), maxReceiveCount: 5 },
    });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(bi.fn) },
      EventSourceArn: getAtt(queueId),
      BatchSize: 5,
      MaximumBatchingWindowInSeconds: Match.absent(),
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    // The one rule delivering to it: ModelCodePushed from git-webhook on the mlops bus.
    const rules = Object.entries(template.findResources('AWS::Events::Rule')).filter(([, r]) =>
      JSON.stringify(r.Properties.Targets).includes(`"${queueId}"`),
    );
    expect(rules.map(([id]) => id)).toEqual([logicalId(stack.rules.get('model-code-pushed')!)]);
    const rule = rules[0][1].Properties;
    expect(rule.EventBusName).toEqual({ Ref: logicalId(stack.bus) });
    expect(rule.EventPattern).toEqual({ source: ['mlops.git-webhook'], 'detail-type': ['ModelCodePushed'] });
    expect(rule.Targets).toEqual([{ Id: 'Target0', Arn: getAtt(queueId), DeadLetterConfig: { Arn: getAtt(dlqId) } }]);
    expect(bi.schedule).toBeUndefined();
    expect(bi.url).toBeUndefined();
  });

  test('launch-training: sizing, environment, fed by dataset-ready and image-built on the mlops bus in batches of 5', () => {
    const lt = fnOf('launch-training');
    const f = template.findResources('AWS::Lambda::Function')[logicalId(lt.fn)].Properties;
    expect([f.MemorySize, f.Timeout, f.EphemeralStorage]).toEqual([512, 60, undefined]);
    expect(f.Environment.Variables).toEqual({
      RUST_LOG: 'info',
      PIPELINE_CONFIG: '/var/task/pipeline.yaml',
      CLUSTER_NAME: 'ml-prod',
      EVENT_BUS_NAME: { Ref: logicalId(stack.bus) },
      MLFLOW_TRACKING_URI: 'https://mlflow.example.com',
      TRAINING_NAMESPACE: 'training',
      // data-arrival's latest-version pointers: <ARTIFACT_BUCKET>/<STATE_PREFIX>data-arrival/latest/<dataset>.json.
      ARTIFACT_BUCKET: { Ref: logicalId(stack.artifactBucket) },
      STATE_PREFIX: 'state/',
    });
    const queueId = logicalId(lt.queue!);
    const dlqId = logicalId(lt.deadLetterQueue!);
    expect(template.findResources('AWS::SQS::Queue')[queueId].Properties).toMatchObject({
      VisibilityTimeout: 360,
      RedrivePolicy: { deadLetterTargetArn: getAtt(dlqId), maxReceiveCount: 5 },
    });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(lt.fn) },
      EventSourceArn: getAtt(queueId),
      BatchSize: 5,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    // Two rules deliver to its one queue (one event source mapping): a new dataset version, and a
    // new trainer image (from training-watch when a build finished, or build-image when ECR had it).
    const rules = Object.entries(template.findResources('AWS::Events::Rule')).filter(([, r]) =>
      JSON.stringify(r.Properties.Targets).includes(`"${queueId}"`),
    );
    expect(rules.map(([id]) => id).sort()).toEqual(
      [logicalId(stack.rules.get('dataset-ready')!), logicalId(stack.rules.get('image-built')!)].sort(),
    );
    const patternOf = (route: string) => {
      const rule = template.findResources('AWS::Events::Rule')[logicalId(stack.rules.get(route)!)].Properties;
      expect(rule.EventBusName).toEqual({ Ref: logicalId(stack.bus) });
      expect(rule.Targets).toEqual([{ Id: 'Target0', Arn: getAtt(queueId), DeadLetterConfig: { Arn: getAtt(dlqId) } }]);
      return rule.EventPattern;
    };
    expect(patternOf('dataset-ready')).toEqual({ source: ['mlops.data-arrival'], 'detail-type': ['DatasetReady'] });
    expect(patternOf('image-built')).toEqual({ source: ['mlops.training-watch', 'mlops.build-image'], 'detail-type': ['ImageBuilt'] });
    // EventBridge may send to the queue from each of the two rules, and from no other.
    const policies = Object.values(template.findResources('AWS::SQS::QueuePolicy')).filter(
      (p) => JSON.stringify(p.Properties.Queues) === JSON.stringify([{ Ref: queueId }]),
    );
    expect(policies).toHaveLength(1);
    const sources = (policies[0].Properties.PolicyDocument.Statement as Json[])
      .filter((st) => JSON.stringify(st.Principal) === JSON.stringify({ Service: 'events.amazonaws.com' }))
      .map((st) => JSON.stringify((st.Condition as Json).ArnEquals));
    expect(sources.sort()).toEqual(
      ['dataset-ready', 'image-built'].map((r) => JSON.stringify({ 'aws:SourceArn': getAtt(logicalId(stack.rules.get(r)!)) })).sort(),
    );
    expect(Object.values(template.findResources('AWS::Lambda::EventSourceMapping')).filter(
      (e) => JSON.stringify(e.Properties.FunctionName) === JSON.stringify({ Ref: logicalId(lt.fn) }),
    )).toHaveLength(1);
    expect(lt.schedule).toBeUndefined();
  });

  test('training-watch: sizing, environment, invoked every minute by Scheduler', () => {
    const tw = fnOf('training-watch');
    const f = template.findResources('AWS::Lambda::Function')[logicalId(tw.fn)].Properties;
    expect([f.MemorySize, f.Timeout, f.EphemeralStorage]).toEqual([512, 120, undefined]);
    expect(f.Environment.Variables).toEqual({
      RUST_LOG: 'info',
      PIPELINE_CONFIG: '/var/task/pipeline.yaml',
      CLUSTER_NAME: 'ml-prod',
      EVENT_BUS_NAME: { Ref: logicalId(stack.bus) },
      MLFLOW_TRACKING_URI: 'https://mlflow.example.com',
      TRAINING_NAMESPACE: 'training',
      // It watches the image-build Jobs there too (ImageBuilt / ImageBuildFailed).
      BUILD_NAMESPACE: 'builds',
      STALL_AFTER_SECONDS: '1800',
    });
    expect(tw.queue).toBeUndefined();
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: Match.objectLike({
        Arn: getAtt(logicalId(tw.fn)),
        Input: '{}',
        DeadLetterConfig: { Arn: getAtt(logicalId(tw.deadLetterQueue!)) },
        RetryPolicy: { MaximumEventAgeInSeconds: 300, MaximumRetryAttempts: 2 },
      }),
    });
    // training-watch, vllm-scaler and registry-poller.
    expect(Object.keys(template.findResources('AWS::Scheduler::Schedule'))).toHaveLength(3);
  });

  test('vllm-scaler: sizing, environment, invoked every minute by Scheduler and fed by deployment-healthy through its queue', () => {
    const vs = fnOf('vllm-scaler');
    const f = template.findResources('AWS::Lambda::Function')[logicalId(vs.fn)].Properties;
    expect([f.MemorySize, f.Timeout, f.EphemeralStorage]).toEqual([256, 75, undefined]);
    expect(f.Description.length).toBeLessThanOrEqual(256);
    expect(f.Environment.Variables).toEqual({
      RUST_LOG: 'info',
      PIPELINE_CONFIG: '/var/task/pipeline.yaml',
      CLUSTER_NAME: 'ml-prod',
      EVENT_BUS_NAME: { Ref: logicalId(stack.bus) },
      ARTIFACT_BUCKET: { Ref: logicalId(stack.artifactBucket) },
      STATE_PREFIX: 'state/',
    });

    // Scheduled: every minute, the payload {}, failures to its DLQ.
    const dlqId = logicalId(vs.deadLetterQueue!);
    const mine = Object.values(template.findResources('AWS::Scheduler::Schedule')).filter(
      (s) => JSON.stringify(s.Properties.Target.Arn) === JSON.stringify(getAtt(logicalId(vs.fn))),
    );
    expect(mine).toHaveLength(1);
    expect(mine[0].Properties).toMatchObject({
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: {
        Input: '{}',
        DeadLetterConfig: { Arn: getAtt(dlqId) },
        RetryPolicy: { MaximumEventAgeInSeconds: 300, MaximumRetryAttempts: 2 },
      },
    });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: logicalId(vs.fn) },
      DestinationConfig: { OnFailure: { Destination: getAtt(dlqId) } },
    });

    // Queue-fed: visibility above 6 x the 75 s timeout, the same DLQ as the schedule's.
    const queueId = logicalId(vs.queue!);
    expect(template.findResources('AWS::SQS::Queue')[queueId].Properties).toMatchObject({
      VisibilityTimeout: 450,
      RedrivePolicy: { deadLetterTargetArn: getAtt(dlqId), maxReceiveCount: 5 },
    });
    // Batches of 5 at once (no batching window), at most two at a time, partial batch failures.
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(vs.fn) },
      EventSourceArn: getAtt(queueId),
      BatchSize: 5,
      MaximumBatchingWindowInSeconds: Match.absent(),
      ScalingConfig: { MaximumConcurrency: 2 },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });

    // The one rule delivering to it: DeploymentHealthy from deploy-sync on the mlops bus.
    const rules = Object.entries(template.findResources('AWS::Events::Rule')).filter(([, r]) =>
      JSON.stringify(r.Properties.Targets).includes(`"${queueId}"`),
    );
    expect(rules.map(([id]) => id)).toEqual([logicalId(stack.rules.get('deployment-healthy')!)]);
    const rule = rules[0][1].Properties;
    expect(rule.EventBusName).toEqual({ Ref: logicalId(stack.bus) });
    expect(rule.EventPattern).toEqual({ source: ['mlops.deploy-sync'], 'detail-type': ['DeploymentHealthy'] });
    expect(rule.Targets).toEqual([{ Id: 'Target0', Arn: getAtt(queueId), DeadLetterConfig: { Arn: getAtt(dlqId) } }]);
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
      {
        // The claim marker and manifest are probed with GetObject: absent must read as 404, not 403.
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: getAtt(artifact),
        Condition: { StringLike: { 's3:prefix': ['processed/*', 'state/data-arrival/*'] } },
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

  const clusterArn = 'arn:aws:eks:us-east-1:123456789012:cluster/ml-prod';

  test('launch-training may do exactly what it needs: its queue, the latest-version pointers, PutEvents on the bus, DescribeCluster on the cluster', () => {
    const f = fnOf('launch-training');
    const artifact = logicalId(stack.artifactBucket);
    expect(roleStatements(template, logicalId(f.role))).toEqual([
      { Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: getAtt(logicalId(f.logGroup)) },
      {
        Effect: 'Allow',
        Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'],
        Resource: getAtt(logicalId(f.queue!)),
      },
      // Read-only, data-arrival's latest ready version per dataset: nothing else of the artifact
      // bucket (the trainer reads the data with its own role), no write.
      { Effect: 'Allow', Action: 's3:GetObject', Resource: objectsUnder(artifact, 'state/data-arrival/latest/') },
      {
        // A dataset with no ready version has no pointer yet: that must read as 404, not 403.
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: getAtt(artifact),
        Condition: { StringLike: { 's3:prefix': ['state/data-arrival/latest/*'] } },
      },
      { Effect: 'Allow', Action: 'events:PutEvents', Resource: getAtt(logicalId(stack.bus)) },
      { Effect: 'Allow', Action: 'eks:DescribeCluster', Resource: clusterArn },
    ]);
  });

  test("data-arrival's write access covers the latest-version pointers launch-training reads", () => {
    const artifactPrefixes = (name: string, action: string) =>
      fnOf(name)
        .access.filter((a) => a.kind === 's3Objects' && a.bucket === 'artifact' && a.actions.includes(action as never))
        .flatMap((a) => (a.kind === 's3Objects' ? a.prefixes : []));
    const reads = artifactPrefixes('launch-training', 's3:GetObject');
    const writes = artifactPrefixes('data-arrival', 's3:PutObject');
    expect(reads).toEqual(['state/data-arrival/latest/']);
    for (const r of reads) expect([r, writes.filter((w) => r.startsWith(w))]).toEqual([r, ['state/data-arrival/']]);
    // The same in the template: data-arrival's write statement names the enclosing prefix.
    const put = roleStatements(template, logicalId(fnOf('data-arrival').role)).find((s) => actionsOf(s).includes('s3:PutObject'))!;
    expect(asArray(put.Resource)).toContainEqual(objectsUnder(logicalId(stack.artifactBucket), 'state/data-arrival/'));
  });

  test('build-image may do exactly what it needs: its queue, the registry token, push to the source repositories, PutEvents on the bus, the Git token, DescribeCluster on the cluster', () => {
    const f = fnOf('build-image');
    const repository = stack.sourceRepositories.get('123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-trainer')!;
    expect(roleStatements(template, logicalId(f.role))).toEqual([
      { Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: getAtt(logicalId(f.logGroup)) },
      {
        Effect: 'Allow',
        Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'],
        Resource: getAtt(logicalId(f.queue!)),
      },
      // The registry token the build pod pushes with: the action has no resource-level
      // permissions, and the token carries exactly the repository rights below.
      { Effect: 'Allow', Action: 'ecr:GetAuthorizationToken', Resource: '*' },
      {
        // Is <image>:<commit> there already (DescribeImages); pull the registry cache
        // <image>:buildcache; push layers and the manifest. On the one source repository only.
        Effect: 'Allow',
        Action: [
          'ecr:BatchCheckLayerAvailability',
          'ecr:BatchGetImage',
          'ecr:CompleteLayerUpload',
          'ecr:DescribeImages',
          'ecr:GetDownloadUrlForLayer',
          'ecr:InitiateLayerUpload',
          'ecr:PutImage',
          'ecr:UploadLayerPart',
        ],
        Resource: getAtt(logicalId(repository)),
      },
      { Effect: 'Allow', Action: 'events:PutEvents', Resource: getAtt(logicalId(stack.bus)) },
      { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: { Ref: logicalId(stack.secrets.gitToken) } },
      { Effect: 'Allow', Action: 'eks:DescribeCluster', Resource: clusterArn },
    ]);
    // No S3: the build pulls its context from Git, not from the buckets.
    expect(roleStatements(template, logicalId(f.role)).filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')))).toEqual([]);
  });

  test('only build-image may use ECR, and no role may delete images, change repositories or their policies', () => {
    const users = new Set<string>();
    for (const { resource, statement } of allStatements(template)) {
      const ecrActions = actionsOf(statement).filter((a) => a.startsWith('ecr:'));
      if (statement.Effect !== 'Allow' || ecrActions.length === 0) continue;
      const roles = (template.findResources('AWS::IAM::Policy')[resource].Properties.Roles as { Ref: string }[]).map((r) => r.Ref);
      roles.forEach((r) => users.add(r));
      for (const a of ecrActions) {
        expect([resource, a]).toEqual([resource, expect.not.stringMatching(/^ecr:(BatchDelete|Delete|Set|Put(?!Image$)|Create|Tag|Untag)/)]);
      }
    }
    expect([...users]).toEqual([logicalId(fnOf('build-image').role)]);
  });

  test('training-watch may do exactly what it needs: its DLQ, PutEvents on the bus, DescribeCluster on the cluster', () => {
    const f = fnOf('training-watch');
    expect(roleStatements(template, logicalId(f.role))).toEqual([
      { Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: getAtt(logicalId(f.logGroup)) },
      // Failed asynchronous (scheduled) runs are sent to its DLQ by Lambda, as this role.
      { Effect: 'Allow', Action: ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'], Resource: getAtt(logicalId(f.deadLetterQueue!)) },
      { Effect: 'Allow', Action: 'events:PutEvents', Resource: getAtt(logicalId(stack.bus)) },
      { Effect: 'Allow', Action: 'eks:DescribeCluster', Resource: clusterArn },
    ]);
  });

  test('vllm-scaler may do exactly what it needs: its queue and DLQ, its state prefix, PutEvents on the bus, DescribeCluster on the cluster', () => {
    const f = fnOf('vllm-scaler');
    const artifact = logicalId(stack.artifactBucket);
    expect(roleStatements(template, logicalId(f.role))).toEqual([
      { Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: getAtt(logicalId(f.logGroup)) },
      {
        Effect: 'Allow',
        Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'],
        Resource: getAtt(logicalId(f.queue!)),
      },
      // Failed asynchronous (scheduled) runs are sent to its DLQ by Lambda, as this role.
      { Effect: 'Allow', Action: ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'], Resource: getAtt(logicalId(f.deadLetterQueue!)) },
      // Its per-model policy state, and nothing else of the artifact bucket (nor the data bucket).
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: objectsUnder(artifact, 'state/vllm-scaler/') },
      {
        // A model's first run reads its absent state: that must be 404, not 403.
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: getAtt(artifact),
        Condition: { StringLike: { 's3:prefix': ['state/vllm-scaler/*'] } },
      },
      { Effect: 'Allow', Action: 'events:PutEvents', Resource: getAtt(logicalId(stack.bus)) },
      { Effect: 'Allow', Action: 'eks:DescribeCluster', Resource: clusterArn },
    ]);
    // No secret: the scaler reads metrics through the pod proxy (or Prometheus) and the cluster API only.
    const env = template.findResources('AWS::Lambda::Function')[logicalId(f.fn)].Properties.Environment.Variables;
    expect(Object.keys(env).filter((k) => k.endsWith('_SECRET_ARN'))).toEqual([]);
  });

  test('build-image is mapped to mlops-build, the training functions to mlops-training (training-watch also to mlops-build-watch), vllm-scaler to mlops-serving, and nothing else to any group', () => {
    const entries = Object.values(template.findResources('AWS::EKS::AccessEntry')).map((e) => e.Properties);
    const entry = (name: string, groups: string[]) => ({
      ClusterName: 'ml-prod',
      PrincipalArn: getAtt(logicalId(fnOf(name).role)),
      Type: 'STANDARD',
      KubernetesGroups: groups,
    });
    expect(entries).toEqual([
      entry('build-image', ['mlops-build']),
      entry('launch-training', ['mlops-training']),
      entry('training-watch', ['mlops-training', 'mlops-build-watch']),
      entry('vllm-scaler', ['mlops-serving']),
    ]);
    // No access policy association: rights come only from k8s/rbac.yaml.
    expect(Object.keys(template.findResources('AWS::EKS::AccessPolicy'))).toHaveLength(0);
  });

  test('only the functions that emit events may put them, and only on the custom bus', () => {
    const putters = new Set<string>();
    for (const { resource, statement } of allStatements(template)) {
      if (statement.Effect !== 'Allow' || !actionsOf(statement).some((a) => a.startsWith('events:'))) continue;
      expect([resource, statement.Action, statement.Resource]).toEqual([resource, 'events:PutEvents', getAtt(logicalId(stack.bus))]);
      const roles = (template.findResources('AWS::IAM::Policy')[resource].Properties.Roles as { Ref: string }[]).map((r) => r.Ref);
      roles.forEach((r) => putters.add(r));
    }
    expect([...putters].sort()).toEqual(
      ['data-arrival', 'build-image', 'launch-training', 'training-watch', 'vllm-scaler', 'mlflow-webhook', 'git-webhook', 'validate-model', 'promote-model', 'deploy-sync', 'registry-poller'].map((n) => logicalId(fnOf(n).role)).sort(),
    );
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
      // Only actions without resource-level permissions may have Resource "*"; a future one must be
      // added to this list with its reason. ecr:GetAuthorizationToken: the registry token (build-image).
      const needsStar = ['ecr:GetAuthorizationToken'];
      for (const r of asArray(statement.Resource)) {
        if (r === '*') expect([resource, actionsOf(statement).filter((a) => !needsStar.includes(a))]).toEqual([resource, []]);
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

  test('each secret is read only by the functions that use it (the Git token by build-image, promote-model and deploy-sync), and the unused ones deny their value to everyone', () => {
    const readers: Record<string, string[]> = {
      mlflowWebhookSecret: ['mlflow-webhook'],
      gitWebhookSecret: ['git-webhook'],
      gitToken: ['build-image', 'promote-model', 'deploy-sync'],
      argocdToken: ['deploy-sync'],
    };
    const seen: Record<string, string[]> = {};
    for (const s of allStatements(template)) {
      if (s.statement.Effect !== 'Allow' || !actionsOf(s.statement).includes('secretsmanager:GetSecretValue')) continue;
      const roles = (template.findResources('AWS::IAM::Policy')[s.resource].Properties.Roles as { Ref: string }[]).map((r) => r.Ref);
      expect(roles).toHaveLength(1);
      for (const r of asArray(s.statement.Resource)) {
        const [id] = Object.entries(stack.secrets).find(([, secret]) => JSON.stringify(r) === JSON.stringify({ Ref: logicalId(secret) })) ?? [];
        expect(id && readers[id]).toBeTruthy();
        expect(readers[id as string].map((n) => logicalId(fnOf(n).role))).toContain(roles[0]);
        (seen[id as string] ??= []).push(roles[0]);
      }
    }
    for (const [id, names] of Object.entries(readers)) {
      expect([id, (seen[id] ?? []).sort()]).toEqual([id, names.map((n) => logicalId(fnOf(n).role)).sort()]);
    }
    for (const [id, secret] of Object.entries(stack.secrets)) {
      if (id in readers) continue;
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

describe('delayed re-checks', () => {
  test('deploy-sync may send to its own queue and to no other, and finds it in CHECK_QUEUE_URL', () => {
    const f = fnOf('deploy-sync');
    const senders: string[] = [];
    for (const { resource, statement } of allStatements(template)) {
      if (statement.Effect !== 'Allow' || !actionsOf(statement).includes('sqs:SendMessage')) continue;
      const policy = template.findResources('AWS::IAM::Policy')[resource];
      if (!policy) continue; // queue policies: EventBridge delivering to the queues
      const roles = (policy.Properties.Roles as { Ref: string }[]).map((r) => r.Ref);
      if (!roles.includes(logicalId(f.role))) continue;
      senders.push(...roles);
      expect(statement.Resource).toEqual(getAtt(logicalId(f.queue!)));
    }
    expect(senders).toEqual([logicalId(f.role)]);
    const env = template.findResources('AWS::Lambda::Function')[logicalId(f.fn)].Properties.Environment.Variables;
    expect(env.CHECK_QUEUE_URL).toEqual({ Ref: logicalId(f.queue!) });
    for (const other of FUNCTIONS.filter((s) => s.name !== 'deploy-sync')) {
      const vars = template.findResources('AWS::Lambda::Function')[logicalId(fnOf(other.name).fn)].Properties.Environment.Variables;
      expect([other.name, vars.CHECK_QUEUE_URL]).toEqual([other.name, undefined]);
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

describe('source repositories', () => {
  test("each model's source.image is an ECR repository of the stack: scanned on push, commit tags immutable but the build cache's, untagged images expire, kept on stack deletion", () => {
    const repos = template.findResources('AWS::ECR::Repository');
    expect([...stack.sourceRepositories.keys()]).toEqual(['123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-trainer']);
    const id = logicalId(stack.sourceRepositories.get('123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-trainer')!);
    expect(Object.keys(repos)).toEqual([id]);
    const { LifecyclePolicy, ...props } = repos[id].Properties;
    expect(props).toEqual({
      RepositoryName: 'fraud-trainer',
      ImageScanningConfiguration: { ScanOnPush: true },
      ImageTagMutability: 'IMMUTABLE_WITH_EXCLUSION',
      ImageTagMutabilityExclusionFilters: [
        { ImageTagMutabilityExclusionFilterType: 'WILDCARD', ImageTagMutabilityExclusionFilterValue: 'buildcache' },
      ],
    });
    expect(JSON.parse(LifecyclePolicy.LifecyclePolicyText)).toEqual({
      rules: [
        {
          rulePriority: 1,
          description: expect.stringContaining('Untagged images'),
          selection: { tagStatus: 'untagged', countType: 'sinceImagePushed', countNumber: 14, countUnit: 'days' },
          action: { type: 'expire' },
        },
      ],
    });
    expect([repos[id].DeletionPolicy, repos[id].UpdateReplacePolicy]).toEqual(['Retain', 'Retain']);
    // No repository policy: access is the build-image role's identity policy (and the nodes' pull role).
    expect(props.RepositoryPolicyText).toBeUndefined();
    expect(template.findOutputs('SourceRepositoryFraudTrainerUri').SourceRepositoryFraudTrainerUri.Description).toBe(
      'Trainer image repository of fraud-detection',
    );
  });
});

describe('operations', () => {
  test('each function has error and throttle alarms, and an alarm on its DLQ depth', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties as Json);
    for (const f of stack.functions.values()) {
      const fnRef = { Ref: logicalId(f.fn) };
      // A Function URL answers its caller directly: no queue, no DLQ (errors and throttles only).
      const hasDlq = f.deadLetterQueue !== undefined;
      for (const metric of ['Errors', 'Throttles']) {
        const hits = alarms.filter(
          (a) => a.MetricName === metric && JSON.stringify(a.Dimensions) === JSON.stringify([{ Name: 'FunctionName', Value: fnRef }]),
        );
        expect([f.spec.name, metric, hits.length]).toEqual([f.spec.name, metric, 1]);
        expect(hits[0]).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' });
      }
      if (!hasDlq) {
        expect(f.spec.webhook).toBeDefined();
        continue;
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
        'LaunchTrainingFunctionName',
        'LaunchTrainingDeadLetterQueueUrl',
        'TrainingWatchFunctionName',
        'TrainingWatchDeadLetterQueueUrl',
      ]),
    );
    expect(outputs.filter((o) => o.endsWith('WebhookUrl')).sort()).toEqual(['GitWebhookWebhookUrl', 'MlflowWebhookWebhookUrl']);
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
    expect([...rules].sort()).toEqual(['AwsSolutions-IAM5', 'AwsSolutions-SMG4', 'AwsSolutions-SQS3']);
  });
});
