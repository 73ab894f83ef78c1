// decide for the pull protocol: leasing an attempt, heartbeats, completions and the reaper's expiries. Pure: reads
// and emits into the decision's draft, returns the events or throws a DomainError (and nothing is appended).
import { checkProgressRoom, progressBytes } from './decide-write-nodes.js';
import type { DecideContext } from './commands.js';
import { decideRunnerAnswer, type ExecutionCompletion } from './decide-completion.js';
import { failedPrecondition } from './errors.js';
import type { PendingEvent } from './events.js';
import {
  currentAttempt,
  isTerminalAttempt,
  type Attempt,
  type JsonObject,
  type Lease,
  type LeaseExpiryReason,
  type Stage,
} from './model.js';
import type { WorkPlanView } from './view.js';
import type { WorkPlanDraft } from './workplan-draft.js';

/** What the scheduler grants when it leases an attempt: a lease before anything happened to it. */
export type LeaseGrant = Omit<Lease, 'completion' | 'expired'>;

/** The attempt a lease is about. */
export interface LeaseTarget {
  readonly stageId: string;
  readonly idx: number;
  readonly leaseId: string;
}

/** Leasing moves the PENDING current attempt to RUNNING with the runner as its process uid: one event. */
export function decideLease(cmd: { readonly stageId: string; readonly idx: number; readonly grant: LeaseGrant }, draft: WorkPlanDraft): PendingEvent[] {
  const { stageId, idx, grant } = cmd;
  const stage = draft.stage(stageId);
  const attempt = stage && currentAttempt(stage);
  if (!stage || stage.state !== 'ATTEMPTING' || attempt?.idx !== idx || attempt.state !== 'PENDING') {
    throw failedPrecondition(`attempt ${idx} of stage "${stageId}" is no longer PENDING`);
  }
  return [draft.emit({ type: 'StageAttemptLeased', data: { stageId, idx, ...grant } })];
}

/**
 * Where a lease stands. CANCELLED: the attempt ended without the runner (a client cancelled the stage or ended the
 * attempt); EXPIRED: the reaper expired it, or it is past its expiry and the reaper has not got to it yet.
 */
export type LeaseStatus = 'ACTIVE' | 'CANCELLED' | 'EXPIRED' | 'COMPLETED';

export function leaseStatus(attempt: Attempt, lease: Lease, now: number): LeaseStatus {
  if (lease.expired) return 'EXPIRED';
  if (lease.completion !== null) return 'COMPLETED';
  if (isTerminalAttempt(attempt.state)) return 'CANCELLED';
  if (now >= lease.expiresAt || now >= lease.runDeadline) return 'EXPIRED';
  return 'ACTIVE';
}

function leased(view: WorkPlanView, target: LeaseTarget): { stage: Stage; attempt: Attempt; lease: Lease } {
  const stage = view.stage(target.stageId);
  const attempt = stage?.attempts.find((a) => a.idx === target.idx);
  const lease = attempt?.lease;
  if (!stage || !attempt || !lease || lease.leaseId !== target.leaseId) {
    throw failedPrecondition(`lease ${target.leaseId} no longer holds an attempt`, 'lease_token');
  }
  return { stage, attempt, lease };
}

function refuse(status: LeaseStatus, stage: Stage, attempt: Attempt, lease: Lease): never {
  const what = `lease ${lease.leaseId} of attempt ${attempt.idx} of stage "${stage.id}"`;
  switch (status) {
    case 'EXPIRED':
      throw failedPrecondition(`${what} has expired${lease.expired ? ` (${lease.expired})` : ''}`, 'lease_token');
    case 'COMPLETED':
      throw failedPrecondition(`${what} was already completed with a different outcome`, 'lease_token');
    default:
      throw failedPrecondition(
        `${what} is over: the attempt is ${attempt.state}${attempt.failure ? ` (${attempt.failure.message})` : ''}`,
        'lease_token',
      );
  }
}

export interface HeartbeatInput {
  readonly lines: readonly string[];
  readonly message: string;
  readonly details: JsonObject;
  /** The new expiry: now + 2 heartbeat intervals. */
  readonly expiresAt: number;
}

export interface HeartbeatDecision {
  readonly events: PendingEvent[];
  readonly cancelRequested: boolean;
}

/** Extends an active lease (and appends progress); a cancelled one is told so, an expired one is refused. */
export function decideHeartbeat(cmd: { readonly target: LeaseTarget; readonly heartbeat: HeartbeatInput }, draft: WorkPlanDraft): HeartbeatDecision {
  const { target, heartbeat: hb } = cmd;
  const { stage, attempt, lease } = leased(draft, target);
  const status = leaseStatus(attempt, lease, draft.now);
  if (status === 'CANCELLED') return { events: [], cancelRequested: true };
  if (status !== 'ACTIVE') refuse(status, stage, attempt, lease);
  const events: PendingEvent[] = [];
  if (hb.lines.length > 0 || hb.message) {
    const details: JsonObject = { ...hb.details, ...(hb.lines.length ? { lines: [...hb.lines] } : {}) };
    const message = hb.message || `${hb.lines.length} line${hb.lines.length === 1 ? '' : 's'} of output`;
    checkProgressRoom(stage.id, attempt, progressBytes({ message, details }), 'log_lines');
    events.push(draft.emit({ type: 'StageAttemptProgressAppended', data: { stageId: stage.id, idx: attempt.idx, message, timestamp: null, details } }));
  }
  const expiresAt = Math.min(hb.expiresAt, lease.runDeadline);
  events.push(draft.emit({ type: 'StageAttemptLeaseExtended', data: { stageId: stage.id, idx: attempt.idx, leaseId: lease.leaseId, expiresAt } }));
  return { events, cancelRequested: false };
}

/**
 * CompleteLease, applied as one write like a push completion: every check update (a result, finalize, then state),
 * then the attempt (COMPLETE, or INCOMPLETE with the failure, recording the completion), then the stage state. An
 * identical repeat appends nothing.
 */
export function decideLeaseCompletion(
  cmd: { readonly target: LeaseTarget; readonly completion: ExecutionCompletion },
  draft: WorkPlanDraft,
  ctx: DecideContext,
): PendingEvent[] {
  const { target, completion: c } = cmd;
  const { stage, attempt, lease } = leased(draft, target);
  if (lease.completion === c.fingerprint) return [];
  const status = leaseStatus(attempt, lease, ctx.now);
  if (status !== 'ACTIVE') refuse(status, stage, attempt, lease);
  return decideRunnerAnswer({ stage, completion: c, via: { via: 'lease', id: lease.leaseId } }, draft, ctx);
}

/**
 * The reaper's expiry of a lease (HEARTBEATS_MISSED, RUN_TIMEOUT): the attempt goes INCOMPLETE with the reason and
 * the resolver retries it. A no-op if the lease ended meanwhile (completed, cancelled, extended past `now`).
 */
export function decideLeaseExpiry(
  cmd: { readonly target: LeaseTarget; readonly reason: LeaseExpiryReason; readonly message: string },
  draft: WorkPlanDraft,
): PendingEvent[] {
  const { target, reason, message } = cmd;
  const now = draft.now;
  const stage = draft.stage(target.stageId);
  const attempt = stage?.attempts.find((a) => a.idx === target.idx);
  const lease = attempt?.lease;
  if (!stage || !attempt || !lease || lease.leaseId !== target.leaseId) return [];
  if (leaseStatus(attempt, lease, now) !== 'EXPIRED' || lease.expired) return [];
  return [
    draft.emit({ type: 'StageAttemptLeaseExpired', data: { stageId: stage.id, idx: attempt.idx, leaseId: lease.leaseId, reason } }),
    draft.emit({
      type: 'StageAttemptStateChanged',
      data: { stageId: stage.id, idx: attempt.idx, from: attempt.state, to: 'INCOMPLETE', processUid: '', failure: { message, occurredAt: now } },
    }),
  ];
}

/** The reaper's pickup timeout: a PENDING attempt nobody leased in time goes INCOMPLETE (and is retried). */
export function decidePickupExpiry(
  cmd: { readonly stageId: string; readonly idx: number; readonly message: string },
  draft: WorkPlanDraft,
): PendingEvent[] {
  const { stageId, idx, message } = cmd;
  const now = draft.now;
  const stage = draft.stage(stageId);
  const attempt = stage && currentAttempt(stage);
  if (!stage || attempt?.idx !== idx || attempt.state !== 'PENDING') return [];
  return [
    draft.emit({ type: 'StageAttemptLeaseExpired', data: { stageId, idx, leaseId: '', reason: 'PICKUP_TIMEOUT' } }),
    draft.emit({
      type: 'StageAttemptStateChanged',
      data: { stageId, idx, from: 'PENDING', to: 'INCOMPLETE', processUid: '', failure: { message, occurredAt: now } },
    }),
  ];
}
