// The watchers of the watch-fanout benchmark, in their own process: `--count` WatchWorkPlan streams on one workplan,
// each on its own connection (as many real watchers would be), each resuming after `--after` and consuming every
// event. Talks to the benchmark in JSON lines:
//   stdout {"ready":true}                once every stream has received an event (so all of them are live)
//   stdin  {"expect":V}                  the writes are over and V is the workplan's last version
//   stdout SubscribersResult             once every stream has reached V, or nothing came for `--idle-timeout` ms
//
//   node dist/bench/watch-subscribers.js --address HOST:PORT --workplan ID --count N --after A [--idle-timeout MS] [--batched [--batch-delay-ms MS]]
// With --batched the streams are WatchWorkPlanBatched: the same events, several per message; --batch-delay-ms sets
// their max_batch_delay_ms (a coalescing window). With --raw the streams are not decoded into objects: each event's
// version, kind and timestamp are read off the wire bytes (a stand-in for watchers whose CPU is not this machine's).
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { credentials, makeGenericClientConstructor, Metadata, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import {
  TurboCIOrchestratorClient,
  TurboCIOrchestratorService,
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
    raw: { type: 'boolean', default: false },
  },
});
if (!values.address || !values.workplan || !values.count || !values.after) {
  console.error('usage: watch-subscribers.js --address HOST:PORT --workplan ID --count N --after A [--idle-timeout MS] [--batched [--batch-delay-ms MS]] [--raw]');
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

/** The watch RPCs with their messages left as bytes (--raw). */
const identity = (b: Buffer) => b;
const RawClient = makeGenericClientConstructor(
  {
    watchWorkPlan: { ...TurboCIOrchestratorService.watchWorkPlan, responseDeserialize: identity },
    watchWorkPlanBatched: { ...TurboCIOrchestratorService.watchWorkPlanBatched, responseDeserialize: identity },
  },
  'turboci.v1.TurboCIOrchestrator',
);

/** What --raw reads of a WorkPlanEvent: version (field 5), whether it is a node change (2, 3), timestamp (1). */
interface RawEvent {
  version: number;
  node: boolean;
  timestampMs: number | undefined;
}

function varintAt(b: Buffer, at: number): [number, number] {
  let n = 0;
  let mul = 1;
  for (;;) {
    const byte = b[at++]!;
    n += (byte & 0x7f) * mul;
    if (byte < 0x80) return [n, at];
    mul *= 128;
  }
}

/** Calls `field(number, start, end)` for each length-delimited field of b[from, to), and `varint` for varints. */
function scan(b: Buffer, from: number, to: number, len: (field: number, start: number, end: number) => void, varint?: (field: number, n: number) => void): void {
  let at = from;
  while (at < to) {
    let tag: number;
    [tag, at] = varintAt(b, at);
    const field = tag >>> 3;
    switch (tag & 7) {
      case 0: {
        let n: number;
        [n, at] = varintAt(b, at);
        varint?.(field, n);
        break;
      }
      case 1:
        at += 8;
        break;
      case 2: {
        let n: number;
        [n, at] = varintAt(b, at);
        len(field, at, at + n);
        at += n;
        break;
      }
      case 5:
        at += 4;
        break;
      default:
        throw new Error(`wire type ${tag & 7}`);
    }
  }
}

function rawEvent(b: Buffer, from: number, to: number): RawEvent {
  const e: RawEvent = { version: 0, node: false, timestampMs: undefined };
  scan(
    b,
    from,
    to,
    (field, start, end) => {
      if (field === 2 || field === 3) e.node = true;
      else if (field === 1) {
        let seconds = 0;
        let nanos = 0;
        scan(b, start, end, () => {}, (f, n) => (f === 1 ? (seconds = n) : f === 2 ? (nanos = n) : undefined));
        e.timestampMs = seconds * 1000 + Math.floor(nanos / 1e6);
      }
    },
    (field, n) => {
      if (field === 5) e.version = n;
    },
  );
  return e;
}

interface Watcher {
  readonly client: { close(): void };
  readonly stream: ClientReadableStream<WorkPlanEvent | WorkPlanEventBatch | Buffer>;
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
  const options = { 'grpc.use_local_subchannel_pool': 1 };
  const req = WatchWorkPlanRequest.fromPartial({ workPlanId: values.workplan, afterVersion: after, maxBatchDelayMs: Number(values['batch-delay-ms']) });
  let client: { close(): void };
  let stream: ClientReadableStream<WorkPlanEvent | WorkPlanEventBatch | Buffer>;
  if (values.raw) {
    const raw = new RawClient(address, credentials.createInsecure(), options);
    const method = (values.batched ? raw.watchWorkPlanBatched : raw.watchWorkPlan) as (r: WatchWorkPlanRequest, m: Metadata) => ClientReadableStream<Buffer>;
    stream = method.call(raw, req, new Metadata());
    client = raw;
  } else {
    const typed = new TurboCIOrchestratorClient(address, credentials.createInsecure(), options);
    stream = values.batched ? typed.watchWorkPlanBatched(req, new Metadata()) : typed.watchWorkPlan(req, new Metadata());
    client = typed;
  }
  const w: Watcher = { client, stream, received: 0, last: after, ended: false };
  const onNodeEvent = (version: number, timestampMs: number | undefined) => {
    if (version !== w.last + 1) gaps++;
    w.last = version;
    w.received++;
    if (timestampMs !== undefined) latency.add(Date.now() - timestampMs);
  };
  const onEvent = (e: WorkPlanEvent) => {
    if (!e.checkEvent && !e.stageEvent) return; // completions are not node changes
    onNodeEvent(Number(e.version), e.timestamp?.getTime());
  };
  const onRaw = (e: RawEvent) => {
    if (e.node) onNodeEvent(e.version, e.timestampMs);
  };
  stream.on('data', (message: WorkPlanEvent | WorkPlanEventBatch | Buffer) => {
    messages++;
    if (Buffer.isBuffer(message)) {
      if (values.batched) scan(message, 0, message.length, (field, start, end) => field === 1 && onRaw(rawEvent(message, start, end)));
      else onRaw(rawEvent(message, 0, message.length));
    } else if ('events' in message) message.events.forEach(onEvent);
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
