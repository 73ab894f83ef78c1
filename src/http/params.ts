// Edge validation for the HTTP API: path segments and query parameters, with zod. Every error names the field
// (the same names as the gRPC API: work_plan_id, after_version, ...) and becomes a JSON 400.
import { z } from 'zod';
import { invalidArgument } from '../domain/errors.js';
import { CHECK_STATES, STAGE_STATES } from '../domain/model.js';
import type { WatchRequest } from '../app/watch.js';
import type { MetadataFilter } from './views.js';

const ID_PATTERN = /^[^\s\p{C}]{1,256}$/u;
const id = z.string().regex(ID_PATTERN, 'must be 1-256 printable characters without spaces');
const whole = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
const list = (values?: readonly string[]) =>
  z
    .array(z.string())
    .transform((xs) => xs.flatMap((x) => x.split(',')).filter((x) => x !== ''))
    .pipe(z.array(values ? z.enum(values as [string, ...string[]], { message: `must be one of ${values.join(', ')}` }) : z.string()));
const flag = z.enum(['', '1', 'true', '0', 'false']).transform((v) => v === '' || v === '1' || v === 'true');
const metadataFilter = z
  .string()
  .transform((raw, ctx): MetadataFilter => {
    const pairs: [string, string][] = [];
    for (const part of raw.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
      const eq = part.indexOf('=');
      if (eq <= 0) {
        ctx.addIssue({ code: 'custom', message: `"${part}" is not KEY=VALUE` });
        return z.NEVER;
      }
      pairs.push([part.slice(0, eq), part.slice(eq + 1)]);
    }
    return pairs;
  });

/** Parses `input` or throws INVALID_ARGUMENT naming the first offending field. */
export function parse<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw invalidArgument(issue.message, issue.path.map(String).join('.') || undefined);
}

/** The query string as an object of arrays (every parameter may repeat). */
export function queryOf(url: URL): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of url.searchParams) (out[k] ??= []).push(v);
  return out;
}
const one = <T extends z.ZodType<unknown, string>>(schema: T) => z.array(z.string()).transform((xs) => xs[xs.length - 1]!).pipe(schema);

export const workPlanId = z.object({ work_plan_id: id });

export const listQuery = z.object({
  filter: one(metadataFilter).optional().transform((f) => f ?? []),
  limit: one(whole(1, 10_000)).optional().transform((n) => n ?? 200),
});

export const stateQuery = z.object({ version: one(whole(1, Number.MAX_SAFE_INTEGER)).optional(), summary: one(flag).optional() });

export const eventsQuery = z.object({
  after: one(whole(0, Number.MAX_SAFE_INTEGER)).optional().transform((n) => n ?? 0),
  limit: one(whole(1, 10_000)).optional().transform((n) => n ?? 1000),
  type: list().optional().transform((t) => t ?? []),
});

export const explainQuery = z.object({ node: one(z.string().regex(/^(check:|stage:)?[^\s\p{C}]{1,256}$/u, 'must be a node id, optionally check: or stage: prefixed')) });

/** WatchWorkPlan's filters and resume point, as query parameters (Last-Event-ID wins over after_version). */
export const watchQuery = z.object({
  after_version: one(whole(0, Number.MAX_SAFE_INTEGER)).optional(),
  checks: one(flag).optional(),
  stages: one(flag).optional(),
  check_id: list().optional(),
  stage_id: list().optional(),
  check_state: list(CHECK_STATES).optional(),
  stage_state: list(STAGE_STATES).optional(),
});

export function watchRequest(workPlanIdValue: string, q: z.output<typeof watchQuery>, lastEventId: string | undefined): WatchRequest {
  const resume = lastEventId !== undefined && lastEventId !== '' ? parse(z.object({ last_event_id: whole(0, Number.MAX_SAFE_INTEGER) }), { last_event_id: lastEventId }).last_event_id : q.after_version;
  return {
    workPlanId: workPlanIdValue,
    afterVersion: resume,
    includeChecks: q.checks ?? false,
    includeStages: q.stages ?? false,
    checkIds: q.check_id ?? [],
    stageIds: q.stage_id ?? [],
    checkStates: (q.check_state ?? []) as WatchRequest['checkStates'],
    stageStates: (q.stage_state ?? []) as WatchRequest['stageStates'],
  };
}
