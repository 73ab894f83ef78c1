// The floor of one unary gRPC call per stage: what the push path would cost if the server did nothing but call
// a runner's Run for each stage. A separate process (as our server is) makes `calls` StageRunner.Run calls, a real
// RunRequest each (encoded by the same generated code as our dispatcher's), over `parallel` back-to-back chains
// spread across the runners at `addresses` (the benchmark's in-process no-op runners, as for our push runs).
//
//   node dist/bench/unary-floor-client.js '{"addresses":["127.0.0.1:PORT",...],"calls":N,"parallel":P}'
//   prints {"ms": elapsed, "cpuMs": this process's CPU} once every call is answered
import { credentials, Metadata } from '@grpc/grpc-js';
import { StageRunnerClient, type RunRequest } from '../src/gen/turboci/v1/stagerunner.js';

const { addresses, calls, parallel } = JSON.parse(process.argv[2] ?? '{}') as { addresses: string[]; calls: number; parallel: number };
if (!addresses?.length || !(calls > 0) || !(parallel > 0)) {
  console.error('usage: node dist/bench/unary-floor-client.js \'{"addresses":[...],"calls":N,"parallel":P}\'');
  process.exit(2);
}
const clients = addresses.map((a) => new StageRunnerClient(a, credentials.createInsecure()));
const request = (i: number): RunRequest => ({
  workPlanId: '5f0c6a52-9a0e-4a8e-9f52-2b7c1c4e1f3a',
  stageId: `s${i}`,
  attemptIdx: 1,
  executionId: `e1a2b3c4-0000-4000-8000-${String(i).padStart(12, '0')}`,
  args: undefined,
  assignedCheckIds: [],
  checkOptions: [],
  deadline: new Date(Date.now() + 3_600_000),
});

let next = 0;
const chainOn = (client: StageRunnerClient) =>
  new Promise<void>((resolve, reject) => {
    const one = () => {
      if (next >= calls) return resolve();
      const i = next++;
      client.run(request(i), new Metadata(), { deadline: Date.now() + 30_000 }, (err) => (err ? reject(err) : one()));
    };
    one();
  });

// One warm-up call per client (connection set-up is not what is measured), then the clock.
await Promise.all(clients.map((c) => new Promise<void>((resolve, reject) => c.run(request(0), (err) => (err ? reject(err) : resolve())))));
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await Promise.all(Array.from({ length: parallel }, (_, k) => chainOn(clients[k % clients.length]!)));
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000 }));
for (const c of clients) c.close();
