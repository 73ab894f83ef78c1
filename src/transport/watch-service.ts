// WatchWorkPlan over gRPC: validate, open a subscription, pump its items into the call respecting flow control
// (call.write() returning false means wait for 'drain'), and end it cleanly whoever ends it: the client (cancel,
// deadline, disconnect), the server (slow consumer, shutdown) or a bug. Every subscription opened and closed is
// logged with the live count ("subscriptions"), which is how tests and operators see that none leaks.
import { randomUUID } from 'node:crypto';
import { Metadata, status, type ServerWritableStream } from '@grpc/grpc-js';
import { DEFAULT_WATCH_BUFFER, WatchHub, type WatchEnd, type WatchSubscription } from '../app/watch.js';
import type { Orchestrator } from '../app/orchestrator.js';
import type { WatchWorkPlanRequest } from '../gen/turboci/v1/service.js';
import type { Logger } from '../logging.js';
import { observeRpc, observeWatches } from '../metrics.js';
import { invalidArgument } from '../domain/errors.js';
import { statusText, toServiceError } from './errors.js';
import { undecodable } from './decode.js';
import { parseRequest } from './validation.js';
import { batchEvents, batchFrame, liveRangeFrame, watchItemToBytes } from './watch-to-proto.js';
import { watchWorkPlanRequest } from './watch-validation.js';
import { PumpScheduler } from './pump-scheduler.js';

export interface WatchServiceOptions {
  /** Authenticates and authorizes a call before it opens (throws a DomainError: UNAUTHENTICATED, PERMISSION_DENIED). */
  readonly authorize?: (call: WatchCall) => void;
  /** Live events a subscriber may have waiting before it gets RESOURCE_EXHAUSTED (default 10000). */
  readonly bufferSize?: number;
}

/** Messages are written pre-encoded (see watchItemToBytes and ORCHESTRATOR_DEFINITION). */
export type WatchCall = ServerWritableStream<WatchWorkPlanRequest, Buffer>;

/** The most events WatchWorkPlanBatched puts in one message. */
export const MAX_BATCH_EVENTS = 512;
/**
 * No more events are added to a batch once it holds this many bytes: clients refuse messages over 4 MiB by default
 * (grpc-js, grpc-go, grpc-java), and one event can carry a check with 256 KiB of options and as much of result data.
 */
export const MAX_BATCH_BYTES = 1024 * 1024;

const END_CODE: Record<WatchEnd['reason'], status> = {
  overflow: status.RESOURCE_EXHAUSTED,
  shutdown: status.UNAVAILABLE,
  internal: status.INTERNAL,
};

export class WatchService {
  readonly hub: WatchHub;

  private readonly authorize: (call: WatchCall) => void;
  /** When each stream's pump runs: one setImmediate for all woken together, one timer per coalescing window. */
  private readonly pumps = new PumpScheduler();

  constructor(
    private readonly app: Orchestrator,
    private readonly log: Logger,
    options: WatchServiceOptions = {},
  ) {
    this.authorize = options.authorize ?? (() => {});
    this.hub = new WatchHub(app, {
      bufferSize: options.bufferSize ?? DEFAULT_WATCH_BUFFER,
      onOpen: (sub, subscriptions) =>
        log.info({ watchId: sub.id, workPlanId: sub.workPlanId, afterVersion: sub.afterVersion ?? null, subscriptions }, 'watch subscription opened'),
      onClose: (sub, reason, subscriptions) =>
        log.info(
          { watchId: sub.id, workPlanId: sub.workPlanId, reason, lastVersion: sub.lastVersionSent, events: sub.count, subscriptions },
          'watch subscription closed',
        ),
      onError: (err, workPlanId) => log.error({ err, workPlanId }, 'watch projection failed; its subscriptions were ended'),
    });
    observeWatches('grpc', () => ({ subscriptions: this.hub.subscriptionCount, queued: this.hub.queuedCount }));
  }

  get subscriptionCount(): number {
    return this.hub.subscriptionCount;
  }

  /** Server shutdown: ends every stream with UNAVAILABLE, telling each client where to resume. */
  shutdown(): void {
    this.hub.closeAll({ reason: 'shutdown', message: 'server shutting down' });
  }

  /** WatchWorkPlan: one message per event. */
  readonly handler = (call: WatchCall): void => this.serve(call, false);

  /**
   * WatchWorkPlanBatched: the same events, as many as are waiting (up to MAX_BATCH_EVENTS) in each message; with
   * max_batch_delay_ms, at most one pump (so usually one message) per that many ms.
   */
  readonly batchedHandler = (call: WatchCall): void => this.serve(call, true);

  private serve(call: WatchCall, batched: boolean): void {
    const started = process.hrtime.bigint();
    const header = call.metadata.get('x-request-id')[0];
    const requestId = (typeof header === 'string' && header) || randomUUID();
    const line = { method: batched ? 'WatchWorkPlanBatched' : 'WatchWorkPlan', workPlanId: call.request.workPlanId, requestId };
    let finished = false;
    let sub: WatchSubscription | undefined;
    let waitingForDrain = false;
    let scheduled = false;
    /** max_batch_delay_ms (batched only; 0 = pump as soon as woken). */
    let windowMs = 0;
    /** With a window: no pump before this time (performance.now() ms), set when a pump has written something. */
    let notBefore = 0;

    const finish = (code: status, details?: string) => {
      if (finished) return false;
      finished = true;
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      observeRpc(line.method, status[code], durationMs / 1000);
      this.log.info({ ...line, code: status[code], durationMs, events: sub?.count ?? 0, ...(details ? { error: details } : {}) }, 'rpc');
      return true;
    };
    /** Ends the call with a status, after the messages already written (grpc-js sends it once they are flushed). */
    const fail = (code: status, message: string) => {
      const details = statusText(message);
      if (!finish(code, details)) return;
      call.emit('error', { code, details, message: details, metadata: new Metadata() });
    };
    const pump = (at: number) => {
      scheduled = false;
      if (finished || waitingForDrain || !sub) return;
      let wrote = false;
      try {
        for (;;) {
          let ok = true;
          // A batched watcher with only shared live items pending writes the frame built for every watcher there.
          const range = batched ? sub.liveRange() : null;
          if (range) {
            const { frame, end } = liveRangeFrame(sub.workPlanId, range, MAX_BATCH_EVENTS, MAX_BATCH_BYTES);
            sub.advance(end);
            ok = call.write(frame);
          } else {
            const item = sub.next();
            if (!item) break;
            if (batched) {
              // Everything waiting now goes in one message; events are encoded once for every watcher either way.
              const pulled = sub;
              ok = call.write(batchFrame(batchEvents(pulled.workPlanId, item, () => pulled.next(), MAX_BATCH_EVENTS, MAX_BATCH_BYTES)));
            } else {
              for (const message of watchItemToBytes(sub.workPlanId, item)) ok = call.write(message);
            }
          }
          wrote = true;
          if (!ok) {
            waitingForDrain = true;
            call.once('drain', () => {
              waitingForDrain = false;
              wake();
            });
            break;
          }
        }
      } catch (err) {
        this.log.error({ ...line, err }, 'watch stream failed');
        sub.end({ reason: 'internal', message: 'internal error; see the server log' });
      }
      // `at` is the slot's own time when run by a window timer (however late it fires), so a stream kept busy is
      // pumped once per window, on the window's boundaries, as are all streams with the same window.
      if (wrote && windowMs > 0) notBefore = at + windowMs;
    };
    const wake = () => {
      if (scheduled || waitingForDrain || finished) return;
      scheduled = true;
      if (windowMs > 0 && notBefore > this.pumps.now()) this.pumps.at(notBefore, windowMs, pump);
      else this.pumps.soon(pump);
    };
    const ended = (end: WatchEnd) => {
      const last = sub?.lastVersionSent;
      const details =
        end.reason === 'shutdown'
          ? last === null || last === undefined
            ? `${end.message}; watch again`
            : `${end.message}; last version sent: ${last}; resume with after_version=${last}`
          : end.message;
      fail(END_CODE[end.reason], details);
    };

    const gone = () => {
      if (!sub) {
        finish(status.CANCELLED); // before it opened: open() will see `finished` and not open it
        return;
      }
      if (sub.isClosed) return;
      const deadline = call.getDeadline();
      const expired = deadline instanceof Date ? deadline.getTime() <= Date.now() : Number.isFinite(deadline) && deadline <= Date.now();
      sub.close(expired ? 'deadline' : 'cancelled');
      finish(expired ? status.DEADLINE_EXCEEDED : status.CANCELLED);
    };
    // 'cancelled' comes on client cancel, deadline and disconnect (and after our own status: then it is a no-op).
    call.on('cancelled', gone);
    call.on('close', gone);

    const open = () => {
      if (finished) return;
      try {
        this.authorize(call);
        const req = parseRequest(watchWorkPlanRequest, undecodable(call.request));
        if (req.maxBatchDelayMs > 0 && !batched) throw invalidArgument('only WatchWorkPlanBatched coalesces events; use it, or leave this 0', 'max_batch_delay_ms');
        windowMs = req.maxBatchDelayMs;
        sub = this.hub.open(req, { wake, ended });
      } catch (err) {
        const { error, internal } = toServiceError(err);
        if (internal) this.log.error({ ...line, err: internal }, 'watch failed to start');
        fail(error.code, error.details);
        return;
      }
      wake();
    };
    this.app.afterFlush(open);
  }
}
