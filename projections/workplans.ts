import type { RecordedEvent } from '../src/domain/events.js';
import { evolveWorkPlan } from '../src/domain/evolve.js';
import type { WorkPlanSink } from './sink.js';

/** Reducer for the workplan header: version, timestamps, metadata. */
export function reduceWorkPlan(sink: WorkPlanSink, rec: RecordedEvent): void {
  sink.putMeta(evolveWorkPlan(sink.meta, rec.event, rec, rec.streamId));
}
