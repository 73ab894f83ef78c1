// The watch-fanout benchmark's floor: a grpc-js server whose WatchWorkPlan handler only keeps the streams open, and
// writes a canned event (the bytes of a real event of our server, base64 on the command line) to every open stream
// when told so on stdin. It writes as our watch service does (one message per event per stream, as fast as each
// stream's flow control lets it), so its CPU per message is what streaming alone costs in grpc-js.
//
//   node dist/bench/noop-watch-server.js <WorkPlanEvent, base64>     prints {"address": "127.0.0.1:PORT"}
//   stdin {"events": N}   N more events (versions continue from 2; 1 is the creation) to every stream; a stream opened
//                         with after_version A gets every version after A, like ours
import { createInterface } from 'node:readline';
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { TurboCIOrchestratorService, WorkPlanEvent, type WatchWorkPlanRequest } from '../src/gen/turboci/v1/service.js';

type Call = ServerWritableStream<WatchWorkPlanRequest, WorkPlanEvent>;

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

const server = new Server();
// Only WatchWorkPlan: grpc-js answers UNIMPLEMENTED for the methods left out.
server.addService(TurboCIOrchestratorService, {
  watchWorkPlan: (call: Call) => {
    // Like ours resuming with after_version: the stream gets every version after it, then live ones.
    streams.set(call, { next: Number(call.request.afterVersion ?? BigInt(last)) + 1, waiting: false });
    call.on('cancelled', () => streams.delete(call));
    pump(call);
  },
});
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
console.log(JSON.stringify({ address: `127.0.0.1:${port}` }));

createInterface({ input: process.stdin }).on('line', (line) => {
  last += (JSON.parse(line) as { events: number }).events;
  for (const call of streams.keys()) pump(call);
});
process.once('SIGTERM', () => {
  for (const call of streams.keys()) call.end();
  server.tryShutdown(() => process.exit(0));
});
