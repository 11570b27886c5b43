/**
 * One row of the function table made real: role, log group, Lambda function, and the wiring its
 * kind says (queue + DLQ + event source mapping; Function URL; Scheduler schedule), its access,
 * secrets, EKS access entry and alarms. Only this file knows how a kind is wired.
 */
import { Arn, Duration, Size, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as eks from 'aws-cdk-lib/aws-eks';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { AccessResources, renderAccess } from './access';
import {
  Access,
  BUNDLED_PIPELINE_CONFIG,
  CHECK_QUEUE_URL_ENV,
  CLUSTER_NAME_ENV,
  EVENT_BUS_NAME_ENV,
  FunctionContext,
  FunctionSpec,
  LAMBDA_TASK_ROOT,
  PARAMETER_ENV,
  PIPELINE_CONFIG_ENV,
  SECRETS,
  SecretId,
} from './function-spec';
import { acknowledge, acknowledgeWildcardResources, iam5ResourceFinding } from './nag';
import { Parameters } from './parameters';
import { CodeOptions, createFunction } from './rust-code';
import { visibilityTimeoutSeconds } from './validate';

export interface MlopsFunctionProps {
  readonly spec: FunctionSpec;
  readonly params: Parameters;
  readonly context: FunctionContext;
  readonly resources: AccessResources;
  readonly secrets: Readonly<Record<SecretId, secretsmanager.ISecret>>;
  readonly code: CodeOptions;
  readonly alarmTopic?: sns.ITopic;
}

/** The secrets a row reads: its `secrets` plus the one its webhook is signed with. */
export function secretsOf(spec: FunctionSpec): SecretId[] {
  const ids = new Set<SecretId>(spec.secrets ?? []);
  if (spec.webhook) ids.add(spec.webhook.signedBy);
  return [...ids];
}

/** Every variable the stack manages, set or not for a given row: a row's own `environment` may use none. */
export const MANAGED_ENV: ReadonlySet<string> = new Set([
  'RUST_LOG',
  PIPELINE_CONFIG_ENV,
  CLUSTER_NAME_ENV,
  EVENT_BUS_NAME_ENV,
  CHECK_QUEUE_URL_ENV,
  ...Object.values(PARAMETER_ENV).map((p) => p.env),
  ...Object.values(SECRETS).map((s) => s.env),
]);

/**
 * A row's environment: RUST_LOG; what its kinds imply (PIPELINE_CONFIG, CLUSTER_NAME,
 * EVENT_BUS_NAME); the parameters it lists; its secrets' ARNs; then its own `environment`, which
 * may not set any managed name (nor any `*_SECRET_ARN`).
 */
export function functionEnvironment(
  spec: FunctionSpec,
  ctx: FunctionContext,
  accesses: readonly Access[],
  secretArns: readonly (readonly [SecretId, string])[],
): Record<string, string> {
  const managed: Record<string, string> = { RUST_LOG: ctx.params.rustLog };
  if (spec.bundlePipelineConfig) managed[PIPELINE_CONFIG_ENV] = `${LAMBDA_TASK_ROOT}/${BUNDLED_PIPELINE_CONFIG}`;
  if (spec.kubernetes) managed[CLUSTER_NAME_ENV] = ctx.params.clusterName;
  if (accesses.some((a) => a.kind === 'putEvents')) managed[EVENT_BUS_NAME_ENV] = ctx.busName;
  for (const p of spec.parameters ?? []) managed[PARAMETER_ENV[p].env] = String(ctx.params[p]);
  for (const [id, arn] of secretArns) managed[SECRETS[id].env] = arn;

  const own = spec.environment?.(ctx) ?? {};
  const clash = Object.keys(own).filter((k) => MANAGED_ENV.has(k) || k.endsWith('_SECRET_ARN'));
  if (clash.length > 0) {
    throw new Error(
      `function '${spec.name}': environment sets ${clash.join(', ')}, which the stack manages ` +
        '(use bundlePipelineConfig, secrets, parameters, kubernetes or putEvents access)',
    );
  }
  return { ...managed, ...own };
}

export function pascal(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');
}

export class MlopsFunction extends Construct {
  public readonly spec: FunctionSpec;
  public readonly role: iam.Role;
  public readonly fn: lambda.Function;
  public readonly logGroup: logs.LogGroup;
  /** Queue-fed functions: the queue the routes deliver to. */
  public readonly queue?: sqs.Queue;
  /** Where undeliverable work lands: queue redrive, rule-target and schedule/async failures. */
  public readonly deadLetterQueue?: sqs.Queue;
  public readonly url?: lambda.FunctionUrl;
  public readonly schedule?: scheduler.Schedule;
  public readonly accessEntry?: eks.CfnAccessEntry;
  /** The row's access entries, as its `access` callback gave them for this stack. */
  public readonly access: readonly Access[];

  constructor(scope: Construct, id: string, props: MlopsFunctionProps) {
    super(scope, id);
    const { spec, params } = props;
    this.spec = spec;

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: params.logRetentionDays as logs.RetentionDays,
    });

    // An explicit role: no AWS managed policy, only the statements below.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of the ${spec.name} function`,
    });
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );

    const secretIds = secretsOf(spec);
    const accesses = spec.access?.(props.context) ?? [];
    this.access = accesses;
    const environment = functionEnvironment(spec, props.context, accesses, secretIds.map((s) => [s, props.secrets[s].secretArn]));

    this.fn = createFunction(
      this,
      'Function',
      spec,
      {
        description: spec.description,
        role: this.role,
        architecture: params.architecture,
        memorySize: spec.memoryMb,
        timeout: Duration.seconds(spec.timeoutSeconds),
        ephemeralStorageSize: spec.ephemeralStorageMib ? Size.mebibytes(spec.ephemeralStorageMib) : undefined,
        environment,
        logGroup: this.logGroup,
        loggingFormat: lambda.LoggingFormat.JSON,
        // Rust's tracing emits its own levels; this filter applies to the platform's lines.
        systemLogLevelV2: lambda.SystemLogLevel.INFO,
      },
      props.code,
    );

    if (spec.queue || spec.schedule) this.deadLetterQueue = this.newDeadLetterQueue(!spec.queue);
    if (spec.queue) this.queue = this.wireQueue(props, this.deadLetterQueue!);
    if (spec.webhook) this.url = this.fn.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });
    if (spec.schedule) this.schedule = this.wireSchedule(props, this.deadLetterQueue!);
    this.wireAccess(props, accesses);
    for (const s of secretIds) {
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [props.secrets[s].secretArn] }),
      );
    }
    if (spec.kubernetes) this.accessEntry = this.wireKubernetes(props);
    this.wireAlarms(props.alarmTopic);
  }

  private newDeadLetterQueue(notARedriveTarget: boolean): sqs.Queue {
    const dlq = new sqs.Queue(this, 'DeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    if (notARedriveTarget) {
      acknowledge(
        dlq,
        'AwsSolutions-SQS3',
        'This queue is itself a dead-letter queue: of the Scheduler target and of failed asynchronous invocations.',
      );
    }
    return dlq;
  }

  private wireQueue(props: MlopsFunctionProps, dlq: sqs.Queue): sqs.Queue {
    const q = props.spec.queue!;
    const queue = new sqs.Queue(this, 'Queue', {
      visibilityTimeout: Duration.seconds(visibilityTimeoutSeconds(props.spec)),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: dlq, maxReceiveCount: props.params.maxReceiveCount },
    });
    this.fn.addEventSource(
      new SqsEventSource(queue, {
        batchSize: q.batchSize ?? 10,
        maxBatchingWindow: q.maxBatchingWindowSeconds ? Duration.seconds(q.maxBatchingWindowSeconds) : undefined,
        maxConcurrency: q.maxConcurrency,
        reportBatchItemFailures: true,
      }),
    );
    if (q.delayedSelfMessages) {
      this.fn.addEnvironment(CHECK_QUEUE_URL_ENV, queue.queueUrl);
      queue.grantSendMessages(this.role);
    }
    return queue;
  }

  private wireSchedule(props: MlopsFunctionProps, dlq: sqs.Queue): scheduler.Schedule {
    const s = props.spec.schedule!;
    // Scheduler invokes asynchronously; a run that fails after Lambda's retries lands in the DLQ.
    this.fn.configureAsyncInvoke({ onFailure: new SqsDestination(dlq) });
    // The role Scheduler assumes, kept beside its function (LambdaInvoke grants it invoke + DLQ send).
    const stack = Stack.of(this);
    const role = new iam.Role(this, 'ScheduleRole', {
      description: `Assumed by EventBridge Scheduler to invoke ${props.spec.name}`,
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: {
            'aws:SourceAccount': stack.account,
            'aws:SourceArn': stack.formatArn({ service: 'scheduler', resource: 'schedule-group', resourceName: 'default' }),
          },
        },
      }),
    });
    acknowledge(
      role,
      iam5ResourceFinding(role, `${this.fn.functionArn}:*`),
      "CDK's Lambda grantInvoke also covers the function's own versions and aliases (<function>:*); " +
        'it is still this one function only.',
    );
    return new scheduler.Schedule(this, 'Schedule', {
      description: `Invokes ${props.spec.name}`,
      schedule: scheduler.ScheduleExpression.expression(s.expression),
      target: new schedulerTargets.LambdaInvoke(this.fn, {
        role,
        input: scheduler.ScheduleTargetInput.fromObject(s.input ?? {}),
        deadLetterQueue: dlq,
        // A missed tick is superseded by the next one; do not pile up stale invocations.
        maxEventAge: Duration.minutes(5),
        retryAttempts: 2,
      }),
    });
  }

  private wireAccess(props: MlopsFunctionProps, accesses: readonly Access[]): void {
    for (const a of accesses) {
      for (const { statement, wildcardReason } of renderAccess(a, props.resources, props.spec.name)) {
        this.role.addToPrincipalPolicy(statement);
        if (wildcardReason) acknowledgeWildcardResources(this.role, statement.resources, wildcardReason);
      }
    }
  }

  private wireKubernetes(props: MlopsFunctionProps): eks.CfnAccessEntry {
    const stack = Stack.of(this);
    const clusterArn = Arn.format({ service: 'eks', resource: 'cluster', resourceName: props.params.clusterName }, stack);
    // The function builds its kube client from the cluster endpoint and CA.
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['eks:DescribeCluster'], resources: [clusterArn] }));
    // No access policy: the groups' rights are the RoleBindings in infra/k8s/rbac.yaml.
    return new eks.CfnAccessEntry(this, 'AccessEntry', {
      clusterName: props.params.clusterName,
      principalArn: this.role.roleArn,
      type: 'STANDARD',
      kubernetesGroups: [...props.spec.kubernetes!.groups],
    });
  }

  private wireAlarms(topic?: sns.ITopic): void {
    const period = Duration.minutes(5);
    const alarms: cloudwatch.Alarm[] = [
      this.fn.metricErrors({ period, statistic: 'Sum' }).createAlarm(this, 'ErrorsAlarm', {
        alarmDescription: `${this.spec.name}: the function returned errors (failed invocations)`,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      this.fn.metricThrottles({ period, statistic: 'Sum' }).createAlarm(this, 'ThrottlesAlarm', {
        alarmDescription: `${this.spec.name}: invocations were throttled`,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    ];
    if (this.deadLetterQueue) {
      alarms.push(
        this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }).createAlarm(this, 'DeadLetterAlarm', {
          alarmDescription: `${this.spec.name}: messages in the dead-letter queue (inspect, then \`mlops dlq replay\`)`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      );
    }
    if (topic) for (const a of alarms) a.addAlarmAction(new cwActions.SnsAction(topic));
  }
}
