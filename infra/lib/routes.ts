/**
 * The routing table, events/routes.json: the one list of EventBridge rules, shared with the local
 * dev stack. Each route becomes one rule on its bus whose target is its function's SQS queue.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './parameters';

export type BusKind = 'default' | 'mlops';

export interface Route {
  readonly name: string;
  readonly bus: BusKind;
  readonly description: string;
  /** An EventBridge event pattern, with `{{placeholder}}` strings still in it. */
  readonly pattern: Record<string, unknown>;
  /** Name of the function (a row of the function table) the matched events go to. */
  readonly target: string;
}

export const ROUTES_FILE = path.join(REPO_ROOT, 'events', 'routes.json');

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;

export function loadRoutes(file: string = ROUTES_FILE): Route[] {
  let doc: unknown;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`routes file '${file}' cannot be read as JSON: ${(e as Error).message}`);
  }
  const routes = (doc as { routes?: unknown } | null)?.routes;
  if (!Array.isArray(routes)) {
    throw new Error(`routes file '${file}' has no 'routes' array`);
  }
  return routes.map((r, i) => validateRoute(r, `${file} routes[${i}]`));
}

function validateRoute(value: unknown, where: string): Route {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${where} is not an object`);
  }
  const r = value as Record<string, unknown>;
  const name = r.name;
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new Error(`${where}: 'name' must be 1-64 characters of [A-Za-z0-9._-]`);
  }
  const at = `route '${name}'`;
  if (r.bus !== 'default' && r.bus !== 'mlops') {
    throw new Error(`${at}: 'bus' must be "default" or "mlops", got ${JSON.stringify(r.bus)}`);
  }
  if (typeof r.target !== 'string' || r.target === '') {
    throw new Error(`${at}: 'target' must name a function`);
  }
  if (r.pattern === null || typeof r.pattern !== 'object' || Array.isArray(r.pattern)) {
    throw new Error(`${at}: 'pattern' must be an EventBridge event pattern object`);
  }
  return {
    name,
    bus: r.bus,
    description: typeof r.description === 'string' ? r.description : '',
    pattern: r.pattern as Record<string, unknown>,
    target: r.target,
  };
}

/**
 * Replaces `{{name}}` placeholders inside a pattern by walking the JSON value, so each value can be
 * a CDK token (a bucket name unknown until deploy). A string that is exactly one placeholder becomes
 * the value itself; a placeholder inside a longer string is concatenated, which CDK renders as
 * Fn::Join. An unknown placeholder is an error naming the route.
 */
export function substitutePlaceholders(
  pattern: unknown,
  values: Readonly<Record<string, string>>,
  routeName: string,
): unknown {
  const lookup = (key: string): string => {
    if (!Object.prototype.hasOwnProperty.call(values, key)) {
      throw new Error(
        `route '${routeName}': unknown placeholder '{{${key}}}' (known: ${Object.keys(values).map((k) => `{{${k}}}`).join(', ')})`,
      );
    }
    return values[key];
  };
  const walk = (node: unknown): unknown => {
    if (typeof node === 'string') {
      const whole = /^\{\{\s*([A-Za-z0-9_]+)\s*\}\}$/.exec(node);
      if (whole) return lookup(whole[1]);
      return node.replace(PLACEHOLDER, (_m, key: string) => lookup(key));
    }
    if (Array.isArray(node)) return node.map(walk);
    if (node !== null && typeof node === 'object') {
      return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v)]));
    }
    return node;
  };
  return walk(pattern);
}
