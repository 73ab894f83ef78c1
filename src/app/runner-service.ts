// Application side of the runner protocol: registrations, and what runners report about executions. Every step is
// an event appended through the Orchestrator; nothing about dispatch lives only in memory.
import { randomUUID } from 'node:crypto';
import { completionFingerprint } from './completion-fingerprint.js';
import type { ExecutionRef, QueuedAttempt } from '../../projections/executions.js';
import {
  decideCompletion,
  decideDeclined,
  decideDispatch,
  decideExecutionFailed,
  decideExecutionUpdate,
  decideRegisterRunner,
  decideUnregisterRunner,
  type ExecutionUpdate,
  type RegisterRunner,
} from '../domain/decide-runners.js';
import type { ExecutionCompletion } from '../domain/decide-completion.js';
import { notFound, permissionDenied } from '../domain/errors.js';
import type { Caller } from '../domain/commands.js';
import { ANONYMOUS_PRINCIPAL, type Actor } from '../domain/events.js';
import type { RunnerRegistration } from '../domain/model.js';
import type { Orchestrator } from './orchestrator.js';
import { namingWorkPlan, workPlanNamedBy } from './workplan-named.js';

export interface RunnerInfo extends RunnerRegistration {
  readonly currentLoad: number;
}

export class RunnerService {
  constructor(
    private readonly app: Orchestrator,
    private readonly newId: () => string = randomUUID,
  ) {}

  register(cmd: RegisterRunner, caller: Caller = ANONYMOUS): RunnerRegistration {
    const [rec] = this.app.commitRunnerEvents(
      (registry, now) => decideRegisterRunner(this.owned(registry.byRunner(cmd.runnerId)), cmd, now, this.newId, caller),
      actorOf(caller),
    );
    const registrationId = (rec!.event.data as { registrationId: string }).registrationId;
    return this.app.models.runners.registration(registrationId)!;
  }

  unregister(registrationId: string, caller: Caller = ANONYMOUS): void {
    this.app.commitRunnerEvents(
      (registry) => decideUnregisterRunner(this.owned(registry.registration(registrationId)), registrationId, caller),
      actorOf(caller),
    );
  }

  /** Whether `caller` may see a registration's id (a capability: it unregisters, and proves identity when auth is off). */
  mayUse(registrationId: string, caller: Caller): boolean {
    return caller.authenticated && (caller.admin || this.app.models.runners.ownerOf(registrationId) === caller.principal);
  }

  private owned(reg: RunnerRegistration | undefined) {
    return reg && { registration: reg, owner: this.app.models.runners.ownerOf(reg.registrationId) };
  }

  /**
   * A callback about an execution in flight is accepted only from the runner it was dispatched to: with auth on, the
   * token that registered it (or an admin), even if that registration has ended since; with auth off, the execution
   * id is the capability (never shown to clients). One that ended can change nothing: a late call is only told
   * where the attempt stands, whoever makes it, as for a lease that ended.
   */
  private callbackTarget(executionId: string, caller: Caller): ExecutionRef {
    const live = this.inFlight(executionId);
    if (!live) return this.endedExecution(executionId) ?? noExecution(executionId);
    if (caller.authenticated && !caller.admin && live.owner !== caller.principal) {
      throw permissionDenied(`execution ${executionId} was not dispatched to a runner registered by this token`, 'execution_id');
    }
    return live;
  }

  /** Expires a registration that was not refreshed in time; a no-op if it was. */
  expire(registrationId: string): boolean {
    const recorded = this.app.commitRunnerEvents((registry, now) => {
      const reg = registry.registration(registrationId);
      return reg && reg.expiresAt <= now ? [{ event: { type: 'RunnerExpired', data: { registrationId } }, causedByVersion: null }] : [];
    });
    return recorded.length > 0;
  }

  list(runnerType: string): RunnerInfo[] {
    const now = this.app.now();
    return [...this.app.models.runners.registrations()]
      .filter((r) => (!runnerType || r.runnerType === runnerType) && r.expiresAt > now)
      .map((r) => ({ ...r, currentLoad: this.app.models.executions.load(r.registrationId) }));
  }

  execution(executionId: string): ExecutionRef {
    return this.inFlight(executionId) ?? this.endedExecution(executionId) ?? noExecution(executionId);
  }

  private inFlight(executionId: string): ExecutionRef | undefined {
    // Dispatched by another replica a moment ago (a runner may call back any replica)? Catch up before refusing.
    return this.app.models.executions.execution(executionId) ?? (this.app.catchUp() ? this.app.models.executions.execution(executionId) : undefined);
  }

  /**
   * An execution no longer in flight, looked up in the workplan its id names. Its owner is not kept (null): nothing
   * checks it, since a call about an execution that ended changes nothing (see callbackTarget).
   */
  private endedExecution(executionId: string): ExecutionRef | undefined {
    const workPlanId = workPlanNamedBy(executionId);
    const found = workPlanId === undefined ? undefined : this.app.models.workplan(workPlanId)?.findAttempt((a) => a.execution?.executionId === executionId);
    if (!found) return undefined;
    const { registrationId, runnerId, mode, deadline } = found.attempt.execution!;
    return { executionId, workPlanId: workPlanId!, stageId: found.stage.id, idx: found.attempt.idx, registrationId, runnerId, mode, deadline, owner: null };
  }

  dispatch(q: QueuedAttempt, runner: RunnerRegistration, deadline: number): ExecutionRef {
    const executionId = executionIdFor(q.workPlanId, this.newId());
    const dispatchedBy = this.app.serverId;
    this.app.decideAndCommit(q.workPlanId, null, (draft) => decideDispatch({ stageId: q.stageId, idx: q.idx, runner, executionId, deadline, dispatchedBy }, draft));
    return this.execution(executionId);
  }

  declined(executionId: string): void {
    const ref = this.execution(executionId);
    this.app.decideAndCommit(ref.workPlanId, null, (draft) => decideDeclined(ref, draft));
  }

  update(executionId: string, update: ExecutionUpdate, caller: Caller = ANONYMOUS): void {
    const ref = this.callbackTarget(executionId, caller);
    this.app.decideAndCommit(ref.workPlanId, null, (draft, ctx) => decideExecutionUpdate({ target: ref, update }, draft, ctx), actorOf(caller));
  }

  /** Applies a runner's answer; an identical repeat is acknowledged with nothing appended. */
  complete(executionId: string, completion: Omit<ExecutionCompletion, 'fingerprint'>, caller?: Caller): void {
    const ref = caller ? this.callbackTarget(executionId, caller) : this.execution(executionId);
    const fingerprint = completionFingerprint(completion);
    this.app.decideAndCommit(
      ref.workPlanId,
      null,
      (draft, ctx) => decideCompletion({ target: ref, completion: { ...completion, fingerprint } }, draft, ctx),
      caller ? actorOf(caller) : undefined,
    );
  }

  /** The execution failed on our side (transport error, unreachable runner, deadline, restart). */
  fail(executionId: string, message: string): boolean {
    const ref = this.execution(executionId);
    return this.app.decideAndCommit(ref.workPlanId, null, (draft) => decideExecutionFailed({ target: ref, message }, draft)).length > 0;
  }
}

/** An execution id names its workplan (see workplan-named.ts) unless that would pass the 256 characters of an id. */
function executionIdFor(workPlanId: string, unique: string): string {
  const id = namingWorkPlan(unique, workPlanId);
  return id.length <= 256 ? id : unique;
}

function noExecution(executionId: string): never {
  throw notFound(`no execution "${executionId}"`, 'execution_id');
}

const ANONYMOUS: Caller = { principal: ANONYMOUS_PRINCIPAL, authenticated: false, admin: false };
const actorOf = (caller: Caller): Actor => ({ principal: caller.principal });
