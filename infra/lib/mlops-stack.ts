/**
 * The control plane's stack: storage, the custom bus with its archive, secrets, the ECR repository
 * of each model's source image, one MlopsFunction per row of the function table, and one rule per
 * route of events/routes.json.
 */
import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps, Token } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { BUILD_CACHE_TAG, FunctionContext, FunctionSpec, SECRETS, SecretId } from './function-spec';
import { FUNCTIONS } from './functions';
import { MlopsFunction, pascal, secretsOf } from './mlops-function';
import { acknowledge } from './nag';
import { Parameters, pipelineConfigPath, resolveParameters } from './parameters';
import { EcrRepositoryRef, loadPipelineConfig, PipelineConfigSummary } from './pipeline-config';
import { boundGroups, loadRbacObjects, RBAC_FILE } from './rbac';
import { loadRoutes, Route, ROUTES_FILE, substitutePlaceholders } from './routes';
import { validateFunctionTable, validateKubernetesScope } from './validate';

export interface MlopsStackProps extends StackProps {
  /** Parameter overrides; unset ones come from context, then DEFAULT_PARAMETERS. */
  readonly parameters?: Partial<Parameters>;
  /** The function table. @default FUNCTIONS (lib/functions.ts) */
  readonly functions?: readonly FunctionSpec[];
  /** The routes. @default the routes of events/routes.json */
  readonly routes?: readonly Route[];
  /** Use stub code instead of building the Rust crates (offline synth, tests). @default false */
  readonly skipBundling?: boolean;
  /** RBAC file whose RoleBindings bound the Kubernetes groups a row may ask for. @default infra/k8s/rbac.yaml */
  readonly rbacFile?: string;
}

export class MlopsStack extends Stack {
  public readonly params: Parameters;
  public readonly dataBucket: s3.Bucket;
  public readonly artifactBucket: s3.Bucket;
  public readonly accessLogsBucket: s3.Bucket;
  public readonly bus: events.EventBus;
  public readonly secrets: Readonly<Record<SecretId, secretsmanager.Secret>>;
  /** Repository URI (a model's `source.image`) → the ECR repository, created here or imported. */
  public readonly sourceRepositories: ReadonlyMap<string, ecr.IRepository>;
  public readonly functions: ReadonlyMap<string, MlopsFunction>;
  public readonly rules: ReadonlyMap<string, events.Rule>;

  constructor(scope: Construct, id: string, props: MlopsStackProps = {}) {
    super(scope, id, props);
    const params = resolveParameters(this.node, props.parameters);
    this.params = params;
    const table = props.functions ?? FUNCTIONS;
    const routes = props.routes ?? loadRoutes(ROUTES_FILE);
    const rbacGroups = boundGroups(loadRbacObjects(props.rbacFile ?? RBAC_FILE));
    validateFunctionTable(table, routes, rbacGroups);
    const pipeline = loadPipelineConfig(pipelineConfigPath(params));
    validateKubernetesScope(table, params, pipeline, rbacGroups);

    // Storage.
    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogsBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(365) }],
    });
    // cdk-nag's S1 accepts a bucket that is another bucket's access-log target: no acknowledgment.
    const bucketProps: s3.BucketProps = {
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogsBucket,
    };
    this.dataBucket = new s3.Bucket(this, 'DataBucket', { ...bucketProps, serverAccessLogsPrefix: 'data/' });
    // S3 → EventBridge (default bus) "Object Created" notifications, set natively on the bucket
    // rather than through CDK's notifications custom resource (a Lambda with s3:PutBucketNotification on *).
    (this.dataBucket.node.defaultChild as s3.CfnBucket).notificationConfiguration = {
      eventBridgeConfiguration: { eventBridgeEnabled: true },
    };
    this.artifactBucket = new s3.Bucket(this, 'ArtifactBucket', { ...bucketProps, serverAccessLogsPrefix: 'artifact/' });

    // The custom bus and its archive (replay with `aws events start-replay`).
    this.bus = new events.EventBus(this, 'Bus', { eventBusName: params.busName, description: 'MLOps control plane events' });
    this.bus.archive('Archive', {
      description: `Every event on the ${params.busName} bus, for replay`,
      eventPattern: { account: [this.account] },
      retention: Duration.days(params.archiveRetentionDays),
    });
    const defaultBus = events.EventBus.fromEventBusName(this, 'DefaultBus', 'default');

    this.secrets = this.createSecrets(params);
    this.sourceRepositories = this.createSourceRepositories(pipeline, params);
    const alarmTopic = params.alarmTopicArn ? sns.Topic.fromTopicArn(this, 'AlarmTopic', params.alarmTopicArn) : undefined;

    const context: FunctionContext = {
      params,
      dataBucketName: this.dataBucket.bucketName,
      artifactBucketName: this.artifactBucket.bucketName,
      busName: this.bus.eventBusName,
      datasetPrefixes: [...pipeline.datasetPrefixes.values()],
    };
    const functions = new Map<string, MlopsFunction>();
    for (const spec of table) {
      const f = new MlopsFunction(this, pascal(spec.name), {
        spec,
        params,
        context,
        resources: {
          buckets: { data: this.dataBucket, artifact: this.artifactBucket },
          bus: this.bus,
          sourceRepositories: [...this.sourceRepositories.values()],
        },
        secrets: this.secrets,
        code: { skipBundling: props.skipBundling ?? false, pipelineConfigFile: pipeline.path },
        alarmTopic,
      });
      functions.set(spec.name, f);
    }
    this.functions = functions;
    this.restrictSecretReaders(table);

    // One rule per route, on the bus it names, delivering to its function's queue.
    const placeholders = { data_bucket: this.dataBucket.bucketName };
    const rules = new Map<string, events.Rule>();
    for (const route of routes) {
      const target = functions.get(route.target)!;
      const pattern = substitutePlaceholders(route.pattern, placeholders, route.name) as Record<string, unknown>;
      const rule = new events.Rule(this, `Route${pascal(route.name)}`, {
        description: `${route.name}: ${route.description}`.slice(0, 512),
        eventBus: route.bus === 'default' ? defaultBus : this.bus,
        eventPattern: toCdkEventPattern(pattern, route.name),
        targets: [
          new eventsTargets.SqsQueue(target.queue!, {
            // Events EventBridge cannot deliver (after its retries) go to the function's DLQ too.
            deadLetterQueue: target.deadLetterQueue,
          }),
        ],
      });
      rules.set(route.name, rule);
    }
    this.rules = rules;

    this.outputs(functions);
  }

  private createSecrets(params: Parameters): Record<SecretId, secretsmanager.Secret> {
    // All secrets always exist (whether or not a function reads them yet), so operators can set
    // their values once, before the functions that need them are deployed.
    const out = {} as Record<SecretId, secretsmanager.Secret>;
    for (const [id, s] of Object.entries(SECRETS) as [SecretId, (typeof SECRETS)[SecretId]][]) {
      const secret = new secretsmanager.Secret(this, `Secret${pascal(id)}`, {
        secretName: `${params.secretPrefix}${s.name}`,
        description: `${s.description}. Set with: aws secretsmanager put-secret-value`,
      });
      acknowledge(
        secret,
        'AwsSolutions-SMG4',
        'The value is issued by an external system (MLflow, GitHub/GitLab, Argo CD) and rotated there; ' +
          'the operator stores the new value with put-secret-value. No rotation Lambda can mint it.',
      );
      out[id] = secret;
    }
    return out;
  }

  /**
   * The ECR repository of each model's `source.image` (one per repository, however many models
   * share it). Created here when it is in this stack's account and region (an account or region
   * unknown at synth is taken to be it) and the parameter sourceRepositories is `create`; otherwise
   * imported by its ARN: it exists already, or belongs to another account or region.
   */
  private createSourceRepositories(pipeline: PipelineConfigSummary, params: Parameters): Map<string, ecr.IRepository> {
    const out = new Map<string, ecr.IRepository>();
    const here = (x: string, image: string) => Token.isUnresolved(x) || x === image;
    const local = (r: EcrRepositoryRef) => here(this.account, r.account) && here(this.region, r.region);
    for (const ref of pipeline.sourceImages.values()) {
      if (out.has(ref.uri)) continue;
      const id = `SourceRepository${pascal(ref.name)}`;
      if (params.sourceRepositories === 'import' || !local(ref)) {
        out.set(ref.uri, ecr.Repository.fromRepositoryArn(this, id, ref.arn));
        continue;
      }
      const models = [...pipeline.sourceImages].filter(([, r]) => r.uri === ref.uri).map(([m]) => m);
      const repo = new ecr.Repository(this, id, {
        repositoryName: ref.name,
        imageScanOnPush: true,
        // A commit's tag is pushed once (build-image builds nothing for a commit ECR has), so tags
        // are immutable; all but the BuildKit registry cache, which every build rewrites.
        imageTagMutability: ecr.TagMutability.IMMUTABLE_WITH_EXCLUSION,
        imageTagMutabilityExclusionFilters: [ecr.ImageTagMutabilityExclusionFilter.wildcard(BUILD_CACHE_TAG)],
        lifecycleRules: [
          {
            description: `Untagged images (caches replaced by a newer ${BUILD_CACHE_TAG}, interrupted pushes) expire after 14 days`,
            tagStatus: ecr.TagStatus.UNTAGGED,
            maxImageAge: Duration.days(14),
          },
        ],
        // The images trained models were built from: never deleted with the stack.
        removalPolicy: RemovalPolicy.RETAIN,
      });
      new CfnOutput(this, `${id}Uri`, { value: repo.repositoryUri, description: `Trainer image repository of ${models.join(', ')}` });
      out.set(ref.uri, repo);
    }
    return out;
  }

  /**
   * Identity policies already limit GetSecretValue to the functions that list a secret; the
   * resource policy makes that exclusive: every other principal of the account is denied the value.
   */
  private restrictSecretReaders(table: readonly FunctionSpec[]): void {
    for (const [id, secret] of Object.entries(this.secrets) as [SecretId, secretsmanager.Secret][]) {
      const readers = table.filter((s) => secretsOf(s).includes(id)).map((s) => this.functions.get(s.name)!.role.roleArn);
      secret.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'OnlyItsFunctionsReadTheValue',
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: ['secretsmanager:GetSecretValue'],
          resources: [secret.secretArn],
          conditions: readers.length > 0 ? { ArnNotEquals: { 'aws:PrincipalArn': readers } } : undefined,
        }),
      );
    }
  }

  private outputs(functions: ReadonlyMap<string, MlopsFunction>): void {
    new CfnOutput(this, 'DataBucketName', { value: this.dataBucket.bucketName, description: 'Drop data objects here (under a dataset prefix)' });
    new CfnOutput(this, 'ArtifactBucketName', { value: this.artifactBucket.bucketName, description: 'Processed datasets, state and the ledger' });
    new CfnOutput(this, 'EventBusName', { value: this.bus.eventBusName });
    new CfnOutput(this, 'EventBusArn', { value: this.bus.eventBusArn });
    for (const [id, secret] of Object.entries(this.secrets) as [SecretId, secretsmanager.Secret][]) {
      // The description must be a literal: secretName is a token derived from the ARN.
      const name = `${this.params.secretPrefix}${SECRETS[id].name}`;
      new CfnOutput(this, `${pascal(id)}Arn`, { value: secret.secretArn, description: `Secret ${name}` });
    }
    for (const f of functions.values()) {
      const p = pascal(f.spec.name);
      new CfnOutput(this, `${p}FunctionName`, { value: f.fn.functionName });
      if (f.url) new CfnOutput(this, `${p}WebhookUrl`, { value: f.url.url, description: `Register as the ${f.spec.name} webhook` });
      if (f.deadLetterQueue) new CfnOutput(this, `${p}DeadLetterQueueUrl`, { value: f.deadLetterQueue.queueUrl });
    }
  }
}

/**
 * routes.json patterns use EventBridge's own keys; CDK's EventPattern names the top-level ones in
 * camelCase and renders them back. Nested content (`detail`) passes through untouched.
 */
const TOP_LEVEL_KEYS: Record<string, keyof events.EventPattern> = {
  version: 'version',
  id: 'id',
  'detail-type': 'detailType',
  source: 'source',
  account: 'account',
  time: 'time',
  region: 'region',
  resources: 'resources',
  detail: 'detail',
};

export function toCdkEventPattern(pattern: Record<string, unknown>, routeName: string): events.EventPattern {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(pattern)) {
    const cdkKey = TOP_LEVEL_KEYS[key];
    if (!cdkKey) {
      throw new Error(`route '${routeName}': unsupported top-level pattern key '${key}' (supported: ${Object.keys(TOP_LEVEL_KEYS).join(', ')})`);
    }
    out[cdkKey] = value;
  }
  return out as events.EventPattern;
}
