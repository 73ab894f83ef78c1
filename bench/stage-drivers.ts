// Drives whole workplans through a real server process, for the benchmarks that compare stage execution (dispatch,
// pull, bullmq). Everything here is client side: the server is whatever `address` points at.
//
//   shapes      independentStages(n), fanIn(n), chain(n): workplan shapes as plain StageSpec lists
//   runners     startNoopRunners(): K in-process StageRunner gRPC servers that answer Run at once with success
//   pullers     startPullExecutors(): K in-process pull executors (one channel each) that lease and complete at once
//   drive       driveWorkplan(): create a workplan, write the stages, resolve on its WorkPlanCompletedEvent
//   all in one  runStagesPush(): runners + drive + cleanup, the "ours" of the BullMQ comparison
//   server      withServer(): a fresh `turboci serve` process on a temp database, removed afterwards
import { credentials, Metadata, status, type ClientDuplexStream, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import {
  CompleteLeaseRequest,
  LeaseRequest,
  TurboCIRunnerPullClient,
  type CompleteLeaseResponse,
  type LeasedAttempt,
  type LeaseResponse,
  type WorkRequest,
  type WorkResponse,
} from '../src/gen/turboci/v1/pull.js';
import { CheckState, NodeType, PredicateType, StageState } from '../src/gen/turboci/v1/common.js';
import { WatchWorkPlanRequest, WriteNodesRequest, type TurboCIOrchestratorClient, type WorkPlanCompletedEvent, type WorkPlanEvent } from '../src/gen/turboci/v1/service.js';
import type { RunRequest, RunResponse } from '../src/gen/turboci/v1/stagerunner.js';
import { connect, startServer, tempDir } from '../test/support/server.js';
import { startTestRunner, type TestRunner } from '../test/support/runner.js';

/** One stage of a workplan shape: it starts when every stage in `dependsOn` is FINAL (AND). */
export interface StageSpec {
  readonly id: string;
  /** Who executes it: push runners or pull agents of this type; '' leaves it to clients claiming it via WriteNodes. */
  readonly runnerType: string;
  readonly dependsOn?: readonly string[];
  /** The stage's args (e.g. `{command: 'true'}` for `turboci runner` agents); none when absent. */
  readonly args?: Readonly<Record<string, unknown>>;
}

/** n stages with no dependencies: s0 … s(n-1). */
export function independentStages(n: number, runnerType: string): StageSpec[] {
  return Array.from({ length: n }, (_, i) => ({ id: `s${i}`, runnerType }));
}

/** n independent stages, then `sink`, which depends on all of them (n + 1 stages). */
export function fanIn(n: number, runnerType: string): StageSpec[] {
  const leaves = independentStages(n, runnerType);
  return [...leaves, { id: 'sink', runnerType, dependsOn: leaves.map((s) => s.id) }];
}

/** s0 ← s1 ← … ← s(n-1): each stage depends on the one before, so they run strictly one after the other. */
export function chain(n: number, runnerType: string): StageSpec[] {
  return Array.from({ length: n }, (_, i) => ({ id: `s${i}`, runnerType, ...(i > 0 ? { dependsOn: [`s${i - 1}`] } : {}) }));
}

/** A no-op runner's answer: success, stage FINAL, and a finalized result on every check assigned to the stage. */
export function noopAnswer(req: RunRequest): Partial<RunResponse> {
  return {
    stageState: StageState.STAGE_STATE_FINAL,
    checkUpdates: req.assignedCheckIds.map((checkId) => ({
      checkId,
      state: CheckState.CHECK_STATE_FINAL,
      resultData: { ok: true },
      finalize: true,
      failure: undefined,
    })),
  };
}

export interface NoopRunners {
  /** Run calls answered so far, over all runners. */
  runs(): number;
  /** Unregisters every runner from the server, then shuts the gRPC servers down. */
  close(): Promise<void>;
}

/**
 * Starts `count` in-process StageRunner servers (SYNC, answering Run at once with `noopAnswer`) and registers each
 * with the server for `runnerType`, `maxConcurrent` slots each. Runner ids are unique per call, so several pools
 * (one per round) never refresh each other's registrations.
 */
export async function startNoopRunners(
  address: string,
  opts: { count: number; runnerType: string; maxConcurrent: number },
): Promise<NoopRunners> {
  const conn = connect(address);
  const runners: TestRunner[] = [];
  const registrations: string[] = [];
  const close = async () => {
    await Promise.allSettled(registrations.map((registrationId) => conn.api.unregisterStageRunner({ registrationId })));
    await Promise.all(runners.map((r) => r.close()));
    conn.close();
  };
  try {
    const tag = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    for (let i = 0; i < opts.count; i++) {
      const runner = await startTestRunner({ run: async (req) => noopAnswer(req) });
      runners.push(runner);
      const reg = await conn.api.registerStageRunner({
        runnerId: `noop-${opts.runnerType}-${tag}-${i}`,
        runnerType: opts.runnerType,
        address: runner.address,
        maxConcurrent: opts.maxConcurrent,
        ttlSeconds: 3600n,
      });
      registrations.push(reg.registrationId);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { runs: () => runners.reduce((n, r) => n + r.runs.length, 0), close };
}

/** The StageWrite of a spec; dependencies on stages, AND. */
function stageWrite(s: StageSpec) {
  return {
    id: s.id,
    runnerType: s.runnerType,
    ...(s.args ? { args: { ...s.args } } : {}),
    ...(s.dependsOn?.length
      ? {
          dependencies: {
            predicate: PredicateType.PREDICATE_TYPE_AND,
            dependencies: s.dependsOn.map((targetId) => ({ targetType: NodeType.NODE_TYPE_STAGE, targetId })),
          },
        }
      : {}),
  };
}

/**
 * Resolves with the workplan's WorkPlanCompletedEvent. The stream is filtered down to one stage's FINAL (the
 * completion event comes whatever the filters), so the server streams one node event, not one per change of
 * every node. Opening it before the nodes are written is safe: snapshot then live changes, no gap.
 */
function watchCompletion(client: TurboCIOrchestratorClient, workPlanId: string, stageId: string, timeoutMs: number): { done: Promise<WorkPlanCompletedEvent>; cancel(): void } {
  const request = WatchWorkPlanRequest.fromPartial({
    workPlanId,
    includeStages: true,
    stageIdFilter: [stageId],
    stageStateFilter: [StageState.STAGE_STATE_FINAL],
  });
  const stream = client.watchWorkPlan(request, new Metadata(), { deadline: Date.now() + timeoutMs });
  let settled = false;
  const done = new Promise<WorkPlanCompletedEvent>((resolve, reject) => {
    stream.on('data', (e: WorkPlanEvent) => {
      if (!e.completedEvent || settled) return;
      settled = true;
      stream.cancel();
      resolve(e.completedEvent);
    });
    stream.on('error', (err: ServiceError) => {
      if (settled) return; // our own cancel
      settled = true;
      reject(new Error(`watching workplan ${workPlanId}: ${status[err.code]}: ${err.details}`));
    });
  });
  return {
    done,
    cancel: () => {
      settled = true;
      stream.cancel();
    },
  };
}

/**
 * One WriteNodes with every stage; with the driver's own deadline (a 10k-stage write can outlast a usual one). With
 * omit_nodes, as a submitter that never reads the nodes back sets it: the 10k stages are not encoded back to it.
 */
function writeStages(client: TurboCIOrchestratorClient, workPlanId: string, stages: readonly StageSpec[], timeoutMs: number): Promise<void> {
  const request = WriteNodesRequest.fromPartial({ workPlanId, stages: stages.map(stageWrite), omitNodes: true });
  return new Promise((resolve, reject) =>
    client.writeNodes(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err) => (err ? reject(err) : resolve())),
  );
}

export interface DriveResult {
  readonly workPlanId: string;
  /** From just before WriteNodes until the WorkPlanCompletedEvent arrived: what a submitter waits for. */
  readonly elapsedMs: number;
  /** Of which the WriteNodes round trip (the whole shape in one atomic write). */
  readonly writeMs: number;
}

/**
 * Creates a workplan, writes every stage in one WriteNodes and resolves when every stage is FINAL (its completion
 * event). Whoever executes the stages (push runners, pull agents, raw clients) must already be running, or be
 * started by `whileRunning`, which gets the workplan id right after the write and is awaited too.
 * Rejects if any stage finished failed (a benchmark must not time failures) or after `timeoutMs`.
 */
export async function driveWorkplan(
  address: string,
  stages: readonly StageSpec[],
  opts: { timeoutMs?: number; whileRunning?: (workPlanId: string) => Promise<void> } = {},
): Promise<DriveResult> {
  if (stages.length === 0) throw new Error('driveWorkplan: no stages');
  const conn = connect(address);
  try {
    const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const watch = watchCompletion(conn.client, workPlanId, stages.at(-1)!.id, timeoutMs);
    try {
      const t0 = performance.now();
      await writeStages(conn.client, workPlanId, stages, timeoutMs);
      const writeMs = performance.now() - t0;
      const [completed] = await Promise.all([watch.done, opts.whileRunning?.(workPlanId)]);
      const elapsedMs = performance.now() - t0;
      if (completed.hasFailures) throw new Error(`workplan ${workPlanId} completed with failures`);
      if (completed.stagesCompleted !== stages.length) throw new Error(`workplan ${workPlanId}: ${completed.stagesCompleted} of ${stages.length} stages FINAL`);
      return { workPlanId, elapsedMs, writeMs };
    } finally {
      watch.cancel();
    }
  } finally {
    conn.close();
  }
}

/**
 * Runs `stages` end to end with `runners` no-op push runners per runner type (each `maxConcurrent` slots, default
 * 16), started and registered before the clock starts and removed afterwards. Every stage must have a runner_type.
 */
export async function runStagesPush(
  address: string,
  stages: readonly StageSpec[],
  opts: { runners: number; maxConcurrent?: number; timeoutMs?: number },
): Promise<DriveResult> {
  const types = [...new Set(stages.map((s) => s.runnerType))];
  if (types.includes('')) throw new Error('runStagesPush: every stage needs a runner_type');
  const pools: NoopRunners[] = [];
  try {
    for (const runnerType of types) pools.push(await startNoopRunners(address, { count: opts.runners, runnerType, maxConcurrent: opts.maxConcurrent ?? 16 }));
    return await driveWorkplan(address, stages, opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs });
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
}

/** How pull executors talk to the server (see startPullExecutors). */
export type PullProtocol = 'stream' | 'unary' | 'v1';

export interface PullExecutors {
  /** Attempts leased so far, over all executors. */
  leases(): number;
  /** Cancels the waiting Lease calls, waits for the executors to end, closes the channels; throws what failed. */
  close(): Promise<void>;
}

/** Long-poll wait of an idle executor's Lease; executors are cancelled, not waited out, when a run ends. */
const PULL_WAIT_MS = 10_000;

/**
 * Starts `executors` in-process no-op pull executors, one gRPC channel each, with `slots` slots each; they run
 * nothing (no command is spawned), so this is the protocol and the scheduler alone, as `startNoopRunners` is for
 * push. `protocol`:
 * - 'stream' (default, what `turboci runner` does): one Work stream per executor with credit for its slots; each
 *   leased attempt is completed on the stream at once, giving its credit back: two messages per stage.
 * - 'unary': `turboci runner --protocol unary`: one long-polling Lease at a time asking for as many attempts as slots
 *   are free (max_attempts), and each completion asks for the slot's next attempt in the same call (lease_next):
 *   one round trip per stage while there is work.
 * - 'v1': each slot loops Lease → CompleteLease (two round trips per stage), as a client of the v1 contract does.
 */
export function startPullExecutors(address: string, opts: { executors: number; slots: number; runnerType: string; protocol?: PullProtocol }): PullExecutors {
  const channels = Array.from({ length: opts.executors }, () => new TurboCIRunnerPullClient(address, credentials.createInsecure()));
  const waiting = new Set<ClientUnaryCall>();
  const streams = new Set<ClientDuplexStream<WorkRequest, WorkResponse>>();
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let stopped = false;
  let leases = 0;
  const wakes = new Set<() => void>();

  const lease = (client: TurboCIRunnerPullClient, runnerId: string, maxAttempts: number) =>
    new Promise<LeasedAttempt[]>((resolve, reject) => {
      const req = LeaseRequest.fromPartial({ runnerId, runnerType: opts.runnerType, waitMs: PULL_WAIT_MS, maxAttempts });
      const call = client.lease(req, new Metadata(), { deadline: Date.now() + PULL_WAIT_MS + 10_000 }, (err, res: LeaseResponse) => {
        waiting.delete(call);
        if (err) reject(err);
        else resolve(res.attempt ? [res.attempt, ...res.moreAttempts] : []);
      });
      waiting.add(call);
    });
  /** Completes `a` (FINAL, a result on every assigned check); with leaseNext, resolves with the next attempt leased. */
  const complete = (client: TurboCIRunnerPullClient, runnerId: string, a: LeasedAttempt, leaseNext: boolean) =>
    new Promise<LeasedAttempt | undefined>((resolve, reject) => {
      const req: CompleteLeaseRequest = {
        ...answer(a),
        ...(leaseNext ? { leaseNext: LeaseRequest.fromPartial({ runnerId, runnerType: opts.runnerType, maxAttempts: 1 }) } : {}),
      };
      client.completeLease(req, new Metadata(), { deadline: Date.now() + 30_000 }, (err, res: CompleteLeaseResponse) => (err ? reject(err) : resolve(res.nextAttempts[0])));
    });
  const cancelledByUs = (err: unknown) => stopped && (err as ServiceError).code === status.CANCELLED;
  const answer = (a: LeasedAttempt) =>
    CompleteLeaseRequest.fromPartial({
      leaseToken: a.leaseToken,
      stageState: StageState.STAGE_STATE_FINAL,
      checkUpdates: a.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: { ok: true }, finalize: true })),
    });

  /** Work: one stream, credit for every slot; each attempt completed on it at once, its credit given back. */
  const streamLoop = (client: TurboCIRunnerPullClient, runnerId: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const call = client.work(new Metadata());
      streams.add(call);
      let seq = 0n;
      call.on('data', (m: WorkResponse) => {
        if (m.leased) {
          leases++;
          call.write({ complete: { seq: ++seq, completion: answer(m.leased), credit: 1 } });
        } else if (m.completed && m.completed.code !== status.OK) {
          call.cancel();
          reject(new Error(`completion ${m.completed.seq} refused: ${status[m.completed.code]}: ${m.completed.message}`));
        }
      });
      call.on('error', (err) => (cancelledByUs(err) ? undefined : reject(err)));
      call.on('status', () => {
        streams.delete(call);
        resolve();
      });
      call.write({ open: { runnerId, runnerType: opts.runnerType, labels: {}, credit: opts.slots } });
    });

  /** v1: one slot, Lease → CompleteLease. */
  const v1Loop = async (client: TurboCIRunnerPullClient, runnerId: string): Promise<void> => {
    while (!stopped) {
      let got: LeasedAttempt[];
      try {
        got = await lease(client, runnerId, 1);
      } catch (err) {
        if (cancelledByUs(err)) return;
        throw err;
      }
      for (const a of got) {
        leases++;
        await complete(client, runnerId, a, false);
      }
    }
  };

  /** The agent's way: a lease loop for the free slots, each slot chaining completions into its next attempt. */
  const executor = async (client: TurboCIRunnerPullClient, runnerId: string): Promise<void> => {
    let free = opts.slots;
    const workers = new Set<Promise<void>>();
    let wake: (() => void) | null = null;
    const woken = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    wakes.add(woken);
    const work = async (first: LeasedAttempt) => {
      for (let a: LeasedAttempt | undefined = first; a; ) {
        leases++;
        a = await complete(client, runnerId, a, !stopped);
      }
    };
    try {
      while (!stopped) {
        if (free === 0) {
          await new Promise<void>((r) => (wake = r));
          continue;
        }
        let got: LeasedAttempt[];
        try {
          got = await lease(client, runnerId, free);
        } catch (err) {
          if (cancelledByUs(err)) break;
          throw err;
        }
        for (const a of got) {
          free--;
          const w: Promise<void> = work(a).finally(() => {
            free++;
            workers.delete(w);
            woken();
          });
          workers.add(w);
        }
      }
    } finally {
      wakes.delete(woken);
      await Promise.all([...workers]);
    }
  };

  const protocol = opts.protocol ?? 'stream';
  const loops = channels.flatMap((client, c) =>
    protocol === 'v1'
      ? Array.from({ length: opts.slots }, (_, j) => v1Loop(client, `pull-${tag}-${c}-${j}`))
      : [protocol === 'stream' ? streamLoop(client, `pull-${tag}-${c}`) : executor(client, `pull-${tag}-${c}`)],
  );
  // One that fails stops only itself; close() reports the failure. Catching here keeps it from being unhandled.
  const ended = Promise.allSettled(loops);
  return {
    leases: () => leases,
    close: async () => {
      stopped = true;
      for (const call of waiting) call.cancel();
      for (const call of streams) call.cancel();
      for (const w of wakes) w();
      const failed = (await ended).find((r): r is PromiseRejectedResult => r.status === 'rejected');
      for (const ch of channels) ch.close();
      if (failed) throw failed.reason;
    },
  };
}

/**
 * Runs `stages` end to end with `executors` no-op pull executors per runner type (`slots` each), started before the
 * clock starts and closed afterwards. Every stage must have a runner_type.
 */
export async function runStagesPull(
  address: string,
  stages: readonly StageSpec[],
  opts: { executors: number; slots: number; timeoutMs?: number; protocol?: PullProtocol },
): Promise<DriveResult> {
  const types = [...new Set(stages.map((s) => s.runnerType))];
  if (types.includes('')) throw new Error('runStagesPull: every stage needs a runner_type');
  const pools = types.map((runnerType) => startPullExecutors(address, { executors: opts.executors, slots: opts.slots, runnerType, protocol: opts.protocol ?? 'stream' }));
  let result: DriveResult;
  try {
    result = await driveWorkplan(address, stages, opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs });
  } catch (err) {
    await Promise.allSettled(pools.map((p) => p.close()));
    throw err;
  }
  await Promise.all(pools.map((p) => p.close()));
  return result;
}

/** Runs fn against a fresh real server process (`turboci serve` + serveArgs) on a temp database; both are removed afterwards, also on error. */
export async function withServer<T>(name: string, serveArgs: readonly string[], fn: (address: string) => Promise<T>): Promise<T> {
  const dir = tempDir(`turboci-bench-${name}-`);
  try {
    const server = await startServer(`${dir.path}/${name}.db`, [...serveArgs]);
    try {
      return await fn(server.address);
    } finally {
      await server.stop();
    }
  } finally {
    dir.remove();
  }
}
