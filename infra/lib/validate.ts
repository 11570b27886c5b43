/**
 * Cross-checks the function table against the routes and the RBAC file before any resource is
 * made, so a bad row or route fails `cdk synth` with a message naming it (instead of deploying a
 * function nothing invokes, or a rule with no target).
 */
import { FunctionSpec, ModelPlacement, PARAMETER_ENV, SECRETS } from './function-spec';
import { Parameters } from './parameters';
import { PipelineConfigSummary } from './pipeline-config';
import { Route } from './routes';

const NAME = /^[a-z][a-z0-9-]{0,47}$/;
/** Lambda's limit on a function description. */
const MAX_DESCRIPTION = 256;
/** SQS visibility timeout limit (12 h). */
const MAX_VISIBILITY_SECONDS = 43200;

export function visibilityTimeoutSeconds(spec: FunctionSpec): number {
  // AWS: at least 6x the function timeout, plus the batching window.
  return 6 * spec.timeoutSeconds + (spec.queue?.maxBatchingWindowSeconds ?? 0);
}

export function validateFunctionTable(
  functions: readonly FunctionSpec[],
  routes: readonly Route[],
  rbacGroups: ReadonlyMap<string, ReadonlySet<string>>,
): void {
  const byName = new Map<string, FunctionSpec>();
  for (const f of functions) {
    const at = `function '${f.name}'`;
    if (!NAME.test(f.name)) throw new Error(`${at}: name must match ${NAME}`);
    if (byName.has(f.name)) throw new Error(`${at} appears twice in the function table`);
    byName.set(f.name, f);
    if (f.description.length > MAX_DESCRIPTION) {
      throw new Error(`${at}: description is ${f.description.length} characters; Lambda allows at most ${MAX_DESCRIPTION}`);
    }
    if (!Number.isInteger(f.memoryMb) || f.memoryMb < 128 || f.memoryMb > 10240) {
      throw new Error(`${at}: memoryMb must be 128..10240, got ${f.memoryMb}`);
    }
    if (!Number.isInteger(f.timeoutSeconds) || f.timeoutSeconds < 1 || f.timeoutSeconds > 900) {
      throw new Error(`${at}: timeoutSeconds must be 1..900, got ${f.timeoutSeconds}`);
    }
    const eph = f.ephemeralStorageMib;
    if (eph !== undefined && (!Number.isInteger(eph) || eph < 512 || eph > 10240)) {
      throw new Error(`${at}: ephemeralStorageMib must be 512..10240, got ${eph}`);
    }
    if (f.queue) {
      const window = f.queue.maxBatchingWindowSeconds ?? 0;
      const batch = f.queue.batchSize ?? 10;
      const maxBatch = window > 0 ? 10000 : 10;
      if (!Number.isInteger(batch) || batch < 1 || batch > maxBatch) {
        throw new Error(`${at}: queue.batchSize must be 1..${maxBatch} (with a ${window}s batching window), got ${batch}`);
      }
      if (window < 0 || window > 300) throw new Error(`${at}: queue.maxBatchingWindowSeconds must be 0..300`);
      const mc = f.queue.maxConcurrency;
      if (mc !== undefined && (!Number.isInteger(mc) || mc < 2 || mc > 1000)) {
        throw new Error(`${at}: queue.maxConcurrency must be 2..1000, got ${mc}`);
      }
      if (visibilityTimeoutSeconds(f) > MAX_VISIBILITY_SECONDS) {
        throw new Error(`${at}: 6 x timeout + batching window exceeds the SQS visibility timeout limit of ${MAX_VISIBILITY_SECONDS}s`);
      }
    }
    if (f.schedule && !/^(rate|cron|at)\(.+\)$/.test(f.schedule.expression)) {
      throw new Error(`${at}: schedule.expression must be rate(...), cron(...) or at(...), got '${f.schedule.expression}'`);
    }
    for (const s of [...(f.secrets ?? []), ...(f.webhook ? [f.webhook.signedBy] : [])]) {
      if (!(s in SECRETS)) throw new Error(`${at}: unknown secret '${s}' (known: ${Object.keys(SECRETS).join(', ')})`);
    }
    for (const p of f.parameters ?? []) {
      if (!(p in PARAMETER_ENV)) {
        throw new Error(`${at}: unknown parameter '${p}' (a function may read: ${Object.keys(PARAMETER_ENV).join(', ')})`);
      }
    }
    if (f.kubernetes) {
      if (f.kubernetes.groups.length === 0) throw new Error(`${at}: kubernetes.groups is empty`);
      for (const g of f.kubernetes.groups) {
        // EKS rejects system: groups on access entries; they would also mean cluster-wide rights.
        if (g.startsWith('system:')) throw new Error(`${at}: Kubernetes group '${g}' is reserved (system:)`);
        if (!rbacGroups.has(g)) {
          throw new Error(`${at}: Kubernetes group '${g}' has no RoleBinding in infra/k8s/rbac.yaml`);
        }
      }
    }
  }

  const routeNames = new Set<string>();
  const routed = new Set<string>();
  for (const r of routes) {
    if (routeNames.has(r.name)) throw new Error(`route '${r.name}' appears twice in routes.json`);
    routeNames.add(r.name);
    const target = byName.get(r.target);
    if (!target) {
      throw new Error(
        `route '${r.name}' targets unknown function '${r.target}' (known: ${[...byName.keys()].join(', ') || 'none'})`,
      );
    }
    if (!target.queue) {
      throw new Error(`route '${r.name}' targets function '${r.target}', which is not queue-fed (its row has no 'queue')`);
    }
    routed.add(r.target);
  }

  for (const f of functions) {
    if (!f.queue && !f.webhook && !f.schedule) {
      throw new Error(`function '${f.name}' has no route, URL or schedule: nothing would ever invoke it`);
    }
    if (f.queue && !routed.has(f.name)) {
      throw new Error(`function '${f.name}' is queue-fed but no route in routes.json targets it`);
    }
  }
}

/**
 * The Kubernetes side must match where the functions are pointed: a namespace a Kubernetes-facing
 * row reads (a `kubernetesNamespace` parameter, or what overrides it per model in the pipeline
 * config it bundles: `training.namespace` for trainingNamespace, `source.namespace` for
 * buildNamespace) must have one of its groups bound there in k8s/rbac.yaml, and a model's
 * `training.cluster` / `source.cluster` must be the stack's cluster (the only one the roles may
 * describe and have access entries on). Otherwise the functions would deploy and then get 403s at
 * run time.
 */
export function validateKubernetesScope(
  functions: readonly FunctionSpec[],
  params: Parameters,
  pipeline: Pick<PipelineConfigSummary, 'placements'>,
  rbacGroups: ReadonlyMap<string, ReadonlySet<string>>,
): void {
  for (const f of functions) {
    if (!f.kubernetes) continue;
    const groups = f.kubernetes.groups;
    const namespaces: [string, string][] = [];
    for (const p of f.parameters ?? []) {
      const { kubernetesNamespace, overriddenBy } = PARAMETER_ENV[p];
      if (!kubernetesNamespace) continue;
      namespaces.push([String(params[p]), `parameter ${p}`]);
      if (overriddenBy && f.bundlePipelineConfig) {
        for (const [model, o] of pipeline.placements[overriddenBy]) {
          if (o.namespace) namespaces.push([o.namespace, `model '${model}' ${overriddenBy}.namespace`]);
        }
      }
    }
    for (const [ns, from] of namespaces) {
      if (!groups.some((g) => rbacGroups.get(g)?.has(ns))) {
        throw new Error(
          `function '${f.name}': namespace '${ns}' (${from}) has no RoleBinding for its Kubernetes group(s) ` +
            `${groups.join(', ')} in infra/k8s/rbac.yaml; bind them there or change the namespace`,
        );
      }
    }
  }
  const readers = functions.filter((f) => f.kubernetes && f.bundlePipelineConfig).map((f) => f.name);
  if (readers.length === 0) return;
  for (const block of Object.keys(pipeline.placements) as ModelPlacement[]) {
    for (const [model, o] of pipeline.placements[block]) {
      if (o.cluster !== undefined && o.cluster !== params.clusterName) {
        throw new Error(
          `pipeline config: model '${model}' ${block}.cluster '${o.cluster}' is not the stack's cluster '${params.clusterName}' ` +
            `(parameter clusterName); ${readers.join(', ')} may only reach that one (eks:DescribeCluster and the EKS access entries)`,
        );
      }
    }
  }
}
