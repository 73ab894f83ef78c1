// Issue 7, push dispatch: stages dispatched and completed per second by the real server process with registered
// no-op StageRunners (ours), against the same stages executed by clients that claim and complete each attempt
// themselves through WriteNodes, as a runner-less executor must (baseline), at the same concurrency, alternating
// rounds on the same server. Both sides: N independent stages written in one WriteNodes; the clock runs from just
// before that write to the WorkPlanCompletedEvent. (Not from the write's answer: the server starts dispatching
// while the answer is still on its way, so that would hide part of our side's work.)
//
//   ours      4 in-process StageRunner gRPC servers (SYNC Run answering FINAL at once), 16 slots each
//   baseline  4 client channels × 16 loops: WriteNodes(claim: process_uid) then WriteNodes(attempt COMPLETE)
//
// Both write each stage twice (push: dispatch + completion; raw: claim + completion), so the ratio shows what the
// server's own dispatch loop saves, or costs, against client round trips (request parsing, read-your-writes answers).
import { AttemptState } from '../src/gen/turboci/v1/common.js';
import { connect, type Api } from '../test/support/server.js';
import { benchArgs, ratio, report, sideBySide, type Ratio } from './harness.js';
import { driveWorkplan, independentStages, startNoopRunners, withServer, type NoopRunners, type StageSpec } from './stage-drivers.js';

const args = benchArgs();
const N = args.smoke ? 20 : 1000;
/** Stages of the unmeasured warm-up round each side gets (none in smoke mode). */
const WARMUP = args.smoke ? 0 : 100;
const RUNNERS = 4;
const SLOTS = 16;
const ROUNDS = { FULL: args.smoke ? 1 : 3, NORMAL: args.smoke ? 1 : 2 } as const;
const PUSH_TYPE = 'bench-noop';
type SyncMode = keyof typeof ROUNDS;

/** Stages per second, from the write to completion. */
const throughput = (n: number, r: { elapsedMs: number }) => (n * 1000) / r.elapsedMs;

/** Our side: the stages have a runner_type, the registered no-op runners execute them. */
async function pushRound(address: string, n = N): Promise<number> {
  return throughput(n, await driveWorkplan(address, independentStages(n, PUSH_TYPE)));
}

/**
 * One runner-less executor loop: takes the next stage, claims its attempt (process_uid), then completes it, each a
 * WriteNodes round trip. Completing the only attempt makes the stage FINAL (semantics.md, "Stage").
 */
async function rawLoop(api: Api, workPlanId: string, uid: string, next: () => StageSpec | undefined): Promise<void> {
  for (let s = next(); s; s = next()) {
    await api.writeNodes({ workPlanId, stages: [{ id: s.id, currentAttempt: { processUid: uid } }] });
    await api.writeNodes({ workPlanId, stages: [{ id: s.id, currentAttempt: { state: AttemptState.ATTEMPT_STATE_COMPLETE } }] });
  }
}

/** The baseline: no runner_type, so the clients (one channel each, SLOTS loops) claim and complete every stage. */
async function rawRound(address: string, clients: readonly Api[], n = N): Promise<number> {
  const stages = independentStages(n, '');
  let i = 0;
  const next = () => stages[i++];
  const result = await driveWorkplan(address, stages, {
    whileRunning: async (workPlanId) => {
      const loops = clients.flatMap((api, c) => Array.from({ length: SLOTS }, (_, j) => rawLoop(api, workPlanId, `raw-${c}-${j}`, next)));
      await Promise.all(loops);
    },
  });
  return throughput(n, result);
}

/** A fresh server with `--sync mode`, the runners registered and the raw clients connected; both sides alternate. */
function measure(mode: SyncMode): Promise<{ push: number; raw: number }> {
  return withServer('dispatch', ['--sync', mode], async (address) => {
    const conns = Array.from({ length: RUNNERS }, () => connect(address));
    let runners: NoopRunners | null = null;
    try {
      runners = await startNoopRunners(address, { count: RUNNERS, runnerType: PUSH_TYPE, maxConcurrent: SLOTS });
      const clients = conns.map((c) => c.api);
      // One small unmeasured round each: JIT, channels and SQLite pages warm for both sides alike.
      if (WARMUP) {
        await pushRound(address, WARMUP);
        await rawRound(address, clients, WARMUP);
      }
      const r = await sideBySide(ROUNDS[mode], () => pushRound(address), () => rawRound(address, clients));
      return { push: r.ours, raw: r.baseline };
    } finally {
      await runners?.close();
      for (const c of conns) c.close();
    }
  });
}

const full = await measure('FULL');
const normal = await measure('NORMAL');
const ratios: Ratio[] = [
  ratio('push dispatch vs raw WriteNodes clients (sync FULL)', full.push, full.raw, 'stages/s'),
  ratio('push dispatch vs raw WriteNodes clients (sync NORMAL)', normal.push, normal.raw, 'stages/s'),
];
report(
  {
    benchmark: 'dispatch',
    figures: {
      stages: N,
      'concurrency (runners × slots = clients × loops)': `${RUNNERS} × ${SLOTS}`,
      '*push dispatch, sync FULL (stages/s)': full.push,
      'raw WriteNodes clients, sync FULL (stages/s)': full.raw,
      'push dispatch, sync NORMAL (stages/s)': normal.push,
      'raw WriteNodes clients, sync NORMAL (stages/s)': normal.raw,
      'rounds (FULL / NORMAL), medians': `${ROUNDS.FULL} / ${ROUNDS.NORMAL}`,
    },
    ratios,
    notes: [
      'independent no-op stages written in one WriteNodes; timed from that write to the WorkPlanCompletedEvent',
      'runners and raw clients live in the benchmark process; the server is the real `turboci serve` child process',
      'both sides write twice per stage; FULL and NORMAL are two servers (--sync), the difference is what fsync costs',
    ],
  },
  args,
);
process.exit(0);
