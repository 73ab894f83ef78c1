// gRPC ↔ application mapping for the runner protocol RPCs of TurboCIOrchestrator.
import { z } from 'zod';
import type { RunnerService } from '../app/runner-service.js';
import type { ExecutionMode, JsonObject } from '../domain/model.js';
import { ExecutionMode as PbExecutionMode } from '../gen/turboci/v1/common.js';
import type { TurboCIOrchestratorServer } from '../gen/turboci/v1/service.js';
import { completionValues, toCompletion } from './runner-mapping.js';
import type { unaryHandler } from './unary.js';
import { limits, MAX_MESSAGE_BYTES } from '../domain/limits.js';
import { parseRequest, requiredId, stringMap, struct, text } from './validation.js';

const MODE: Record<number, ExecutionMode> = { [PbExecutionMode.EXECUTION_MODE_SYNC]: 'SYNC', [PbExecutionMode.EXECUTION_MODE_ASYNC]: 'ASYNC' };

const registerRequest = z.object({
  runnerId: requiredId('runner_id'),
  runnerType: requiredId('runner_type'),
  address: text(1024).refine((a) => a.length > 0, 'address is required'),
  supportedModes: z.array(
    z.number().transform((n, ctx) => {
      const m = MODE[n];
      if (!m) ctx.addIssue({ code: 'custom', message: `unknown execution mode ${n}` });
      return m as ExecutionMode;
    }),
  ),
  maxConcurrent: z.number().int().max(1_000_000, 'must be at most 1000000'),
  ttlSeconds: z.bigint().transform((n, ctx) => {
    const max = limits().maxTtlSeconds;
    // <= 0 means the default (300 s); past the limit is refused, not clamped: the runner would heartbeat too seldom.
    if (n > BigInt(max)) ctx.addIssue({ code: 'custom', message: `${n.toString().slice(0, 40)} is more than ${max} seconds (--max-ttl); heartbeat more often instead` });
    return n <= 0n ? 0 : Number(n);
  }),
  metadata: stringMap,
  registrationId: z.union([z.literal(''), requiredId('registration_id')]).optional().transform((r) => r || undefined),
});
const executionId = z.object({ executionId: requiredId('execution_id') });
const updateRequest = executionId.extend({
  message: text(MAX_MESSAGE_BYTES),
  progressPercent: z.number().int().min(0, 'must be 0-100').max(100, 'must be 0-100'),
  details: struct,
});

const pbModes = (modes: readonly ExecutionMode[]) =>
  modes.map((m) => (m === 'ASYNC' ? PbExecutionMode.EXECUTION_MODE_ASYNC : PbExecutionMode.EXECUTION_MODE_SYNC));

type RunnerRpcs = Pick<
  TurboCIOrchestratorServer,
  'registerStageRunner' | 'unregisterStageRunner' | 'listStageRunners' | 'updateStageExecution' | 'completeStageExecution'
>;

export function runnerHandlers(runners: RunnerService, unary: ReturnType<typeof unaryHandler>): RunnerRpcs {
  return {
    registerStageRunner: unary('RegisterStageRunner', (req, { principal }) => {
      const cmd = parseRequest(registerRequest, req);
      principal.requireRunnerType('runners.register', cmd.runnerType);
      const reg = runners.register(cmd, principal.caller);
      return { registrationId: reg.registrationId, expiresAt: new Date(reg.expiresAt) };
    }),
    unregisterStageRunner: unary('UnregisterStageRunner', (req, { principal }) => {
      runners.unregister(parseRequest(z.object({ registrationId: requiredId('registration_id') }), req).registrationId, principal.caller);
      return {};
    }),
    // Registration ids are capabilities (they unregister, and prove identity when auth is off): shown only to the
    // token that registered the runner, or an admin; blank for everyone else (and for everyone with auth off).
    listStageRunners: unary('ListStageRunners', (req, { principal }) => ({
      runners: runners.list(req.runnerType).map((r) => ({
        runnerId: r.runnerId,
        registrationId: runners.mayUse(r.registrationId, principal.caller) ? r.registrationId : '',
        runnerType: r.runnerType,
        address: r.address,
        supportedModes: pbModes(r.supportedModes),
        maxConcurrent: r.maxConcurrent,
        currentLoad: r.currentLoad,
        registeredAt: new Date(r.registeredAt),
        lastHeartbeat: new Date(r.lastHeartbeat),
        expiresAt: new Date(r.expiresAt),
        metadata: { ...r.metadata },
      })),
    })),
    updateStageExecution: unary('UpdateStageExecution', (req, { principal }) => {
      const u = parseRequest(updateRequest, req);
      runners.update(u.executionId, { message: u.message, progressPercent: u.progressPercent, details: (u.details ?? {}) as JsonObject }, principal.caller);
      return {};
    }),
    completeStageExecution: unary('CompleteStageExecution', (req, { principal }) => {
      const { executionId: id } = parseRequest(executionId, req);
      parseRequest(completionValues, req);
      runners.complete(id, toCompletion(req), principal.caller);
      return { acknowledged: true };
    }),
  };
}
