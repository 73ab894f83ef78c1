// The wrapper every unary handler goes through: run, map errors in one place, log one line per call.
import { randomUUID } from 'node:crypto';
import { status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '../logging.js';
import { toServiceError } from './errors.js';

export type Handler<Req, Res> = (req: Req, ctx: { requestId: string }) => Res;

export const unaryHandler =
  (log: Logger) =>
  <Req, Res>(method: string, handle: Handler<Req, Res>) =>
  (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const started = process.hrtime.bigint();
    const req = call.request as Req & { workPlanId?: string; id?: string; requestId?: string; executionId?: string };
    const header = call.metadata.get('x-request-id')[0];
    const requestId = req.requestId || (typeof header === 'string' ? header : '') || randomUUID();
    const line = { method, workPlanId: req.workPlanId ?? req.id, executionId: req.executionId, requestId };
    const done = (code: status) => ({ ...line, code: status[code], durationMs: Number(process.hrtime.bigint() - started) / 1e6 });
    try {
      const res = handle(call.request, { requestId });
      log.info(done(status.OK), 'rpc');
      callback(null, res);
    } catch (err) {
      const { error, internal } = toServiceError(err);
      if (internal) log.error({ ...done(error.code), err: internal }, 'rpc failed');
      else log.info({ ...done(error.code), error: error.details }, 'rpc');
      callback(error);
    }
  };
