// The workplan projection: every workplan's check, stage and dependency read models (projections/workplan-model.ts),
// folded by the domain's one `evolve`, the same fold a decision's draft uses. Also remembers, per workplan, the last
// version each client request appended (for idempotent retries).
import { WORKPLAN_EVENT_TYPES, type RecordedEvent } from '../src/domain/events.js';
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

  snapshot(): unknown {
    return this.models;
  }
  /** The models come back as plain objects: they get their class again. */
  restore(state: unknown): void {
    for (const [id, model] of state as Map<string, WorkPlanModel>) this.models.set(id, Object.setPrototypeOf(model, WorkPlanModel.prototype) as WorkPlanModel);
  }

  workplan(id: string): WorkPlanModel | undefined {
    return this.models.get(id);
  }

  ids(): IterableIterator<string> {
    return this.models.keys();
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
