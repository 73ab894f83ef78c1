// gRPC ↔ application mapping for TurboCIEventLog (extension): validate with zod, call, map the answer, map errors
// through errors.ts, log one line per call — the same shape as the orchestrator service.
import { readEventPage, readModelDigests, workPlanAt } from '../app/eventlog/queries.js';
import type { Orchestrator } from '../app/orchestrator.js';
import { queryNodes } from '../app/queries.js';
import { SCHEMA_VERSION, type RecordedEvent } from '../domain/events.js';
import { GetWorkPlanAtResponse, type LoggedEvent, type TurboCIEventLogServer } from '../gen/turboci/v1/eventlog.js';
import { resourceExhausted } from '../domain/errors.js';
import { bytesText } from '../domain/limits.js';
import { ANSWER_MAX_BYTES } from './orchestrator-service.js';
import type { Logger } from '../logging.js';
import { getReadModelDigestRequest, getWorkPlanAtRequest, pageToken, readEventsRequest } from './eventlog-validation.js';
import { checkToProto, stageToProto, workPlanToProto } from './to-proto.js';
import { unaryHandler } from './unary.js';
import type { Authenticator } from '../auth/authenticator.js';
import { requireWorkPlan } from './auth.js';
import { parseRequest } from './validation.js';

/** Data fields that are capabilities (an execution id lets its holder act as the runner): blanked unless revealed. */
const CAPABILITY_FIELDS = ['executionId', 'registrationId'];
/** What a hidden capability reads as (a valid id, so the event still decodes). */
export const HIDDEN = '(hidden)';

export function eventToProto(rec: RecordedEvent, revealCapabilities = false): LoggedEvent {
  let data = rec.event.data as Record<string, unknown>;
  if (!revealCapabilities && CAPABILITY_FIELDS.some((f) => typeof data[f] === 'string')) {
    data = { ...data };
    for (const f of CAPABILITY_FIELDS) if (typeof data[f] === 'string') data[f] = HIDDEN;
  }
  return {
    position: BigInt(rec.position),
    workPlanId: rec.streamId,
    version: BigInt(rec.version),
    type: rec.event.type,
    schemaVersion: SCHEMA_VERSION[rec.event.type],
    recordedAt: new Date(rec.recordedAt),
    requestId: rec.causation.requestId ?? '',
    causedByVersion: rec.causation.causedByVersion === null ? undefined : BigInt(rec.causation.causedByVersion),
    data,
    principal: rec.causation.principal ?? '',
    reason: rec.causation.reason ?? '',
  };
}

export function eventLogService(app: Orchestrator, log: Logger, auth?: Authenticator): TurboCIEventLogServer {
  const unary = unaryHandler(log, () => app.durable(), auth);

  return {
    readEvents: unary('ReadEvents', (req, { principal }) => {
      const q = parseRequest(readEventsRequest, req);
      requireWorkPlan(app, principal, 'eventlog.read', q.workPlanId);
      const page = readEventPage(app, q);
      return { events: page.events.map((e) => eventToProto(e, principal.admin)), nextPageToken: pageToken(page.next), workPlanVersion: BigInt(page.version) };
    }),
    getWorkPlanAt: unary('GetWorkPlanAt', async (req, { principal }) => {
      const q = parseRequest(getWorkPlanAtRequest, req);
      requireWorkPlan(app, principal, 'eventlog.read', q.workPlanId);
      const model = await workPlanAt(app, q.workPlanId, q);
      const page = queryNodes(model, ALL_NODES);
      const answer = {
        workPlan: workPlanToProto(model.meta),
        checks: page.checks.map((c) => checkToProto(q.workPlanId, c)),
        stages: page.stages.map((s) => stageToProto(q.workPlanId, s, principal.admin)),
      };
      // No paging in this answer: one a default client would refuse ("larger than max") is refused here, saying so.
      const bytes = GetWorkPlanAtResponse.encode(answer).finish().length;
      if (bytes > ANSWER_MAX_BYTES) {
        throw resourceExhausted(
          `the workplan at that version is ${bytesText(bytes)}, more than one answer may carry (${bytesText(ANSWER_MAX_BYTES)}); read its events with ReadEvents, or replay the log file (npx turboci replay --db)`,
        );
      }
      return answer;
    }),
    getReadModelDigest: unary('GetReadModelDigest', (req, { principal }) => {
      const q = parseRequest(getReadModelDigestRequest, req);
      if (q.workPlanIds.length === 0) principal.requireRealm('eventlog.read', undefined, '*');
      for (const id of q.workPlanIds) requireWorkPlan(app, principal, 'eventlog.read', id);
      return {
        digests: readModelDigests(app, q.workPlanIds).map((d) => ({
          workPlanId: d.workPlanId,
          version: BigInt(d.version),
          sha256: d.sha256,
          // The full state holds execution ids (capabilities): admins only when auth is on.
          stateJson: q.includeState && (principal.admin || !principal.authenticated) ? d.json : '',
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
