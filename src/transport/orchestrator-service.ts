// gRPC ↔ application mapping for TurboCIOrchestrator: validate, call, map the answer, map errors, log one line.
import type { Orchestrator } from '../app/orchestrator.js';
import type { Logger } from '../logging.js';
import { TurboCIOrchestratorService, type TurboCIOrchestratorServer } from '../gen/turboci/v1/service.js';
import { RunnerService } from '../app/runner-service.js';
import { runnerHandlers } from './runner-handlers.js';
import { unaryHandler } from './unary.js';
import { WatchService, type WatchCall } from './watch-service.js';
import { checkToProto, stageToProto, workPlanToProto } from './to-proto.js';
import { Check } from '../gen/turboci/v1/check.js';
import { Stage } from '../gen/turboci/v1/stage.js';
import type { Check as DomainCheck, Stage as DomainStage } from '../domain/model.js';
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

/** A default gRPC client refuses messages over 4 MiB: a QueryNodes answer stays 64 KiB under that. */
export const QUERY_ANSWER_BYTES = 4 * 1024 * 1024 - 64 * 1024;
/** A node's field tag and length prefix in the answer. */
const NODE_OVERHEAD = 8;

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
        workPlanVersion: BigInt(out.version),
      };
    }),
    queryNodes: unary('QueryNodes', (req) => {
      const q = parseRequest(queryNodesRequest, req);
      // Pages end before the answer passes what a default client accepts: each node is mapped (and measured) once.
      const mapped = new Map<object, Check | Stage>();
      const sizeOf = (node: DomainCheck | DomainStage, kind: 'check' | 'stage'): number => {
        if (kind === 'check') {
          const m = checkToProto(q.workPlanId, node as DomainCheck);
          mapped.set(node, m);
          return Check.encode(m).finish().length + NODE_OVERHEAD;
        }
        const m = stageToProto(q.workPlanId, node as DomainStage);
        mapped.set(node, m);
        return Stage.encode(m).finish().length + NODE_OVERHEAD;
      };
      const page = app.queryNodes(q.workPlanId, { ...q, budget: { maxBytes: QUERY_ANSWER_BYTES, sizeOf } });
      return {
        checks: page.checks.map((c) => (mapped.get(c) as Check | undefined) ?? checkToProto(q.workPlanId, c)),
        stages: page.stages.map((s) => (mapped.get(s) as Stage | undefined) ?? stageToProto(q.workPlanId, s)),
        nextPageToken: page.nextPageToken,
        workPlanVersion: BigInt(page.version),
      };
    }),
    approve: unary('Approve', (req, ctx) => {
      const input = parseRequest(approveRequest, req);
      const out = approve(app, { ...input, principal: principalOf(ctx.call) });
      return { check: checkToProto(input.workPlanId, out.check), workPlanVersion: out.version };
    }),
    ...runnerHandlers(runners, unary),
    watchWorkPlan: watch.handler,
    watchWorkPlanBatched: watch.batchedHandler,
  };
}
