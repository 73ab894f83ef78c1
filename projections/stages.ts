import type { RecordedEvent } from '../src/domain/events.js';
import { evolveStage, isStageEvent } from '../src/domain/evolve.js';
import type { WorkPlanSink } from './sink.js';

/** Reducer for the stage read model (attempts included). */
export function reduceStages(sink: WorkPlanSink, rec: RecordedEvent): void {
  const e = rec.event;
  if (isStageEvent(e)) sink.putStage(evolveStage(sink.stage(e.data.stageId), e, rec));
}
