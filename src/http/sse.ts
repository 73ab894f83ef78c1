// Server-Sent Events: live data for the web UI.
//
// A workplan's stream is a WatchWorkPlan subscription (the same WatchHub, so the same filters, ordering, handover
// and slow-consumer rule), written as SSE instead of gRPC messages. Each event's `id:` is its stream version, so a
// browser that reconnects sends Last-Event-ID = the last version it got and resumes exactly as after_version does.
// While an initial snapshot is being sent no id is set (a snapshot cut half-way must be taken again, not resumed).
//
// The workplans list and the runners page are state feeds, not logs: on (re)connect they get the whole state, then
// the parts that changed, computed from the read models after each durable batch (throttled).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Subscription } from 'rxjs';
import type { Orchestrator } from '../app/orchestrator.js';
import type { PullService } from '../app/pull-service.js';
import { DEFAULT_WATCH_BUFFER, WatchHub, type WatchEnd, type WatchItem, type WatchRequest, type WatchSubscription } from '../app/watch.js';
import { RUNNER_REGISTRY_STREAM } from '../domain/events.js';
import type { Logger } from '../logging.js';
import { observeWatches } from '../metrics.js';
import { listWorkPlans, matchesMetadata, runnersView, summarize, type MetadataFilter } from './views.js';

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-store',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};
const KEEPALIVE_MS = 15_000;
/** How long an EventSource waits before reconnecting (ms). */
const RETRY_MS = 500;

export function frame(event: string, data: unknown, id?: number): string {
  return `${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** What the page receives per watch item: the node after the change (and its state before), or a completion. */
export function itemJson(item: WatchItem): unknown {
  const c = item.change;
  return {
    version: item.version,
    timestamp: item.timestamp,
    snapshot: item.snapshot,
    change: c ? { kind: c.kind, oldState: c.before?.state ?? null, node: c.after } : null,
    completed: item.completed,
  };
}

export class WorkPlanStreams {
  readonly hub: WatchHub;

  constructor(
    private readonly app: Orchestrator,
    private readonly log: Logger,
    bufferSize = DEFAULT_WATCH_BUFFER,
  ) {
    this.hub = new WatchHub(app, {
      bufferSize,
      onOpen: (sub, subscriptions) =>
        log.info({ watchId: sub.id, workPlanId: sub.workPlanId, afterVersion: sub.afterVersion ?? null, subscriptions, transport: 'sse' }, 'watch subscription opened'),
      onClose: (sub, reason, subscriptions) =>
        log.info(
          { watchId: sub.id, workPlanId: sub.workPlanId, reason, lastVersion: sub.lastVersionSent, events: sub.count, subscriptions, transport: 'sse' },
          'watch subscription closed',
        ),
      onError: (err, workPlanId) => log.error({ err, workPlanId }, 'watch projection failed; its subscriptions were ended'),
    });
    observeWatches('sse', () => ({ subscriptions: this.hub.subscriptionCount, queued: this.hub.queuedCount }));
  }

  /**
   * Opens the subscription once nothing appended waits for the disk (the handover rule), then streams. `fail` answers
   * an error (unknown workplan, bad after_version) as JSON before any SSE byte is written.
   */
  serve(req: IncomingMessage, res: ServerResponse, watch: WatchRequest, fail: (err: unknown) => void): void {
    let sub: WatchSubscription | undefined;
    let gone = false;
    let waitingForDrain = false;
    let scheduled = false;
    let synced = false;
    let keepalive: NodeJS.Timeout | undefined;

    const pump = () => {
      scheduled = false;
      if (gone || waitingForDrain || !sub || sub.isClosed) return;
      try {
        for (let item = sub.next(); item; item = sub.next()) {
          const last = sub.lastVersionSent;
          const ok = res.write(frame(item.change ? 'change' : 'completed', itemJson(item), last === null ? undefined : item.version));
          if (!ok) {
            waitingForDrain = true;
            res.once('drain', () => {
              waitingForDrain = false;
              pump();
            });
            return;
          }
        }
        if (!synced) {
          // Everything up to here came from the snapshot or the log: the page now shows the workplan as of this version.
          synced = true;
          res.write(frame('synced', { version: sub.lastVersionSent }));
        }
      } catch (err) {
        this.log.error({ err, workPlanId: watch.workPlanId }, 'SSE stream failed');
        sub.end({ reason: 'internal', message: 'internal error; see the server log' });
      }
    };
    const wake = () => {
      if (scheduled || waitingForDrain || gone) return;
      scheduled = true;
      setImmediate(pump);
    };
    const ended = (end: WatchEnd) => {
      // The items pulled so far were written; tell the page why it ends and where to resume (its EventSource
      // reconnects by itself with Last-Event-ID).
      if (gone) return;
      res.end(frame('end', { reason: end.reason, message: end.message, lastVersion: sub?.lastVersionSent ?? null }));
      cleanup();
    };
    const cleanup = () => {
      gone = true;
      if (keepalive) clearInterval(keepalive);
    };
    req.on('close', () => {
      if (!gone) cleanup();
      if (sub && !sub.isClosed) sub.close('cancelled');
    });

    this.app.afterFlush(() => {
      if (gone) return;
      try {
        sub = this.hub.open(watch, { wake, ended });
      } catch (err) {
        cleanup();
        fail(err);
        return;
      }
      res.writeHead(200, SSE_HEADERS);
      res.write(`retry: ${RETRY_MS}\n\n`);
      keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
      wake();
    });
  }

  close(): void {
    this.hub.close();
  }
}

interface FeedClient {
  readonly res: ServerResponse;
  readonly filter: MetadataFilter;
}

/** The workplans list, live: the recent workplans on connect, then the summary of each workplan that changed. */
export class WorkPlansFeed {
  private readonly clients = new Set<FeedClient>();
  private readonly touched = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private readonly subscription: Subscription;

  constructor(
    private readonly app: Orchestrator,
    private readonly throttleMs = 100,
  ) {
    this.subscription = app.bus.durable$.subscribe((batch) => {
      if (!this.clients.size) return; // nobody looking: nothing to remember (this ran for every event of every write)
      for (const rec of batch) if (rec.streamId !== RUNNER_REGISTRY_STREAM) this.touched.add(rec.streamId);
      if (this.touched.size && !this.timer) this.timer = setTimeout(() => this.send(), this.throttleMs);
    });
  }

  serve(req: IncomingMessage, res: ServerResponse, filter: MetadataFilter, limit: number): void {
    this.app.afterFlush(() => {
      if (req.destroyed) return;
      const client = { res, filter };
      res.writeHead(200, SSE_HEADERS);
      res.write(`retry: ${RETRY_MS}\n\n`);
      res.write(frame('workplans', { reset: true, ...listWorkPlans(this.app, filter, limit) }));
      this.clients.add(client);
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
      req.on('close', () => {
        clearInterval(keepalive);
        this.clients.delete(client);
      });
    });
  }

  private send(): void {
    this.timer = null;
    const models = [...this.touched].map((id) => this.app.models.workplan(id)).filter((m) => m !== undefined);
    this.touched.clear();
    for (const c of this.clients) {
      const changed = models.filter((m) => matchesMetadata(m.meta, c.filter)).map(summarize);
      if (changed.length) c.res.write(frame('workplans', { reset: false, workPlans: changed }));
    }
  }

  close(): void {
    this.subscription.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }
}

const RUNNER_EVENTS = new Set([
  'StageAttemptDispatched',
  'StageAttemptDispatchDeclined',
  'StageAttemptStateChanged',
  'StageAttemptLeased',
  'StageAttemptLeaseExtended',
  'StageAttemptLeaseExpired',
]);

/** The runners page, live: the whole view on connect and again whenever runners or what they run changed. */
export class RunnersFeed {
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | null = null;
  private readonly subscription: Subscription;
  /** Pull agents' waiting/last-seen state changes without events: refreshed this often while someone looks. */
  private readonly refresh: NodeJS.Timeout;

  constructor(
    private readonly app: Orchestrator,
    private readonly pull: PullService | undefined,
    private readonly throttleMs = 100,
  ) {
    this.subscription = app.bus.durable$.subscribe((batch) => {
      if (this.clients.size && batch.some((rec) => rec.streamId === RUNNER_REGISTRY_STREAM || RUNNER_EVENTS.has(rec.event.type))) this.schedule();
    });
    this.refresh = setInterval(() => this.schedule(), 2000);
    this.refresh.unref();
  }

  serve(req: IncomingMessage, res: ServerResponse): void {
    this.app.afterFlush(() => {
      if (req.destroyed) return;
      res.writeHead(200, SSE_HEADERS);
      res.write(`retry: ${RETRY_MS}\n\n`);
      res.write(frame('runners', runnersView(this.app, this.pull)));
      this.clients.add(res);
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
      req.on('close', () => {
        clearInterval(keepalive);
        this.clients.delete(res);
      });
    });
  }

  private schedule(): void {
    if (this.clients.size && !this.timer) this.timer = setTimeout(() => this.send(), this.throttleMs);
  }

  private send(): void {
    this.timer = null;
    const data = frame('runners', runnersView(this.app, this.pull));
    for (const res of this.clients) res.write(data);
  }

  close(): void {
    this.subscription.unsubscribe();
    clearInterval(this.refresh);
    if (this.timer) clearTimeout(this.timer);
    for (const res of this.clients) res.end();
    this.clients.clear();
  }
}
