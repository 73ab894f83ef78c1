// WatchWorkPlanRequest validation: a zod schema over the decoded message, producing the application's WatchRequest.
// Same rules as QueryNodes filters: ids follow src/domain/ids.ts, state filters name real states.
import { z } from 'zod';
import type { CheckState, StageState } from '../domain/model.js';
import type { WatchRequest } from '../app/watch.js';
import { id, int64 } from './validation.js';

/** A protobuf enum in a filter: UNKNOWN (0) and numbers that are not in `values` are rejected. */
const stateFilter = <T extends string>(what: string, values: Record<number, T>) =>
  z.array(
    z.number().transform((n, ctx): T => {
      const v = values[n];
      if (v === undefined) {
        ctx.addIssue({ code: 'custom', message: n === 0 ? `UNKNOWN is not a ${what} to filter by` : `unknown ${what} ${n}` });
        return z.NEVER;
      }
      return v;
    }),
  );

/** The longest coalescing window a WatchWorkPlanBatched client may ask for (max_batch_delay_ms). */
export const MAX_BATCH_DELAY_MS = 1000;

/** What the application watches, and how the transport delivers it. */
export interface WatchCallRequest extends WatchRequest {
  /** WatchWorkPlanBatched: at most one message per this many ms per stream; 0 = as soon as events are durable. */
  readonly maxBatchDelayMs: number;
}

export const watchWorkPlanRequest = z.object({
  workPlanId: id,
  includeChecks: z.boolean(),
  includeStages: z.boolean(),
  checkStateFilter: stateFilter<CheckState>('check state', { 10: 'PLANNING', 20: 'PLANNED', 30: 'WAITING', 40: 'FINAL' }),
  stageStateFilter: stateFilter<StageState>('stage state', { 10: 'PLANNED', 20: 'ATTEMPTING', 30: 'AWAITING_GROUP', 40: 'FINAL' }),
  checkIdFilter: z.array(id),
  stageIdFilter: z.array(id),
  afterVersion: int64(0, Number.MAX_SAFE_INTEGER).optional(),
  maxBatchDelayMs: z.number().int().min(0).max(MAX_BATCH_DELAY_MS),
}).transform(
  (r): WatchCallRequest => ({
    workPlanId: r.workPlanId,
    includeChecks: r.includeChecks,
    includeStages: r.includeStages,
    checkStates: r.checkStateFilter,
    stageStates: r.stageStateFilter,
    checkIds: r.checkIdFilter,
    stageIds: r.stageIdFilter,
    afterVersion: r.afterVersion,
    maxBatchDelayMs: r.maxBatchDelayMs,
  }),
);
