// gRPC ↔ application mapping for turboci.v1.TurboCIRunnerPull: zod validation at the edge, errors mapped in one
// place (errors.ts), one log line per call. Lease is a long poll, so calls may answer asynchronously.
import { z } from 'zod';
import { MAX_LEASE_BATCH, type LeasedAttempt as Leased, type PullService } from '../app/pull-service.js';
import type { JsonObject } from '../domain/model.js';
import type { LeasedAttempt, TurboCIRunnerPullServer } from '../gen/turboci/v1/pull.js';
import type { Logger } from '../logging.js';
import { toCompletion } from './runner-mapping.js';
import { unaryHandler } from './unary.js';
import { parseRequest } from './validation.js';
import { ID_PATTERN, ID_RULE } from '../domain/ids.js';

const requiredId = (field: string) => z.string().min(1, `${field} is required`).regex(ID_PATTERN, ID_RULE);
export const MAX_WAIT_MS = 60_000;
export const MAX_LINES = 500;
export const MAX_LINE_BYTES = 8 * 1024;

const leaseRequest = z.object({
  runnerId: requiredId('runner_id'),
  runnerType: requiredId('runner_type'),
  labels: z.record(z.string().max(256, 'label keys must be at most 256 characters'), z.string().max(1024, 'label values must be at most 1024 characters')),
  waitMs: z.number().int().min(0, 'must not be negative').max(MAX_WAIT_MS, `must be at most ${MAX_WAIT_MS}`),
  maxAttempts: z.number().int().min(0, 'must not be negative').max(MAX_LEASE_BATCH, `must be at most ${MAX_LEASE_BATCH}`),
});
const token = z.string().min(1, 'lease_token is required').max(512, 'not a lease token this server issued');
const heartbeatRequest = z.object({
  leaseToken: token,
  logLines: z.array(z.string().max(MAX_LINE_BYTES, `lines must be at most ${MAX_LINE_BYTES} characters`)).max(MAX_LINES, `at most ${MAX_LINES} lines per heartbeat`),
  message: z.string().max(64 * 1024, 'must be at most 64 KiB'),
  details: z.record(z.string(), z.unknown()).optional(),
});
const completeRequest = z.object({ leaseToken: token, leaseNext: leaseRequest.optional() });

/** A leased attempt as the wire has it. */
function toLeasedAttempt(leased: Leased): LeasedAttempt {
  return {
    leaseId: leased.leaseId,
    leaseToken: leased.leaseToken,
    expiresAt: new Date(leased.expiresAt),
    heartbeatIntervalMs: leased.heartbeatIntervalMs,
    runDeadline: new Date(leased.runDeadline),
    workPlanId: leased.workPlanId,
    stageId: leased.stageId,
    attemptIdx: leased.idx,
    args: leased.args,
    assignedCheckIds: leased.checks.map((c) => c.checkId),
    checkOptions: leased.checks.map((c) => ({ checkId: c.checkId, kind: c.kind, options: c.options })),
  };
}

/** `durable`: see unaryHandler. */
export function pullService(pull: PullService, log: Logger, durable: () => Promise<void>): TurboCIRunnerPullServer {
  const unary = unaryHandler(log, durable);
  return {
    lease: unary('Lease', async (req, { call }) => {
      const r = parseRequest(leaseRequest, req);
      const [first, ...more] = await pull.lease(r, { onCancel: (f) => call.once('cancelled', f) });
      return { attempt: first && toLeasedAttempt(first), moreAttempts: more.map(toLeasedAttempt) };
    }),
    heartbeat: unary('Heartbeat', (req) => {
      const hb = parseRequest(heartbeatRequest, req);
      const out = pull.heartbeat(hb.leaseToken, { lines: hb.logLines, message: hb.message, details: (hb.details ?? {}) as JsonObject });
      return { expiresAt: new Date(out.expiresAt), cancelRequested: out.cancelRequested };
    }),
    completeLease: unary('CompleteLease', (req) => {
      const { leaseToken, leaseNext } = parseRequest(completeRequest, req);
      const next = pull.complete(leaseToken, toCompletion(req), leaseNext ?? null);
      return { acknowledged: true, nextAttempts: next.map(toLeasedAttempt) };
    }),
  };
}
