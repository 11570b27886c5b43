/** infra/k8s/rbac.yaml: namespaced Roles/RoleBindings only, nothing cluster-wide or admin. */
import { DEFAULT_PARAMETERS } from '../lib/parameters';
import { boundGroups, K8sObject, loadRbacObjects } from '../lib/rbac';

const objects = loadRbacObjects();
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

test('only Roles and RoleBindings, in the training and serving namespaces', () => {
  expect(objects.length).toBeGreaterThan(0);
  for (const o of objects) {
    expect(o.apiVersion).toBe('rbac.authorization.k8s.io/v1');
    expect(['Role', 'RoleBinding']).toContain(o.kind);
    expect([DEFAULT_PARAMETERS.trainingNamespace, DEFAULT_PARAMETERS.servingNamespace]).toContain(o.metadata.namespace);
  }
});

test('no wildcard, no secrets, no privilege-escalating verbs', () => {
  for (const role of objects.filter((o) => o.kind === 'Role')) {
    for (const rule of role.rules as Rule[]) {
      for (const v of [...rule.apiGroups, ...rule.resources, ...rule.verbs]) expect(v).not.toContain('*');
      expect(rule.resources).not.toEqual(expect.arrayContaining(['secrets']));
      for (const verb of ['escalate', 'bind', 'impersonate', 'deletecollection']) expect(rule.verbs).not.toContain(verb);
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
  expect([...groups.keys()].sort()).toEqual(['mlops-serving', 'mlops-training']);
  expect([...groups.get('mlops-training')!]).toEqual([DEFAULT_PARAMETERS.trainingNamespace]);
  expect([...groups.get('mlops-serving')!]).toEqual([DEFAULT_PARAMETERS.servingNamespace]);
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
