/**
 * Reads infra/k8s/rbac.yaml, the Kubernetes side of the EKS access entries: which groups have
 * RoleBindings, and in which namespaces. The stack refuses a function that asks for a group this
 * file does not bind, so an access entry never maps a role to a group with no (or unknown) rights.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';

export const RBAC_FILE = path.resolve(__dirname, '..', 'k8s', 'rbac.yaml');

export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly [key: string]: unknown;
}

export function loadRbacObjects(file: string = RBAC_FILE): K8sObject[] {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8'));
  const objects: K8sObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    }
    const value = doc.toJS() as K8sObject | null;
    if (value !== null) objects.push(value);
  }
  return objects;
}

/** Group name → namespaces where a RoleBinding grants it a Role. */
export function boundGroups(objects: readonly K8sObject[]): Map<string, Set<string>> {
  const groups = new Map<string, Set<string>>();
  for (const o of objects) {
    if (o.kind !== 'RoleBinding') continue;
    const subjects = (o.subjects ?? []) as { kind: string; name: string }[];
    for (const s of subjects) {
      if (s.kind !== 'Group') continue;
      const set = groups.get(s.name) ?? new Set<string>();
      set.add(o.metadata.namespace ?? 'default');
      groups.set(s.name, set);
    }
  }
  return groups;
}
