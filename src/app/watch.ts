// WatchWorkPlan, application side: subscriptions to a workplan's node changes, fed by the same RxJS event bus the
// read models fold (no polling of the log), with a gap-free handover from the log (resume) or from a snapshot.
//
// Handover: node.js runs one thing at a time, so opening a subscription (read the current version V, take the
// snapshot or replay the log up to the resume point, register for live batches) happens in one synchronous block,
// at a moment when nothing appended is waiting to be flushed (Orchestrator.afterFlush): every change with version
// <= V comes from the snapshot or the log, every change > V from the bus's durable$ stream. Live changes at or
// below what was already handed over are dropped all the same. Watchers never see what a crash could take back.
//
// Backpressure: the transport pulls items with next() as fast as the client's flow control lets it. Snapshot and log
// history are produced lazily (read from the log in chunks as they are pulled), so they cost no buffer; live changes
// wait, bounded per subscriber: a subscriber that takes every change reads the workplan's one LiveLog at its own
// cursor, a filtered one has a queue of its own. One that falls too far behind is ended with RESOURCE_EXHAUSTED naming
// the last version handed over, from which it can resume: never a silent drop.
import type { Subscription } from 'rxjs';
import { WatchTracker, type Completion, type NodeChange, type WatchStep } from '../../projections/watch-tracker.js';
import { invalidArgument, notFound } from '../domain/errors.js';
import type { RecordedEvent } from '../domain/events.js';
import type { CheckState, StageState } from '../domain/model.js';
import { LiveLog, type LiveReader } from './live-log.js';
import type { Orchestrator } from './orchestrator.js';

export interface WatchFilter {
  /** With neither includeChecks nor includeStages set, both kinds are watched. */
  readonly includeChecks: boolean;
  readonly includeStages: boolean;
  /** Empty = any. A change matches when the node's state right after it is listed. */
  readonly checkStates: readonly CheckState[];
  readonly stageStates: readonly StageState[];
  /** Empty = any. */
  readonly checkIds: readonly string[];
  readonly stageIds: readonly string[];
}

export interface WatchRequest extends WatchFilter {
  readonly workPlanId: string;
  /** Resume after this stream version; undefined starts with a snapshot of the matching nodes. */
  readonly afterVersion?: number | undefined;
}

/**
 * One unit of the stream, at one stream version: a node change (for a snapshot, before and after are the same node)
 * and/or the workplan's completion. Units are handed over whole, so a resume point never splits one.
 */
export interface WatchItem {
  readonly version: number;
  /** Epoch ms: when the change was recorded (for a snapshot, when the node last changed). */
  readonly timestamp: number;
  readonly change: NodeChange | null;
  readonly completed: Completion | null;
  /** Restates the state as of `version` (the initial snapshot, a completion restated on resume), not a change at it. */
  readonly snapshot: boolean;
  /** Who made the change and why; absent on snapshot items. */
  readonly principal?: string | null;
  readonly reason?: string | null;
}

/** Why the server ended a subscription; the transport turns it into a status. */
export interface WatchEnd {
  readonly reason: 'overflow' | 'shutdown' | 'internal';
  readonly message: string;
}

/** The transport side of a subscription. */
export interface WatchListener {
  /** Live items are waiting to be pulled (called inside the bus callback: do not write from here synchronously). */
  wake(): void;
  /** The server ended the subscription. It is already closed; the items pulled so far are all the client gets. */
  ended(end: WatchEnd): void;
}

export interface WatchHubOptions {
  /** Live changes a subscriber may have waiting before it is ended with RESOURCE_EXHAUSTED. */
  readonly bufferSize: number;
  /** Events read from the log at a time while catching up. */
  readonly historyChunk?: number;
  /** Told about every subscription opened and closed, with the live count after it. */
  readonly onOpen?: (sub: WatchSubscription, count: number) => void;
  readonly onClose?: (sub: WatchSubscription, reason: string, count: number) => void;
  /** Told about a failure folding a batch (the affected subscriptions are ended). */
  readonly onError?: (err: unknown, workPlanId: string) => void;
}

export const DEFAULT_WATCH_BUFFER = 10_000;

interface Watched {
  readonly tracker: WatchTracker;
  readonly subs: Set<WatchSubscription>;
  /** Live items for the subscribers that take every change (no filter). */
  readonly log: LiveLog<WatchItem>;
  /** The others: each has a queue of its own, and the live changes are offered to each. */
  readonly filtered: Set<WatchSubscription>;
}

/** Every open watch subscription, and one watch projection per watched workplan shared by its subscribers. */
export class WatchHub {
  private readonly watched = new Map<string, Watched>();
  private readonly subs = new Set<WatchSubscription>();
  private readonly busSubscription: Subscription;
  private nextId = 1;

  constructor(
    private readonly app: Orchestrator,
    private readonly options: WatchHubOptions,
  ) {
    if (!Number.isInteger(options.bufferSize) || options.bufferSize < 1) throw new Error(`bad watch buffer size ${options.bufferSize}`);
    // Watchers are outside the process: they see only what is on disk (see EventBus).
    this.busSubscription = app.bus.durable$.subscribe({
      next: (batch) => this.onBatch(batch),
      complete: () => this.closeAll({ reason: 'shutdown', message: 'server shutting down' }),
    });
  }

  /** Open subscriptions right now. */
  get subscriptionCount(): number {
    return this.subs.size;
  }

  /** Live events waiting in every subscriber's queue right now (metrics). */
  get queuedCount(): number {
    let n = 0;
    for (const sub of this.subs) n += sub.queued;
    return n;
  }

  /**
   * Opens a subscription (synchronously, from Orchestrator.afterFlush: see the handover note at the top). NOT_FOUND for an unknown workplan,
   * INVALID_ARGUMENT for an after_version beyond the workplan's current version.
   */
  open(req: WatchRequest, listener: WatchListener): WatchSubscription {
    let model = this.app.models.workplan(req.workPlanId);
    // A client resuming here from what another replica sent it may be ahead of what this one folded: catch up first.
    if ((!model || (req.afterVersion ?? 0) > model.meta.version) && this.app.catchUp()) model = this.app.models.workplan(req.workPlanId);
    if (!model) throw notFound(`no workplan "${req.workPlanId}"`, 'work_plan_id');
    const current = model.meta.version;
    if (req.afterVersion !== undefined && (req.afterVersion < 0 || req.afterVersion > current)) {
      throw invalidArgument(`${req.afterVersion} is not a version of this workplan (0 to ${current})`, 'after_version');
    }
    let watched = this.watched.get(req.workPlanId);
    if (!watched) {
      watched = { tracker: WatchTracker.from(model), subs: new Set(), log: new LiveLog(this.options.bufferSize), filtered: new Set() };
      this.watched.set(req.workPlanId, watched);
    }
    const sub = new WatchSubscription(this.nextId++, req, listener, this.options.bufferSize, (s, reason) => this.release(s, reason));
    if (req.afterVersion === undefined) sub.startFromSnapshot(watched.tracker);
    else sub.startFromLog(this.app, req.afterVersion, current, this.options.historyChunk ?? 256);
    if (sub.takesEverything) sub.readFrom(watched.log);
    else watched.filtered.add(sub);
    watched.subs.add(sub);
    this.subs.add(sub);
    this.options.onOpen?.(sub, this.subs.size);
    return sub;
  }

  /** Ends every subscription (server shutdown); each client is told where to resume. */
  closeAll(end: WatchEnd): void {
    for (const sub of [...this.subs]) sub.end(end);
  }

  /** Stops listening to the bus, ending every subscription. */
  close(): void {
    this.closeAll({ reason: 'shutdown', message: 'server shutting down' });
    this.busSubscription.unsubscribe();
  }

  private onBatch(batch: readonly RecordedEvent[]): void {
    for (const rec of batch) {
      const watched = this.watched.get(rec.streamId);
      if (!watched) continue;
      let step: WatchStep;
      try {
        step = watched.tracker.fold(rec);
      } catch (err) {
        // Never let a watch bug fail the write that published the batch: end this workplan's watchers instead.
        this.options.onError?.(err, rec.streamId);
        for (const sub of [...watched.subs]) sub.end({ reason: 'internal', message: 'internal error; see the server log' });
        this.watched.delete(rec.streamId);
        continue;
      }
      // One item for every watcher whose filter keeps the change (all of them, usually): not one each.
      const item = liveItem(step, step.change);
      if (item && watched.log.readerCount) watched.log.push(item);
      if (watched.filtered.size) for (const sub of [...watched.filtered]) sub.offer(step, item);
    }
  }

  private release(sub: WatchSubscription, reason: string): void {
    if (!this.subs.delete(sub)) return;
    const watched = this.watched.get(sub.workPlanId);
    if (watched) {
      watched.subs.delete(sub);
      watched.filtered.delete(sub);
      if (watched.subs.size === 0) this.watched.delete(sub.workPlanId);
    }
    this.options.onClose?.(sub, reason, this.subs.size);
  }
}

/** The item a live step makes with `change` (the step's, or null when a filter left it out); null when empty. */
function liveItem(step: WatchStep, change: NodeChange | null): WatchItem | null {
  if (!change && !step.completed) return null;
  return { version: step.version, timestamp: step.recordedAt, change, completed: step.completed, snapshot: false, principal: step.principal ?? null, reason: step.reason ?? null };
}

/** A FIFO with O(1) push and shift. */
class Queue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/** A subscriber's pending live items, as a range of its workplan's LiveLog (see WatchSubscription.liveRange). */
export interface LiveRange {
  readonly log: LiveLog<WatchItem>;
  readonly from: number;
  readonly to: number;
}

/** One watcher: what it still has to receive, and up to where it has received. */
export class WatchSubscription implements LiveReader {
  readonly workPlanId: string;
  readonly afterVersion: number | undefined;
  /** Snapshot items not yet handed over. */
  private readonly snapshot = new Queue<WatchItem>();
  private snapshotPending = false;
  /** Catch-up from the log: versions historyNext..historyTo are still to read, folded into historyTracker. */
  private historyTracker: WatchTracker | null = null;
  private historyNext = 0;
  private historyTo = 0;
  private historyChunk = 256;
  private readonly history = new Queue<WatchItem>();
  private readOnce: ((range: { afterVersion: number; toVersion: number }) => Iterable<RecordedEvent>) | null = null;
  /** Live items of a filtered subscriber, bounded by bufferSize. */
  private readonly live = new Queue<WatchItem>();
  /** Or, for one that takes every change, the workplan's shared live items, read at liveCursor. */
  private log: LiveLog<WatchItem> | null = null;
  private liveCursor = 0;
  /** It found the log empty and waits to be woken by the next push. */
  private waitingLive = false;
  /** Every change of this workplan up to this version has been folded into what was handed over (or queued). */
  private handoverVersion = 0;
  /** Every matching change up to this version has been handed to the transport. */
  private sent = 0;
  private closed = false;
  private itemsSent = 0;
  private readonly checkIds: ReadonlySet<string>;
  private readonly stageIds: ReadonlySet<string>;
  private readonly checkStates: ReadonlySet<CheckState>;
  private readonly stageStates: ReadonlySet<StageState>;
  private readonly checks: boolean;
  private readonly stages: boolean;
  /** Every change matches: live items come from the shared LiveLog (readFrom), not from offer(). */
  readonly takesEverything: boolean;

  constructor(
    readonly id: number,
    filter: WatchRequest,
    private readonly listener: WatchListener,
    private readonly bufferSize: number,
    private readonly onRelease: (sub: WatchSubscription, reason: string) => void,
  ) {
    this.workPlanId = filter.workPlanId;
    this.afterVersion = filter.afterVersion;
    const both = !filter.includeChecks && !filter.includeStages;
    this.checks = both || filter.includeChecks;
    this.stages = both || filter.includeStages;
    this.checkIds = new Set(filter.checkIds);
    this.stageIds = new Set(filter.stageIds);
    this.checkStates = new Set(filter.checkStates);
    this.stageStates = new Set(filter.stageStates);
    this.takesEverything = this.checks && this.stages && !this.checkIds.size && !this.stageIds.size && !this.checkStates.size && !this.stageStates.size;
  }

  /** The resume point: every matching change up to this version was handed over; null while a snapshot is partial. */
  get lastVersionSent(): number | null {
    return this.snapshotPending ? null : this.sent;
  }

  get count(): number {
    return this.itemsSent;
  }

  /** Live items waiting to be pulled. */
  get queued(): number {
    return this.log ? this.log.end - this.liveCursor : this.live.length;
  }

  /** @internal LiveReader: the next item of the shared log this subscriber takes. */
  get cursor(): number {
    return this.liveCursor;
  }

  /** @internal Live items from now on come from `log` (called at open, after the handover: they are all newer). */
  readFrom(log: LiveLog<WatchItem>): void {
    this.log = log;
    this.liveCursor = log.add(this);
  }

  /** @internal LiveReader: items arrived after next() found none. */
  wakeLive(): void {
    this.waitingLive = false;
    if (!this.closed) this.listener.wake();
  }

  /** @internal LiveReader: too far behind; the log has already let go of it. */
  overflowed(): void {
    this.log = null;
    this.overflow();
  }

  /**
   * When all this subscriber has left to receive is live items of the shared log (no snapshot or history, at least
   * one item): their range, so that a transport can frame them once for every watcher at the same place. Take them
   * with advance(); null otherwise (use next()).
   */
  liveRange(): LiveRange | null {
    if (this.closed || !this.log || this.liveCursor >= this.log.end) return null;
    if (this.snapshot.length > 0 || this.history.length > 0 || this.historyTracker) return null;
    return { log: this.log, from: this.liveCursor, to: this.log.end };
  }

  /** Takes the live items of liveRange() up to `to` (exclusive), as if each had been returned by next(). */
  advance(to: number): void {
    const log = this.log;
    if (this.closed || !log || to <= this.liveCursor) return;
    if (to > log.end) throw new Error(`advance to ${to} beyond the live log's end ${log.end}`);
    // History is done (liveRange said so): what nextFromHistory would have settled, settle here.
    this.sent = Math.max(this.sent, this.historyTo, log.at(to - 1).version);
    this.itemsSent += to - this.liveCursor;
    this.liveCursor = to;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal Snapshot handover: one item per matching node as it stands now, then completion if complete. */
  startFromSnapshot(tracker: WatchTracker): void {
    const v = tracker.version;
    const { checks, stages } = tracker.nodesInOrder();
    for (const c of checks) {
      const change: NodeChange = { kind: 'check', before: c, after: c };
      if (this.matches(change)) this.snapshot.push({ version: v, timestamp: c.updatedAt, change, completed: null, snapshot: true });
    }
    for (const s of stages) {
      const change: NodeChange = { kind: 'stage', before: s, after: s };
      if (this.matches(change)) this.snapshot.push({ version: v, timestamp: s.updatedAt, change, completed: null, snapshot: true });
    }
    if (tracker.complete) {
      const at = tracker.lastCompletedAt;
      this.snapshot.push({ version: v, timestamp: at, change: null, completed: tracker.completion(), snapshot: true });
    }
    this.snapshotPending = this.snapshot.length > 0;
    this.handoverVersion = v;
    this.sent = v;
  }

  /** @internal Log handover: the state at afterVersion (replayed now), then afterVersion+1..current, read lazily. */
  startFromLog(app: Orchestrator, afterVersion: number, current: number, chunk: number): void {
    this.historyTracker = WatchTracker.empty();
    if (afterVersion > 0) for (const rec of app.readStream(this.workPlanId, { toVersion: afterVersion })) this.historyTracker.fold(rec);
    // A workplan complete at afterVersion was completed by the change at afterVersion (nothing changes a FINAL node,
    // and a new node makes it incomplete again). Restate it: a client cut between that change and its completion
    // event must not wait for it forever. At least once for the completion state, exactly once for changes.
    if (this.historyTracker.complete) {
      this.history.push({
        version: afterVersion,
        timestamp: this.historyTracker.lastCompletedAt,
        change: null,
        completed: this.historyTracker.completion(),
        snapshot: true,
      });
    }
    this.readOnce = (range) => [...app.readStream(this.workPlanId, range)];
    this.historyNext = afterVersion + 1;
    this.historyTo = current;
    this.historyChunk = chunk;
    this.handoverVersion = current;
    this.sent = afterVersion;
    if (this.historyNext > this.historyTo) {
      this.historyTracker = null;
      this.readOnce = null;
    }
  }

  /** The next item to send, or undefined when there is nothing right now. */
  next(): WatchItem | undefined {
    if (this.closed) return undefined;
    const item = this.snapshot.shift() ?? this.nextFromHistory() ?? this.nextLive();
    if (!item) return undefined;
    if (this.snapshot.length === 0) this.snapshotPending = false;
    this.sent = Math.max(this.sent, item.version);
    this.itemsSent++;
    return item;
  }

  /** @internal A live step of this workplan, straight from the bus; `whole` is its item with the change kept. */
  offer(step: WatchStep, whole?: WatchItem | null): void {
    if (this.closed || step.version <= this.handoverVersion || step.version <= this.sent) return;
    const item = whole && (step.change === null || this.matches(step.change)) ? whole : this.itemFor(step);
    if (!item) return;
    if (this.live.length >= this.bufferSize) {
      this.overflow();
      return;
    }
    this.live.push(item);
    if (this.live.length === 1) this.listener.wake();
  }

  private overflow(): void {
    const last = this.lastVersionSent;
    this.end({
      reason: 'overflow',
      message:
        last === null
          ? `subscriber too slow (more than ${this.bufferSize} events waiting) before the initial snapshot was sent; watch again without after_version`
          : `subscriber too slow (more than ${this.bufferSize} events waiting); last version sent: ${last}; resume with after_version=${last}`,
    });
  }

  private nextLive(): WatchItem | undefined {
    const log = this.log;
    if (!log) return this.live.shift();
    if (this.liveCursor < log.end) return log.at(this.liveCursor++);
    if (!this.waitingLive) {
      this.waitingLive = true;
      log.waitFor(this);
    }
    return undefined;
  }

  /** The client went away (cancel, deadline, disconnect): release without telling the transport. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.drop();
    this.onRelease(this, reason);
  }

  /** The server ends the subscription: release, then tell the transport. */
  end(end: WatchEnd): void {
    if (this.closed) return;
    this.closed = true;
    this.drop();
    this.onRelease(this, end.reason);
    this.listener.ended(end);
  }

  private drop(): void {
    this.snapshot.clear();
    this.history.clear();
    this.live.clear();
    this.log?.remove(this);
    this.log = null;
    this.historyTracker = null;
  }

  private nextFromHistory(): WatchItem | undefined {
    while (this.history.length === 0 && this.historyTracker && this.readOnce) {
      const to = Math.min(this.historyTo, this.historyNext + this.historyChunk - 1);
      for (const rec of this.readOnce({ afterVersion: this.historyNext - 1, toVersion: to })) {
        const item = this.itemFor(this.historyTracker.fold(rec));
        if (item) this.history.push(item);
      }
      this.historyNext = to + 1;
      if (this.historyNext > this.historyTo) {
        this.historyTracker = null;
        this.readOnce = null;
      }
    }
    const item = this.history.shift();
    // Caught up with the log: every change up to the handover version is now accounted for.
    if (!item && !this.historyTracker) this.sent = Math.max(this.sent, this.historyTo);
    return item;
  }

  private itemFor(step: WatchStep): WatchItem | null {
    const change = step.change && this.matches(step.change) ? step.change : null;
    return liveItem(step, change);
  }

  private matches(change: NodeChange): boolean {
    if (this.takesEverything) return true;
    if (change.kind === 'check') {
      return (
        this.checks &&
        (this.checkIds.size === 0 || this.checkIds.has(change.after.id)) &&
        (this.checkStates.size === 0 || this.checkStates.has(change.after.state))
      );
    }
    return (
      this.stages &&
      (this.stageIds.size === 0 || this.stageIds.has(change.after.id)) &&
      (this.stageStates.size === 0 || this.stageStates.has(change.after.state))
    );
  }
}
