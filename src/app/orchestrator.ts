// Application layer: load a workplan's state, decide, resolve, append, publish. Everything a client changes goes
// through here; the transport only maps messages and errors.
import { randomUUID } from 'node:crypto';
import { Subscription } from 'rxjs';
import { ReadModels } from '../../projections/read-models.js';
import { resolve } from '../../projections/resolver.js';
import type { RunnerRegistry } from '../../projections/runner-registry.js';
import type { WorkPlanModel } from '../../projections/workplan-model.js';
import type { DecideContext, WriteNodes } from '../domain/commands.js';
import { decideWriteNodes } from '../domain/decide-write-nodes.js';
import { WorkPlanDraft } from '../domain/workplan-draft.js';
import { aborted, notFound } from '../domain/errors.js';
import { ANONYMOUS_PRINCIPAL, eventNode, RUNNER_REGISTRY_STREAM, SYSTEM_PRINCIPAL, type Actor, type PendingEvent, type RecordedEvent } from '../domain/events.js';
import type { Check, Stage, WorkPlanMeta } from '../domain/model.js';
import { EventBus } from './event-bus.js';
import { coalescePerTurn } from './next-turn.js';
import { VersionConflict, type EventStore } from './event-store.js';
import { queryNodes, type NodePage, type NodeQuery } from './queries.js';

export interface OrchestratorConfig {
  readonly defaultMaxAttempts: number;
  readonly clock: () => number;
  readonly newWorkPlanId: () => string;
}

export const DEFAULT_CONFIG: OrchestratorConfig = {
  defaultMaxAttempts: 3,
  clock: () => Date.now(),
  newWorkPlanId: () => randomUUID(),
};

export interface WriteNodesRequest extends WriteNodes {
  readonly workPlanId: string;
  readonly requestId: string | null;
  readonly expectedVersion?: number | undefined;
  /** Who writes, and why (recorded on every event of the write); `anonymous` when absent. */
  readonly actor?: Actor | undefined;
}

/** The server's own decisions (dispatch, expiries) are recorded as made by `system`. */
const SYSTEM: Actor = { principal: SYSTEM_PRINCIPAL };
/** A client write that names nobody (in-process callers; the transport always says who). */
const ANONYMOUS: Actor = { principal: ANONYMOUS_PRINCIPAL };

export interface WriteNodesResult {
  readonly workPlanId: string;
  readonly checks: Check[];
  readonly stages: Stage[];
  readonly version: number;
}

export class Orchestrator {
  readonly bus = new EventBus();
  /** The read models' reducers and the group commit, subscribed to the bus; ended by close(). */
  private readonly subscription = new Subscription();
  /** Appended, not yet flushed: published on bus.durable$ by the next flush. */
  private unflushed: (readonly RecordedEvent[])[] = [];
  private afterFlushQueue: (() => void)[] = [];

  private constructor(
    private readonly store: EventStore,
    readonly models: ReadModels,
    private readonly config: OrchestratorConfig,
  ) {
    this.subscription.add(models.subscribeTo(this.bus.batches$));
    // Group commit: every append of one event-loop turn joins one transaction, committed on the next turn.
    if (store.groupCommit) this.subscription.add(this.bus.batches$.pipe(coalescePerTurn()).subscribe(() => this.flush()));
  }

  /** Rebuilds every read model from the log, then serves. */
  static open(store: EventStore, config: Partial<OrchestratorConfig> = {}): Orchestrator {
    return new Orchestrator(store, ReadModels.replay(store.readAll()), { ...DEFAULT_CONFIG, ...config });
  }

  close(): void {
    this.flush();
    this.subscription.unsubscribe();
    this.bus.complete();
  }

  createWorkPlan(metadata: Record<string, string>, options: { realm?: string; actor?: Actor } = {}): WorkPlanMeta {
    const id = this.config.newWorkPlanId();
    const data = { metadata, ...(options.realm ? { realm: options.realm } : {}) };
    this.commit(id, 0, [{ event: { type: 'WorkPlanCreated', data }, causedByVersion: null }], null, this.config.clock(), options.actor ?? ANONYMOUS);
    return this.workplan(id).meta;
  }

  getWorkPlan(id: string): WorkPlanMeta {
    return this.workplan(id).meta;
  }

  writeNodes(req: WriteNodesRequest): WriteNodesResult {
    const model = this.workplan(req.workPlanId);
    if (req.requestId) {
      const answeredAt = model.requests.get(req.requestId);
      if (answeredAt !== undefined) return this.answerAgain(req, req.requestId, answeredAt);
    }
    if (req.expectedVersion !== undefined && req.expectedVersion !== model.meta.version) {
      throw aborted(`workplan is at version ${model.meta.version}, not ${req.expectedVersion}`, 'expected_version');
    }
    const recorded = this.decideAndCommit(req.workPlanId, req.requestId, (draft, ctx) => decideWriteNodes(req, draft, ctx), req.actor ?? ANONYMOUS);
    return answer(model, req, recorded);
  }

  /**
   * The one write path for workplans: decide on a draft over the current state (the decider emits into it), let the
   * resolver continue on the same draft with every consequence, append it all atomically, publish. Throws the
   * decision's DomainError with nothing appended (the draft is dropped).
   */
  decideAndCommit(
    workPlanId: string,
    requestId: string | null,
    decide: (draft: WorkPlanDraft, ctx: DecideContext) => unknown,
    actor: Actor = SYSTEM,
  ): RecordedEvent[] {
    const model = this.workplan(workPlanId);
    const ctx: DecideContext = { now: this.config.clock(), defaultMaxAttempts: this.config.defaultMaxAttempts };
    const draft = new WorkPlanDraft(model, ctx.now);
    decide(draft, ctx);
    if (draft.events.length === 0) return [];
    resolve(draft);
    return this.commit(workPlanId, draft.baseVersion, draft.events, requestId, ctx.now, actor);
  }

  /** Appends to the runner registry stream: decide gets the registry as it stands. */
  commitRunnerEvents(decide: (registry: RunnerRegistry, now: number) => PendingEvent[], actor: Actor = SYSTEM): RecordedEvent[] {
    const now = this.config.clock();
    const events = decide(this.models.runners, now);
    return this.commit(RUNNER_REGISTRY_STREAM, this.models.runners.version, events, null, now, actor);
  }

  /**
   * Commits everything appended since the last flush (group commit: one fsync for a whole turn of the event loop),
   * then lets it out: bus.durable$, then whoever waits in afterFlush. If the commit throws, the read models hold
   * events the log does not: the error must end the process, and a restart rebuilds from the log.
   */
  flush(): void {
    this.store.flush();
    const batches = this.unflushed;
    const waiting = this.afterFlushQueue;
    this.unflushed = [];
    this.afterFlushQueue = [];
    for (const batch of batches) this.bus.publishDurable(batch);
    for (const fn of waiting) fn();
  }

  /** Runs fn when nothing appended is waiting to be flushed: at once, or right after the next flush. */
  afterFlush(fn: () => void): void {
    if (this.unflushed.length === 0) fn();
    else this.afterFlushQueue.push(fn);
  }

  /** Resolves once everything appended so far is durable. */
  durable(): Promise<void> {
    return new Promise((resolve) => this.afterFlush(resolve));
  }

  now(): number {
    return this.config.clock();
  }

  /** A workplan's events from the log, in order (history for replays and resumed watches). */
  readStream(workPlanId: string, range?: { afterVersion?: number; toVersion?: number }): IterableIterator<RecordedEvent> {
    return this.store.readStream(workPlanId, range);
  }

  queryNodes(workPlanId: string, query: NodeQuery): NodePage {
    return queryNodes(this.workplan(workPlanId), query);
  }

  private workplan(id: string): WorkPlanModel {
    const model = this.models.workplan(id);
    if (!model) throw notFound(`no workplan "${id}"`, 'work_plan_id');
    return model;
  }

  private commit(
    streamId: string,
    expectedVersion: number,
    events: Parameters<EventStore['append']>[2],
    requestId: string | null,
    now: number,
    actor: Actor = SYSTEM,
  ): RecordedEvent[] {
    let recorded: RecordedEvent[];
    try {
      recorded = this.store.append(streamId, expectedVersion, events, { requestId, recordedAt: now, principal: actor.principal, reason: actor.reason ?? null });
    } catch (err) {
      if (err instanceof VersionConflict) throw aborted(err.message);
      throw err;
    }
    this.bus.publish(recorded);
    if (recorded.length > 0) {
      this.unflushed.push(recorded);
      if (!this.store.groupCommit) this.flush(); // already on disk: nothing to wait for
    }
    return recorded;
  }

  /** A retried request: the nodes as they stood right after the first answer, rebuilt from the log. */
  private answerAgain(req: WriteNodesRequest, requestId: string, version: number): WriteNodesResult {
    const events = [...this.store.readStream(req.workPlanId, { toVersion: version })];
    const then = ReadModels.replay(events).workplan(req.workPlanId)!;
    return answer(then, req, events.filter((e) => e.causation.requestId === requestId));
  }
}

/** The written nodes in request order, then every other node the resolver changed, as they stand in `model`. */
function answer(model: WorkPlanModel, req: WriteNodesRequest, events: readonly RecordedEvent[]): WriteNodesResult {
  const checkIds = new Set(req.checks.map((c) => c.id));
  const stageIds = new Set(req.stages.map((s) => s.id));
  for (const e of events) {
    const node = eventNode(e.event);
    if (node) (node.kind === 'check' ? checkIds : stageIds).add(node.id);
  }
  return {
    workPlanId: req.workPlanId,
    checks: [...checkIds].map((id) => model.check(id)).filter((c): c is Check => c !== undefined),
    stages: [...stageIds].map((id) => model.stage(id)).filter((s): s is Stage => s !== undefined),
    version: model.meta.version,
  };
}
