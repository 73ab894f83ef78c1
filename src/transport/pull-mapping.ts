// The pull protocol's messages at the edge: zod schemas of what agents send, and leased attempts as the wire has
// them (shared by the unary calls and the Work stream).
import { z } from 'zod';
import { MAX_LEASE_BATCH, type LeasedAttempt as Leased } from '../app/pull-service.js';
import type { LeasedAttempt } from '../gen/turboci/v1/pull.js';
import { MAX_MESSAGE_BYTES } from '../domain/limits.js';
import { requiredId, stringMap, struct, text } from './validation.js';

export const MAX_WAIT_MS = 60_000;
export const MAX_LINES = 500;
export const MAX_LINE_BYTES = 8 * 1024;

export const leaseRequest = z.object({
  runnerId: requiredId('runner_id'),
  runnerType: requiredId('runner_type'),
  labels: stringMap,
  waitMs: z.number().int().min(0, 'must not be negative').max(MAX_WAIT_MS, `must be at most ${MAX_WAIT_MS}`),
  maxAttempts: z.number().int().min(0, 'must not be negative').max(MAX_LEASE_BATCH, `must be at most ${MAX_LEASE_BATCH}`),
});
const token = z.string().min(1, 'lease_token is required').max(512, 'not a lease token this server issued');
export const heartbeatRequest = z.object({
  leaseToken: token,
  logLines: z.array(text(MAX_LINE_BYTES)).max(MAX_LINES, `at most ${MAX_LINES} lines per heartbeat`),
  message: text(MAX_MESSAGE_BYTES),
  details: struct,
});
export const completeRequest = z.object({ leaseToken: token, leaseNext: leaseRequest.optional() });

/** A leased attempt as the wire has it. */
export function toLeasedAttempt(leased: Leased): LeasedAttempt {
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

