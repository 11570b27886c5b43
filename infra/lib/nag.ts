/**
 * cdk-nag acknowledgments. cdk-nag v3 reads CDK's `Validations.of(x).acknowledge()` and needs one
 * acknowledgment per finding; for IAM5 the finding names the resource the way cdk-nag flattens it
 * (`<LogicalId.Arn>/prefix/*`). Every acknowledgment here carries its reason.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/** Mirrors cdk-nag's flattenCfnReference (utils/flatten-cfn-reference.js, cdk-nag 3.0.2). */
function flatten(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const o = node as Record<string, unknown>;
  if (o['Fn::Join']) {
    const [delimiter, items] = o['Fn::Join'] as [string, unknown[]];
    return items.map(flatten).join(delimiter);
  }
  if (o['Fn::Sub']) return flatten(o['Fn::Sub']);
  if (o['Fn::GetAtt']) {
    const [resource, attribute] = o['Fn::GetAtt'] as [unknown, unknown];
    return `<${flatten(resource)}.${flatten(attribute)}>`;
  }
  if (o['Fn::ImportValue']) return flatten(o['Fn::ImportValue']);
  if (o.Ref) return `<${flatten(o.Ref)}>`;
  return JSON.stringify(node);
}

/** The IAM5 finding id cdk-nag reports for a wildcard resource ARN (a token or a literal). */
export function iam5ResourceFinding(scope: IConstruct, resourceArn: string): string {
  return `AwsSolutions-IAM5[Resource::${flatten(Stack.of(scope).resolve(resourceArn))}]`;
}

/** Acknowledges the IAM5 findings of `resourceArns` that contain a wildcard, on `scope`. */
export function acknowledgeWildcardResources(scope: IConstruct, resourceArns: readonly string[], reason: string): void {
  for (const arn of resourceArns) {
    const id = iam5ResourceFinding(scope, arn);
    if (id.includes('*')) Validations.of(scope).acknowledge({ id, reason });
  }
}

export function acknowledge(scope: IConstruct, id: string, reason: string): void {
  if (reason.trim().length < 20) throw new Error(`acknowledgment of ${id} needs a real reason`);
  Validations.of(scope).acknowledge({ id, reason });
}
