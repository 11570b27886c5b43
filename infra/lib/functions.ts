/**
 * The function table: one row per Lambda function. Each later stage adds its row here, together
 * with its route in events/routes.json (queue-fed), or a `webhook` / `schedule` trigger.
 */
import { FunctionSpec } from './function-spec';

export const PROCESSED_PREFIX = 'processed/';
export const STATE_PREFIX = 'state/';
export const LEDGER_PREFIX = 'ledger/';

export const FUNCTIONS: readonly FunctionSpec[] = [
  {
    name: 'data-arrival',
    description: 'Validates, cleans, dedupes and splits a data object into a dataset version; emits DatasetReady/DatasetRejected',
    crate: 'functions/data-arrival',
    // Large objects are staged in /tmp and processed in one invocation.
    memoryMb: 2048,
    timeoutSeconds: 900,
    ephemeralStorageMib: 10240,
    // One object per invocation: each can take minutes, and a failure retries only that object.
    queue: { batchSize: 1 },
    bundlePipelineConfig: true,
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      EVENT_BUS_NAME: ctx.busName,
      PROCESSED_PREFIX,
      STATE_PREFIX,
    }),
    access: (ctx) => [
      { kind: 's3Objects', bucket: 'data', actions: ['s3:GetObject', 's3:GetObjectVersion'], prefixes: ctx.datasetPrefixes },
      // Without ListBucket a missing (deleted) object reads as 403 instead of 404.
      { kind: 's3List', bucket: 'data', prefixes: ctx.datasetPrefixes },
      {
        kind: 's3Objects',
        bucket: 'artifact',
        actions: ['s3:GetObject', 's3:PutObject'],
        prefixes: [PROCESSED_PREFIX, `${STATE_PREFIX}data-arrival/`],
      },
      { kind: 'putEvents' },
    ],
  },
  {
    name: 'ledger',
    description: "Appends every pipeline event to its run's history in the artifact bucket",
    crate: 'functions/ledger',
    memoryMb: 256,
    timeoutSeconds: 30,
    queue: { batchSize: 10 },
    environment: (ctx) => ({
      ARTIFACT_BUCKET: ctx.artifactBucketName,
      LEDGER_PREFIX,
    }),
    access: () => [{ kind: 's3Objects', bucket: 'artifact', actions: ['s3:GetObject', 's3:PutObject'], prefixes: [LEDGER_PREFIX] }],
  },
];
