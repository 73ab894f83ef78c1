// The workplan projection: every workplan's check, stage and dependency read models (projections/workplan-model.ts),
// folded by the domain's one `evolve`, the same fold a decision's draft uses. Also remembers, per workplan, the last
// version each client request appended (for idempotent retries).
//
// A complete workplan may be evicted (only its header stays in memory) and is folded back from its stream the next
// time anything asks for it: a read, a watch, a write. Read models stay disposable: the fold-back is the same replay.
// Snapshots keep complete workplans the same way, as headers: a start restores only what is in progress.
import { WORKPLAN_EVENT_TYPES, type RecordedEvent } from '../src/domain/events.js';
import type { WorkPlanMeta } from '../src/domain/model.js';
import { evolve, evolveWorkPlan } from '../src/domain/evolve.js';
import type { SnapshotProjection } from './projection.js';
import { WorkPlanModel } from './workplan-model.js';

/** A workplan's events with position <= toPosition, in stream order, from the log. */
export type StreamLoader = (workPlanId: string, toPosition: number) => Iterable<RecordedEvent>;

interface SavedWorkPlans {
  readonly position: number;
  readonly inProgress: Map<string, WorkPlanModel>;
  readonly headers: Map<string, WorkPlanMeta>;
}

/** Read access to the workplan models, for the projections that fold after them. */
export interface WorkPlanLookup {
  workplan(id: string): WorkPlanModel | undefined;
}

export class WorkPlanModels implements SnapshotProjection, WorkPlanLookup {
  readonly name = 'workplans';
  readonly handles = WORKPLAN_EVENT_TYPES;
  private readonly models = new Map<string, WorkPlanModel>();
  /** Evicted workplans: their header only. */
  private readonly evicted = new Map<string, WorkPlanMeta>();
  /** Reads a workplan's events up to a global position back from the log (set by whoever owns the store). */
  private loadStream: StreamLoader | null = null;
  /** The position of the last event folded: a fold-back reads the log up to here, never past what was folded. */
  private position = 0;
  private clock: () => number = Date.now;
  /** Workplans folded back from the log after an eviction, and when (epoch ms): a fold-back counts as a use. */
  foldBacks = 0;
  private readonly foldedBackAt = new Map<string, number>();

  /** Workplans in progress whole; complete ones (and evicted ones) as their header, folded back when asked for. */
  snapshot(): unknown {
    const inProgress = new Map<string, WorkPlanModel>();
    const headers = new Map<string, WorkPlanMeta>();
    // In id order: the same workplans give the same snapshot, whichever of them were evicted meanwhile.
    for (const id of [...this.ids()].sort()) {
      const model = this.models.get(id);
      if (!model) headers.set(id, this.evicted.get(id)!);
      else if (model.complete) headers.set(id, model.meta);
      else inProgress.set(id, model);
    }
    return { position: this.position, inProgress, headers } satisfies SavedWorkPlans;
  }
  /** The models come back as plain objects: they get their class again. */
  restore(state: unknown): void {
    const savedModels = state as SavedWorkPlans;
    for (const [id, saved] of savedModels.inProgress) {
      const model = Object.setPrototypeOf(saved, WorkPlanModel.prototype) as WorkPlanModel;
      model.revive();
      this.models.set(id, model);
    }
    for (const [id, meta] of savedModels.headers) this.evicted.set(id, meta);
    this.position = savedModels.position;
  }

  workplan(id: string): WorkPlanModel | undefined {
    return this.models.get(id) ?? this.foldBack(id);
  }

  /** A workplan's header, without folding an evicted one back. */
  meta(id: string): WorkPlanMeta | undefined {
    return this.models.get(id)?.meta ?? this.evicted.get(id);
  }

  *ids(): IterableIterator<string> {
    yield* this.models.keys();
    yield* this.evicted.keys();
  }

  /** The workplans whose nodes are in memory. */
  residentIds(): IterableIterator<string> {
    return this.models.keys();
  }

  /** When an evicted workplan was last folded back (epoch ms), if it was. */
  foldedBack(id: string): number | undefined {
    return this.foldedBackAt.get(id);
  }

  /** Lets workplans be folded back (and so evicted): `load` reads a workplan's stream back from the log. */
  evictable(load: StreamLoader, clock: () => number): void {
    this.loadStream = load;
    this.clock = clock;
  }

  /** Read models rebuilt in place of `previous` evict as it did. */
  inheritEviction(previous: WorkPlanModels): void {
    if (previous.loadStream) this.evictable(previous.loadStream, previous.clock);
  }

  /** Drops a complete workplan's nodes from memory; false when it is not complete (or nothing can read it back). */
  evict(id: string): boolean {
    const model = this.models.get(id);
    if (!model?.complete || !this.loadStream) return false;
    this.models.delete(id);
    this.foldedBackAt.delete(id);
    this.evicted.set(id, model.meta);
    return true;
  }

  /**
   * While models are loaded (src/app/snapshots.ts): evicts a complete workplan, unless it was folded back since
   * they were, so that one which goes on after it completes is not read back from the log again and again.
   */
  evictOnLoad(id: string): boolean {
    return !this.foldedBackAt.has(id) && this.evict(id);
  }

  private foldBack(id: string): WorkPlanModel | undefined {
    if (!this.evicted.has(id) || !this.loadStream) return undefined;
    const again = new WorkPlanModels();
    for (const rec of this.loadStream(id, this.position)) again.fold(rec);
    const model = again.models.get(id)!;
    this.evicted.delete(id);
    this.models.set(id, model);
    this.foldBacks++;
    this.foldedBackAt.set(id, this.clock());
    return model;
  }

  fold(rec: RecordedEvent): void {
    let model = this.models.get(rec.streamId) ?? this.foldBack(rec.streamId);
    this.position = rec.position;
    if (rec.event.type === 'WorkPlanCreated') {
      model = new WorkPlanModel(evolveWorkPlan(undefined, rec.event, rec, rec.streamId));
      this.models.set(rec.streamId, model);
    } else if (model) {
      evolve(model, rec.event, rec);
    } else {
      throw new Error(
        this.evicted.has(rec.streamId)
          ? `event ${rec.event.type} at position ${rec.position} for workplan ${rec.streamId}, which is evicted and cannot be read back`
          : `event ${rec.event.type} at position ${rec.position} for unknown workplan ${rec.streamId}`,
      );
    }
    if (rec.causation.requestId) model.requests.set(rec.causation.requestId, rec.version);
  }
}
