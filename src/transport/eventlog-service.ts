// gRPC ↔ application mapping for TurboCIEventLog (extension): validate with zod, call, map the answer, map errors
// through errors.ts, log one line per call — the same shape as the orchestrator service.
import { readEventPage, readModelDigests, workPlanAt } from '../app/eventlog/queries.js';
import type { Orchestrator } from '../app/orchestrator.js';
import { queryNodes } from '../app/queries.js';
import { SCHEMA_VERSION, type RecordedEvent } from '../domain/events.js';
import type { LoggedEvent, TurboCIEventLogServer } from '../gen/turboci/v1/eventlog.js';
import type { Logger } from '../logging.js';
import { getReadModelDigestRequest, getWorkPlanAtRequest, pageToken, readEventsRequest } from './eventlog-validation.js';
import { checkToProto, stageToProto, workPlanToProto } from './to-proto.js';
import { unaryHandler } from './unary.js';
import { parseRequest } from './validation.js';

export function eventToProto(rec: RecordedEvent): LoggedEvent {
  return {
    position: rec.position,
    workPlanId: rec.streamId,
    version: rec.version,
    type: rec.event.type,
    schemaVersion: SCHEMA_VERSION[rec.event.type],
    recordedAt: new Date(rec.recordedAt),
    requestId: rec.causation.requestId ?? '',
    causedByVersion: rec.causation.causedByVersion ?? undefined,
    data: rec.event.data as Record<string, unknown>,
    principal: rec.causation.principal ?? '',
    reason: rec.causation.reason ?? '',
  };
}

export function eventLogService(app: Orchestrator, log: Logger): TurboCIEventLogServer {
  const unary = unaryHandler(log, () => app.durable());

  return {
    readEvents: unary('ReadEvents', (req) => {
      const q = parseRequest(readEventsRequest, req);
      const page = readEventPage(app, q);
      return { events: page.events.map(eventToProto), nextPageToken: pageToken(page.next), workPlanVersion: page.version };
    }),
    getWorkPlanAt: unary('GetWorkPlanAt', async (req) => {
      const q = parseRequest(getWorkPlanAtRequest, req);
      const model = await workPlanAt(app, q.workPlanId, q);
      const page = queryNodes(model, ALL_NODES);
      return {
        workPlan: workPlanToProto(model.meta),
        checks: page.checks.map((c) => checkToProto(q.workPlanId, c)),
        stages: page.stages.map((s) => stageToProto(q.workPlanId, s)),
      };
    }),
    getReadModelDigest: unary('GetReadModelDigest', (req) => {
      const q = parseRequest(getReadModelDigestRequest, req);
      return {
        digests: readModelDigests(app, q.workPlanIds).map((d) => ({
          workPlanId: d.workPlanId,
          version: d.version,
          sha256: d.sha256,
          stateJson: q.includeState ? d.json : '',
        })),
      };
    }),
  };
}

export const ALL_NODES = {
  checkIds: [],
  stageIds: [],
  checkStates: [],
  stageStates: [],
  includeChecks: false,
  includeStages: false,
  pageSize: 0,
  pageToken: '',
} as const;
