// gRPC ↔ application mapping for turboci.v1.TurboCIRunnerPull: zod validation at the edge, errors mapped in one
// place (errors.ts), one log line per call. Lease is a long poll, so calls may answer asynchronously; Work is a
// stream (work-stream.ts).
import type { PullService } from '../app/pull-service.js';
import type { JsonObject } from '../domain/model.js';
import type { TurboCIRunnerPullServer } from '../gen/turboci/v1/pull.js';
import type { Logger } from '../logging.js';
import { observeWorkStreams } from '../metrics.js';
import { completeRequest, heartbeatRequest, leaseRequest, toLeasedAttempt } from './pull-mapping.js';
import { completionValues, toCompletion } from './runner-mapping.js';
import { unaryHandler } from './unary.js';
import { workHandler } from './work-stream.js';
import { parseRequest } from './validation.js';
import type { Authenticator } from '../auth/authenticator.js';

/** `durable`: see unaryHandler. */
export function pullService(pull: PullService, log: Logger, durable: () => Promise<void>, auth?: Authenticator): TurboCIRunnerPullServer {
  const unary = unaryHandler(log, durable, auth);
  observeWorkStreams(() => pull.workStreams());
  return {
    lease: unary('Lease', async (req, { call, principal }) => {
      const r = parseRequest(leaseRequest, req);
      principal.requireRunnerType('runners.lease', r.runnerType);
      const [first, ...more] = await pull.lease(r, { onCancel: (f) => call.once('cancelled', f) }, principal.caller);
      return { attempt: first && toLeasedAttempt(first), moreAttempts: more.map(toLeasedAttempt) };
    }),
    heartbeat: unary('Heartbeat', (req, { principal }) => {
      const hb = parseRequest(heartbeatRequest, req);
      const out = pull.heartbeat(hb.leaseToken, { lines: hb.logLines, message: hb.message, details: (hb.details ?? {}) as JsonObject }, principal.caller);
      return { expiresAt: new Date(out.expiresAt), cancelRequested: out.cancelRequested };
    }),
    completeLease: unary('CompleteLease', (req, { principal }) => {
      const { leaseToken, leaseNext } = parseRequest(completeRequest, req);
      parseRequest(completionValues, req);
      if (leaseNext) principal.requireRunnerType('runners.lease', leaseNext.runnerType);
      const next = pull.complete(leaseToken, toCompletion(req), principal.caller, leaseNext ?? null);
      return { acknowledged: true, nextAttempts: next.map(toLeasedAttempt) };
    }),
    work: workHandler(pull, log, durable, auth),
  };
}
