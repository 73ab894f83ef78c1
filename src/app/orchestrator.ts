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
import { checkReadSet } from '../domain/decide-transaction.js';
import { WorkPlanDraft } from '../domain/workplan-draft.js';
import { aborted, DomainError, notFound } from '../domain/errors.js';
import { ANONYMOUS_PRINCIPAL, eventNode, RUNNER_REGISTRY_STREAM, SYSTEM_PRINCIPAL, type Actor, type PendingEvent, type RecordedEvent } from '../domain/events.js';
import type { Check, NodeRef, Stage, WorkPlanMeta } from '../domain/model.js';
import { EventBus } from './event-bus.js';
import { coalescePerTurn } from './next-turn.js';
import { StorageFailure, VersionConflict, type EventStore, type SharedLog } from './event-store.js';
import { readBack } from './snapshots.js';
import { StorageState } from './storage-state.js';
import { queryNodes, type NodePage, type NodeQuery } from './queries.js';

export interface OrchestratorConfig {
  readonly defaultMaxAttempts: number;
  readonly clock: () => number;
  readonly newWorkPlanId: () => string;
  /** While writes fail: true once the log may take them again (see StorageState). */
  readonly storageProbe?: () => boolean;
  /** On a shared log: how often to look for other servers' commits when no NOTIFY woke us (ms). */
  readonly tailIntervalMs?: number;
  /** This server process, as recorded on what only it can finish (a synchronous run's answer). */
  readonly serverId: string;
}

export const DEFAULT_CONFIG: OrchestratorConfig = {
  defaultMaxAttempts: 3,
  clock: () => Date.now(),
  newWorkPlanId: () => randomUUID(),
  serverId: randomUUID(),
};

export interface WriteNodesRequest extends WriteNodes {
  readonly workPlanId: string;
  readonly requestId: string | null;
  readonly expectedVersion?: number | undefined;
  /** A transaction (extension): refused if a node of `reads` changed after this version. */
  readonly readVersion?: number | undefined;
  readonly reads?: readonly NodeRef[] | undefined;
  /** Who writes, and why (recorded on every event of the write); `anonymous` when absent. */
  readonly actor?: Actor | undefined;
  /** Answer with the version only: the nodes are not gathered (extension omit_nodes). */
  readonly omitNodes?: boolean | undefined;
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

interface Waiter {
  ok(): void;
  fail?(err: Error): void;
}

/** What one commit lets out once it is durable: its events (bus.durable$) and whoever waited for it. */
interface Release {
  readonly batches: (readonly RecordedEvent[])[];
  readonly waiting: Waiter[];
}

export class Orchestrator {
  readonly bus = new EventBus();
  /** The group commit, subscribed to the bus; ended by close(). */
  private readonly subscription = new Subscription();
  /** The current read models' reducers, subscribed to the bus (replaced with them after a failed commit). */
  private modelsSubscription: Subscription;
  /** Appended, not yet flushed: published on bus.durable$ by the next flush. */
  private unflushed: (readonly RecordedEvent[])[] = [];
  private afterFlushQueue: Waiter[] = [];
  /**
   * Committed, waiting for the store to say they are on disk (whenDurable), oldest first: each group's batches and
   * waiters get out once its sync is done. Empty unless the store syncs off the main thread.
   */
  private readonly syncing: Release[] = [];
  /** Whether the log takes writes (a failed commit sets it; health follows it). */
  readonly storage: StorageState;
  /** Schedulers that join the group commit (see beforeCommit). */
  private readonly beforeCommitHooks: (() => void)[] = [];
  /** Batches appended so far: lets flush tell whether a hook appended anything. */
  private appended = 0;
  /** The other servers writing the same log (PostgreSQL replicas); undefined when this server owns its log. */
  private readonly shared: SharedLog | undefined;
  /** This turn's write transaction on the shared log is open and a flush is scheduled to close it. */
  private writeOpen = false;
  /** Other servers' events were folded since the last flush: the schedulers get to act on them. */
  private foreign = false;
  private catchUpScheduled = false;
  private closed = false;

  private constructor(
    private readonly store: EventStore,
    private current: ReadModels,
    private readonly config: OrchestratorConfig,
  ) {
    this.storage = new StorageState(config.storageProbe);
    current.workplans.evictable(readBack(store), config.clock);
    this.modelsSubscription = current.subscribeTo(this.bus.batches$);
    // Group commit: every append of one event-loop turn joins one transaction, committed on the next turn.
    if (store.groupCommit) this.subscription.add(this.bus.batches$.pipe(coalescePerTurn()).subscribe(() => this.flush()));
    this.shared = store.shared;
    if (this.shared) this.followOthers(this.shared, config.tailIntervalMs ?? 1000);
  }

  /**
   * On a shared log, other servers' commits are folded as they come: NOTIFY wakes us, and a timer looks anyway in
   * case a notification was lost (the listening connection dropped). The position is what counts.
   */
  private followOthers(shared: SharedLog, intervalMs: number): void {
    const unlisten = shared.onCommitted(
      () => this.scheduleCatchUp(),
      () => undefined, // the timer keeps us current while the listener is down
    );
    const timer = setInterval(() => this.scheduleCatchUp(), intervalMs);
    timer.unref();
    this.subscription.add(() => {
      unlisten();
      clearInterval(timer);
    });
  }

  private scheduleCatchUp(): void {
    if (this.catchUpScheduled) return;
    this.catchUpScheduled = true;
    setImmediate(() => {
      this.catchUpScheduled = false;
      this.catchUp();
    });
  }

  /**
   * Folds what other servers committed (never inside our own open write: beginWrite brought it in already); true
   * if there was any. Besides NOTIFY and the timer, whoever is about to refuse a caller for something unknown (a
   * workplan, a version, a lease or an execution) calls it first: a client may have been answered by another
   * replica a moment ago, and this one may not have folded that yet.
   */
  catchUp(): boolean {
    if (!this.shared || this.writeOpen || this.unflushed.length > 0 || this.closed) return false;
    let folded = false;
    try {
      for (let page = 0; page < 1000; page++) {
        const events = this.shared.tail(this.current.position);
        if (events.length === 0) break;
        this.publishForeign(events);
        folded = true;
      }
    } catch {
      // The log is unreachable: reads serve what we have; the next write reports the failure.
      return folded;
    }
    // The schedulers (dispatch, leases) act on the others' events too: an agent waiting here gets their attempts.
    if (this.foreign) this.flush();
    return folded;
  }

  /** Other servers' events, already committed: folded (batches$) and let out (durable$) at once, stream by stream. */
  private publishForeign(events: readonly RecordedEvent[]): void {
    let start = 0;
    for (let i = 1; i <= events.length; i++) {
      if (i < events.length && events[i]!.streamId === events[start]!.streamId) continue;
      const batch = events.slice(start, i);
      this.bus.publish(batch);
      this.bus.publishDurable(batch);
      start = i;
    }
    if (events.length > 0) this.foreign = true;
  }

  /**
   * Before a decision on a shared log: takes the log's write lock for this turn (released by the flush at the end
   * of the turn) and folds whatever other servers committed, so the decision sees the log as it is and nobody
   * else can append until it is committed. True when that brought in new events (a caller that chose something
   * from the read models before calling should choose again). A no-op on a log this server owns alone.
   */
  beginWrite(): boolean {
    if (!this.shared || this.writeOpen) return false;
    let events: RecordedEvent[];
    try {
      events = this.shared.beginWrite(this.current.position);
    } catch (err) {
      if (err instanceof StorageFailure) throw this.storageFailed(err);
      throw err;
    }
    this.writeOpen = true;
    // Whatever happens in this turn (even a decision that appends nothing), the flush ends the transaction.
    setImmediate(() => this.flush());
    this.publishForeign(events);
    return events.length > 0;
  }

  /** The read models: exactly the log, plus what is appended and not yet flushed. */
  get models(): ReadModels {
    return this.current;
  }

  /** Serves on `models` (see loadReadModels: a snapshot plus the log's tail), or rebuilds them from the whole log. */
  static open(store: EventStore, config: Partial<OrchestratorConfig> = {}, models?: ReadModels): Orchestrator {
    return new Orchestrator(store, models ?? ReadModels.replay(store.readAll()), { ...DEFAULT_CONFIG, ...config });
  }

  close(): void {
    this.flush();
    this.closed = true;
    this.storage.close();
    this.subscription.unsubscribe();
    this.modelsSubscription.unsubscribe();
    this.bus.complete();
  }

  createWorkPlan(metadata: Record<string, string>, options: { realm?: string; actor?: Actor } = {}): WorkPlanMeta {
    this.beginWrite();
    const id = this.config.newWorkPlanId();
    const data = { metadata, ...(options.realm ? { realm: options.realm } : {}) };
    this.commit(id, 0, [{ event: { type: 'WorkPlanCreated', data }, causedByVersion: null }], null, this.config.clock(), options.actor ?? ANONYMOUS);
    return this.workplan(id).meta;
  }

  /** The header only: an evicted workplan is not folded back for it. */
  getWorkPlan(id: string): WorkPlanMeta {
    const meta = this.models.workplans.meta(id) ?? (this.catchUp() ? this.models.workplans.meta(id) : undefined);
    if (!meta) throw notFound(`no workplan "${id}"`, 'work_plan_id');
    return meta;
  }

  writeNodes(req: WriteNodesRequest): WriteNodesResult {
    this.beginWrite(); // the request id and expected version are checked against the log as it is
    const model = this.workplan(req.workPlanId);
    if (req.requestId) {
      const answeredAt = model.requests.get(req.requestId);
      if (answeredAt !== undefined) return this.answerAgain(req, req.requestId, answeredAt);
    }
    if (req.expectedVersion !== undefined && req.expectedVersion !== model.meta.version) {
      throw aborted(`workplan is at version ${model.meta.version}, not ${req.expectedVersion}`, 'expected_version');
    }
    if (req.readVersion !== undefined) checkReadSet(model, { readVersion: req.readVersion, reads: req.reads ?? [] });
    const recorded = this.decideAndCommit(req.workPlanId, req.requestId, (draft, ctx) => decideWriteNodes(req, draft, ctx), req.actor ?? ANONYMOUS);
    return req.omitNodes ? versionOnly(req.workPlanId, model.meta.version) : answer(model, req, recorded);
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
    this.beginWrite();
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
    this.beginWrite();
    const now = this.config.clock();
    const events = decide(this.models.runners, now);
    return this.commit(RUNNER_REGISTRY_STREAM, this.models.runners.version, events, null, now, actor);
  }

  /**
   * Commits everything appended since the last flush (group commit: one fsync for a whole turn of the event loop),
   * then lets it out: bus.durable$, then whoever waits in afterFlush. If the commit fails (disk full, I/O error),
   * nothing of it gets out: see storageFailed.
   */
  flush(): void {
    let failure: unknown = null;
    if (this.store.groupCommit && (this.unflushed.length > 0 || this.foreign)) {
      this.foreign = false;
      // The schedulers decide on what this turn appended (a completion and the attempt it opened), and their
      // decisions (the next dispatch or lease) join the same commit. A pass that appends nothing ends it; a few
      // passes at most (a lease never opens new work for a dispatch, and vice versa).
      for (let pass = 0; pass < 4; pass++) {
        const before = this.appended;
        for (const hook of this.beforeCommitHooks) {
          try {
            hook();
          } catch (err) {
            failure ??= err;
          }
        }
        if (this.appended === before) break;
      }
    }
    try {
      this.store.flush();
    } catch (err) {
      if (!(err instanceof StorageFailure)) throw err;
      this.storageFailed(err);
      return;
    }
    this.writeOpen = false;
    const release: Release = { batches: this.unflushed, waiting: this.afterFlushQueue };
    this.unflushed = [];
    this.afterFlushQueue = [];
    if (this.store.whenDurable && release.batches.length > 0) {
      // Committed, not yet on disk: it gets out when the sync is done; meanwhile this thread decides what comes next.
      this.syncing.push(release);
      this.store.whenDurable((err) => this.synced(err));
    } else if (this.syncing.length > 0) {
      this.syncing.at(-1)!.waiting.push(...release.waiting); // nothing new to sync: wait with the last commit
    } else {
      this.letOut(release);
    }
    if (failure !== null) throw failure;
  }

  private letOut(release: Release): void {
    for (const batch of release.batches) this.bus.publishDurable(batch);
    for (const w of release.waiting) w.ok();
  }

  /**
   * The oldest commit waiting for its sync is on disk, or may not be. A failed fsync leaves the file's state
   * unknown (the kernel may have dropped the pages), and this process has decided later writes on top of it: the
   * waiters get UNAVAILABLE and the error is thrown to end the process, as PostgreSQL does. A restart reads back
   * a consistent prefix of the log, of which every acknowledged write is part.
   */
  private synced(err: Error | null): void {
    const release = this.syncing.shift()!;
    if (!err) {
      this.letOut(release);
      return;
    }
    const failure = new DomainError('UNAVAILABLE', `the event log could not be synced to disk (${err.message}); the server stops`);
    for (const r of [release, ...this.syncing.splice(0)]) for (const w of r.waiting) (w.fail ?? w.ok)(failure);
    throw new Error(`fsync of the event log failed: ${err.message}`, { cause: err });
  }

  /** Whether appends wait for a group commit (flush) before they are durable. */
  get groupCommit(): boolean {
    return this.store.groupCommit;
  }

  /**
   * Registers a scheduler (the dispatcher's pump, the pull scheduler's waiters) that runs at every group commit,
   * right before the commit, when something was appended since the last one: whatever it decides joins that
   * commit, so a completion, the resolver's consequences and the next dispatch or lease cost one fsync and no
   * extra turn of the event loop. Only with a group-committing store. Returns the unregistration.
   */
  beforeCommit(hook: () => void): () => void {
    this.beforeCommitHooks.push(hook);
    return () => {
      const i = this.beforeCommitHooks.indexOf(hook);
      if (i >= 0) this.beforeCommitHooks.splice(i, 1);
    };
  }

  /**
   * Runs fn when nothing appended is waiting to be flushed: at once, or right after the next flush. If that flush
   * fails, `fail` gets the error (without `fail`, fn runs: the read models are back to what the log holds).
   */
  afterFlush(fn: () => void, fail?: (err: Error) => void): void {
    const waiter = { ok: fn, ...(fail ? { fail } : {}) };
    if (this.unflushed.length > 0) this.afterFlushQueue.push(waiter);
    else if (this.syncing.length > 0) this.syncing.at(-1)!.waiting.push(waiter);
    else fn();
  }

  /** Resolves once everything appended so far is durable; rejects (a DomainError) if its commit fails. */
  durable(): Promise<void> {
    return new Promise((resolve, reject) => this.afterFlush(resolve, reject));
  }

  now(): number {
    return this.config.clock();
  }

  get serverId(): string {
    return this.config.serverId;
  }

  /** On a shared log, the server processes connected to it now; undefined when this server owns its log alone. */
  liveServers(): ReadonlySet<string> | undefined {
    return this.shared?.liveServers();
  }

  /** A workplan's events from the log, in order (history for replays and resumed watches). */
  readStream(workPlanId: string, range?: { afterVersion?: number; toVersion?: number }): IterableIterator<RecordedEvent> {
    return this.store.readStream(workPlanId, range);
  }

  queryNodes(workPlanId: string, query: NodeQuery): NodePage {
    return queryNodes(this.workplan(workPlanId), query);
  }

  private workplan(id: string): WorkPlanModel {
    const model = this.models.workplan(id) ?? (this.catchUp() ? this.models.workplan(id) : undefined);
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
      // While the log fails, each write commits alone before anything is folded: a failure costs no rebuild.
      if (this.storage.failure && recorded.length > 0) {
        this.store.flush();
        this.writeOpen = false;
      }
    } catch (err) {
      if (err instanceof VersionConflict) throw aborted(err.message);
      if (err instanceof StorageFailure) throw this.storageFailed(err);
      throw err;
    }
    if (this.storage.failure && recorded.length > 0) this.storage.recovered();
    recorded = withNodes(recorded, events);
    this.bus.publish(recorded);
    if (recorded.length > 0) {
      this.appended++;
      this.unflushed.push(recorded);
      if (!this.store.groupCommit) this.flush(); // already on disk: nothing to wait for
    }
    return recorded;
  }

  /**
   * A commit failed: nothing since the last flush is in the log. The read models may have folded some of it, so
   * they are rebuilt from the log (which holds exactly what was acknowledged); nothing of it was published on
   * durable$, and everyone waiting for it gets the error. The orchestrator keeps serving: reads and watches work,
   * writes are tried one at a time until one succeeds (StorageState).
   */
  private storageFailed(err: StorageFailure): Error {
    this.store.rollback?.();
    this.writeOpen = false;
    const error = this.storage.failed(err);
    if (this.unflushed.length > 0) {
      this.unflushed = [];
      const rebuilt = ReadModels.replay(this.store.readAll());
      rebuilt.workplans.inheritEviction(this.current.workplans);
      this.modelsSubscription.unsubscribe();
      this.current = rebuilt;
      this.modelsSubscription = rebuilt.subscribeTo(this.bus.batches$);
    }
    const waiting = this.afterFlushQueue;
    this.afterFlushQueue = [];
    for (const w of waiting) (w.fail ?? w.ok)(error);
    return error;
  }

  /** A retried request: the nodes as they stood right after the first answer, rebuilt from the log. */
  private answerAgain(req: WriteNodesRequest, requestId: string, version: number): WriteNodesResult {
    // The version is all it takes: no replay of the stream up to the first answer.
    if (req.omitNodes) return versionOnly(req.workPlanId, version);
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

/** The answer to a write that asked for no nodes (omitNodes): the version it left the workplan at. */
const versionOnly = (workPlanId: string, version: number): WriteNodesResult => ({ workPlanId, checks: [], stages: [], version });

/** The recorded events, carrying the nodes the decision folded (PendingEvent.node), so no fold repeats its work. */
function withNodes(recorded: RecordedEvent[], events: readonly PendingEvent[]): RecordedEvent[] {
  return recorded.map((r, i) => {
    const node = events[i]?.node;
    return node ? { ...r, node } : r;
  });
}
