// Prometheus metrics (prom-client), served at /metrics on the HTTP port. One registry per process: the transport
// and the event store record into it; gauges that describe the read models are computed when scraped, from the same
// read models the server answers with (no second bookkeeping that could drift).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EventStore } from './app/event-store.js';
import type { Orchestrator } from './app/orchestrator.js';

export const registry = new Registry();

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export const rpcTotal = new Counter({
  name: 'turboci_rpc_total',
  help: 'gRPC calls answered, by method and status code',
  labelNames: ['method', 'code'] as const,
  registers: [registry],
});
export const rpcDuration = new Histogram({
  name: 'turboci_rpc_duration_seconds',
  help: 'gRPC call latency (until the answer or status is sent), by method and status code',
  labelNames: ['method', 'code'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});
export const httpTotal = new Counter({
  name: 'turboci_http_requests_total',
  help: 'HTTP requests answered (web UI, JSON API, SSE), by route and status',
  labelNames: ['route', 'status'] as const,
  registers: [registry],
});
const commitDuration = new Histogram({
  name: 'turboci_group_commit_duration_seconds',
  help: 'time to commit (and fsync) one group of appends',
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  registers: [registry],
});
const commitBatch = new Histogram({
  name: 'turboci_group_commit_batch_events',
  help: 'events made durable by one group commit',
  buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
  registers: [registry],
});
const eventsAppended = new Counter({
  name: 'turboci_events_appended_total',
  help: 'events appended to the log',
  registers: [registry],
});
export const readModelRebuild = new Gauge({
  name: 'turboci_read_model_rebuild_seconds',
  help: 'time the last start took to rebuild every read model from the log',
  registers: [registry],
});

/** Sources of the scrape-time gauges, set once the server has them. */
interface Sources {
  app?: Orchestrator;
  /** Watch hubs (gRPC WatchWorkPlan, HTTP SSE), by transport. */
  watches: Map<string, () => { subscriptions: number; queued: number }>;
  /** Open Work streams (pull agents connected), by runner type. */
  workStreams?: () => ReadonlyMap<string, number>;
}
const sources: Sources = { watches: new Map() };

export function observeApp(app: Orchestrator): void {
  sources.app = app;
}
export function observeWatches(transport: string, read: () => { subscriptions: number; queued: number }): void {
  sources.watches.set(transport, read);
}
export function observeWorkStreams(read: () => ReadonlyMap<string, number>): void {
  sources.workStreams = read;
}

new Gauge({
  name: 'turboci_attempts_pending',
  help: 'attempts PENDING, waiting for a runner, by runner type',
  labelNames: ['runner_type'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const ex = sources.app?.models.executions;
    if (!ex) return;
    for (const type of ex.queuedTypes()) {
      let n = 0;
      for (const _ of ex.queue(type)) n++;
      this.set({ runner_type: type }, n);
    }
  },
});
new Gauge({
  name: 'turboci_leases_in_flight',
  help: 'attempts leased by pull runners and not finished',
  registers: [registry],
  collect() {
    this.set(count(sources.app?.models.leases.activeLeases()));
  },
});
new Gauge({
  name: 'turboci_dispatches_in_flight',
  help: 'attempts dispatched to push runners and not finished',
  registers: [registry],
  collect() {
    this.set(count(sources.app?.models.executions.inFlight()));
  },
});
new Gauge({
  name: 'turboci_registered_runners',
  help: 'live push runner registrations, by runner type',
  labelNames: ['runner_type'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const perType = new Map<string, number>();
    for (const r of sources.app?.models.runners.registrations() ?? []) perType.set(r.runnerType, (perType.get(r.runnerType) ?? 0) + 1);
    for (const [type, n] of perType) this.set({ runner_type: type }, n);
  },
});
new Gauge({
  name: 'turboci_work_streams',
  help: 'open TurboCIRunnerPull.Work streams (pull agents connected), by runner type',
  labelNames: ['runner_type'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const [type, n] of sources.workStreams?.() ?? []) this.set({ runner_type: type }, n);
  },
});
new Gauge({
  name: 'turboci_watch_subscriptions',
  help: 'open watch subscriptions (WatchWorkPlan over gRPC, workplan streams over SSE), by transport',
  labelNames: ['transport'] as const,
  registers: [registry],
  collect() {
    for (const [transport, read] of sources.watches) this.set({ transport }, read().subscriptions);
  },
});
new Gauge({
  name: 'turboci_watch_queue_depth',
  help: 'live events waiting in watch subscribers\' queues, summed, by transport',
  labelNames: ['transport'] as const,
  registers: [registry],
  collect() {
    for (const [transport, read] of sources.watches) this.set({ transport }, read().queued);
  },
});

function count(it: Iterable<unknown> | undefined): number {
  let n = 0;
  for (const _ of it ?? []) n++;
  return n;
}

export function observeRpc(method: string, code: string, seconds: number): void {
  rpcTotal.inc({ method, code });
  rpcDuration.observe({ method, code }, seconds);
}

/** The event store, measured: events appended, and each group commit's latency and size. */
export class MeteredEventStore implements EventStore {
  private pending = 0;
  readonly whenDurable?: (cb: (err: Error | null) => void) => void;
  constructor(private readonly inner: EventStore) {
    if (inner.whenDurable) this.whenDurable = (cb) => inner.whenDurable!(cb);
  }

  get groupCommit(): boolean {
    return this.inner.groupCommit;
  }
  get shared(): EventStore['shared'] {
    return this.inner.shared;
  }
  append(...args: Parameters<EventStore['append']>): ReturnType<EventStore['append']> {
    const recorded = this.inner.append(...args);
    eventsAppended.inc(recorded.length);
    if (this.inner.groupCommit) this.pending += recorded.length;
    else if (recorded.length > 0) commitBatch.observe(recorded.length);
    return recorded;
  }
  readStream(...args: Parameters<EventStore['readStream']>): ReturnType<EventStore['readStream']> {
    return this.inner.readStream(...args);
  }
  readAll(...args: Parameters<EventStore['readAll']>): ReturnType<EventStore['readAll']> {
    return this.inner.readAll(...args);
  }
  eventAt(position: number): ReturnType<EventStore['eventAt']> {
    return this.inner.eventAt(position);
  }
  readFiltered(...args: Parameters<EventStore['readFiltered']>): ReturnType<EventStore['readFiltered']> {
    return this.inner.readFiltered(...args);
  }
  workPlans(): ReturnType<EventStore['workPlans']> {
    return this.inner.workPlans();
  }
  workPlan(id: string): ReturnType<EventStore['workPlan']> {
    return this.inner.workPlan(id);
  }
  count(): number {
    return this.inner.count();
  }
  importStream(...args: Parameters<EventStore['importStream']>): void {
    this.inner.importStream(...args);
  }
  rollback(): void {
    this.pending = 0;
    this.inner.rollback?.();
  }
  flush(): void {
    if (this.pending === 0) {
      this.inner.flush();
      return;
    }
    const end = commitDuration.startTimer();
    this.inner.flush();
    end();
    commitBatch.observe(this.pending);
    this.pending = 0;
  }
  close(): void {
    this.inner.close();
  }
}
