// The watch-fanout benchmark's floor: a grpc-js server whose WatchWorkPlan handler only keeps the streams open, and
// writes a canned event (the bytes of a real event of our server, base64 on the command line) to every open stream
// when told so on stdin. It writes as our watch service does (one message per event per stream, as fast as each
// stream's flow control lets it), so its CPU per message is what streaming alone costs in grpc-js.
//
//   node dist/bench/noop-watch-server.js <WorkPlanEvent, base64>     prints {"address": "127.0.0.1:PORT"}
//   stdin {"events": N}   N more events (versions continue from 2; 1 is the creation) to every stream; a stream opened
//                         with after_version A gets every version after A, like ours
//   stdin {"events": N, "perMessage": K, "everyMs": W}
//                         the same N events to every WatchWorkPlanBatched stream, K to a message, one message every W ms
//                         to all of them (each message encoded once, as ours shares a window's frame): the floor for
//                         windowed watchers, at the size and pace of the messages ours sends them
//
// Batched streams get only batched commands and plain streams only plain ones.
import { createInterface } from 'node:readline';
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { TurboCIOrchestratorService, WorkPlanEvent, WorkPlanEventBatch, type WatchWorkPlanRequest } from '../src/gen/turboci/v1/service.js';

type Call = ServerWritableStream<WatchWorkPlanRequest, WorkPlanEvent>;
/** Batched streams are written pre-encoded batches (bytes), as ours are. */
type BatchedCall = ServerWritableStream<WatchWorkPlanRequest, Buffer>;

const encoded = process.argv[2];
if (!encoded) {
  console.error('usage: node dist/bench/noop-watch-server.js <WorkPlanEvent, base64>');
  process.exit(2);
}
const sample = WorkPlanEvent.decode(Buffer.from(encoded, 'base64'));

/** Every open stream and the versions it still has to be sent. */
const streams = new Map<Call, { next: number; waiting: boolean }>();
/** Events are numbered 2..last; every stream gets all of them. */
let last = 1;

function pump(call: Call): void {
  const s = streams.get(call);
  if (!s || s.waiting) return;
  while (s.next <= last) {
    if (!call.write({ ...sample, version: BigInt(s.next++) })) {
      s.waiting = true;
      call.once('drain', () => {
        s.waiting = false;
        pump(call);
      });
      return;
    }
  }
}

/** Batched streams: each gets, on opening, what was sent after its after_version, then every message sent. */
const batchedStreams = new Set<BatchedCall>();
let lastBatched = 1;

/** Versions from..from+k-1 of the sample, as one encoded WorkPlanEventBatch. */
function batchOf(from: number, k: number): Buffer {
  const bytes = WorkPlanEventBatch.encode({ events: Array.from({ length: k }, (_, i) => ({ ...sample, version: BigInt(from + i) })) }).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Sends `events` events to every batched stream, `perMessage` to a message, a message every `everyMs` ms. */
function sendBatches(events: number, perMessage: number, everyMs: number): void {
  let left = events;
  const tick = () => {
    const k = Math.min(perMessage, left);
    const batch = batchOf(lastBatched + 1, k);
    lastBatched += k;
    left -= k;
    // Flow control is left to grpc-js's buffering: a watcher that cannot keep up only delays its own stream.
    for (const call of batchedStreams) call.write(batch);
    if (left > 0) setTimeout(tick, everyMs);
  };
  tick();
}

const server = new Server();
// Only the watch RPCs: grpc-js answers UNIMPLEMENTED for the methods left out.
server.addService(
  { ...TurboCIOrchestratorService, watchWorkPlanBatched: { ...TurboCIOrchestratorService.watchWorkPlanBatched, responseSerialize: (b: Buffer) => b } },
  {
    watchWorkPlan: (call: Call) => {
      // Like ours resuming with after_version: the stream gets every version after it, then live ones.
      streams.set(call, { next: Number(call.request.afterVersion ?? BigInt(last)) + 1, waiting: false });
      call.on('cancelled', () => streams.delete(call));
      pump(call);
    },
    watchWorkPlanBatched: (call: BatchedCall) => {
      batchedStreams.add(call);
      call.on('cancelled', () => batchedStreams.delete(call));
      // Like ours resuming: what was sent before it opened, after its after_version, comes first, in one message.
      const after = Number(call.request.afterVersion ?? BigInt(lastBatched));
      if (after < lastBatched) call.write(batchOf(after + 1, lastBatched - after));
    },
  },
);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
console.log(JSON.stringify({ address: `127.0.0.1:${port}` }));

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line) as { events: number; perMessage?: number; everyMs?: number };
  if (command.perMessage) {
    sendBatches(command.events, command.perMessage, command.everyMs ?? 0);
    return;
  }
  last += command.events;
  for (const call of streams.keys()) pump(call);
});
process.once('SIGTERM', () => {
  for (const call of streams.keys()) call.end();
  for (const call of batchedStreams) call.end();
  server.tryShutdown(() => process.exit(0));
});
