// The event log behind a running server, read through the orchestrator: a workplan's events by range, a workplan
// as of a version or a time, and digests of the live read models (what the TurboCIEventLog RPCs answer).
import type { WorkPlanModel } from '../../../projections/workplan-model.js';
import { invalidArgument } from '../../domain/errors.js';
import type { RecordedEvent } from '../../domain/events.js';
import type { Orchestrator } from '../orchestrator.js';
import { digestReadModel, type ModelDigest } from './digest.js';
import { replayWorkPlan } from './replay.js';

export interface EventRange {
  readonly workPlanId: string;
  readonly afterVersion: number;
  /** 0: to the end. */
  readonly toVersion: number;
  readonly types: readonly string[];
  readonly pageSize: number;
  /** Resume after this version (from a page token); 0 when none. */
  readonly resumeAfter: number;
}

export interface EventPage {
  readonly events: RecordedEvent[];
  /** The version to resume after, or null when the range is exhausted. */
  readonly next: number | null;
  readonly version: number;
}

/** One page of a workplan's events. A page scans at most 10 × pageSize events, so a sparse type filter stays bounded. */
export function readEventPage(app: Orchestrator, q: EventRange): EventPage {
  const version = app.getWorkPlan(q.workPlanId).version; // NOT_FOUND for an unknown workplan
  const end = q.toVersion > 0 ? Math.min(q.toVersion, version) : version;
  const after = Math.max(q.afterVersion, q.resumeAfter);
  const scanTo = Math.min(end, after + q.pageSize * 10);
  const events: RecordedEvent[] = [];
  let last = after;
  for (const rec of app.readStream(q.workPlanId, { afterVersion: after, toVersion: scanTo })) {
    last = rec.version;
    if (q.types.length && !q.types.includes(rec.event.type)) continue;
    events.push(rec);
    if (events.length >= q.pageSize) break;
  }
  if (last === after) last = scanTo; // nothing in range
  return { events, next: last < end ? last : null, version };
}

/** A workplan rebuilt from its events up to a version (0: current) or a time. */
export async function workPlanAt(app: Orchestrator, workPlanId: string, target: { version: number; at?: number }): Promise<WorkPlanModel> {
  const current = app.getWorkPlan(workPlanId).version;
  if (target.version > current) throw invalidArgument(`the workplan is at version ${current}`, 'version');
  const toVersion = target.version > 0 ? target.version : current;
  const model = await replayWorkPlan(app.readStream(workPlanId, { toVersion }), workPlanId, target.at === undefined ? {} : { at: target.at });
  if (!model) throw invalidArgument(`the workplan was created after ${new Date(target.at ?? 0).toISOString()}`, 'at');
  return model;
}

/** Digests of the server's in-memory read models: every workplan, or the ones asked for that it holds. */
export function readModelDigests(app: Orchestrator, ids: readonly string[]): ModelDigest[] {
  const wanted = ids.length ? ids : [...app.models.workplanIds()];
  return wanted.flatMap((id) => {
    const model = app.models.workplan(id);
    return model ? [digestReadModel(model)] : [];
  });
}
