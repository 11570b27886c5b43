/**
 * Test helpers: build the stack the way bin/app.ts does (same cdk.json feature flags), with stub
 * code, and small accessors over the synthesized template.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { IConstruct } from 'constructs';
import { MlopsStack, MlopsStackProps } from '../lib/mlops-stack';

const CDK_JSON = path.resolve(__dirname, '..', 'cdk.json');

export function newApp(extraContext: Record<string, unknown> = {}): App {
  const { context } = JSON.parse(fs.readFileSync(CDK_JSON, 'utf8')) as { context: Record<string, unknown> };
  return new App({ context: { ...context, ...extraContext } });
}

export function buildStack(props: MlopsStackProps = {}, extraContext: Record<string, unknown> = {}): MlopsStack {
  return new MlopsStack(newApp(extraContext), 'Test', {
    env: { account: '123456789012', region: 'us-east-1' },
    skipBundling: true,
    ...props,
  });
}

export function synth(props: MlopsStackProps = {}): { stack: MlopsStack; template: Template } {
  const stack = buildStack(props);
  return { stack, template: Template.fromStack(stack) };
}

export function logicalId(construct: IConstruct): string {
  const el = (construct.node.defaultChild ?? construct) as CfnElement;
  return Stack.of(construct).getLogicalId(el);
}

export type Json = Record<string, unknown>;

export interface Statement {
  Effect: 'Allow' | 'Deny';
  Action: string | string[];
  Resource: unknown;
  Condition?: Json;
  Principal?: unknown;
  Sid?: string;
}

export const asArray = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

/** Every identity-policy statement attached to the role with this logical id. */
export function roleStatements(template: Template, roleLogicalId: string): Statement[] {
  const out: Statement[] = [];
  for (const res of Object.values(template.findResources('AWS::IAM::Policy'))) {
    const props = res.Properties as { Roles?: { Ref: string }[]; PolicyDocument: { Statement: Statement[] } };
    if ((props.Roles ?? []).some((r) => r.Ref === roleLogicalId)) out.push(...props.PolicyDocument.Statement);
  }
  const role = template.findResources('AWS::IAM::Role')[roleLogicalId];
  for (const p of ((role?.Properties as Json)?.Policies as { PolicyDocument: { Statement: Statement[] } }[]) ?? []) {
    out.push(...p.PolicyDocument.Statement);
  }
  return out;
}

/** Every policy document statement in the template: identity and resource policies alike. */
export function allStatements(template: Template): { resource: string; type: string; statement: Statement }[] {
  const out: { resource: string; type: string; statement: Statement }[] = [];
  const json = template.toJSON() as { Resources: Record<string, { Type: string; Properties?: Json }> };
  const docKeys = ['PolicyDocument', 'ResourcePolicy', 'AssumeRolePolicyDocument'];
  for (const [id, res] of Object.entries(json.Resources)) {
    const props = res.Properties ?? {};
    const docs: unknown[] = docKeys.map((k) => props[k]).filter(Boolean);
    for (const p of (props.Policies as { PolicyDocument: unknown }[]) ?? []) docs.push(p.PolicyDocument);
    for (const doc of docs) {
      for (const statement of asArray((doc as { Statement?: Statement | Statement[] }).Statement)) {
        out.push({ resource: id, type: res.Type, statement });
      }
    }
  }
  return out;
}

export const actionsOf = (s: Statement): string[] => asArray(s.Action);
