import { scan, type Observable } from 'rxjs';
import type { RecordedEvent } from '../src/domain/events.js';
import { RUNNER_REGISTRY_STREAM } from '../src/domain/events.js';
import { evolveWorkPlan } from '../src/domain/evolve.js';
import { applyEvent } from './apply.js';
import { ExecutionIndex } from './executions.js';
import { LeaseIndex } from './leases.js';
import { RunnerRegistry } from './runner-registry.js';
import { WorkPlanModel } from './workplan-model.js';

/** Every workplan's read models, the runner registry and the dispatch index, folded from the log. */
export class ReadModels {
  private readonly models = new Map<string, WorkPlanModel>();
  readonly runners = new RunnerRegistry();
  readonly executions = new ExecutionIndex();
  readonly leases = new LeaseIndex();

  workplan(id: string): WorkPlanModel | undefined {
    return this.models.get(id);
  }

  workplanIds(): IterableIterator<string> {
    return this.models.keys();
  }

  apply(rec: RecordedEvent): void {
    if (rec.streamId === RUNNER_REGISTRY_STREAM) {
      this.runners.apply(rec);
      return;
    }
    let model = this.models.get(rec.streamId);
    if (rec.event.type === 'WorkPlanCreated') {
      model = new WorkPlanModel(evolveWorkPlan(undefined, rec.event, rec, rec.streamId));
      this.models.set(rec.streamId, model);
    } else if (model) {
      applyEvent(model, rec);
    } else {
      throw new Error(`event ${rec.event.type} at position ${rec.position} for unknown workplan ${rec.streamId}`);
    }
    if (rec.causation.requestId) model.requests.set(rec.causation.requestId, rec.version);
    this.executions.apply(rec, model);
    this.leases.apply(rec, model);
  }

  /** Rebuilds read models from scratch out of a sequence of recorded events. */
  static replay(events: Iterable<RecordedEvent>): ReadModels {
    const models = new ReadModels();
    for (const rec of events) models.apply(rec);
    return models;
  }
}

/** The RxJS reducer that keeps `models` folded with every batch the log publishes. */
export const foldReadModels =
  (models: ReadModels) =>
  (batches$: Observable<readonly RecordedEvent[]>): Observable<ReadModels> =>
    batches$.pipe(
      scan((acc, batch) => {
        for (const rec of batch) acc.apply(rec);
        return acc;
      }, models),
    );
