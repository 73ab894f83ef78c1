// Starting from a read-model snapshot: the read models as of a position, then only the log after it. Snapshots are
// a cache, never a source of truth: one that is damaged, of another schema, or not of this log is ignored (with a
// warning) and the start replays the whole log; `turboci verify` compares a snapshot with a full replay.
import { Subscription, type Observable } from 'rxjs';
import { ReadModels } from '../../projections/read-models.js';
import type { RecordedEvent } from '../domain/events.js';
import type { EventStore } from './event-store.js';

/** Where snapshot state is where the event it was folded up to stands in the log. */
export interface SnapshotPoint {
  readonly position: number;
  readonly streamId: string;
  readonly version: number;
}

export type SnapshotRead =
  | { readonly kind: 'missing' }
  | { readonly kind: 'unusable'; readonly why: string }
  | { readonly kind: 'ok'; readonly header: SnapshotPoint & { readonly createdAt: number; readonly bytes: number }; readonly state: unknown };

/** Where snapshots are kept (src/infra/snapshot-file.ts). */
export interface SnapshotStore {
  readonly describe: string;
  read(): SnapshotRead;
  write(at: SnapshotPoint, state: unknown): { readonly bytes: number };
}

export interface LoadedModels {
  readonly models: ReadModels;
  /** The snapshot's position when it was used, else 0. */
  readonly fromPosition: number;
  readonly tailEvents: number;
  /** Why a snapshot that exists was not used. */
  readonly ignored?: string;
}

type SavedModels = Parameters<typeof ReadModels.restore>[0];

/**
 * The read models: from the snapshot (when usable and of this log) plus the log's tail, else from the whole log.
 * `evictComplete: false` keeps every workplan folded from the log in memory (`serve --evict-after 0`).
 */
export function loadReadModels(store: EventStore, snapshots: SnapshotStore | null, options: { evictComplete?: boolean } = {}): LoadedModels {
  const evict = options.evictComplete ?? true;
  let models: ReadModels | undefined;
  let ignored: string | undefined;
  const read = snapshots?.read() ?? { kind: 'missing' };
  if (read.kind === 'unusable') ignored = read.why;
  if (read.kind === 'ok') {
    const { position, streamId, version } = read.header;
    const there = store.eventAt(position);
    if (!there || there.streamId !== streamId || there.version !== version) {
      ignored = `${snapshots!.describe} is not of this log (position ${position} is not ${streamId} v${version} here)`;
    } else {
      try {
        models = ReadModels.restore(read.state as SavedModels);
      } catch (err) {
        ignored = `${snapshots!.describe} cannot be restored: ${(err as Error).message}`;
      }
    }
  }
  const fromPosition = models?.position ?? 0;
  models ??= new ReadModels();
  // Complete workplans come back from a snapshot as headers: they are folded back from the log when needed.
  models.workplans.evictable(readBack(store), Date.now);
  // A workplan found complete when the log moves on to another stream is kept as its header, as a snapshot keeps
  // it: a long replay then holds (and garbage-collects over) only the workplans in progress.
  let tailEvents = 0;
  let previous: string | null = null;
  for (const rec of store.readAll(models.position)) {
    if (previous !== rec.streamId) {
      if (previous !== null && evict) models.workplans.evictOnLoad(previous);
      previous = rec.streamId;
    }
    models.apply(rec);
    tailEvents++;
  }
  if (previous !== null && evict) models.workplans.evictOnLoad(previous);
  return { models, fromPosition, tailEvents, ...(ignored ? { ignored } : {}) };
}

/** Folds the log into a snapshot: from the current snapshot and the tail, written back in place. */
export function takeSnapshot(store: EventStore, snapshots: SnapshotStore): { point: SnapshotPoint | null; bytes: number; loaded: LoadedModels } {
  const loaded = loadReadModels(store, snapshots);
  const last = loaded.models.position > 0 ? store.eventAt(loaded.models.position) : undefined;
  if (!last) return { point: null, bytes: 0, loaded };
  const point = { position: last.position, streamId: last.streamId, version: last.version };
  if (loaded.tailEvents === 0 && loaded.fromPosition === point.position) return { point, bytes: 0, loaded }; // already there
  const { bytes } = snapshots.write(point, loaded.models.snapshot());
  return { point, bytes, loaded };
}

/**
 * Takes a new snapshot, off the serving thread, whenever `every` events were committed since the last one (and once
 * at start when the tail was that long). One at a time; a failure is reported and the next one tries again.
 */
export class SnapshotScheduler {
  private readonly subscription = new Subscription();
  private sinceLast: number;
  private running = false;

  constructor(
    private readonly every: number,
    private readonly take: () => Promise<void>,
    private readonly onError: (err: unknown) => void,
    tailAtStart: number,
  ) {
    this.sinceLast = tailAtStart;
  }

  start(durable$: Observable<readonly RecordedEvent[]>): void {
    if (this.every <= 0) return;
    this.subscription.add(
      durable$.subscribe((batch) => {
        this.sinceLast += batch.length;
        this.maybeTake();
      }),
    );
    this.maybeTake();
  }

  stop(): void {
    this.subscription.unsubscribe();
  }

  private maybeTake(): void {
    if (this.running || this.sinceLast < this.every) return;
    this.running = true;
    this.sinceLast = 0;
    this.take()
      .catch((err: unknown) => this.onError(err))
      .finally(() => {
        this.running = false;
      });
  }
}

/** How the workplan projection reads an evicted workplan back: its stream, up to a position, from the log. */
export const readBack =
  (store: EventStore) =>
  (workPlanId: string, toPosition: number): Iterable<RecordedEvent> =>
    store.readFiltered({ workPlanId, toPosition });
