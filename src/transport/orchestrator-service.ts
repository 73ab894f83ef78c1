// gRPC ↔ application mapping for TurboCIOrchestrator: validate, call, map the answer, map errors, log one line.
import type { Orchestrator } from '../app/orchestrator.js';
import type { Logger } from '../logging.js';
import { TurboCIOrchestratorService, type TurboCIOrchestratorServer } from '../gen/turboci/v1/service.js';
import { RunnerService } from '../app/runner-service.js';
import { runnerHandlers } from './runner-handlers.js';
import { unaryHandler } from './unary.js';
import { WatchService, type WatchCall } from './watch-service.js';
import { checkToProto, stageToProto, workPlanToProto } from './to-proto.js';
import {
  createWorkPlanRequest,
  parseRequest,
  queryNodesRequest,
  workPlanIdRequest,
  writeNodesRequest,
} from './validation.js';

const preEncoded = (bytes: Buffer): Buffer => bytes;

/** The generated service, except that the watch streams write messages the watch service has already encoded. */
export const ORCHESTRATOR_DEFINITION = {
  ...TurboCIOrchestratorService,
  watchWorkPlan: { ...TurboCIOrchestratorService.watchWorkPlan, responseSerialize: preEncoded },
  watchWorkPlanBatched: { ...TurboCIOrchestratorService.watchWorkPlanBatched, responseSerialize: preEncoded },
} as const;

export type OrchestratorServer = Omit<TurboCIOrchestratorServer, 'watchWorkPlan' | 'watchWorkPlanBatched'> & {
  watchWorkPlan: (call: WatchCall) => void;
  watchWorkPlanBatched: (call: WatchCall) => void;
};

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
    ...runnerHandlers(runners, unary),
    watchWorkPlan: watch.handler,
    watchWorkPlanBatched: watch.batchedHandler,
  };
}
