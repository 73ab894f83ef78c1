import type { RecordedEvent } from '../src/domain/events.js';
import { evolveCheck, isCheckEvent } from '../src/domain/evolve.js';
import type { WorkPlanSink } from './sink.js';

/** Reducer for the check read model. */
export function reduceChecks(sink: WorkPlanSink, rec: RecordedEvent): void {
  const e = rec.event;
  if (isCheckEvent(e)) sink.putCheck(evolveCheck(sink.check(e.data.checkId), e, rec));
}
