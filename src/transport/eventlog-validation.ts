// Edge validation for TurboCIEventLog: zod schemas over the decoded requests, with the same field naming and
// INVALID_ARGUMENT mapping as the orchestrator's (parseRequest in validation.ts).
import { z } from 'zod';
import { SCHEMA_VERSION } from '../domain/events.js';
import { id, int64, millis } from './validation.js';

const version = int64(0, Number.MAX_SAFE_INTEGER);
const eventType = z.string().refine((t) => Object.hasOwn(SCHEMA_VERSION, t), 'not an event type');

export const MAX_PAGE_SIZE = 10_000;
export const DEFAULT_PAGE_SIZE = 1000;

export const readEventsRequest = z
  .object({
    workPlanId: id,
    afterVersion: version,
    toVersion: version,
    types: z.array(eventType),
    pageSize: z
      .number()
      .int()
      .min(0, 'must not be negative')
      .max(MAX_PAGE_SIZE, `must be at most ${MAX_PAGE_SIZE}`)
      .transform((n) => n || DEFAULT_PAGE_SIZE),
    pageToken: z.string().transform((t, ctx) => {
      if (!t) return 0;
      const v = /^v(\d{1,15})$/.exec(t);
      if (!v) ctx.addIssue({ code: 'custom', message: 'not a page token this server issued' });
      return v ? Number(v[1]) : 0;
    }),
  })
  .superRefine((r, ctx) => {
    if (r.toVersion > 0 && r.toVersion <= r.afterVersion) {
      ctx.addIssue({ code: 'custom', path: ['toVersion'], message: `must be greater than after_version (${r.afterVersion}) or 0` });
    }
  })
  .transform(({ pageToken, ...r }) => ({ ...r, resumeAfter: pageToken }));

export const pageToken = (next: number | null): string => (next === null ? '' : `v${next}`);

export const getWorkPlanAtRequest = z
  .object({ workPlanId: id, version, at: millis })
  .superRefine((r, ctx) => {
    if (r.version > 0 && r.at !== undefined) ctx.addIssue({ code: 'custom', path: ['at'], message: 'give a version or a time, not both' });
  });

export const getReadModelDigestRequest = z.object({ workPlanIds: z.array(id), includeState: z.boolean() });
