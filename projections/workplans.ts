// The workplan projection: every workplan's check, stage and dependency read models (projections/workplan-model.ts),
// folded by the domain's one `evolve`, the same fold a decision's draft uses. Also remembers, per workplan, the last
// version each client request appended (for idempotent retries).
//
// A complete workplan may be evicted (only its header stays in memory) and is folded back from its stream the next
// time anything asks for it: a read, a watch, a write. Read models stay disposable: the fold-back is the same replay.
import { WORKPLAN_EVENT_TYPES, type RecordedEvent } from '../src/domain/events.js';
import type { WorkPlanMeta } from '../src/domain/model.js';
import { evolve, evolveWorkPlan } from '../src/domain/evolve.js';
import type { SnapshotProjection } from './projection.js';
import { WorkPlanModel } from './workplan-model.js';

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
  private loadStream: ((id: string) => Iterable<RecordedEvent>) | null = null;
  private clock: () => number = Date.now;
  /** Workplans folded back from the log after an eviction, and when (epoch ms): a fold-back counts as a use. */
  foldBacks = 0;
  private readonly foldedBackAt = new Map<string, number>();

  snapshot(): unknown {
    return this.models;
  }
  /** The models come back as plain objects: they get their class again. */
  restore(state: unknown): void {
    for (const [id, model] of state as Map<string, WorkPlanModel>) this.models.set(id, Object.setPrototypeOf(model, WorkPlanModel.prototype) as WorkPlanModel);
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

  /** Lets complete workplans be evicted: `load` reads a workplan's stream back from the log. */
  evictable(load: (id: string) => Iterable<RecordedEvent>, clock: () => number): void {
    this.loadStream = load;
    this.clock = clock;
  }

  /** Read models rebuilt in place of `previous` evict as it did. */
  inheritEviction(previous: WorkPlanModels): void {
    if (previous.loadStream) this.evictable(previous.loadStream, previous.clock);
  }

  /** Drops a complete workplan's nodes from memory; false when it is not complete (or eviction is off). */
  evict(id: string): boolean {
    const model = this.models.get(id);
    if (!model?.complete || !this.loadStream) return false;
    this.models.delete(id);
    this.foldedBackAt.delete(id);
    this.evicted.set(id, model.meta);
    return true;
  }

  private foldBack(id: string): WorkPlanModel | undefined {
    if (!this.evicted.has(id) || !this.loadStream) return undefined;
    const again = new WorkPlanModels();
    for (const rec of this.loadStream(id)) again.fold(rec);
    const model = again.models.get(id)!;
    this.evicted.delete(id);
    this.models.set(id, model);
    this.foldBacks++;
    this.foldedBackAt.set(id, this.clock());
    return model;
  }

  fold(rec: RecordedEvent): void {
    let model = this.models.get(rec.streamId);
    if (rec.event.type === 'WorkPlanCreated') {
      model = new WorkPlanModel(evolveWorkPlan(undefined, rec.event, rec, rec.streamId));
      this.models.set(rec.streamId, model);
    } else if (model) {
      evolve(model, rec.event, rec);
    } else {
      throw new Error(`event ${rec.event.type} at position ${rec.position} for unknown workplan ${rec.streamId}`);
    }
    if (rec.causation.requestId) model.requests.set(rec.causation.requestId, rec.version);
  }
}
