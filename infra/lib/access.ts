/**
 * Renders a row's Access entries to IAM statements on exactly the ARNs they name. Resource
 * wildcards appear only where the action allows nothing narrower: object-level S3 access
 * (`bucket/prefix/*`: keys are created at run time) and ecr:GetAuthorizationToken (no resource-level
 * permissions: `*`); those are acknowledged for cdk-nag with the reason, on the role that gets them.
 */
import { IRepository } from 'aws-cdk-lib/aws-ecr';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { IEventBus } from 'aws-cdk-lib/aws-events';
import { IBucket } from 'aws-cdk-lib/aws-s3';
import { Access, BucketId, ECR_PUSH_ACTIONS } from './function-spec';

export interface AccessResources {
  readonly buckets: Readonly<Record<BucketId, IBucket>>;
  readonly bus: IEventBus;
  /** The ECR repositories of the models' `source.image` (created or imported by the stack). */
  readonly sourceRepositories: readonly IRepository[];
}

export interface RenderedAccess {
  readonly statement: PolicyStatement;
  /** Set when the statement has wildcard resources: why they are needed. */
  readonly wildcardReason?: string;
}

function checkPrefixes(prefixes: readonly string[], what: string): void {
  if (prefixes.length === 0) throw new Error(`${what}: no prefixes`);
  for (const p of prefixes) {
    if (p === '' || /[*?]/.test(p) || p.startsWith('/')) {
      throw new Error(`${what}: prefix '${p}' must be a non-empty key prefix without '*', '?' or a leading '/'`);
    }
  }
}

/** One Access entry's statements: one, except `ecrPush` (two, or none without source repositories). */
export function renderAccess(access: Access, res: AccessResources, fn: string): RenderedAccess[] {
  switch (access.kind) {
    case 's3Objects': {
      checkPrefixes(access.prefixes, `function '${fn}' ${access.bucket} bucket access`);
      const bucket = res.buckets[access.bucket];
      return [
        {
          statement: new PolicyStatement({
            actions: [...access.actions],
            resources: access.prefixes.map((p) => bucket.arnForObjects(`${p}*`)),
          }),
          wildcardReason:
            `${fn} reads/writes objects whose keys are only known at run time, under the fixed prefixes ` +
            `${access.prefixes.join(', ')} of the ${access.bucket} bucket; the wildcard is limited to those prefixes.`,
        },
      ];
    }
    case 's3List': {
      checkPrefixes(access.prefixes, `function '${fn}' ${access.bucket} bucket listing`);
      return [
        {
          statement: new PolicyStatement({
            actions: ['s3:ListBucket'],
            resources: [res.buckets[access.bucket].bucketArn],
            conditions: { StringLike: { 's3:prefix': access.prefixes.map((p) => `${p}*`) } },
          }),
        },
      ];
    }
    case 'putEvents':
      return [{ statement: new PolicyStatement({ actions: ['events:PutEvents'], resources: [res.bus.eventBusArn] }) }];
    case 'ecrPush': {
      // No model builds an image: nothing to push to, and no token to mint.
      if (res.sourceRepositories.length === 0) return [];
      return [
        {
          statement: new PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }),
          wildcardReason:
            `${fn} mints the registry token its image builds push with; ecr:GetAuthorizationToken has no ` +
            'resource-level permissions (its resource is always *), and the token carries only the repository rights below.',
        },
        {
          statement: new PolicyStatement({
            actions: [...ECR_PUSH_ACTIONS],
            resources: res.sourceRepositories.map((r) => r.repositoryArn),
          }),
        },
      ];
    }
    default: {
      const never: never = access;
      throw new Error(`function '${fn}': unknown access ${JSON.stringify(never)}`);
    }
  }
}
