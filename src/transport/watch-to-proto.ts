// WatchItem → WorkPlanEvent messages (one for the node change, one for the completion, in that order).
import type { WatchItem } from '../app/watch.js';
import { CheckState, StageState } from '../gen/turboci/v1/common.js';
import type { WorkPlanEvent } from '../gen/turboci/v1/service.js';
import { CHECK_STATE, checkToProto, STAGE_STATE, stageToProto } from './to-proto.js';

export function watchItemToProto(workPlanId: string, item: WatchItem): WorkPlanEvent[] {
  const out: WorkPlanEvent[] = [];
  const timestamp = new Date(item.timestamp);
  const c = item.change;
  if (c?.kind === 'check') {
    out.push({
      timestamp,
      version: item.version,
      snapshot: item.snapshot,
      checkEvent: {
        checkId: c.after.id,
        oldState: c.before ? CHECK_STATE[c.before.state] : CheckState.CHECK_STATE_UNKNOWN,
        newState: CHECK_STATE[c.after.state],
        check: checkToProto(workPlanId, c.after),
      },
    });
  } else if (c?.kind === 'stage') {
    out.push({
      timestamp,
      version: item.version,
      snapshot: item.snapshot,
      stageEvent: {
        stageId: c.after.id,
        oldState: c.before ? STAGE_STATE[c.before.state] : StageState.STAGE_STATE_UNKNOWN,
        newState: STAGE_STATE[c.after.state],
        stage: stageToProto(workPlanId, c.after),
      },
    });
  }
  if (item.completed) {
    out.push({ timestamp, version: item.version,
      snapshot: item.snapshot, completedEvent: { ...item.completed } });
  }
  return out;
}
