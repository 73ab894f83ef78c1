// gRPC ↔ application mapping for TurboCIOrchestrator: validate, call, map the answer, map errors, log one line.
import type { Orchestrator } from '../app/orchestrator.js';
import type { Logger } from '../logging.js';
import { TurboCIOrchestratorService, type TurboCIOrchestratorServer } from '../gen/turboci/v1/service.js';
import { RunnerService } from '../app/runner-service.js';
import { runnerHandlers } from './runner-handlers.js';
import { unaryHandler } from './unary.js';
import { WatchService, type WatchCall } from './watch-service.js';
import { checkToProto, stageToProto, workPlanToProto } from './to-proto.js';
import { approve } from '../app/approvals.js';
import { principalOf } from './request-context.js';
import {
  approveRequest,
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
): OrchestratorServer {
  const unary = unaryHandler(log, () => app.durable());

  return {
    createWorkPlan: unary('CreateWorkPlan', (req) => {
      const { metadata } = parseRequest(createWorkPlanRequest, req);
      return { workPlan: workPlanToProto(app.createWorkPlan(metadata)) };
    }),
    getWorkPlan: unary('GetWorkPlan', (req) => {
      const { id } = parseRequest(workPlanIdRequest, req);
      return { workPlan: workPlanToProto(app.getWorkPlan(id)) };
    }),
    writeNodes: unary('WriteNodes', (req) => {
      const input = parseRequest(writeNodesRequest, req);
      const out = app.writeNodes(input);
      return {
        checks: out.checks.map((c) => checkToProto(out.workPlanId, c)),
        stages: out.stages.map((s) => stageToProto(out.workPlanId, s)),
        workPlanVersion: out.version,
      };
    }),
    queryNodes: unary('QueryNodes', (req) => {
      const q = parseRequest(queryNodesRequest, req);
      const page = app.queryNodes(q.workPlanId, q);
      return {
        checks: page.checks.map((c) => checkToProto(q.workPlanId, c)),
        stages: page.stages.map((s) => stageToProto(q.workPlanId, s)),
        nextPageToken: page.nextPageToken,
        workPlanVersion: page.version,
      };
    }),
    approve: unary('Approve', (req, ctx) => {
      const input = parseRequest(approveRequest, req);
      const out = approve(app, { ...input, principal: principalOf(ctx.call) });
      return { check: checkToProto(input.workPlanId, out.check), workPlanVersion: out.version };
    }),
    ...runnerHandlers(runners, unary),
    watchWorkPlan: watch.handler,
  };
}
