// decide for the runner protocol: registrations (registry stream) and executions (workplan streams, emitted into
// the decision's draft). Pure.
import type { Caller, DecideContext, StageWriteInput } from './commands.js';
import { decideRunnerAnswer, type ExecutionCompletion } from './decide-completion.js';
import { decideWriteNodes } from './decide-write-nodes.js';
import { failedPrecondition, notFound, permissionDenied } from './errors.js';
import { pending, type PendingEvent } from './events.js';
import {
  currentAttempt,
  isTerminalAttempt,
  type Attempt,
  type ExecutionMode,
  type JsonObject,
  type RunnerRegistration,
  type Stage,
} from './model.js';
import type { WorkPlanView } from './view.js';
import type { WorkPlanDraft } from './workplan-draft.js';


/** What a runner asks for when it registers (or re-registers as its heartbeat). */
export type RegisterRunner = Pick<
  RunnerRegistration,
  'runnerId' | 'runnerType' | 'address' | 'supportedModes' | 'maxConcurrent' | 'ttlSeconds' | 'metadata'
> & {
  /** The registration being refreshed, when the caller gives it (proof of identity when auth is off). */
  readonly registrationId?: string | undefined;
};

/** A live registration and the principal that made it (null when recorded before principals were). */
export interface OwnedRegistration {
  readonly registration: RunnerRegistration;
  readonly owner: string | null;
}

/**
 * Only the identity that made a registration may refresh or remove it: with auth on, the same token (or an
 * admin); with auth off (everyone is `anonymous`), whoever holds its registration id, which only the registrant
 * was told.
 */
function mayActOn(reg: OwnedRegistration, caller: Caller, registrationId: string | undefined): boolean {
  if (caller.authenticated) return caller.admin || reg.owner === caller.principal;
  return registrationId === reg.registration.registrationId;
}

/**
 * A first registration, or a heartbeat (the same runner_id again before expiry): same registration, load kept.
 * Re-registering a live runner_id is a refresh only for the identity that registered it (mayActOn); with auth off,
 * a call without the registration id still refreshes when nothing dispatch-relevant changes (same address and
 * type: a runner heartbeating), but can never move the registration, and its dispatches, elsewhere.
 */
export function decideRegisterRunner(
  existing: OwnedRegistration | undefined,
  cmd: RegisterRunner,
  now: number,
  newRegistrationId: () => string,
  caller: Caller = { principal: 'anonymous', authenticated: false, admin: false },
): PendingEvent[] {
  const fields = {
    runnerId: cmd.runnerId,
    runnerType: cmd.runnerType,
    address: cmd.address,
    supportedModes: cmd.supportedModes.length ? [...new Set(cmd.supportedModes)] : (['SYNC'] as ExecutionMode[]),
    maxConcurrent: cmd.maxConcurrent > 0 ? cmd.maxConcurrent : 1,
    ttlSeconds: cmd.ttlSeconds > 0 ? cmd.ttlSeconds : 300,
    metadata: cmd.metadata,
  };
  const expiresAt = now + fields.ttlSeconds * 1000;
  const live = existing && existing.registration.expiresAt > now ? existing : undefined;
  if (live) {
    const reg = live.registration;
    if (cmd.registrationId && cmd.registrationId !== reg.registrationId) {
      throw failedPrecondition(`runner "${cmd.runnerId}" has another live registration; registration_id does not match it`, 'registration_id');
    }
    const unchanged = reg.address === cmd.address && reg.runnerType === cmd.runnerType;
    if (!mayActOn(live, caller, cmd.registrationId) && !(unchanged && !caller.authenticated)) {
      if (caller.authenticated) {
        throw permissionDenied(`runner "${cmd.runnerId}" is registered by another identity; only it may refresh the registration`, 'runner_id');
      }
      throw failedPrecondition(
        `runner "${cmd.runnerId}" is already registered from another address; give its registration_id to move it, or unregister it first`,
        'runner_id',
      );
    }
    return [pending({ type: 'RunnerRefreshed', data: { ...fields, registrationId: reg.registrationId, expiresAt } })];
  }
  return [pending({ type: 'RunnerRegistered', data: { ...fields, registrationId: newRegistrationId(), expiresAt } })];
}

export function decideUnregisterRunner(existing: OwnedRegistration | undefined, registrationId: string, caller?: Caller): PendingEvent[] {
  if (!existing) throw notFound(`no live registration "${registrationId}"`, 'registration_id');
  if (caller?.authenticated && !mayActOn(existing, caller, registrationId)) {
    throw permissionDenied(`registration "${registrationId}" was made by another identity; only it may remove it`, 'registration_id');
  }
  return [pending({ type: 'RunnerUnregistered', data: { registrationId } })];
}

export interface ExecutionTarget {
  readonly executionId: string;
  readonly stageId: string;
  readonly idx: number;
}

export interface DispatchAttempt {
  readonly stageId: string;
  readonly idx: number;
  readonly runner: RunnerRegistration;
  readonly executionId: string;
  readonly deadline: number;
  /** The server process dispatching (see StageAttemptDispatched.dispatchedBy). */
  readonly dispatchedBy?: string;
}

export function decideDispatch(cmd: DispatchAttempt, draft: WorkPlanDraft): PendingEvent[] {
  const { stageId, idx, runner, executionId, deadline, dispatchedBy } = cmd;
  const stage = draft.stage(stageId);
  const attempt = stage && currentAttempt(stage);
  if (!stage || attempt?.idx !== idx || attempt.state !== 'PENDING') {
    throw failedPrecondition(`attempt ${idx} of stage "${stageId}" is no longer PENDING`);
  }
  return [
    draft.emit({
      type: 'StageAttemptDispatched',
      data: {
        stageId,
        idx,
        executionId,
        registrationId: runner.registrationId,
        runnerId: runner.runnerId,
        mode: stage.executionMode,
        deadline,
        ...(dispatchedBy ? { dispatchedBy } : {}),
      },
    }),
  ];
}

/** The execution's attempt, if it is still the one the execution runs and has not finished. */
function liveAttempt(view: WorkPlanView, target: ExecutionTarget): { stage: Stage; attempt: Attempt } {
  const stage = view.stage(target.stageId);
  const attempt = stage?.attempts.find((a) => a.idx === target.idx);
  if (!stage || !attempt || attempt.execution?.executionId !== target.executionId) {
    throw failedPrecondition(`execution ${target.executionId} no longer runs an attempt`, 'execution_id');
  }
  return { stage, attempt };
}

function ensureRunning(view: WorkPlanView, target: ExecutionTarget): { stage: Stage; attempt: Attempt } {
  const found = liveAttempt(view, target);
  if (isTerminalAttempt(found.attempt.state)) {
    const why = found.stage.state === 'FINAL' && found.attempt.state === 'INCOMPLETE' ? found.attempt.failure?.message ?? 'finished' : 'finished';
    throw failedPrecondition(
      `execution ${target.executionId} is over: attempt ${found.attempt.idx} of stage "${found.stage.id}" is ${found.attempt.state} (${why})`,
      'execution_id',
    );
  }
  return found;
}

export function decideDeclined(target: ExecutionTarget, draft: WorkPlanDraft): PendingEvent[] {
  const { attempt } = ensureRunning(draft, target);
  if (attempt.state !== 'SCHEDULED') return [];
  return [draft.emit({ type: 'StageAttemptDispatchDeclined', data: { stageId: target.stageId, idx: target.idx, executionId: target.executionId } })];
}

export interface ExecutionUpdate {
  readonly message: string;
  readonly progressPercent: number;
  readonly details: JsonObject;
}

/** UpdateStageExecution: the runner is at work (SCHEDULED → RUNNING) and reports progress. */
export function decideExecutionUpdate(
  cmd: { readonly target: ExecutionTarget; readonly update: ExecutionUpdate },
  draft: WorkPlanDraft,
  ctx: DecideContext,
): PendingEvent[] {
  const { target, update } = cmd;
  const { attempt } = ensureRunning(draft, target);
  const runnerId = attempt.execution!.runnerId;
  const progress = {
    message: update.message,
    details: { ...update.details, ...(update.progressPercent ? { progress_percent: update.progressPercent } : {}) },
  };
  return decideWriteNodes({ checks: [], stages: [{ id: target.stageId, currentAttempt: { processUid: runnerId, progress } }], viaRunner: true }, draft, ctx);
}

/**
 * A Run answer or CompleteStageExecution, applied as one write: every check update (a result, finalize, then
 * state), then the attempt (COMPLETE, or INCOMPLETE with the failure), then the stage state.
 */
export function decideCompletion(
  cmd: { readonly target: ExecutionTarget; readonly completion: ExecutionCompletion },
  draft: WorkPlanDraft,
  ctx: DecideContext,
): PendingEvent[] {
  const { target, completion: c } = cmd;
  const found = liveAttempt(draft, target);
  if (isTerminalAttempt(found.attempt.state) && found.attempt.execution?.completion === c.fingerprint) return [];
  const { stage, attempt } = ensureRunning(draft, target);
  const runnerId = attempt.execution!.runnerId;
  // A runner that answers without having reported RUNNING is taken to have claimed the attempt first.
  const claim: StageWriteInput[] = attempt.state === 'RUNNING' ? [] : [{ id: stage.id, currentAttempt: { processUid: runnerId } }];
  return decideRunnerAnswer({ stage, completion: c, before: claim, via: { via: 'execution', id: target.executionId } }, draft, ctx);
}

/** Transport errors, unreachable runners, deadlines: the attempt is INCOMPLETE with the reason (and retried). */
export function decideExecutionFailed(cmd: { readonly target: ExecutionTarget; readonly message: string }, draft: WorkPlanDraft): PendingEvent[] {
  const { target, message } = cmd;
  const found = liveAttempt(draft, target);
  if (isTerminalAttempt(found.attempt.state)) return [];
  return [
    draft.emit({
      type: 'StageAttemptStateChanged',
      data: {
        stageId: target.stageId,
        idx: target.idx,
        from: found.attempt.state,
        to: 'INCOMPLETE',
        processUid: '',
        failure: { message, occurredAt: draft.now },
      },
    }),
  ];
}
