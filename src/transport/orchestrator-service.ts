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
import { Check } from '../gen/turboci/v1/check.js';
import { Stage } from '../gen/turboci/v1/stage.js';
import type { Check as DomainCheck, Stage as DomainStage } from '../domain/model.js';
import { approve } from '../app/approvals.js';
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
        workPlanVersion: BigInt(out.version),
      };
    }),
    queryNodes: unary('QueryNodes', (req, { principal }) => {
      const q = parseRequest(queryNodesRequest, req);
      requireWorkPlan(app, principal, 'workplans.read', q.workPlanId);
      // Pages end before the answer passes what a default client accepts: each node is mapped (and measured) once.
      const mapped = new Map<object, Check | Stage>();
      const sizeOf = (node: DomainCheck | DomainStage, kind: 'check' | 'stage'): number => {
        if (kind === 'check') {
          const m = checkToProto(q.workPlanId, node as DomainCheck);
          mapped.set(node, m);
          return Check.encode(m).finish().length + NODE_OVERHEAD;
        }
        const m = stageToProto(q.workPlanId, node as DomainStage, principal.admin);
        mapped.set(node, m);
        return Stage.encode(m).finish().length + NODE_OVERHEAD;
      };
      const page = app.queryNodes(q.workPlanId, { ...q, budget: { maxBytes: QUERY_ANSWER_BYTES, sizeOf } });
      return {
        checks: page.checks.map((c) => (mapped.get(c) as Check | undefined) ?? checkToProto(q.workPlanId, c)),
        stages: page.stages.map((s) => (mapped.get(s) as Stage | undefined) ?? stageToProto(q.workPlanId, s, principal.admin)),
        nextPageToken: page.nextPageToken,
        workPlanVersion: BigInt(page.version),
      };
    }),
    approve: unary('Approve', (req, { principal }) => {
      const input = parseRequest(approveRequest, req);
      requireWorkPlan(app, principal, 'workplans.approve', input.workPlanId);
      const out = approve(app, { ...input, principal: principal.name }, principal.actor(input.comment || null));
      return { check: checkToProto(input.workPlanId, out.check), workPlanVersion: BigInt(out.version) };
    }),
    ...runnerHandlers(runners, unary),
    watchWorkPlan: watch.handler,
    watchWorkPlanBatched: watch.batchedHandler,
  };
}
