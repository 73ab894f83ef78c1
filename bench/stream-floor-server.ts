// The floor of the pull path over Work streams: a grpc-js server (its own process, as our server is) that speaks the
// Work protocol as ours does and does nothing else. It leases attempts as agents give credit, answers each
// completion with `completed` (code OK) and, when an attempt is left to lease, the next lease: the messages our server
// sends, encoded by the same generated code, with nothing decided, stored or synced. The bullmq benchmark runs its
// pull executors against it: no server of this API that uses Work streams, on this machine, leases faster.
//
//   node dist/bench/stream-floor-server.js      prints {"address": "127.0.0.1:PORT"} when it listens
//   stdin {"calls": N, "parallel": P}           a run: N attempts, at most P leased and not completed at a time (1 for
//                                               a chain, where each stage waits for the one before); prints
//                                               {"ms": first lease → last completion, "cpuMs": this process's CPU}
import { randomBytes, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { TurboCIRunnerPullService, type LeasedAttempt, type WorkRequest, type WorkResponse } from '../src/gen/turboci/v1/pull.js';

type Call = ServerDuplexStream<WorkRequest, WorkResponse>;

/** Each open stream's credit: attempts it may still be leased. */
const credit = new Map<Call, number>();
/** Streams of runs that ended: their agents are being closed, so nothing more is leased to them. */
const retired = new WeakSet<Call>();
let run: { calls: number; parallel: number; leased: number; completed: number; t0: number; cpu0: NodeJS.CpuUsage } | null = null;
const workPlanId = randomUUID();

/** A lease as ours sends it: a random token naming the workplan, deadlines, the stage and attempt. */
const leaseOf = (i: number): LeasedAttempt => ({
  leaseId: randomUUID(),
  leaseToken: `${randomBytes(32).toString('base64url')}.${Buffer.from(workPlanId).toString('base64url')}`,
  expiresAt: new Date(Date.now() + 60_000),
  heartbeatIntervalMs: 20_000,
  runDeadline: new Date(Date.now() + 3_600_000),
  workPlanId,
  stageId: `s${i}`,
  attemptIdx: 1,
  args: undefined,
  assignedCheckIds: [],
  checkOptions: [],
});

/** Leases into the credit there is, oldest stream first, while the run has attempts left and room in flight. */
function pump(): void {
  if (!run) return;
  for (const [call, c] of credit) {
    let left = c;
    while (left > 0 && run.leased < run.calls && run.leased - run.completed < run.parallel) {
      if (run.leased === 0) {
        run.t0 = performance.now();
        run.cpu0 = process.cpuUsage();
      }
      call.write({ leased: leaseOf(run.leased++), completed: undefined });
      left--;
    }
    credit.set(call, left);
  }
}

const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
// Only Work: grpc-js answers UNIMPLEMENTED for the methods left out.
server.addService(TurboCIRunnerPullService, {
  work: (call: Call) => {
    call.on('data', (m: WorkRequest) => {
      if (retired.has(call)) return;
      if (m.open) credit.set(call, (credit.get(call) ?? 0) + m.open.credit);
      else if (m.complete) {
        call.write({ leased: undefined, completed: { seq: m.complete.seq, code: 0, message: '' } });
        credit.set(call, (credit.get(call) ?? 0) + m.complete.credit);
        if (run && ++run.completed === run.calls) {
          const cpu = process.cpuUsage(run.cpu0);
          console.log(JSON.stringify({ ms: performance.now() - run.t0, cpuMs: (cpu.user + cpu.system) / 1000 }));
          run = null;
          for (const c of credit.keys()) retired.add(c);
          credit.clear();
        }
      } else if (m.addCredit) credit.set(call, (credit.get(call) ?? 0) + m.addCredit);
      pump();
    });
    const gone = () => credit.delete(call);
    call.on('cancelled', gone);
    call.on('error', gone);
    call.on('end', () => {
      gone();
      call.end();
    });
  },
});
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
console.log(JSON.stringify({ address: `127.0.0.1:${port}` }));

createInterface({ input: process.stdin }).on('line', (line) => {
  const { calls, parallel } = JSON.parse(line) as { calls: number; parallel: number };
  run = { calls, parallel, leased: 0, completed: 0, t0: 0, cpu0: process.cpuUsage() };
  pump();
});
process.once('SIGTERM', () => {
  for (const call of credit.keys()) call.end();
  server.tryShutdown(() => process.exit(0));
});
