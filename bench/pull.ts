// Issue 8, pull runners: lease → complete throughput of pull clients (ours, the pull protocol) against the push
// dispatcher's throughput measured in the same run, on the same server, for the same number of stages, alternating
// rounds. Both sides: N independent no-op stages written in one WriteNodes, timed from that write to the
// WorkPlanCompletedEvent; the executors are started (and idle, waiting for work) before the clock starts.
//
//   pull (ours)      4 in-process pull clients (one gRPC channel each) × 16 loops of Lease(wait) → CompleteLease.
//                    They run nothing: no shell command is spawned, so this is the protocol and the scheduler alone.
//   push (baseline)  4 in-process no-op StageRunners (SYNC Run answering FINAL at once), 16 slots each.
//   agent (figure)   4 real `turboci runner` agent processes × 4 slots running `true` (sh -c), a smaller N: what a
//                    real agent adds (process spawn, working directory, heartbeats, logs). Not a ratio.
import { Metadata, status, credentials, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { CheckState, StageState } from '../src/gen/turboci/v1/common.js';
import { CompleteLeaseRequest, LeaseRequest, TurboCIRunnerPullClient, type LeaseResponse } from '../src/gen/turboci/v1/pull.js';
import { startAgent, type AgentProcess } from '../test/pull/support.js';
import { tempDir } from '../test/support/server.js';
import { benchArgs, ratio, report, sideBySide } from './harness.js';
import { driveWorkplan, independentStages, startNoopRunners, withServer, type StageSpec } from './stage-drivers.js';

const args = benchArgs();
const N = args.smoke ? 20 : 1000;
const ROUNDS = args.smoke ? 1 : 3;
/** Stages of the unmeasured warm-up round each side gets (none in smoke mode). */
const WARMUP = args.smoke ? 0 : 100;
const EXECUTORS = 4;
const SLOTS = 16;
const AGENT_STAGES = args.smoke ? 8 : 200;
const AGENT_SLOTS = 4;
/** Long-poll wait of an idle Lease call; the loops are cancelled, not waited out, when a round ends. */
const LEASE_WAIT_MS = 10_000;
const PUSH_TYPE = 'bench-push';
const PULL_TYPE = 'bench-pull';
const AGENT_TYPE = 'bench-agent';

const throughput = (n: number, elapsedMs: number) => (n * 1000) / elapsedMs;

/** N pull loops over `clients` channels, each Lease → CompleteLease (FINAL, a result on every assigned check). */
interface PullPool {
  leases(): number;
  /** Cancels the waiting Lease calls, waits for the loops to end and closes the channels. */
  close(): Promise<void>;
}

function startPullPool(address: string, opts: { clients: number; slots: number; runnerType: string }): PullPool {
  const channels = Array.from({ length: opts.clients }, () => new TurboCIRunnerPullClient(address, credentials.createInsecure()));
  const waiting = new Set<ClientUnaryCall>();
  let stopped = false;
  let leases = 0;

  const lease = (client: TurboCIRunnerPullClient, runnerId: string) =>
    new Promise<LeaseResponse>((resolve, reject) => {
      const req = LeaseRequest.fromPartial({ runnerId, runnerType: opts.runnerType, waitMs: LEASE_WAIT_MS });
      const call = client.lease(req, new Metadata(), { deadline: Date.now() + LEASE_WAIT_MS + 10_000 }, (err, res) => {
        waiting.delete(call);
        if (err) reject(err);
        else resolve(res);
      });
      waiting.add(call);
    });
  const complete = (client: TurboCIRunnerPullClient, req: CompleteLeaseRequest) =>
    new Promise<void>((resolve, reject) =>
      client.completeLease(req, new Metadata(), { deadline: Date.now() + 30_000 }, (err) => (err ? reject(err) : resolve())),
    );

  const loop = async (client: TurboCIRunnerPullClient, runnerId: string): Promise<void> => {
    while (!stopped) {
      let attempt: LeaseResponse['attempt'];
      try {
        attempt = (await lease(client, runnerId)).attempt;
      } catch (err) {
        if (stopped && (err as ServiceError).code === status.CANCELLED) return;
        throw err;
      }
      if (!attempt) continue;
      leases++;
      await complete(
        client,
        CompleteLeaseRequest.fromPartial({
          leaseToken: attempt.leaseToken,
          stageState: StageState.STAGE_STATE_FINAL,
          checkUpdates: attempt.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: { ok: true }, finalize: true })),
        }),
      );
    }
  };
  const loops = channels.flatMap((client, c) => Array.from({ length: opts.slots }, (_, j) => loop(client, `pull-${c}-${j}`)));
  // A loop that fails stops only itself; close() reports the failure. Catching here keeps it from being unhandled.
  const ended = Promise.allSettled(loops);
  return {
    leases: () => leases,
    close: async () => {
      stopped = true;
      for (const call of waiting) call.cancel();
      const failed = (await ended).find((r): r is PromiseRejectedResult => r.status === 'rejected');
      for (const ch of channels) ch.close();
      if (failed) throw failed.reason;
    },
  };
}

/** Runs `stages` with `startExecutors` running from before the write until completion; stages per second. */
async function round<T extends { close(): Promise<unknown> }>(address: string, stages: readonly StageSpec[], startExecutors: () => Promise<T> | T): Promise<number> {
  const executors = await startExecutors();
  try {
    return throughput(stages.length, (await driveWorkplan(address, stages)).elapsedMs);
  } finally {
    await executors.close();
  }
}

const pullRound = (address: string, n = N) =>
  round(address, independentStages(n, PULL_TYPE), () => startPullPool(address, { clients: EXECUTORS, slots: SLOTS, runnerType: PULL_TYPE }));
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
  const r = await sideBySide(ROUNDS, () => pullRound(address), () => pushRound(address));
  const workdir = tempDir('turboci-bench-agents-');
  try {
    return { pull: r.ours, push: r.baseline, agent: await agentRound(address, workdir.path) };
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
      '*pull lease → complete, no-op (stages/s)': result.pull,
      'push dispatch, no-op (stages/s)': result.push,
      [`turboci runner agents running \`true\`, ${EXECUTORS} × ${AGENT_SLOTS} slots, ${AGENT_STAGES} stages (stages/s)`]: result.agent,
      'rounds (medians)': String(ROUNDS),
    },
    ratios: [ratio('pull lease→complete vs push dispatch (no-op, sync FULL)', result.pull, result.push, 'stages/s')],
    notes: [
      'pull clients spawn no command: Lease then CompleteLease at once; the agent figure is the real `turboci runner` running `true`',
      'independent stages written in one WriteNodes; timed from that write to the WorkPlanCompletedEvent',
      'both sides write twice per stage (lease + completion, dispatch + completion), on one server with --sync FULL (the default)',
    ],
  },
  args,
);
process.exit(0);
