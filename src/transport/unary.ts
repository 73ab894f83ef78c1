// The wrapper every unary handler goes through: run, wait until what the call wrote (or read) is on disk, map
// errors in one place, log one line per call.
import { randomUUID } from 'node:crypto';
import { status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '../logging.js';
import { observeRpc } from '../metrics.js';
import { undecodable } from './decode.js';
import { toServiceError } from './errors.js';
import { ANONYMOUS, type Authenticator, type Principal } from '../auth/authenticator.js';

export interface CallContext<Req, Res> {
  readonly requestId: string;
  readonly call: ServerUnaryCall<Req, Res>;
  /** Who calls (the token's name and what it may do; `anonymous` with auth off), already checked for the RPC's permission. */
  readonly principal: Principal;
}

/** A handler may answer at once or later (a long poll). */
export type Handler<Req, Res> = (req: Req, ctx: CallContext<Req, Res>) => Res | Promise<Res>;

/**
 * `durable` resolves once every event appended so far is flushed to disk: no answer, not even an error or a read,
 * may tell a client about state that a crash could still take back (writes are group-committed). `auth`, when
 * given, authenticates every call and checks the permission its method needs before the handler runs.
 */
export const unaryHandler =
  (log: Logger, durable: () => Promise<void>, auth?: Authenticator) =>
  <Req, Res>(method: string, handle: Handler<Req, Res>) =>
  (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const logsCalls = log.isLevelEnabled('info');
    const started = process.hrtime.bigint();
    const req = call.request as Req & { workPlanId?: string; id?: string; requestId?: string; executionId?: string };
    const header = call.metadata.get('x-request-id')[0];
    const requestId = req.requestId || (typeof header === 'string' ? header : '') || randomUUID();
    const line: Record<string, unknown> = { method, workPlanId: req.workPlanId ?? req.id, executionId: req.executionId, requestId };
    const done = (code: status, full = logsCalls) => {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      observeRpc(method, status[code], durationMs / 1000);
      return full ? { ...line, code: status[code], durationMs } : line;
    };
    const fail = (err: unknown): Promise<void> => {
      const send = () => {
        const { error, internal } = toServiceError(err);
        if (internal) log.error({ ...done(error.code, true), err: internal }, 'rpc failed');
        else log.info({ ...done(error.code), error: error.details }, 'rpc');
        callback(error);
      };
      // A failed commit rolls the read models back to the log: the error can go out then too.
      return durable().then(send, send);
    };
    // The commit this answer waits for failed (disk full): the answer is withdrawn, the client gets the error.
    const answer = (res: Res): Promise<void> =>
      durable().then(() => {
        const fields = done(status.OK);
        // The line is built for nothing when info is off (benchmarks, --log-level warn).
        if (logsCalls) log.info(fields, 'rpc');
        callback(null, res);
      }, fail);
    try {
      const principal = auth ? auth.authorize(call.metadata, method) : ANONYMOUS;
      line.principal = principal.name;
      const res = handle(undecodable(call.request), { requestId, call, principal });
      if (res instanceof Promise) void res.then(answer, fail);
      else void answer(res);
    } catch (err) {
      void fail(err);
    }
  };
