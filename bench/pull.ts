// Issue 8, pull runners: lease → complete throughput of pull clients (ours, the pull protocol) against the push
// dispatcher's throughput measured in the same run, on the same server, for the same number of stages, alternating
// rounds. Both sides: N independent no-op stages written in one WriteNodes, timed from that write to the
// WorkPlanCompletedEvent; the executors are started (and idle, waiting for work) before the clock starts.
//
//   pull (ours)      4 in-process pull executors (one gRPC channel each) × 16 slots, using the protocol as
//                    `turboci runner` does: one Work stream each with credit for 16, every completion on it giving
//                    its credit back (two messages per stage). They run nothing: no shell command is spawned, so this
//                    is the protocol and the scheduler alone (bench/stage-drivers.ts startPullExecutors).
//   pull unary       the same executors as `turboci runner --protocol unary`: Lease with max_attempts = free slots,
//                    CompleteLease with lease_next (one round trip per stage).
//   pull v1          the same executors as a v1 client: 16 loops of Lease → CompleteLease (two round trips a stage).
//   push (baseline)  4 in-process no-op StageRunners (SYNC Run answering FINAL at once), 16 slots each.
//   agent (figure)   4 real `turboci runner` agent processes × 4 slots running `true` (sh -c), a smaller N: what a
//                    real agent adds (process spawn, working directory, heartbeats, logs). Not a ratio.
import { startAgent, type AgentProcess } from '../test/pull/support.js';
import { tempDir } from '../test/support/server.js';
import { benchArgs, median, ratio, report } from './harness.js';
import { driveWorkplan, independentStages, startNoopRunners, startPullExecutors, withServer, type PullProtocol, type StageSpec } from './stage-drivers.js';

const args = benchArgs();
const N = args.smoke ? 20 : 1000;
const ROUNDS = args.smoke ? 1 : 3;
/** Stages of the unmeasured warm-up round each side gets (none in smoke mode). */
const WARMUP = args.smoke ? 0 : 100;
const EXECUTORS = 4;
const SLOTS = 16;
const AGENT_STAGES = args.smoke ? 8 : 200;
const AGENT_SLOTS = 4;
const PUSH_TYPE = 'bench-push';
const PULL_TYPE = 'bench-pull';
const AGENT_TYPE = 'bench-agent';

const throughput = (n: number, elapsedMs: number) => (n * 1000) / elapsedMs;

/** Runs `stages` with `startExecutors` running from before the write until completion; stages per second. */
async function round<T extends { close(): Promise<unknown> }>(address: string, stages: readonly StageSpec[], startExecutors: () => Promise<T> | T): Promise<number> {
  const executors = await startExecutors();
  try {
    return throughput(stages.length, (await driveWorkplan(address, stages)).elapsedMs);
  } finally {
    await executors.close();
  }
}

const pullRound = (address: string, n = N, protocol: PullProtocol = 'stream') =>
  round(address, independentStages(n, PULL_TYPE), () => startPullExecutors(address, { executors: EXECUTORS, slots: SLOTS, runnerType: PULL_TYPE, protocol }));
const pushRound = (address: string, n = N) =>
  round(address, independentStages(n, PUSH_TYPE), () => startNoopRunners(address, { count: EXECUTORS, runnerType: PUSH_TYPE, maxConcurrent: SLOTS }));

/** Real agent processes running `true` for every stage; started (and connected) before the clock starts. */
async function agentRound(address: string, workdir: string): Promise<number> {
  const stages = independentStages(AGENT_STAGES, AGENT_TYPE).map((s) => ({ ...s, args: { command: 'true' } }));
  return round(address, stages, async () => {
    const agents: AgentProcess[] = [];
    const close = () => Promise.all(agents.map((a) => a.stop()));
    try {
      for (let i = 0; i < EXECUTORS; i++) {
        agents.push(startAgent(address, ['--type', AGENT_TYPE, '--concurrency', String(AGENT_SLOTS), '--workdir', `${workdir}/agent-${i}`]));
      }
      await Promise.all(agents.map((a) => a.waitForLog((l) => l.msg === 'agent started')));
    } catch (err) {
      await close();
      throw err;
    }
    return { close };
  });
}

const result = await withServer('pull', [], async (address) => {
  if (WARMUP) {
    await pullRound(address, WARMUP);
    await pushRound(address, WARMUP);
  }
  // Three sides, in an order that rotates every round; medians.
  const sides = [() => pullRound(address), () => pushRound(address), () => pullRound(address, N, 'v1'), () => pullRound(address, N, 'unary')];
  const got: number[][] = [[], [], [], []];
  for (let i = 0; i < ROUNDS; i++) {
    for (let k = 0; k < sides.length; k++) {
      const j = (k + i) % sides.length;
      got[j]!.push(await sides[j]!());
    }
  }
  const workdir = tempDir('turboci-bench-agents-');
  try {
    return { pull: median(got[0]!), push: median(got[1]!), v1: median(got[2]!), unary: median(got[3]!), agent: await agentRound(address, workdir.path) };
  } finally {
    workdir.remove();
  }
});

report(
  {
    benchmark: 'pull',
    figures: {
      stages: N,
      'concurrency (pull clients × loops = push runners × slots)': `${EXECUTORS} × ${SLOTS}`,
      '*pull over Work streams, no-op (stages/s)': result.pull,
      'pull unary, Lease(max_attempts) → CompleteLease(lease_next), no-op (stages/s)': result.unary,
      'pull as a v1 client, Lease → CompleteLease, no-op (stages/s)': result.v1,
      'push dispatch, no-op (stages/s)': result.push,
      [`turboci runner agents running \`true\`, ${EXECUTORS} × ${AGENT_SLOTS} slots, ${AGENT_STAGES} stages (stages/s)`]: result.agent,
      'rounds (medians)': String(ROUNDS),
    },
    ratios: [
      ratio('pull over Work streams vs push dispatch (no-op, sync FULL)', result.pull, result.push, 'stages/s'),
      ratio('pull over Work streams vs pull unary (one round trip a stage)', result.pull, result.unary, 'stages/s'),
      ratio('pull unary (one round trip a stage) vs pull as a v1 client (two)', result.unary, result.v1, 'stages/s'),
    ],
    notes: [
      'pull executors spawn no command: they complete at once; the agent figure is the real `turboci runner` running `true`',
      'independent stages written in one WriteNodes; timed from that write to the WorkPlanCompletedEvent',
      'every side writes twice per stage (lease + completion, dispatch + completion), on one server with --sync FULL (the default); the four sides rotate their order every round',
    ],
  },
  args,
);
process.exit(0);
