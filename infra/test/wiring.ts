/**
 * The wiring each kind of function must have, and nothing else: asserted for every row of a
 * table by both the real-table and the all-kinds tests.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { secretsOf } from '../lib/mlops-function';
import { MlopsStack } from '../lib/mlops-stack';
import { CLUSTER_NAME_ENV, ECR_PUSH_ACTIONS, EVENT_BUS_NAME_ENV, PARAMETER_ENV, EnvParameter, SECRETS } from '../lib/function-spec';
import { actionsOf, asArray, Json, logicalId, roleStatements } from './helpers';

type Resources = Record<string, { Type: string; Properties: Json; DependsOn?: unknown }>;

function byType(template: Template, type: string): Resources {
  return template.findResources(type) as Resources;
}

const refersTo = (value: unknown, id: string): boolean => JSON.stringify(value).includes(`"${id}"`);

export function expectFunctionWiring(template: Template, stack: MlopsStack): void {
  const fns = byType(template, 'AWS::Lambda::Function');
  const esms = byType(template, 'AWS::Lambda::EventSourceMapping');
  const urls = byType(template, 'AWS::Lambda::Url');
  const schedules = byType(template, 'AWS::Scheduler::Schedule');
  const entries = byType(template, 'AWS::EKS::AccessEntry');
  const queues = byType(template, 'AWS::SQS::Queue');

  for (const f of stack.functions.values()) {
    const spec = f.spec;
    const fnId = logicalId(f.fn);
    const roleId = logicalId(f.role);
    const fn = fns[fnId];
    expect(fn).toBeDefined();
    const p = fn.Properties;

    // Every function: the same runtime and handler, sizing from the table, JSON logs to its own group.
    expect(p.Runtime).toBe('provided.al2023');
    expect(p.Handler).toBe('bootstrap');
    expect(p.Architectures).toEqual([stack.params.architecture.name]);
    expect(p.MemorySize).toBe(spec.memoryMb);
    expect(p.Timeout).toBe(spec.timeoutSeconds);
    expect(p.EphemeralStorage).toEqual(spec.ephemeralStorageMib ? { Size: spec.ephemeralStorageMib } : undefined);
    expect(p.Role).toEqual({ 'Fn::GetAtt': [roleId, 'Arn'] });
    expect((p.LoggingConfig as Json).LogFormat).toBe('JSON');
    expect((p.LoggingConfig as Json).LogGroup).toEqual({ Ref: logicalId(f.logGroup) });
    expect(template.findResources('AWS::Logs::LogGroup')[logicalId(f.logGroup)].Properties.RetentionInDays).toBe(
      stack.params.logRetentionDays,
    );
    const env = (p.Environment as { Variables: Json }).Variables;
    expect(env.RUST_LOG).toBe(stack.params.rustLog);
    expect(env.PIPELINE_CONFIG).toBe(spec.bundlePipelineConfig ? '/var/task/pipeline.yaml' : undefined);
    for (const [id, s] of Object.entries(SECRETS)) {
      const reads = secretsOf(spec).includes(id as keyof typeof SECRETS);
      expect([spec.name, s.env, env[s.env] !== undefined]).toEqual([spec.name, s.env, reads]);
    }
    // The parameters it lists, as their well-known variables, and no other.
    for (const [key, { env: name }] of Object.entries(PARAMETER_ENV) as [EnvParameter, { env: string }][]) {
      const value = (spec.parameters ?? []).includes(key) ? String(stack.params[key]) : undefined;
      expect([spec.name, name, env[name]]).toEqual([spec.name, name, value]);
    }

    // IAM: events:PutEvents only on the custom bus, and then EVENT_BUS_NAME names it.
    const statements = roleStatements(template, roleId);
    const busArn = { 'Fn::GetAtt': [logicalId(stack.bus), 'Arn'] };
    const puts = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('events:')));
    for (const s of puts) expect([spec.name, s.Effect, s.Action, s.Resource]).toEqual([spec.name, 'Allow', 'events:PutEvents', busArn]);
    expect([spec.name, EVENT_BUS_NAME_ENV, env[EVENT_BUS_NAME_ENV]]).toEqual([
      spec.name,
      EVENT_BUS_NAME_ENV,
      puts.length > 0 ? { Ref: logicalId(stack.bus) } : undefined,
    ]);
    // Kubernetes rows, only: eks:DescribeCluster on the one cluster ARN, and CLUSTER_NAME names it.
    const clusterArn = stack.resolve(`arn:aws:eks:${stack.region}:${stack.account}:cluster/${stack.params.clusterName}`);
    const eksStatements = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('eks:')));
    expect([spec.name, eksStatements]).toEqual([
      spec.name,
      spec.kubernetes ? [{ Effect: 'Allow', Action: 'eks:DescribeCluster', Resource: clusterArn }] : [],
    ]);
    expect([spec.name, env[CLUSTER_NAME_ENV]]).toEqual([spec.name, spec.kubernetes ? stack.params.clusterName : undefined]);
    // ecrPush rows, only: the registry token (its action has no resource-level permissions) and
    // the image actions on exactly the models' source repositories; nothing when no model has one.
    const repositoryArns = [...stack.sourceRepositories.values()].map((r) => stack.resolve(r.repositoryArn));
    const pushes = f.access.some((a) => a.kind === 'ecrPush') && repositoryArns.length > 0;
    const ecrStatements = statements
      .filter((s) => actionsOf(s).some((a) => a.startsWith('ecr:')))
      .map((s) => ({ ...s, Resource: asArray(s.Resource).map((r) => JSON.stringify(r)).sort() }));
    expect([spec.name, ecrStatements]).toEqual([
      spec.name,
      pushes
        ? [
            { Effect: 'Allow', Action: 'ecr:GetAuthorizationToken', Resource: ['"*"'] },
            { Effect: 'Allow', Action: [...ECR_PUSH_ACTIONS].sort(), Resource: repositoryArns.map((r) => JSON.stringify(r)).sort() },
          ]
        : [],
    ]);

    // Queue-fed: one queue with a DLQ, one event source mapping reporting batch item failures.
    const myEsms = Object.values(esms).filter((e) => refersTo(e.Properties.FunctionName, fnId));
    if (spec.queue) {
      const queueId = logicalId(f.queue!);
      const dlqId = logicalId(f.deadLetterQueue!);
      expect(myEsms).toHaveLength(1);
      const esm = myEsms[0].Properties;
      expect(esm.EventSourceArn).toEqual({ 'Fn::GetAtt': [queueId, 'Arn'] });
      expect(esm.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
      expect(esm.BatchSize).toBe(spec.queue.batchSize ?? 10);
      const q = queues[queueId].Properties;
      expect(q.VisibilityTimeout as number).toBeGreaterThanOrEqual(6 * spec.timeoutSeconds);
      expect(q.RedrivePolicy).toEqual({
        deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] },
        maxReceiveCount: stack.params.maxReceiveCount,
      });
    } else {
      expect([spec.name, myEsms.length]).toEqual([spec.name, 0]);
      expect(f.queue).toBeUndefined();
    }

    // Webhook: one Function URL with auth NONE (the function verifies the body signature).
    const myUrls = Object.values(urls).filter((u) => refersTo(u.Properties.TargetFunctionArn, fnId));
    if (spec.webhook) {
      expect(myUrls).toHaveLength(1);
      expect(myUrls[0].Properties.AuthType).toBe('NONE');
    } else {
      expect([spec.name, myUrls.length]).toEqual([spec.name, 0]);
    }

    // Scheduled: one Scheduler schedule invoking the function, with a DLQ.
    const mySchedules = Object.values(schedules).filter((s) => refersTo((s.Properties.Target as Json).Arn, fnId));
    if (spec.schedule) {
      expect(mySchedules).toHaveLength(1);
      const s = mySchedules[0].Properties;
      expect(s.ScheduleExpression).toBe(spec.schedule.expression);
      expect((s.Target as Json).DeadLetterConfig).toEqual({ Arn: { 'Fn::GetAtt': [logicalId(f.deadLetterQueue!), 'Arn'] } });
    } else {
      expect([spec.name, mySchedules.length]).toEqual([spec.name, 0]);
    }

    // Kubernetes: one access entry mapping the role to the row's groups, no access policy.
    const myEntries = Object.values(entries).filter((e) => refersTo(e.Properties.PrincipalArn, roleId));
    if (spec.kubernetes) {
      expect(myEntries).toHaveLength(1);
      const e = myEntries[0].Properties;
      expect(e.ClusterName).toBe(stack.params.clusterName);
      expect(e.Type).toBe('STANDARD');
      expect(e.KubernetesGroups).toEqual(spec.kubernetes.groups);
      expect(e.AccessPolicies).toBeUndefined();
    } else {
      expect([spec.name, myEntries.length]).toEqual([spec.name, 0]);
    }
  }

  // Nothing outside the table: no extra functions, mappings, URLs, schedules or entries.
  expect(Object.keys(fns).sort()).toEqual([...stack.functions.values()].map((f) => logicalId(f.fn)).sort());
  const specs = [...stack.functions.values()].map((f) => f.spec);
  expect(Object.keys(esms)).toHaveLength(specs.filter((s) => s.queue).length);
  expect(Object.keys(urls)).toHaveLength(specs.filter((s) => s.webhook).length);
  expect(Object.keys(schedules)).toHaveLength(specs.filter((s) => s.schedule).length);
  expect(Object.keys(entries)).toHaveLength(specs.filter((s) => s.kubernetes).length);
}

/** Every queue either has a redrive policy to a DLQ, or is itself a DLQ of something. */
export function expectEveryQueueHasADlq(template: Template, stack: MlopsStack): void {
  const queues = byType(template, 'AWS::SQS::Queue');
  const dlqIds = new Set([...stack.functions.values()].filter((f) => f.deadLetterQueue).map((f) => logicalId(f.deadLetterQueue!)));
  for (const [id, q] of Object.entries(queues)) {
    if (dlqIds.has(id)) {
      expect(q.Properties.RedrivePolicy).toBeUndefined();
      expect(q.Properties.MessageRetentionPeriod).toBe(14 * 24 * 3600);
    } else {
      expect([id, (q.Properties.RedrivePolicy as Json | undefined)?.deadLetterTargetArn]).toEqual([
        id,
        { 'Fn::GetAtt': [expect.stringMatching(/DeadLetterQueue/), 'Arn'] },
      ]);
    }
    expect(q.Properties.SqsManagedSseEnabled).toBe(true);
  }
}
