// gRPC ↔ application mapping for TurboCIOrchestrator: validate, call, map the answer, map errors, log one line.
import type { Orchestrator, WriteNodesResult } from '../app/orchestrator.js';
import type { handleUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '../logging.js';
import { TurboCIOrchestratorService, WriteNodesResponse, type TurboCIOrchestratorServer, type WriteNodesRequest } from '../gen/turboci/v1/service.js';
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

/** A default gRPC client refuses messages over 4 MiB: answers (QueryNodes, WriteNodes, GetWorkPlanAt) stay 64 KiB under. */
export const ANSWER_MAX_BYTES = 4 * 1024 * 1024 - 64 * 1024;
/** A node's field tag and length prefix in the answer. */
const NODE_OVERHEAD = 8;

const preEncoded = (bytes: Buffer): Buffer => bytes;

/**
 * The generated service, except that the watch streams write messages the watch service has already encoded, and
 * WriteNodes answers it has encoded (once, to know their size: see writeNodesAnswer).
 */
export const ORCHESTRATOR_DEFINITION = {
  ...TurboCIOrchestratorService,
  writeNodes: { ...TurboCIOrchestratorService.writeNodes, responseSerialize: preEncoded },
  watchWorkPlan: { ...TurboCIOrchestratorService.watchWorkPlan, responseSerialize: preEncoded },
  watchWorkPlanBatched: { ...TurboCIOrchestratorService.watchWorkPlanBatched, responseSerialize: preEncoded },
} as const;

export type OrchestratorServer = Omit<TurboCIOrchestratorServer, 'writeNodes' | 'watchWorkPlan' | 'watchWorkPlanBatched'> & {
  writeNodes: handleUnaryCall<WriteNodesRequest, Buffer>;
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
      return writeNodesAnswer(out, input.omitNodes, principal.admin, log);
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
      const page = app.queryNodes(q.workPlanId, { ...q, budget: { maxBytes: ANSWER_MAX_BYTES, sizeOf } });
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

/**
 * The encoded WriteNodes answer. One whose nodes would pass what a default gRPC client accepts carries the version
 * only, with nodes_omitted, as one that asked for no nodes does: the write is committed, and a client that could not
 * read its answer would take a committed write for a failed one (and retry it).
 */
function writeNodesAnswer(out: WriteNodesResult, omitNodes: boolean, reveal: boolean, log: Logger): Buffer {
  const workPlanVersion = BigInt(out.version);
  if (!omitNodes) {
    const bytes = encoded({
      checks: out.checks.map((c) => checkToProto(out.workPlanId, c)),
      stages: out.stages.map((s) => stageToProto(out.workPlanId, s, reveal)),
      workPlanVersion,
      nodesOmitted: false,
    });
    if (bytes.length <= ANSWER_MAX_BYTES) return bytes;
    log.warn(
      { workPlanId: out.workPlanId, bytes: bytes.length, checks: out.checks.length, stages: out.stages.length },
      'WriteNodes answer too large for a default client: sent without its nodes',
    );
  }
  return encoded({ checks: [], stages: [], workPlanVersion, nodesOmitted: true });
}

const encoded = (answer: WriteNodesResponse): Buffer => {
  const bytes = WriteNodesResponse.encode(answer).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
};
