// What an event says, in words, and what it changed on its node, as `path: old → new` lines.
import { eventNode, type DomainEvent, type RecordedEvent } from '../../domain/events.js';
import type { NodeSnapshot } from './replay.js';

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

const BOOKKEEPING = new Set(['updatedAt', 'version', 'changedAtVersion']);
function strip(node: unknown): unknown {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return node;
  return Object.fromEntries(Object.entries(node).filter(([k]) => !BOOKKEEPING.has(k)));
}

export function diff(left: unknown, right: unknown, path: string, out: string[]): void {
  const [a, b] = [jsonValue(left), jsonValue(right)];
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

/**
 * A value as JSON shows it: what its toJSON gives, when it has one (a packed dependency tree is a class whose fields
 * are not the tree's: src/domain/packed-group.ts), else itself.
 */
export function jsonValue(v: unknown): unknown {
  const toJSON = v !== null && typeof v === 'object' ? (v as { toJSON?: unknown }).toJSON : undefined;
  return typeof toJSON === 'function' ? (toJSON as () => unknown).call(v) : v;
}

export const isPlainObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** A value on one line, cut at 120 characters. */
export function compact(v: unknown, max = 120): string {
  const s = typeof v === 'string' && v !== '' ? v : JSON.stringify(v) ?? 'undefined';
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** One line saying what an event records, e.g. "check c1 went FINAL" or "attempt 2 of stage s was opened". */
export function describeEvent(event: DomainEvent): string {
  const d = event.data as Record<string, unknown>;
  const about = eventNode(event);
  const node = about ? `${about.kind} ${about.id}` : 'the workplan';
  const attempt = typeof d.idx === 'number' ? `attempt ${d.idx} of ${node}` : node;
  const failure = (f: unknown) => (isPlainObject(f) && typeof f.message === 'string' ? ` (failure: "${f.message}")` : '');
  const appliedCompletion = (c: unknown) =>
    isPlainObject(c) ? `, applying the ${c.via === 'lease' ? `pull runner's completion (lease ${String(c.id)})` : `runner's completion (execution ${String(c.id)})`}` : '';
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
    case 'CheckApprovalGiven':
      return `${String(d.principal)} ${d.decision === 'REJECT' ? 'rejected' : 'approved'} ${node}${d.comment ? ` ("${compact(d.comment, 60)}")` : ''}`;
    case 'CheckApprovalTimedOut':
      return `${node} reached its approval deadline ${new Date(Number(d.deadline)).toISOString()}`;
    case 'StageAttemptCreated':
      return `${attempt} was opened${d.startsStage ? ` and ${node} went ATTEMPTING` : ''}`;
    case 'StageAttemptStateChanged':
      return `${attempt} went ${String(d.to)}${d.processUid ? ` (process ${String(d.processUid)})` : ''}${failure(d.failure)}${appliedCompletion(d.completion)}${d.stageTo ? ` and ${node} went ${String(d.stageTo)}` : ''}`;
    case 'StageAttemptDetailsMerged':
      return `details were merged into ${attempt}`;
    case 'StageAttemptProgressAppended':
      return `progress was reported on ${attempt}: "${compact(d.message, 60)}"`;
    case 'StageAttemptDispatched':
      return `${attempt} was sent to runner ${String(d.runnerId)} (${String(d.mode)}, execution ${String(d.executionId)}) and went SCHEDULED`;
    case 'StageAttemptDispatchDeclined':
      return `runner declined ${attempt}; it was queued again`;
    case 'StageExecutionCompleted':
      return `the runner's completion of ${attempt} was applied (execution ${String(d.executionId)})`;
    case 'StageAttemptLeased':
      return `${attempt} was leased by pull runner ${String(d.runnerId)} until ${new Date(Number(d.expiresAt)).toISOString()} and went RUNNING`;
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
    case 'TokenCreated':
      return `token ${String(d.name)} (role ${String(d.role)}) was created`;
    case 'TokenRevoked':
      return `token ${String(d.name)} was revoked`;
  }
}

/** "written by request r-1" or "resolver, within request r-1": who put an event in the log. */
export function describeOrigin(rec: RecordedEvent): string {
  const req = rec.causation.requestId ? `request ${rec.causation.requestId}` : 'no request id';
  return rec.causation.causedByVersion === null ? `written by ${req}` : `resolver, within ${req}`;
}
