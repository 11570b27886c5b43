#!/usr/bin/env node
/**
 * The CDK app. Parameters come from context (`-c key=value`, see infra/README.md); with
 * `-c skipBundling=true` the Rust crates are not built (stub code), so synth works offline.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { MlopsStack } from '../lib/mlops-stack';

const app = new App();
const skipBundling = ['true', '1', 'yes'].includes(String(app.node.tryGetContext('skipBundling') ?? 'false').toLowerCase());
if (skipBundling) {
  process.stderr.write('skipBundling=true: functions get stub code; this cloud assembly is not deployable\n');
}

new MlopsStack(app, 'MlopsControlPlane', {
  description: `Event-driven MLOps control plane for Amazon EKS${skipBundling ? ' (stub code: skipBundling)' : ''}`,
  // Synth needs no credentials: the account stays a token when unknown, the region has a default.
  env: {
    account: process.env.CDK_DEFAULT_ACCOUNT,
    region: process.env.CDK_DEFAULT_REGION ?? 'us-east-1',
  },
  skipBundling,
});

// Any unacknowledged AwsSolutions finding fails synth; acknowledgments carry their reasons in code.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
