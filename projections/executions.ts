// The dispatch read model, folded from workplan events: attempts waiting for a runner (per runner type, oldest
// first), executions in flight, and each registration's load. Everything is derived from events, so a restart
// (or a replay) knows exactly what was queued and in flight.
// Only executions in flight are indexed: a callback about one that ended is answered through the workplan its id
// names (see RunnerService.execution), so this index, the server's memory and its snapshots grow with the work in
// flight, not with every dispatch ever made.
import { attemptTransition, type AttemptTransition, type RecordedEvent } from '../src/domain/events.js';
import { isTerminalAttempt, type ExecutionMode } from '../src/domain/model.js';
import type { SnapshotProjection } from './projection.js';
import type { WorkPlanLookup } from './workplans.js';

export interface QueuedAttempt {
  readonly workPlanId: string;
  readonly stageId: string;
  readonly idx: number;
  readonly mode: ExecutionMode;
}

/** Who made a runner registration (the registry, as of the event being folded). */
export interface RegistrationOwners {
  ownerOf(registrationId: string): string | null;
}

export interface ExecutionRef {
  readonly executionId: string;
  readonly workPlanId: string;
  readonly stageId: string;
  readonly idx: number;
  readonly registrationId: string;
  readonly runnerId: string;
  readonly mode: ExecutionMode;
  readonly deadline: number;
  /** The server process that made the call, when the log says. */
  readonly dispatchedBy?: string;
  /**
   * The principal that made the registration it was dispatched to (null: recorded before principals were), taken
   * when the dispatch is folded: its callbacks are checked against it even after the registration ended.
   */
  readonly owner: string | null;
}

export class ExecutionIndex implements SnapshotProjection {
  readonly name = 'executions';
  readonly handles = ['StageAttemptCreated', 'StageAttemptDispatchDeclined', 'StageAttemptDispatched', 'StageAttemptLeased', 'StageAttemptStateChanged'] as const;

  constructor(
    private readonly workplans: WorkPlanLookup,
    private readonly runners: RegistrationOwners,
  ) {}

  /** runner type → queued attempts, in the order they were queued. */
  private readonly queues = new Map<string, Map<string, QueuedAttempt>>();
  /** The executions in flight (those in inFlightIds), by id. */
  private readonly executions = new Map<string, ExecutionRef>();
  private readonly inFlightIds = new Set<string>();
  /** registration id → executions in flight on it (no entry: none). */
  private readonly loads = new Map<string, number>();

  snapshot(): unknown {
    return { queues: this.queues, executions: this.executions, inFlightIds: this.inFlightIds, loads: this.loads };
  }
  restore(state: unknown): void {
    Object.assign(this, state);
  }

  queue(runnerType: string): IterableIterator<QueuedAttempt> {
    return (this.queues.get(runnerType) ?? new Map<string, QueuedAttempt>()).values();
  }
  queuedTypes(): IterableIterator<string> {
    return this.queues.keys();
  }
  execution(executionId: string): ExecutionRef | undefined {
    return this.executions.get(executionId);
  }
  *inFlight(): IterableIterator<ExecutionRef> {
    for (const id of this.inFlightIds) yield this.executions.get(id)!;
  }
  load(registrationId: string): number {
    return this.loads.get(registrationId) ?? 0;
  }

  /** Folded after the workplan projection: the model already holds `rec`. */
  fold(rec: RecordedEvent): void {
    this.foldFact(rec);
    const t = attemptTransition(rec.event);
    if (t) this.foldTransition(rec.streamId, t);
  }

  /** An attempt left PENDING (no longer queued) or ended (its execution, if any, no longer counts). */
  private foldTransition(workPlanId: string, t: AttemptTransition): void {
    const stage = this.workplans.workplan(workPlanId)!.stage(t.stageId)!;
    if (t.from === 'PENDING') this.queues.get(stage.runnerType)?.delete(key(workPlanId, stage.id));
    const execution = stage.attempts.find((a) => a.idx === t.idx)?.execution;
    if (execution && isTerminalAttempt(t.to)) this.finish(execution.executionId);
  }

  private foldFact(rec: RecordedEvent): void {
    const model = this.workplans.workplan(rec.streamId)!;
    const e = rec.event;
    switch (e.type) {
      case 'StageAttemptCreated':
      case 'StageAttemptDispatchDeclined': {
        const stage = model.stage(e.data.stageId)!;
        if (e.type === 'StageAttemptDispatchDeclined') this.finish(e.data.executionId);
        if (stage.runnerType) {
          this.queueFor(stage.runnerType).set(key(rec.streamId, stage.id), {
            workPlanId: rec.streamId,
            stageId: stage.id,
            idx: e.data.idx,
            mode: stage.executionMode,
          });
        }
        return;
      }
      case 'StageAttemptDispatched': {
        const d = e.data;
        this.executions.set(d.executionId, {
          executionId: d.executionId,
          workPlanId: rec.streamId,
          stageId: d.stageId,
          idx: d.idx,
          registrationId: d.registrationId,
          runnerId: d.runnerId,
          mode: d.mode,
          deadline: d.deadline,
          ...(d.dispatchedBy ? { dispatchedBy: d.dispatchedBy } : {}),
          owner: this.runners.ownerOf(d.registrationId),
        });
        this.inFlightIds.add(d.executionId);
        this.loads.set(d.registrationId, this.load(d.registrationId) + 1);
        return;
      }
      default:
        return;
    }
  }

  private finish(executionId: string): void {
    if (!this.inFlightIds.delete(executionId)) return;
    const ref = this.executions.get(executionId)!;
    this.executions.delete(executionId);
    // A registration with nothing in flight has no entry: the map grows with the runners at work, not every one ever.
    const load = this.load(ref.registrationId) - 1;
    if (load > 0) this.loads.set(ref.registrationId, load);
    else this.loads.delete(ref.registrationId);
  }

  private queueFor(runnerType: string): Map<string, QueuedAttempt> {
    let q = this.queues.get(runnerType);
    if (!q) this.queues.set(runnerType, (q = new Map()));
    return q;
  }
}

const key = (workPlanId: string, stageId: string) => `${workPlanId}\u0000${stageId}`;
