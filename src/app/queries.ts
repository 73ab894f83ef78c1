import { invalidArgument, resourceExhausted } from '../domain/errors.js';
import type { Check, CheckState, Stage, StageState } from '../domain/model.js';
import type { WorkPlanModel } from '../../projections/workplan-model.js';

export interface NodeQuery {
  readonly checkIds: readonly string[];
  readonly stageIds: readonly string[];
  readonly checkStates: readonly CheckState[];
  readonly stageStates: readonly StageState[];
  readonly includeChecks: boolean;
  readonly includeStages: boolean;
  /** 0: no paging. */
  readonly pageSize: number;
  readonly pageToken: string;
  /** Also end a page before its nodes pass `maxBytes` as `sizeOf` measures them (a client's message limit). */
  readonly budget?: NodeBudget | undefined;
}

export interface NodeBudget {
  readonly maxBytes: number;
  sizeOf(node: Check | Stage, kind: 'check' | 'stage'): number;
}

export interface NodePage {
  readonly checks: Check[];
  readonly stages: Stage[];
  readonly nextPageToken: string;
  readonly version: number;
}

/** Where a page ended: the kind it was in and the creation version of the last node returned. */
interface Cursor {
  readonly k: 'c' | 's';
  readonly v: number;
}

const encodeCursor = (c: Cursor) => Buffer.from(JSON.stringify(c)).toString('base64url');

function decodeCursor(token: string): Cursor | null {
  if (!token) return null;
  try {
    const c = JSON.parse(Buffer.from(token, 'base64url').toString()) as Partial<Cursor>;
    if ((c.k === 'c' || c.k === 's') && Number.isInteger(c.v)) return { k: c.k, v: c.v! };
  } catch {
    // fall through to the error below
  }
  throw invalidArgument('not a page token this server issued', 'page_token');
}

/** QueryNodes over a workplan's read model: filters combine with AND; nodes come in creation order. */
export function queryNodes(model: WorkPlanModel, q: NodeQuery): NodePage {
  const bothKinds = !q.includeChecks && !q.includeStages;
  const cursor = decodeCursor(q.pageToken);
  const limit = q.pageSize > 0 ? q.pageSize : Infinity;
  const checks: Check[] = [];
  const stages: Stage[] = [];
  let last: Cursor | null = null;
  let more = false;
  let bytes = 0;
  /** False when the node would pass the byte budget of a page that already has nodes: the page ends before it. */
  const fits = (node: Check | Stage, kind: 'check' | 'stage'): boolean => {
    if (!q.budget) return true;
    const size = q.budget.sizeOf(node, kind);
    if (checks.length + stages.length === 0 && size > q.budget.maxBytes) {
      throw resourceExhausted(
        `${kind} "${node.id.slice(0, 80)}" alone is ${size} bytes, more than a QueryNodes answer may carry (${q.budget.maxBytes}); read its history with ReadEvents`,
      );
    }
    if (bytes + size > q.budget.maxBytes) return false;
    bytes += size;
    return true;
  };

  if ((bothKinds || q.includeChecks) && cursor?.k !== 's') {
    const after = cursor?.k === 'c' ? cursor.v : 0;
    const ids = new Set(q.checkIds);
    const states = new Set(q.checkStates);
    for (const c of pick(model.checks, q.checkIds)) {
      if (c.createdAtVersion <= after || (ids.size && !ids.has(c.id)) || (states.size && !states.has(c.state))) continue;
      if (checks.length >= limit || !fits(c, 'check')) {
        more = true;
        break;
      }
      checks.push(c);
      last = { k: 'c', v: c.createdAtVersion };
    }
  }
  if ((bothKinds || q.includeStages) && !more) {
    const after = cursor?.k === 's' ? cursor.v : 0;
    const ids = new Set(q.stageIds);
    const states = new Set(q.stageStates);
    for (const s of pick(model.stages, q.stageIds)) {
      if (s.createdAtVersion <= after || (ids.size && !ids.has(s.id)) || (states.size && !states.has(s.state))) continue;
      if (checks.length + stages.length >= limit || !fits(s, 'stage')) {
        more = true;
        break;
      }
      stages.push(s);
      last = { k: 's', v: s.createdAtVersion };
    }
  }
  return { checks, stages, nextPageToken: more && last ? encodeCursor(last) : '', version: model.meta.version };
}

/** With an id filter, look the ids up (in creation order) instead of scanning the whole workplan. */
function pick<T extends { createdAtVersion: number }>(all: Map<string, T>, ids: readonly string[]): Iterable<T> {
  if (ids.length === 0) return all.values();
  const found = [...new Set(ids)].map((id) => all.get(id)).filter((n): n is T => n !== undefined);
  return found.sort((a, b) => a.createdAtVersion - b.createdAtVersion);
}
