// gRPC ↔ application mapping for TurboCIOrchestrator: validate, call, map the answer, map errors, log one line.
import type { Orchestrator } from '../app/orchestrator.js';
import type { Logger } from '../logging.js';
import { TurboCIOrchestratorService, type TurboCIOrchestratorServer } from '../gen/turboci/v1/service.js';
import { RunnerService } from '../app/runner-service.js';
import { runnerHandlers } from './runner-handlers.js';
import { unaryHandler } from './unary.js';
import type { Authenticator } from '../auth/authenticator.js';
import { requestedRealm, requestedReason, requireRunnerTypesTargetable, requireWorkPlan } from './auth.js';
import { WatchService, type WatchCall } from './watch-service.js';
import { checkToProto, stageToProto, workPlanToProto } from './to-proto.js';
import {
  createWorkPlanRequest,
  parseRequest,
  queryNodesRequest,
  workPlanIdRequest,
  writeNodesRequest,
} from './validation.js';

/** The generated service, except that WatchWorkPlan writes messages the watch service has already encoded. */
export const ORCHESTRATOR_DEFINITION = {
  ...TurboCIOrchestratorService,
  watchWorkPlan: { ...TurboCIOrchestratorService.watchWorkPlan, responseSerialize: (bytes: Buffer): Buffer => bytes },
} as const;

export type OrchestratorServer = Omit<TurboCIOrchestratorServer, 'watchWorkPlan'> & { watchWorkPlan: (call: WatchCall) => void };

export function orchestratorService(
  app: Orchestrator,
  log: Logger,
  watch: WatchService = new WatchService(app, log),
  runners: RunnerService = new RunnerService(app),
  auth?: Authenticator,
): OrchestratorServer {
  const unary = unaryHandler(log, () => app.durable(), auth);

  return {
    createWorkPlan: unary('CreateWorkPlan', (req, { principal }) => {
      const { metadata } = parseRequest(createWorkPlanRequest, req);
      const realm = requestedRealm(req);
      principal.requireNewRealm('workplans.create', realm);
      return { workPlan: workPlanToProto(app.createWorkPlan(metadata, { realm, actor: principal.actor() })) };
    }),
    getWorkPlan: unary('GetWorkPlan', (req, { principal }) => {
      const { id } = parseRequest(workPlanIdRequest, req);
      requireWorkPlan(app, principal, 'workplans.read', id);
      return { workPlan: workPlanToProto(app.getWorkPlan(id)) };
    }),
    writeNodes: unary('WriteNodes', (req, { principal }) => {
      const input = parseRequest(writeNodesRequest, req);
      requireWorkPlan(app, principal, 'workplans.write', input.workPlanId);
      requireRunnerTypesTargetable(app, auth, input.workPlanId, input.stages);
      const out = app.writeNodes({ ...input, actor: principal.actor(requestedReason(req)) });
      const reveal = principal.admin;
      return {
        checks: out.checks.map((c) => checkToProto(out.workPlanId, c)),
        stages: out.stages.map((s) => stageToProto(out.workPlanId, s, reveal)),
        workPlanVersion: out.version,
      };
    }),
    queryNodes: unary('QueryNodes', (req, { principal }) => {
      const q = parseRequest(queryNodesRequest, req);
      requireWorkPlan(app, principal, 'workplans.read', q.workPlanId);
      const page = app.queryNodes(q.workPlanId, q);
      return {
        checks: page.checks.map((c) => checkToProto(q.workPlanId, c)),
        stages: page.stages.map((s) => stageToProto(q.workPlanId, s, principal.admin)),
        nextPageToken: page.nextPageToken,
        workPlanVersion: page.version,
      };
    }),
    ...runnerHandlers(runners, unary),
    watchWorkPlan: watch.handler,
  };
}
