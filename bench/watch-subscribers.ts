// The watchers of the watch-fanout benchmark, in their own process: `--count` WatchWorkPlan streams on one workplan,
// each on its own connection (as many real watchers would be), each resuming after `--after` and consuming every
// event. Talks to the benchmark in JSON lines:
//   stdout {"ready":true}                once every stream has received an event (so all of them are live)
//   stdin  {"expect":V}                  the writes are over and V is the workplan's last version
//   stdout SubscribersResult             once every stream has reached V, or nothing came for `--idle-timeout` ms
//
//   node dist/bench/watch-subscribers.js --address HOST:PORT --workplan ID --count N --after A [--idle-timeout MS] [--batched [--batch-delay-ms MS]]
// With --batched the streams are WatchWorkPlanBatched: the same events, several per message; --batch-delay-ms sets
// their max_batch_delay_ms (a coalescing window).
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { credentials, Metadata, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import {
  TurboCIOrchestratorClient,
  WatchWorkPlanRequest,
  type WorkPlanEvent,
  type WorkPlanEventBatch,
} from '../src/gen/turboci/v1/service.js';

export interface SubscribersResult {
  readonly subscribers: number;
  /** Node events each stream should have received: one per version in (after, expect]. */
  readonly expectedPerSubscriber: number;
  readonly minReceived: number;
  readonly maxReceived: number;
  /** Streams that received a count other than expectedPerSubscriber. */
  readonly mismatched: number;
  /** Versions that did not follow the previous one by exactly 1, over all streams (should be 0). */
  readonly gaps: number;
  /** Streams the server ended, by status name (e.g. RESOURCE_EXHAUSTED for a subscriber too slow). */
  readonly ended: Record<string, number>;
  /** From the "expect" line to the last stream reaching the last version: how far behind the writers watchers were. */
  readonly catchUpMs: number;
  /** Recorded-at (server clock, ms) to received (same machine clock) over every event received. */
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  /** Messages and node events received by all streams since they opened (priming included). */
  readonly messages?: number;
  readonly eventsReceived?: number;
}

const { values } = parseArgs({
  options: {
    address: { type: 'string' },
    workplan: { type: 'string' },
    count: { type: 'string' },
    after: { type: 'string' },
    'idle-timeout': { type: 'string', default: '20000' },
    batched: { type: 'boolean', default: false },
    'batch-delay-ms': { type: 'string', default: '0' },
  },
});
if (!values.address || !values.workplan || !values.count || !values.after) {
  console.error('usage: watch-subscribers.js --address HOST:PORT --workplan ID --count N --after A [--idle-timeout MS] [--batched [--batch-delay-ms MS]]');
  process.exit(2);
}
const address = values.address;
const after = Number(values.after);
const idleTimeoutMs = Number(values['idle-timeout']);

/** Latency histogram in whole milliseconds (the server's timestamps have ms resolution anyway). */
class Histogram {
  private readonly counts: number[] = [];
  private n = 0;
  add(ms: number): void {
    const i = Math.max(0, Math.round(ms));
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.n++;
  }
  quantile(q: number): number {
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= q * this.n && seen > 0) return i;
    }
    return Number.NaN;
  }
}

interface Watcher {
  readonly client: TurboCIOrchestratorClient;
  readonly stream: ClientReadableStream<WorkPlanEvent | WorkPlanEventBatch>;
  received: number;
  last: number;
  /** The server ended the stream: it will receive nothing more. */
  ended: boolean;
}

const latency = new Histogram();
let gaps = 0;
const ended: Record<string, number> = {};
let lastProgress = Date.now();
let messages = 0;
/** Called on every event: readiness and completion are checked there, not polled. */
let onProgress = () => {};

function watch(): Watcher {
  // A channel of its own (no shared subchannel pool): one connection per watcher, like separate watching clients.
  const client = new TurboCIOrchestratorClient(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const req = WatchWorkPlanRequest.fromPartial({ workPlanId: values.workplan, afterVersion: after, maxBatchDelayMs: Number(values['batch-delay-ms']) });
  const stream = values.batched ? client.watchWorkPlanBatched(req, new Metadata()) : client.watchWorkPlan(req, new Metadata());
  const w: Watcher = { client, stream, received: 0, last: after, ended: false };
  const onEvent = (e: WorkPlanEvent) => {
    if (!e.checkEvent && !e.stageEvent) return; // completions are not node changes
    if (Number(e.version) !== w.last + 1) gaps++;
    w.last = Number(e.version);
    w.received++;
    if (e.timestamp) latency.add(Date.now() - e.timestamp.getTime());
  };
  stream.on('data', (message: WorkPlanEvent | WorkPlanEventBatch) => {
    messages++;
    if ('events' in message) message.events.forEach(onEvent);
    else onEvent(message);
    lastProgress = Date.now();
    onProgress();
  });
  stream.on('error', (err: ServiceError) => {
    if (err.code === status.CANCELLED) return; // our own cancel at the end
    const name = status[err.code] ?? String(err.code);
    ended[name] = (ended[name] ?? 0) + 1;
    w.ended = true;
    onProgress();
  });
  return w;
}

const watchers = Array.from({ length: Number(values.count) }, watch);

await new Promise<void>((resolve) => {
  onProgress = () => {
    if (watchers.every((w) => w.received > 0 || w.ended)) resolve();
  };
});
console.log(JSON.stringify({ ready: true }));

const expect = await new Promise<number>((resolve) => {
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const msg = JSON.parse(line) as { expect?: number };
    if (msg.expect !== undefined) resolve(msg.expect);
  });
});
const t0 = Date.now();
await new Promise<void>((resolve) => {
  const allThere = () => watchers.every((w) => w.last >= expect || w.ended);
  onProgress = () => {
    if (allThere()) resolve();
  };
  const idle = setInterval(() => {
    if (Date.now() - lastProgress > idleTimeoutMs) resolve(); // some never got there: the counts will say so
  }, 100);
  idle.unref();
  onProgress();
});
const catchUpMs = Date.now() - t0;

const expectedPerSubscriber = expect - after;
const counts = watchers.map((w) => w.received);
const result: SubscribersResult = {
  subscribers: watchers.length,
  expectedPerSubscriber,
  minReceived: Math.min(...counts),
  maxReceived: Math.max(...counts),
  mismatched: counts.filter((c) => c !== expectedPerSubscriber).length,
  gaps,
  ended,
  catchUpMs,
  latencyP50Ms: latency.quantile(0.5),
  latencyP99Ms: latency.quantile(0.99),
  messages,
  eventsReceived: counts.reduce((a, b) => a + b, 0),
};
for (const w of watchers) {
  w.stream.cancel();
  w.client.close();
}
console.log(JSON.stringify(result));
process.exit(0);
