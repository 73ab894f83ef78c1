// TurboCIRunnerPull.Work over gRPC: one long-lived bidi stream per pull agent carrying its completions in and its
// leases out (see pull.proto). What comes in is validated like the unary calls; what goes out waits until the commit
// that records it is durable, and goes out in order. A bad completion is answered on the stream (its `completed`
// carries the status); a broken protocol (no open first, bad credit) ends the stream with INVALID_ARGUMENT.
import { randomUUID } from 'node:crypto';
import { Metadata, status, type ServerDuplexStream } from '@grpc/grpc-js';
import { z } from 'zod';
import { MAX_WORK_CREDIT, type LeasedAttempt, type PullService, type WorkSession } from '../app/pull-service.js';
import type { Authenticator, Principal } from '../auth/authenticator.js';
import { ANONYMOUS } from '../auth/authenticator.js';
import { invalidArgument } from '../domain/errors.js';
import type { WorkRequest, WorkResponse } from '../gen/turboci/v1/pull.js';
import type { Logger } from '../logging.js';
import { observeRpc } from '../metrics.js';
import { isUndecodable, undecodable } from './decode.js';
import { statusText, toServiceError } from './errors.js';
import { completeRequest, toLeasedAttempt } from './pull-mapping.js';
import { completionValues, toCompletion } from './runner-mapping.js';
import { parseRequest, requiredId, stringMap } from './validation.js';

export type WorkCall = ServerDuplexStream<WorkRequest, WorkResponse>;

const credit = z.number().int().min(0, 'must not be negative').max(MAX_WORK_CREDIT, `must be at most ${MAX_WORK_CREDIT}`);
const openMessage = z.object({
  open: z.object({ runnerId: requiredId('runner_id'), runnerType: requiredId('runner_type'), labels: stringMap, credit }),
});
// One parse checks the token, the lease_next rule and the values a completion carries.
const completeMessage = z.object({
  complete: z.object({
    completion: completeRequest.extend(completionValues.shape).refine((c) => c.leaseNext === undefined, {
      message: 'must be unset on a Work stream (the completion gives back credit instead)',
      path: ['leaseNext'],
    }),
    credit,
  }),
});
const addCreditMessage = z.object({ addCredit: credit.min(1, 'must be at least 1') });

/** Messages waiting for their commit to be durable; written in order, each batch once its own wait is over. */
class Outbox {
  private readonly batches: { readonly messages: WorkResponse[]; ready: boolean }[] = [];
  private open: WorkResponse[] | null = null;
  private readonly emptied: (() => void)[] = [];

  constructor(
    private readonly durable: () => Promise<void>,
    private readonly write: (message: WorkResponse) => void,
    private readonly failed: (err: unknown) => void,
  ) {}

  /** Queues a message; everything queued in this turn waits for one durable() taken at the end of the turn's work. */
  push(message: WorkResponse): void {
    if (this.open) {
      this.open.push(message);
      return;
    }
    const batch = { messages: [message], ready: false };
    this.open = batch.messages;
    this.batches.push(batch);
    // After the synchronous work that queued it (and may queue more, with more appends) is done.
    queueMicrotask(() => {
      this.open = null;
      this.durable().then(() => {
        batch.ready = true;
        this.flush();
      }, this.failed);
    });
  }

  /** Runs fn once every message queued so far is written. */
  whenEmpty(fn: () => void): void {
    if (this.batches.length === 0) fn();
    else this.emptied.push(fn);
  }

  private flush(): void {
    while (this.batches.length > 0 && this.batches[0]!.ready) {
      for (const m of this.batches.shift()!.messages) this.write(m);
    }
    if (this.batches.length === 0) for (const fn of this.emptied.splice(0)) fn();
  }
}

/** The Work handler. `durable`: see unaryHandler. */
export function workHandler(pull: PullService, log: Logger, durable: () => Promise<void>, auth?: Authenticator) {
  return (call: WorkCall): void => {
    const started = process.hrtime.bigint();
    const line: Record<string, unknown> = { method: 'Work', requestId: randomUUID() };
    let principal: Principal = ANONYMOUS;
    let session: WorkSession | null = null;
    let finished = false;
    /** An error ends the stream once what is queued is written; nothing more is read or leased meanwhile. */
    let failing = false;
    let leases = 0;
    let completions = 0;

    const finish = (code: status, details?: string): boolean => {
      if (finished) return false;
      finished = true;
      session?.close();
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      observeRpc('Work', status[code], durationMs / 1000);
      log.info({ ...line, code: status[code], durationMs, leases, completions, ...(details ? { error: details } : {}) }, 'rpc');
      return true;
    };
    const endWith = (code: status, details: string) => {
      if (!finish(code, details)) return;
      call.emit('error', { code, details: statusText(details), message: details, metadata: new Metadata() });
    };
    /** Ends the stream with an error status, after the messages already queued. */
    const fail = (err: unknown) => {
      if (failing) return;
      failing = true;
      session?.close();
      const { error, internal } = toServiceError(err);
      if (internal) log.error({ ...line, err: internal }, 'work stream failed');
      outbox.whenEmpty(() => endWith(error.code, error.details));
    };
    const outbox = new Outbox(
      durable,
      (m) => {
        if (!finished) call.write(m);
      },
      // The commit these messages record failed: they are withdrawn, and the agent reconnects.
      (err) => {
        const { error } = toServiceError(err);
        endWith(error.code, error.details);
      },
    );
    const deliver = (leased: LeasedAttempt[]) => {
      leases += leased.length;
      for (const l of leased) outbox.push({ leased: toLeasedAttempt(l), completed: undefined });
    };
    const stopped = () => outbox.whenEmpty(() => endWith(status.UNAVAILABLE, 'the server is shutting down'));

    const onMessage = (raw: WorkRequest): void => {
      if (isUndecodable(raw)) undecodable(raw);
      const msg = raw;
      if (msg.open) {
        if (session) throw invalidArgument('only the first message may be open', 'open');
        const { open } = parseRequest(openMessage, msg);
        principal.requireRunnerType('runners.lease', open.runnerType);
        Object.assign(line, { runnerId: open.runnerId, runnerType: open.runnerType });
        session = pull.openWork({ runnerId: open.runnerId, runnerType: open.runnerType, labels: open.labels }, principal.caller, deliver, stopped);
        if (open.credit > 0) session.addCredit(open.credit);
        return;
      }
      if (!session) throw invalidArgument('the first message must be open', 'open');
      if (msg.complete) {
        const seq = msg.complete.seq;
        completions++;
        let answer: WorkResponse;
        try {
          const { complete } = parseRequest(completeMessage, msg);
          session.complete(complete.completion.leaseToken, toCompletion(msg.complete.completion!));
          answer = { leased: undefined, completed: { seq, code: status.OK, message: '' } };
        } catch (err) {
          const { error, internal } = toServiceError(err);
          if (internal) log.error({ ...line, seq: String(seq), err: internal }, 'work completion failed');
          else log.info({ ...line, seq: String(seq), code: status[error.code], error: error.details }, 'work completion refused');
          answer = { leased: undefined, completed: { seq, code: error.code, message: error.details } };
        }
        outbox.push(answer);
        // Applied or refused, the agent's slot is free: its credit comes back, and the next lease into it shares the
        // completion's group commit.
        const back = credit.safeParse(msg.complete.credit);
        if (back.success && back.data > 0) session.addCredit(back.data);
        return;
      }
      if (msg.addCredit !== undefined) {
        session.addCredit(parseRequest(addCreditMessage, msg).addCredit);
        return;
      }
      if (msg.drain) {
        session.drain();
        return;
      }
      throw invalidArgument('one of open, complete, add_credit or drain must be set', 'kind');
    };

    try {
      if (auth) principal = auth.authorize(call.metadata, 'Work');
      line.principal = principal.name;
    } catch (err) {
      fail(err);
      return;
    }
    call.on('data', (msg: WorkRequest) => {
      if (finished || failing) return;
      try {
        onMessage(msg);
      } catch (err) {
        fail(err);
      }
    });
    // The agent half-closed: answer what is queued, then end with OK.
    call.on('end', () => {
      session?.close();
      outbox.whenEmpty(() => {
        if (finish(status.OK)) call.end();
      });
    });
    call.on('cancelled', () => finish(status.CANCELLED));
    call.on('error', () => finish(status.CANCELLED));
  };
}
