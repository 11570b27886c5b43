/** infra/k8s/rbac.yaml: namespaced Roles/RoleBindings only, nothing cluster-wide or admin. */
import { DEFAULT_PARAMETERS } from '../lib/parameters';
import { boundGroups, K8sObject, loadRbacObjects } from '../lib/rbac';

const objects = loadRbacObjects();
interface Rule {
  apiGroups: string[];
  resources: string[];
  resourceNames?: string[];
  verbs: string[];
}

/** The Secrets build-image writes for the BuildKit pod: the ECR token (config.json) and the Git token. */
const BUILD_SECRETS = ['mlops-registry-auth', 'mlops-git-auth'];

test('only Roles and RoleBindings, in the training, serving and build namespaces', () => {
  expect(objects.length).toBeGreaterThan(0);
  for (const o of objects) {
    expect(o.apiVersion).toBe('rbac.authorization.k8s.io/v1');
    expect(['Role', 'RoleBinding']).toContain(o.kind);
    expect([DEFAULT_PARAMETERS.trainingNamespace, DEFAULT_PARAMETERS.servingNamespace, DEFAULT_PARAMETERS.buildNamespace]).toContain(
      o.metadata.namespace,
    );
  }
});

test('no wildcard, no privilege-escalating verbs; Secrets only for mlops-build, only the two it writes, by name', () => {
  for (const role of objects.filter((o) => o.kind === 'Role')) {
    for (const rule of role.rules as Rule[]) {
      for (const v of [...rule.apiGroups, ...rule.resources, ...rule.verbs, ...(rule.resourceNames ?? [])]) expect(v).not.toContain('*');
      for (const verb of ['escalate', 'bind', 'impersonate', 'deletecollection']) expect(rule.verbs).not.toContain(verb);
      if (!rule.resources.includes('secrets')) continue;
      expect([role.metadata.namespace, role.metadata.name]).toEqual([DEFAULT_PARAMETERS.buildNamespace, 'mlops-build']);
      // Named Secrets only (never list/watch, which would read every Secret of the namespace).
      expect(rule.resources).toEqual(['secrets']);
      expect(rule.resourceNames).toEqual(BUILD_SECRETS);
      expect(rule.verbs.filter((v) => ['list', 'watch', 'update', 'delete'].includes(v))).toEqual([]);
    }
  }
});

test('each RoleBinding binds a Role of its own namespace to groups only', () => {
  const roles = new Set(objects.filter((o) => o.kind === 'Role').map((o) => `${o.metadata.namespace}/${o.metadata.name}`));
  for (const b of objects.filter((o): o is K8sObject => o.kind === 'RoleBinding')) {
    const ref = b.roleRef as { kind: string; name: string; apiGroup: string };
    expect(ref.kind).toBe('Role');
    expect(roles.has(`${b.metadata.namespace}/${ref.name}`)).toBe(true);
    for (const s of b.subjects as { kind: string; name: string }[]) {
      expect(s.kind).toBe('Group');
      expect(s.name.startsWith('system:')).toBe(false);
    }
  }
});

test('the groups the access entries may use', () => {
  const groups = boundGroups(objects);
  expect([...groups.keys()].sort()).toEqual(['mlops-build', 'mlops-build-watch', 'mlops-serving', 'mlops-training']);
  expect([...groups.get('mlops-training')!]).toEqual([DEFAULT_PARAMETERS.trainingNamespace]);
  expect([...groups.get('mlops-serving')!]).toEqual([DEFAULT_PARAMETERS.servingNamespace]);
  expect([...groups.get('mlops-build')!]).toEqual([DEFAULT_PARAMETERS.buildNamespace]);
  expect([...groups.get('mlops-build-watch')!]).toEqual([DEFAULT_PARAMETERS.buildNamespace]);
});

test('mlops-training may do exactly what launch-training and training-watch do, in the training namespace', () => {
  const roles = objects.filter((o) => o.kind === 'Role' && o.metadata.name === 'mlops-training');
  expect(roles.map((r) => r.metadata.namespace)).toEqual([DEFAULT_PARAMETERS.trainingNamespace]);
  // Server-side apply (patch; create when absent; get), list by label, patch an annotation.
  const workload = ['get', 'list', 'create', 'patch'];
  expect(roles[0].rules).toEqual([
    { apiGroups: ['batch'], resources: ['jobs'], verbs: workload },
    { apiGroups: ['kubeflow.org'], resources: ['pytorchjobs'], verbs: workload },
    { apiGroups: ['trainer.kubeflow.org'], resources: ['trainjobs'], verbs: workload },
    // Pending pods and their scheduling events.
    { apiGroups: [''], resources: ['pods', 'events'], verbs: ['list'] },
  ]);
});

test('mlops-serving may do exactly what vllm-scaler does, in the serving namespace', () => {
  const roles = objects.filter((o) => o.kind === 'Role' && o.metadata.name === 'mlops-serving');
  expect(roles.map((r) => r.metadata.namespace)).toEqual([DEFAULT_PARAMETERS.servingNamespace]);
  const rules = roles[0].rules as Rule[];
  expect(rules).toEqual([
    // Read the Deployment (replicas, selector, owner of its autoscalers); never edit it.
    { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get'] },
    // Move replicas through the scale subresource only.
    { apiGroups: ['apps'], resources: ['deployments/scale'], verbs: ['patch'] },
    // Find the ready pods, then read vLLM's /metrics through the API server's pod proxy.
    { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
    { apiGroups: [''], resources: ['pods/proxy'], verbs: ['get'] },
    // An HPA or ScaledObject that owns the Deployment: only its min/max move.
    { apiGroups: ['autoscaling'], resources: ['horizontalpodautoscalers'], verbs: ['list', 'patch'] },
    { apiGroups: ['keda.sh'], resources: ['scaledobjects'], verbs: ['list', 'patch'] },
  ]);
  const verbsOn = (group: string, resource: string) =>
    rules.filter((r) => r.apiGroups.includes(group) && r.resources.includes(resource)).flatMap((r) => r.verbs);
  expect(verbsOn('', 'pods/proxy')).toEqual(['get']);
  expect(verbsOn('apps', 'deployments/scale')).toEqual(['patch']);
  // Neither the Deployment itself nor the pods may be changed, and nothing may be created or deleted.
  expect(verbsOn('apps', 'deployments')).toEqual(['get']);
  expect(verbsOn('', 'pods')).toEqual(['list']);
  for (const r of rules) {
    expect([r.resources, r.verbs.filter((v) => ['create', 'update', 'delete', 'watch'].includes(v))]).toEqual([r.resources, []]);
  }
});

test('mlops-serving is bound only in the serving namespace, to the mlops-serving group only', () => {
  const bindings = objects.filter((o) => o.kind === 'RoleBinding' && o.metadata.name === 'mlops-serving');
  expect(bindings).toHaveLength(1);
  expect(bindings[0].metadata.namespace).toBe(DEFAULT_PARAMETERS.servingNamespace);
  expect(bindings[0].roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'mlops-serving' });
  expect(bindings[0].subjects).toEqual([{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'mlops-serving' }]);
});

test('mlops-build may do exactly what build-image does, in the build namespace', () => {
  const roles = objects.filter((o) => o.kind === 'Role' && o.metadata.name === 'mlops-build');
  expect(roles.map((r) => r.metadata.namespace)).toEqual([DEFAULT_PARAMETERS.buildNamespace]);
  expect(roles[0].rules).toEqual([
    // Server-side apply of the build Job: patch (apply), create when absent, get; as mlops-training
    // does for training Jobs, but no list (training-watch lists the builds).
    { apiGroups: ['batch'], resources: ['jobs'], verbs: ['get', 'create', 'patch'] },
    // Server-side apply of the two Secrets the BuildKit pod mounts. create too is limited by name:
    // apply authorizes its create with the object's name (a plain POST create, which RBAC cannot
    // limit by name, is refused).
    { apiGroups: [''], resources: ['secrets'], resourceNames: BUILD_SECRETS, verbs: ['get', 'create', 'patch'] },
  ]);
});

test('mlops-build-watch may do exactly what training-watch does with the image builds, in the build namespace', () => {
  const roles = objects.filter((o) => o.kind === 'Role' && o.metadata.name === 'mlops-build-watch');
  expect(roles.map((r) => r.metadata.namespace)).toEqual([DEFAULT_PARAMETERS.buildNamespace]);
  const rules = roles[0].rules as Rule[];
  expect(rules).toEqual([
    // List the builds by label, get one, annotate one it reported.
    { apiGroups: ['batch'], resources: ['jobs'], verbs: ['get', 'list', 'patch'] },
    // A build's pod, and the tail of its log for ImageBuildFailed.
    { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] },
    { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
  ]);
  // The watcher never creates anything and never sees the tokens.
  for (const r of rules) {
    expect([r.resources, r.verbs.filter((v) => ['create', 'update', 'delete', 'watch'].includes(v))]).toEqual([r.resources, []]);
    expect(r.resources).not.toContain('secrets');
  }
});

test.each([
  ['mlops-build', 'mlops-build'],
  ['mlops-build-watch', 'mlops-build-watch'],
])('%s is bound only in the build namespace, to the %s group only', (name, group) => {
  const bindings = objects.filter((o) => o.kind === 'RoleBinding' && o.metadata.name === name);
  expect(bindings).toHaveLength(1);
  expect(bindings[0].metadata.namespace).toBe(DEFAULT_PARAMETERS.buildNamespace);
  expect(bindings[0].roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name });
  expect(bindings[0].subjects).toEqual([{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: group }]);
});

test('nothing cluster-wide: no ClusterRole or ClusterRoleBinding, every object namespaced, no cluster-scoped resource', () => {
  expect(objects.filter((o) => o.kind.startsWith('Cluster')).map((o) => o.metadata.name)).toEqual([]);
  for (const o of objects) expect([o.kind, o.metadata.name, typeof o.metadata.namespace]).toEqual([o.kind, o.metadata.name, 'string']);
  const clusterScoped = ['nodes', 'namespaces', 'persistentvolumes', 'clusterroles', 'clusterrolebindings', 'customresourcedefinitions'];
  for (const role of objects.filter((o) => o.kind === 'Role')) {
    for (const rule of role.rules as (Rule & { nonResourceURLs?: string[] })[]) {
      // Non-resource URLs (/metrics, /healthz) are cluster-wide; vLLM's /metrics is read through pods/proxy.
      expect([role.metadata.name, rule.nonResourceURLs]).toEqual([role.metadata.name, undefined]);
      expect([role.metadata.name, rule.resources.filter((r) => clusterScoped.includes(r))]).toEqual([role.metadata.name, []]);
    }
  }
});
