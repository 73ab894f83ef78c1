// Event log tooling, shared by the `turboci` debugging commands and the TurboCIEventLog RPCs: filters, the JSON
// form of a recorded event, rebuilding a workplan as of a version or a time, the change each event makes, the
// causal chain behind a node's transitions, and a canonical digest of a read model.
import { createHash } from 'node:crypto';
import { ReadModels } from '../../projections/read-models.js';
import type { WorkPlanModel } from '../../projections/workplan-model.js';
import { eventNode, type DomainEvent, type RecordedEvent } from '../domain/events.js';
import { nodeKey, type Check, type NodeKey, type Stage } from '../domain/model.js';

/** A recorded event, with the schema version it was stored at when the reader knows it. */
export interface LoggedEvent extends RecordedEvent {
  /** The schema version of the stored row (older ones were upcast to the current shape on read). */
  readonly storedSchemaVersion?: number;
}

/** What `turboci events` selects; every field is optional and they combine with AND. */
export interface EventFilter {
  readonly workPlanId?: string;
  readonly types?: readonly string[];
  /** A node id, optionally `check:` or `stage:` prefixed. */
  readonly node?: string;
  readonly fromVersion?: number;
  readonly toVersion?: number;
  readonly fromPosition?: number;
  readonly toPosition?: number;
  /** Epoch ms, inclusive. */
  readonly since?: number;
  /** Epoch ms, inclusive. */
  readonly until?: number;
}

export function matchesNode(rec: RecordedEvent, node: string): boolean {
  const about = eventNode(rec.event);
  if (!about) return false;
  const colon = node.indexOf(':');
  const kind = colon > 0 ? node.slice(0, colon) : '';
  if (kind === 'check' || kind === 'stage') return about.kind === kind && about.id === node.slice(colon + 1);
  return about.id === node;
}

/** The filters a reader could not apply itself (it applies what it can, e.g. in SQL). */
export function matches(rec: RecordedEvent, f: EventFilter): boolean {
  if (f.workPlanId !== undefined && rec.streamId !== f.workPlanId) return false;
  if (f.types?.length && !f.types.includes(rec.event.type)) return false;
  if (f.node !== undefined && !matchesNode(rec, f.node)) return false;
  if (f.fromVersion !== undefined && rec.version < f.fromVersion) return false;
  if (f.toVersion !== undefined && rec.version > f.toVersion) return false;
  if (f.fromPosition !== undefined && rec.position < f.fromPosition) return false;
  if (f.toPosition !== undefined && rec.position > f.toPosition) return false;
  if (f.since !== undefined && rec.recordedAt < f.since) return false;
  if (f.until !== undefined && rec.recordedAt > f.until) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// The JSON (NDJSON) form of an event: `turboci events --json`, `turboci export`, `turboci import`.

export interface EventJson {
  readonly position: number;
  readonly workPlanId: string;
  readonly version: number;
  readonly type: string;
  /** The shape `data` is in (the current one: older rows are upcast on read). */
  readonly schemaVersion: number;
  /** The schema version of the stored row, when it differs from schemaVersion. */
  readonly storedSchemaVersion?: number;
  /** ISO 8601, millisecond precision. */
  readonly recordedAt: string;
  readonly requestId: string | null;
  readonly causedByVersion: number | null;
  readonly data: unknown;
}

export function eventToJson(rec: LoggedEvent, schemaVersion: number): EventJson {
  return {
    position: rec.position,
    workPlanId: rec.streamId,
    version: rec.version,
    type: rec.event.type,
    schemaVersion,
    ...(rec.storedSchemaVersion !== undefined && rec.storedSchemaVersion !== schemaVersion
      ? { storedSchemaVersion: rec.storedSchemaVersion }
      : {}),
    recordedAt: new Date(rec.recordedAt).toISOString(),
    requestId: rec.causation.requestId,
    causedByVersion: rec.causation.causedByVersion,
    data: rec.event.data,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Rebuilding a workplan.

export interface ReplayTarget {
  /** Up to and including this stream version. */
  readonly version?: number;
  /** Up to the last event recorded at or before this time (epoch ms). */
  readonly at?: number;
}

/**
 * Folds a workplan's events (in stream order) through the projections up to `target`, and stops reading there.
 * Returns undefined when no event is within the target (the workplan did not exist yet).
 */
export async function replayWorkPlan(
  events: Iterable<RecordedEvent> | AsyncIterable<RecordedEvent>,
  workPlanId: string,
  target: ReplayTarget = {},
  onEvent?: (rec: RecordedEvent, before: NodeSnapshot | undefined, after: NodeSnapshot | undefined) => void | Promise<void>,
): Promise<WorkPlanModel | undefined> {
  const models = new ReadModels();
  for await (const rec of events) {
    if (rec.streamId !== workPlanId) continue;
    if (target.version !== undefined && rec.version > target.version) break;
    if (target.at !== undefined && rec.recordedAt > target.at) break;
    const model = models.workplan(workPlanId);
    const before = model && onEvent ? nodeOf(model, rec) : undefined;
    models.apply(rec);
    if (onEvent) await onEvent(rec, before, nodeOf(models.workplan(workPlanId)!, rec));
  }
  return models.workplan(workPlanId);
}

export type NodeSnapshot = Check | Stage | WorkPlanModel['meta'];

function nodeOf(model: WorkPlanModel, rec: RecordedEvent): NodeSnapshot | undefined {
  const about = eventNode(rec.event);
  if (!about) return model.meta;
  return about.kind === 'check' ? model.check(about.id) : model.stage(about.id);
}

/**
 * The fields an event changed on the node it is about, as `path: old → new` lines. Bookkeeping fields (updatedAt,
 * version) are left out: every event changes them.
 */
export function describeChange(before: NodeSnapshot | undefined, after: NodeSnapshot | undefined): string[] {
  const out: string[] = [];
  if (before === undefined) {
    if (after !== undefined) out.push(`created ${compact(strip(after))}`);
    return out;
  }
  diff(strip(before), strip(after), '', out);
  return out;
}

const BOOKKEEPING = new Set(['updatedAt', 'version']);
function strip(node: unknown): unknown {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return node;
  return Object.fromEntries(Object.entries(node).filter(([k]) => !BOOKKEEPING.has(k)));
}

function diff(a: unknown, b: unknown, path: string, out: string[]): void {
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) diff(a[i], b[i], `${path}[${i}]`, out);
    return;
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (path.includes('[') && k === 'updatedAt') continue; // an attempt's own bookkeeping
      diff(a[k], b[k], path ? `${path}.${k}` : k, out);
    }
    return;
  }
  if (a === undefined) out.push(`${path}: + ${compact(b)}`);
  else if (b === undefined) out.push(`${path}: - ${compact(a)}`);
  else out.push(`${path}: ${compact(a)} → ${compact(b)}`);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** A value on one line, cut at 120 characters. */
export function compact(v: unknown, max = 120): string {
  const s = typeof v === 'string' && v !== '' ? v : JSON.stringify(v) ?? 'undefined';
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

// ---------------------------------------------------------------------------------------------------------------
// What an event says, in words.

/** One line saying what an event records, e.g. "check c1 went FINAL" or "attempt 2 of stage s was opened". */
export function describeEvent(event: DomainEvent): string {
  const d = event.data as Record<string, unknown>;
  const about = eventNode(event);
  const node = about ? `${about.kind} ${about.id}` : 'the workplan';
  const attempt = typeof d.idx === 'number' ? `attempt ${d.idx} of ${node}` : node;
  const failure = (f: unknown) => (isPlainObject(f) && typeof f.message === 'string' ? ` (failure: "${f.message}")` : '');
  switch (event.type) {
    case 'WorkPlanCreated':
      return `the workplan was created`;
    case 'CheckCreated':
    case 'StageCreated':
      return `${node} was created`;
    case 'CheckAmended':
    case 'StageAmended':
      return `${node} was amended (${Object.keys(d).filter((k) => k !== 'checkId' && k !== 'stageId').join(', ')})`;
    case 'CheckStateChanged':
      return `${node} went ${String(d.to)}`;
    case 'StageStateChanged':
      return `${node} went ${String(d.to)}${failure(d.failure)}`;
    case 'CheckResultAdded':
      return `result ${String(d.resultId)} was added to ${node}${d.finalized ? ' (finalized)' : ''}${failure(d.failure)}`;
    case 'StageAttemptCreated':
      return `${attempt} was opened`;
    case 'StageAttemptStateChanged':
      return `${attempt} went ${String(d.to)}${d.processUid ? ` (process ${String(d.processUid)})` : ''}${failure(d.failure)}`;
    case 'StageAttemptDetailsMerged':
      return `details were merged into ${attempt}`;
    case 'StageAttemptProgressAppended':
      return `progress was reported on ${attempt}: "${compact(d.message, 60)}"`;
    case 'StageAttemptDispatched':
      return `${attempt} was sent to runner ${String(d.runnerId)} (${String(d.mode)}, execution ${String(d.executionId)})`;
    case 'StageAttemptDispatchDeclined':
      return `runner declined ${attempt}; it was queued again`;
    case 'StageExecutionCompleted':
      return `the runner's completion of ${attempt} was applied (execution ${String(d.executionId)})`;
    case 'StageAttemptLeased':
      return `${attempt} was leased by pull runner ${String(d.runnerId)} until ${new Date(Number(d.expiresAt)).toISOString()}`;
    case 'StageAttemptLeaseExtended':
      return `the lease on ${attempt} was extended to ${new Date(Number(d.expiresAt)).toISOString()}`;
    case 'StageAttemptLeaseExpired':
      return `the lease on ${attempt} expired: ${String(d.reason)}`;
    case 'StageAttemptLeaseCompleted':
      return `the pull runner's completion of ${attempt} was applied`;
    case 'RunnerRegistered':
      return `runner ${String(d.runnerId)} (type ${String(d.runnerType)}) registered at ${String(d.address)}`;
    case 'RunnerRefreshed':
      return `runner ${String(d.runnerId)} refreshed its registration`;
    case 'RunnerUnregistered':
      return `registration ${String(d.registrationId)} was removed`;
    case 'RunnerExpired':
      return `registration ${String(d.registrationId)} expired`;
  }
}

/** "client write, request r-1" or "resolver" — who put an event in the log. */
export function describeOrigin(rec: RecordedEvent): string {
  const req = rec.causation.requestId ? `request ${rec.causation.requestId}` : 'no request id';
  return rec.causation.causedByVersion === null ? `written by ${req}` : `resolver, within ${req}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Explaining a node: its history, and for every transition the chain of causes back to a client request.

export interface CauseLink {
  readonly version: number;
  readonly type: string;
  readonly summary: string;
  readonly recordedAt: string;
  readonly requestId: string | null;
}

export interface ExplainedEvent extends CauseLink {
  readonly position: number;
  /** Field changes on the node, as `path: old → new`. */
  readonly changes: string[];
  /** Who wrote it: the client (causedBy empty) or the resolver in reaction to causedBy[0], which reacted to [1]... */
  readonly causedBy: CauseLink[];
  /** The sentence: "stage deploy went ATTEMPTING at v15 because check build went FINAL at v14, written by request r-1". */
  readonly because: string;
}

export interface Explanation {
  readonly workPlanId: string;
  readonly node: { kind: 'check' | 'stage'; id: string };
  readonly version: number;
  /** The node as it stands at `version` (domain form), or null when it does not exist. */
  readonly current: Check | Stage | null;
  readonly history: ExplainedEvent[];
}

/**
 * Explains a node from a workplan's events, read once in stream order. A cause is always an earlier event of the
 * same stream (the resolver reacts within the write), so a compact index of the events read so far answers every
 * causedByVersion without reading the stream again.
 */
export async function explainNode(
  events: AsyncIterable<RecordedEvent> | Iterable<RecordedEvent>,
  workPlanId: string,
  node: string,
): Promise<Explanation | undefined> {
  const models = new ReadModels();
  const history: ExplainedEvent[] = [];
  let ref: { kind: 'check' | 'stage'; id: string } | undefined;
  const seenEvents = new Map<number, CauseLink & { causedByVersion: number | null }>();
  for await (const rec of events) {
    if (rec.streamId !== workPlanId) continue;
    seenEvents.set(rec.version, { ...link(rec), causedByVersion: rec.causation.causedByVersion });
    const model = models.workplan(workPlanId);
    const about = matchesNode(rec, node) ? eventNode(rec.event)! : undefined;
    const before = about && model ? nodeOf(model, rec) : undefined;
    models.apply(rec);
    if (!about) continue;
    ref = about;
    const after = nodeOf(models.workplan(workPlanId)!, rec);
    const causedBy: CauseLink[] = [];
    const seen = new Set<number>();
    for (let v = rec.causation.causedByVersion; v !== null && !seen.has(v); ) {
      seen.add(v);
      const cause = seenEvents.get(v);
      if (!cause) break;
      const { causedByVersion, ...causeLink } = cause;
      causedBy.push(causeLink);
      v = causedByVersion;
    }
    const self = link(rec);
    history.push({ ...self, position: rec.position, changes: describeChange(before, after), causedBy, because: because(self, causedBy) });
  }
  const model = models.workplan(workPlanId);
  if (!model || !ref) return model && !ref ? { workPlanId, node: guessRef(node), version: model.meta.version, current: null, history } : undefined;
  const current = (ref.kind === 'check' ? model.check(ref.id) : model.stage(ref.id)) ?? null;
  return { workPlanId, node: ref, version: model.meta.version, current, history };
}

function guessRef(node: string): { kind: 'check' | 'stage'; id: string } {
  const colon = node.indexOf(':');
  const kind = node.slice(0, colon);
  if (colon > 0 && (kind === 'check' || kind === 'stage')) return { kind, id: node.slice(colon + 1) };
  return { kind: 'check', id: node };
}

function link(rec: RecordedEvent): CauseLink {
  return {
    version: rec.version,
    type: rec.event.type,
    summary: describeEvent(rec.event),
    recordedAt: new Date(rec.recordedAt).toISOString(),
    requestId: rec.causation.requestId,
  };
}

function because(self: CauseLink, chain: readonly CauseLink[]): string {
  const root = chain[chain.length - 1] ?? self;
  const request = root.requestId ? `written by request ${root.requestId}` : 'written without a request id';
  if (chain.length === 0) return `${self.summary} at v${self.version}, ${request} (a client write)`;
  const causes = chain.map((c) => `${c.summary} at v${c.version}`).join(', because ');
  return `${self.summary} at v${self.version} because ${causes}, ${request}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Canonical state and digests, to compare read models built in different places.

/** JSON with object keys sorted at every level and undefined dropped: equal values give equal strings. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) if (v[k] !== undefined) out[k] = sortKeys(v[k]);
    return out;
  }
  return v;
}

/**
 * Everything a workplan's read model holds, in a canonical form: the header, every node, the dependency indexes
 * (dependents of each node, FINAL targets counted per node, children of each stage) and the request ids answered.
 */
export function readModelState(model: WorkPlanModel): unknown {
  const keys = new Set<NodeKey>();
  for (const c of model.checks.values()) keys.add(nodeKey({ kind: 'check', id: c.id }));
  for (const s of model.stages.values()) keys.add(nodeKey({ kind: 'stage', id: s.id }));
  for (const n of [...model.checks.values(), ...model.stages.values()]) for (const e of n.dependencies?.edges ?? []) keys.add(nodeKey(e));
  const dependents: Record<string, string[]> = {};
  const finalTargets: Record<string, number> = {};
  for (const k of [...keys].sort()) {
    const deps = [...model.dependents(k)].sort();
    if (deps.length) dependents[k] = deps;
    const n = model.finalTargets(k);
    if (n) finalTargets[k] = n;
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
