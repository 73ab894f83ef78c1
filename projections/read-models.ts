// Every read model, folded from the log: the one list of projections. Adding a projection is adding its file and
// one line here. Live, each projection is a reducer subscribed to the appended batches; on start, the same folds
// run over the whole log (replay).
import { Subscription, type Observable } from 'rxjs';
import type { EventType, RecordedEvent } from '../src/domain/events.js';
import { ExecutionIndex } from './executions.js';
import { LeaseIndex } from './leases.js';
import { foldBatch, type SnapshotProjection } from './projection.js';
import { RunnerRegistry } from './runner-registry.js';
import type { WorkPlanModel } from './workplan-model.js';
import { WorkPlanModels } from './workplans.js';

export class ReadModels {
  readonly workplans = new WorkPlanModels();
  readonly runners = new RunnerRegistry();
  readonly executions = new ExecutionIndex(this.workplans, this.runners);
  readonly leases = new LeaseIndex(this.workplans);
  /** In fold order: the indexes read a workplan's model after it folded the event. */
  readonly all: readonly SnapshotProjection[] = [this.workplans, this.runners, this.executions, this.leases];
  /** The global position of the last event folded (0 before any). */
  position = 0;

  private readonly byType = new Map<EventType, SnapshotProjection[]>();

  constructor() {
    for (const p of this.all) {
      for (const type of p.handles) {
        let list = this.byType.get(type);
        if (!list) this.byType.set(type, (list = []));
        list.push(p);
      }
    }
  }

  workplan(id: string): WorkPlanModel | undefined {
    return this.workplans.workplan(id);
  }

  workplanIds(): IterableIterator<string> {
    return this.workplans.ids();
  }

  /** Folds one event into every projection that handles it, in order. */
  apply(rec: RecordedEvent): void {
    for (const p of this.byType.get(rec.event.type) ?? []) p.fold(rec);
    this.position = rec.position;
  }

  /** Every projection's state as of `position`, keyed by name: what a snapshot holds. */
  snapshot(): { position: number; projections: Record<string, unknown> } {
    return { position: this.position, projections: Object.fromEntries(this.all.map((p) => [p.name, p.snapshot()])) };
  }

  /** Read models as a snapshot saved them; fold the log after `position` to bring them up to date. */
  static restore(saved: { position: number; projections: Record<string, unknown> }): ReadModels {
    const models = new ReadModels();
    for (const p of models.all) {
      if (!(p.name in saved.projections)) throw new Error(`the snapshot has no state for projection "${p.name}"`);
      p.restore(saved.projections[p.name]);
    }
    models.position = saved.position;
    return models;
  }

  /**
   * Subscribes each projection, in order, to `batches$` as its reducer. Unsubscribing the returned subscription
   * stops them all.
   */
  subscribeTo(batches$: Observable<readonly RecordedEvent[]>): Subscription {
    const all = new Subscription();
    for (const p of this.all) {
      const handles = new Set(p.handles);
      all.add(batches$.subscribe((batch) => foldBatch(p, handles, batch)));
    }
    all.add(batches$.subscribe((batch) => (this.position = batch[batch.length - 1]!.position)));
    return all;
  }

  /** Rebuilds read models from scratch out of a sequence of recorded events. */
  static replay(events: Iterable<RecordedEvent>): ReadModels {
    const models = new ReadModels();
    for (const rec of events) models.apply(rec);
    return models;
  }
}
