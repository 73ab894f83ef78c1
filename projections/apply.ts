import type { RecordedEvent } from '../src/domain/events.js';
import { reduceChecks } from './checks.js';
import { reduceDependencies } from './dependencies.js';
import type { WorkPlanSink } from './sink.js';
import { reduceStages } from './stages.js';
import { reduceWorkPlan } from './workplans.js';

/** Folds one event into a workplan's read models, in the order the reducers depend on. */
export function applyEvent(sink: WorkPlanSink, rec: RecordedEvent): void {
  reduceDependencies(sink, rec);
  reduceChecks(sink, rec);
  reduceStages(sink, rec);
  reduceWorkPlan(sink, rec);
}
