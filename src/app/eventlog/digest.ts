// Canonical state and digests, to compare read models built in different places (verify, GetReadModelDigest).
import { createHash } from 'node:crypto';
import type { WorkPlanModel } from '../../../projections/workplan-model.js';
import { nodeKey, type NodeKey } from '../../domain/model.js';
import { diff, isPlainObject, jsonValue } from './describe.js';

/** JSON with object keys sorted at every level, Maps and Sets as arrays, undefined dropped: equal values give equal strings. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  const v = jsonValue(value); // as JSON.stringify would see it
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v instanceof Map) return [...v].map(([k, x]) => [k, sortKeys(x)]);
  if (v instanceof Set) return [...v].map(sortKeys);
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) if (v[k] !== undefined) out[k] = sortKeys(v[k]);
    return out;
  }
  return v;
}

/**
 * Everything a workplan's read model holds, in a canonical form: the header, every node, the dependency indexes
 * (dependents of each node, satisfied members counted per node and per nested sub-group, children of each stage) and the request ids answered.
 */
export function readModelState(model: WorkPlanModel): unknown {
  const keys = new Set<NodeKey>();
  for (const c of model.checks.values()) keys.add(nodeKey({ kind: 'check', id: c.id }));
  for (const s of model.stages.values()) keys.add(nodeKey({ kind: 'stage', id: s.id }));
  for (const n of [...model.checks.values(), ...model.stages.values()]) for (const e of n.dependencies?.edges ?? []) keys.add(nodeKey(e));
  const dependents: Record<string, string[]> = {};
  const finalTargets: Record<string, number> = {};
  const groups = new Set<NodeKey>();
  for (const k of [...keys].sort()) {
    const deps = [...model.dependents(k)].sort();
    if (deps.length) dependents[k] = deps;
    for (const g of deps) if (g.includes(' ')) groups.add(g); // a nested sub-group's key (node key, space, path)
    const n = model.finalTargets(k);
    if (n) finalTargets[k] = n;
  }
  // Nested sub-groups count their satisfied members too (only those holding an edge are listed as dependents).
  for (const g of [...groups].sort()) {
    const n = model.finalTargets(g);
    if (n) finalTargets[g] = n;
  }
  const children: Record<string, string[]> = {};
  for (const s of model.stages.values()) {
    const kids = [...model.children(s.id)].sort();
    if (kids.length) children[s.id] = kids;
  }
  return {
    meta: model.meta,
    checks: [...model.checks.values()].sort((a, b) => a.createdAtVersion - b.createdAtVersion),
    stages: [...model.stages.values()].sort((a, b) => a.createdAtVersion - b.createdAtVersion),
    dependents,
    finalTargets,
    children,
    requests: [...model.requests.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  };
}

export interface ModelDigest {
  readonly workPlanId: string;
  readonly version: number;
  readonly sha256: string;
  readonly json: string;
}

export function digestReadModel(model: WorkPlanModel): ModelDigest {
  const json = canonicalJson(readModelState(model));
  return { workPlanId: model.meta.id, version: model.meta.version, sha256: createHash('sha256').update(json).digest('hex'), json };
}

/** The paths at which two JSON values differ, as `path: left → right` lines (at most `limit`). */
export function jsonDifferences(left: unknown, right: unknown, limit = 20): string[] {
  const out: string[] = [];
  diff(left, right, '', out);
  return out.length > limit ? [...out.slice(0, limit), `… and ${out.length - limit} more`] : out;
}
