// gRPC ↔ application mapping for the runner protocol RPCs of TurboCIOrchestrator.
import { z } from 'zod';
import type { RunnerService } from '../app/runner-service.js';
import type { ExecutionMode, JsonObject } from '../domain/model.js';
import { ExecutionMode as PbExecutionMode } from '../gen/turboci/v1/common.js';
import type { TurboCIOrchestratorServer } from '../gen/turboci/v1/service.js';
import { toCompletion } from './runner-mapping.js';
import type { unaryHandler } from './unary.js';
import { parseRequest } from './validation.js';
import { ID_PATTERN, ID_RULE } from '../domain/ids.js';

const requiredId = (field: string) =>
  z.string().min(1, `${field} is required`).regex(ID_PATTERN, ID_RULE);
const MODE: Record<number, ExecutionMode> = { [PbExecutionMode.EXECUTION_MODE_SYNC]: 'SYNC', [PbExecutionMode.EXECUTION_MODE_ASYNC]: 'ASYNC' };

const registerRequest = z.object({
  runnerId: requiredId('runner_id'),
  runnerType: requiredId('runner_type'),
  address: z.string().min(1, 'address is required').max(1024, 'must be at most 1024 characters'),
  supportedModes: z.array(
    z.number().transform((n, ctx) => {
      const m = MODE[n];
      if (!m) ctx.addIssue({ code: 'custom', message: `unknown execution mode ${n}` });
      return m as ExecutionMode;
    }),
  ),
  maxConcurrent: z.number().int(),
  ttlSeconds: z.number().int(),
  metadata: z.record(z.string(), z.string()),
  registrationId: z.union([z.literal(''), z.string().regex(ID_PATTERN, ID_RULE)]).optional().transform((r) => r || undefined),
});
const executionId = z.object({ executionId: requiredId('execution_id') });
const updateRequest = executionId.extend({
  message: z.string().max(64 * 1024, 'must be at most 64 KiB'),
  progressPercent: z.number().int().min(0, 'must be 0-100').max(100, 'must be 0-100'),
  details: z.record(z.string(), z.unknown()).optional(),
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
      runners.complete(id, toCompletion(req), principal.caller);
      return { acknowledged: true };
    }),
  };
}
