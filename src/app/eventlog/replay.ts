// Rebuilding a workplan as of a version or a time, through the same projections the server folds.
import { ReadModels } from '../../../projections/read-models.js';
import type { WorkPlanModel } from '../../../projections/workplan-model.js';
import { eventNode, type RecordedEvent } from '../../domain/events.js';
import type { Check, Stage } from '../../domain/model.js';

export interface ReplayTarget {
  /** Up to and including this stream version. */
  readonly version?: number;
  /** Up to the last event recorded at or before this time (epoch ms). */
  readonly at?: number;
}

/**
 * Folds a workplan's events (in stream order) through the projections up to `target`, and stops reading there.
 * Returns undefined when no event is within the target (the workplan did not exist yet).
 */
export async function replayWorkPlan(
  events: Iterable<RecordedEvent> | AsyncIterable<RecordedEvent>,
  workPlanId: string,
  target: ReplayTarget = {},
  onEvent?: (rec: RecordedEvent, before: NodeSnapshot | undefined, after: NodeSnapshot | undefined) => void | Promise<void>,
): Promise<WorkPlanModel | undefined> {
  const models = new ReadModels();
  for await (const rec of events) {
    if (rec.streamId !== workPlanId) continue;
    if (target.version !== undefined && rec.version > target.version) break;
    if (target.at !== undefined && rec.recordedAt > target.at) break;
    const model = models.workplan(workPlanId);
    const before = model && onEvent ? nodeOf(model, rec) : undefined;
    models.apply(rec);
    if (onEvent) await onEvent(rec, before, nodeOf(models.workplan(workPlanId)!, rec));
  }
  return models.workplan(workPlanId);
}

export type NodeSnapshot = Check | Stage | WorkPlanModel['meta'];

export function nodeOf(model: WorkPlanModel, rec: RecordedEvent): NodeSnapshot | undefined {
  const about = eventNode(rec.event);
  if (!about) return model.meta;
  return about.kind === 'check' ? model.check(about.id) : model.stage(about.id);
}
