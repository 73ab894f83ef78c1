// gRPC ↔ application mapping for turboci.v1.TurboCIRunnerPull: zod validation at the edge, errors mapped in one
// place (errors.ts), one log line per call. Lease is a long poll, so calls may answer asynchronously.
import { z } from 'zod';
import { MAX_LEASE_BATCH, type LeasedAttempt as Leased, type PullService } from '../app/pull-service.js';
import type { JsonObject } from '../domain/model.js';
import type { LeasedAttempt, TurboCIRunnerPullServer } from '../gen/turboci/v1/pull.js';
import type { Logger } from '../logging.js';
import { completionValues, toCompletion } from './runner-mapping.js';
import { unaryHandler } from './unary.js';
import { MAX_MESSAGE_BYTES } from '../domain/limits.js';
import { parseRequest, requiredId, stringMap, struct, text } from './validation.js';
import type { Authenticator } from '../auth/authenticator.js';

export const MAX_WAIT_MS = 60_000;
export const MAX_LINES = 500;
export const MAX_LINE_BYTES = 8 * 1024;

const leaseRequest = z.object({
  runnerId: requiredId('runner_id'),
  runnerType: requiredId('runner_type'),
  labels: stringMap,
  waitMs: z.number().int().min(0, 'must not be negative').max(MAX_WAIT_MS, `must be at most ${MAX_WAIT_MS}`),
  maxAttempts: z.number().int().min(0, 'must not be negative').max(MAX_LEASE_BATCH, `must be at most ${MAX_LEASE_BATCH}`),
});
const token = z.string().min(1, 'lease_token is required').max(512, 'not a lease token this server issued');
const heartbeatRequest = z.object({
  leaseToken: token,
  logLines: z.array(text(MAX_LINE_BYTES)).max(MAX_LINES, `at most ${MAX_LINES} lines per heartbeat`),
  message: text(MAX_MESSAGE_BYTES),
  details: struct,
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
export function pullService(pull: PullService, log: Logger, durable: () => Promise<void>, auth?: Authenticator): TurboCIRunnerPullServer {
  const unary = unaryHandler(log, durable, auth);
  return {
    lease: unary('Lease', async (req, { call, principal }) => {
      const r = parseRequest(leaseRequest, req);
      principal.requireRunnerType('runners.lease', r.runnerType);
      const [first, ...more] = await pull.lease(r, { onCancel: (f) => call.once('cancelled', f) }, principal.caller);
      return { attempt: first && toLeasedAttempt(first), moreAttempts: more.map(toLeasedAttempt) };
    }),
    heartbeat: unary('Heartbeat', (req, { principal }) => {
      const hb = parseRequest(heartbeatRequest, req);
      const out = pull.heartbeat(hb.leaseToken, { lines: hb.logLines, message: hb.message, details: (hb.details ?? {}) as JsonObject }, principal.caller);
      return { expiresAt: new Date(out.expiresAt), cancelRequested: out.cancelRequested };
    }),
    completeLease: unary('CompleteLease', (req, { principal }) => {
      const { leaseToken, leaseNext } = parseRequest(completeRequest, req);
      parseRequest(completionValues, req);
      if (leaseNext) principal.requireRunnerType('runners.lease', leaseNext.runnerType);
      const next = pull.complete(leaseToken, toCompletion(req), principal.caller, leaseNext ?? null);
      return { acknowledged: true, nextAttempts: next.map(toLeasedAttempt) };
    }),
  };
}
