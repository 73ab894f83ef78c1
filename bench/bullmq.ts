// Stage DAGs end to end, ours against BullMQ flows on Redis — the peer users would otherwise pick for DAGs of jobs.
// Two shapes on both systems: a fan-in (N no-op stages, then one that needs them all) and a chain (each stage needs
// the one before). Measured from submitting the whole graph until its last stage completed, 4 parallel no-op
// executors on each side, each of one slot. Four comparisons per shape, all side by side in one run (every side
// warmed by one unmeasured round of the shape, then alternating rounds, medians):
//
//   durable   ours at the default --sync FULL (fsync per group commit) against BullMQ on a Redis this benchmark
//             starts itself with `--appendonly yes --appendfsync always` (fsync per write), on a free port and a
//             temp directory, stopped afterwards. For push runners and for pull executors.
//   default   ours at --sync NORMAL (survives a killed process, not power loss) against BullMQ on the Redis at
//             127.0.0.1:6379 as BullMQ users run it by default (no persistence). For push and for pull.
//
//   ours      the real server process (test/support/server.ts), one per side on a fresh database, kept for all of
//             the side's runs; each run a fresh workplan, the shape written in one WriteNodes (with omit_nodes:
//             the driver never reads the nodes back, as BullMQ's add gets ids, not jobs, from Redis); done on the
//             WorkPlanCompletedEvent. Push: 4 in-process no-op StageRunners of one slot, called over RunStream
//             (bench/stage-drivers.ts runStagesPush). Pull: 4 in-process no-op pull executors of one slot, using
//             the protocol as `turboci runner` does (one Work stream each).
//   BullMQ    one FlowProducer.add of the shape as a flow on a fresh key prefix; 4 in-process Workers of concurrency
//             1 with no-op processors; done when a worker reports the flow's root (the shape's last job) completed.
//             The queue is obliterated afterwards.
//
// The chain also gives the latency of one link (ms per stage, submit to last completion / N) on every side.
// Without a Redis at 127.0.0.1:6379 the default comparisons are skipped; if the durable Redis cannot be started
// (no redis-server), the durable ones are; both say so.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { FlowProducer, Queue, Worker, type FlowJob } from 'bullmq';
import { Redis } from 'ioredis';
import { startServer, tempDir, type ServerProcess } from '../test/support/server.js';
import { benchArgs, median, ratio, report, type Ratio } from './harness.js';
import { chain, fanIn, noopAnswer, runStagesPull, runStagesPush, startPullExecutors, type StageSpec } from './stage-drivers.js';
import { startTestRunner } from '../test/support/runner.js';
import { benchScript, cpuSeconds, spawnChild, type ChildProc } from './transport-support.js';
import { startAppInProcess, type AppInProcess } from './app-in-process.js';

interface RedisAt {
  readonly host: string;
  readonly port: number;
}
const DEFAULT_REDIS: RedisAt = { host: '127.0.0.1', port: 6379 };
/** Parallel no-op executors on each side: our runners (one slot each) and BullMQ workers (concurrency 1). */
const EXECUTORS = 4;
/** A run that takes longer is a bug, not a measurement: fail rather than hang CI. */
const RUN_TIMEOUT_MS = 150_000;

interface Shape {
  readonly kind: 'fan-in' | 'chain';
  /** fan-in: stages that the last one waits for; chain: stages in all. */
  readonly size: number;
}

/** Stages (jobs) one run executes, the final one included: what stages/s and jobs/s count. */
const stagesOf = (s: Shape) => (s.kind === 'fan-in' ? s.size + 1 : s.size);
const labelOf = (s: Shape) => `${s.kind} ${s.size}`;

/** Per-run figures besides the total, kept to report their medians. */
interface RunDetail {
  readonly submitMs: number;
  /**
   * CPU of the process that does the orchestrating, per stage, in µs: our server's, or the floor's calling process;
   * undefined for BullMQ (its work is split between Redis and the workers' Lua calls).
   */
  readonly cpuUsPerStage?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// BullMQ side

/**
 * Answers within ~2 s whether a Redis is at REDIS, with how it persists (for the note on durability); without one
 * the benchmark reports "skipped".
 */
async function probeRedis(at: RedisAt): Promise<{ persistence: string } | undefined> {
  const probe = new Redis({ ...at, lazyConnect: true, connectTimeout: 2000, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  probe.on('error', () => undefined); // connect() rejecting is the answer; the event would only be noise
  try {
    await probe.connect();
    if ((await probe.ping()) !== 'PONG') return undefined;
    return { persistence: await persistenceOf(probe) };
  } catch {
    return undefined;
  } finally {
    probe.disconnect();
  }
}

/** A free TCP port on 127.0.0.1 (the OS picks it; released before redis-server binds it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A Redis that fsyncs its append-only file on every write, in a temp directory; stop() kills it and removes it. */
interface DurableRedis extends RedisAt {
  readonly persistence: string;
  stop(): Promise<void>;
}

async function startDurableRedis(): Promise<DurableRedis | string> {
  const dir = tempDir('turboci-bench-redis-');
  let child: ChildProcess | undefined;
  const stop = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    dir.remove();
  };
  try {
    const port = await freePort();
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir.path, '--save', ''], {
      stdio: 'ignore',
    });
    const failed = new Promise<string>((resolve) => {
      child!.once('error', (err) => resolve(`redis-server could not be started: ${err.message}`));
      child!.once('exit', (code) => resolve(`redis-server exited (${code}) at start`));
    });
    const at = { host: '127.0.0.1', port };
    const deadline = Date.now() + 10_000;
    for (;;) {
      const probe = await Promise.race([probeRedis(at), failed]);
      if (typeof probe === 'string') {
        await stop();
        return probe;
      }
      if (probe) return { ...at, persistence: probe.persistence, stop };
      if (Date.now() > deadline) {
        await stop();
        return 'redis-server did not answer within 10 s';
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    return `redis-server could not be started: ${(err as Error).message}`;
  }
}

/** Redis' persistence as it reports it (CONFIG GET), in words. */
async function persistenceOf(redis: Redis): Promise<string> {
  const get = async (key: string) => ((await redis.config('GET', key)) as string[])[1] ?? '?';
  try {
    const [save, aof, aofFsync] = [await get('save'), await get('appendonly'), await get('appendfsync')];
    if (save === '' && aof === 'no') return 'Redis here runs without persistence (save "", appendonly no): BullMQ keeps nothing across a crash';
    if (aof === 'yes' && aofFsync === 'always') return 'Redis here fsyncs its append-only file on every write (appendfsync always)';
    return `Redis here persists without fsync per write (save "${save}", appendonly ${aof}, appendfsync ${aofFsync}): acknowledged jobs can be lost in a crash`;
  } catch {
    return "Redis' persistence is unknown (CONFIG GET refused)";
  }
}

const QUEUE = 'stages';
/** The flow's root is the shape's last job (BullMQ runs children before their parent). */
const ROOT_ID = 'last-stage';
let bullmqRuns = 0;

/** The shape as one flow: the fan-in is a parent with N children, the chain is N jobs nested N deep. */
function flowOf(shape: Shape): FlowJob {
  const root = { name: ROOT_ID, queueName: QUEUE, opts: { jobId: ROOT_ID } };
  if (shape.kind === 'fan-in') {
    return { ...root, children: Array.from({ length: shape.size }, (_, i) => ({ name: `s${i}`, queueName: QUEUE })) };
  }
  // BullMQ takes a flow 1000 deep: FlowProducer.add walks the tree and adds it in one atomic step.
  let node: FlowJob = { name: 's0', queueName: QUEUE };
  for (let i = 1; i < shape.size - 1; i++) node = { name: `s${i}`, queueName: QUEUE, children: [node] };
  return { ...root, children: [node] };
}

/** Resolves when `settled` resolves, rejects after ms: a lost completion must fail the run, not hang it. */
function withTimeout<T>(settled: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no completion within ${ms} ms`)), ms)));
  return Promise.race([settled, timeout]).finally(() => clearTimeout(timer));
}

/**
 * One BullMQ run on a fresh key prefix: workers are up and idle first (not timed), then the clock runs from
 * FlowProducer.add until a worker reports the root job completed.
 */
async function bullmqRun(shape: Shape, redis: RedisAt): Promise<RunDetail & { ms: number }> {
  const prefix = `turboci-bench-${process.pid}-${++bullmqRuns}`;
  const connection = { host: redis.host, port: redis.port, maxRetriesPerRequest: null }; // what BullMQ asks of a worker's connection
  let rootDone!: () => void;
  let broken!: (err: Error) => void;
  const done = new Promise<void>((resolve, reject) => ((rootDone = resolve), (broken = reject)));
  done.catch(() => undefined); // a failure before the await below is still thrown there, not reported as unhandled
  const workers = Array.from({ length: EXECUTORS }, () => {
    const w = new Worker(QUEUE, async () => undefined, { connection, prefix, concurrency: 1 });
    w.on('completed', (job) => {
      if (job.id === ROOT_ID) rootDone();
    });
    w.on('failed', (job, err) => broken(new Error(`BullMQ job ${job?.name ?? '?'} failed: ${err.message}`)));
    w.on('error', broken); // without a listener an 'error' event would kill the process
    return w;
  });
  const producer = new FlowProducer({ connection, prefix });
  producer.on('error', broken);
  const queue = new Queue(QUEUE, { connection, prefix });
  try {
    await Promise.all([...workers.map((w) => w.waitUntilReady()), producer.waitUntilReady(), queue.waitUntilReady()]);
    const flow = flowOf(shape);
    const t0 = performance.now();
    await producer.add(flow);
    const submitMs = performance.now() - t0;
    await withTimeout(done, RUN_TIMEOUT_MS, `BullMQ ${labelOf(shape)}`);
    return { ms: performance.now() - t0, submitMs };
  } finally {
    await Promise.all([...workers.map((w) => w.close()), producer.close()]);
    await queue.obliterate({ force: true });
    await queue.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Our side

const RUNNER_TYPE = 'noop';

function specOf(shape: Shape): StageSpec[] {
  return shape.kind === 'fan-in' ? fanIn(shape.size, RUNNER_TYPE) : chain(shape.size, RUNNER_TYPE);
}

/**
 * One of our sides: a real server process (its defaults: info logs, --sync FULL unless NORMAL is asked for) on a
 * fresh database, started at its first run and kept for every later one, as BullMQ's side keeps its Redis; each
 * run is a fresh workplan on it, as each BullMQ run is a fresh key prefix. Its log lines are drained from the pipe
 * but not parsed here (startServer keepLogs: false), as a log shipper would. The server's CPU per stage is read
 * from /proc around the run.
 */
function oursSide(name: string, sync: 'FULL' | 'NORMAL', runners: 'push' | 'pull'): Side {
  const dir = tempDir('turboci-bench-bullmq-');
  let server: Promise<ServerProcess> | undefined;
  return {
    name,
    run: async (shape) => {
      server ??= startServer(`${dir.path}/bench.db`, ['--sync', sync], { keepLogs: false });
      const { address, child } = await server;
      const specs = specOf(shape);
      const cpu0 = cpuSeconds(child.pid!);
      const r =
        runners === 'push'
          ? await runStagesPush(address, specs, { runners: EXECUTORS, maxConcurrent: 1, timeoutMs: RUN_TIMEOUT_MS })
          : await runStagesPull(address, specs, { executors: EXECUTORS, slots: 1, timeoutMs: RUN_TIMEOUT_MS });
      const cpu1 = cpuSeconds(child.pid!);
      const cpuUsPerStage = cpu0 !== undefined && cpu1 !== undefined ? ((cpu1 - cpu0) * 1e6) / stagesOf(shape) : undefined;
      return { ms: r.elapsedMs, submitMs: r.writeMs, ...(cpuUsPerStage === undefined ? {} : { cpuUsPerStage }) };
    },
    close: async () => {
      await (await server?.catch(() => undefined))?.stop();
      dir.remove();
    },
  };
}

/**
 * The floor of the push path: the same number of Run calls, and as many at a time, from a separate process to
 * the same in-process no-op runners, with nothing stored or decided (bench/unary-floor-client.ts). No server of
 * this API that makes one unary call per stage can beat it on this machine.
 */
async function floorRun(shape: Shape): Promise<RunDetail & { ms: number }> {
  const runners = await Promise.all(Array.from({ length: EXECUTORS }, () => startTestRunner({ run: async (req) => noopAnswer(req) })));
  try {
    const parallel = shape.kind === 'chain' ? 1 : EXECUTORS;
    const child = spawnChild([benchScript('unary-floor-client'), JSON.stringify({ addresses: runners.map((r) => r.address), calls: stagesOf(shape), parallel })]);
    const { ms, cpuMs } = JSON.parse(await child.nextLine(RUN_TIMEOUT_MS)) as { ms: number; cpuMs: number };
    await child.exited;
    return { ms, submitMs: 0, cpuUsPerStage: (cpuMs * 1000) / stagesOf(shape) };
  } finally {
    await Promise.all(runners.map((r) => r.close()));
  }
}

/**
 * The floor of the pull path: the same executors as our pull sides (4 × 1 slot, one Work stream each, the same
 * client code) against bench/stream-floor-server.ts, a grpc-js process that sends what our server sends on those
 * streams (a lease into each credit, `completed` for each completion) and decides, stores and syncs nothing; as
 * many attempts leased at a time as the shape allows ours (4 for the fan-in, 1 for the chain). Kept for all runs, as
 * our servers are. No server of this API leasing over Work streams can beat it on this machine.
 */
function streamFloorSide(): Side {
  let proc: Promise<{ child: ChildProc; address: string }> | undefined;
  return {
    name: STREAM_FLOOR,
    run: async (shape) => {
      proc ??= (async () => {
        const child = spawnChild([benchScript('stream-floor-server')]);
        return { child, address: (JSON.parse(await child.nextLine()) as { address: string }).address };
      })();
      const { child, address } = await proc;
      const executors = startPullExecutors(address, { executors: EXECUTORS, slots: 1, runnerType: RUNNER_TYPE });
      try {
        child.send(JSON.stringify({ calls: stagesOf(shape), parallel: shape.kind === 'chain' ? 1 : EXECUTORS }));
        const { ms, cpuMs } = JSON.parse(await child.nextLine(RUN_TIMEOUT_MS)) as { ms: number; cpuMs: number };
        return { ms, submitMs: 0, cpuUsPerStage: (cpuMs * 1000) / stagesOf(shape) };
      } finally {
        await executors.close();
      }
    },
    close: async () => {
      await (await proc?.catch(() => undefined))?.child.stop();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * The application without the transport (bench/app-in-process.ts): the same shape through a PullService in this
 * process, 4 sessions × 1 credit, at NORMAL. Beside the Work stream floor it splits a stage's cost in two.
 */
function appInProcessSide(): Side {
  let app: AppInProcess | undefined;
  return {
    name: APP_IN_PROCESS,
    run: (shape) => (app ??= startAppInProcess(EXECUTORS)).run(specOf(shape)),
    close: async () => app?.close(),
  };
}

/** One side of a comparison: a name, one timed run, and what to stop once every shape was run. */
interface Side {
  readonly name: string;
  run(shape: Shape): Promise<RunDetail & { ms: number }>;
  close?(): Promise<void>;
}

/**
 * Every side on one shape: `warmup` unmeasured rounds, then `rounds` measured ones, in an order that rotates each
 * round (so no side always runs first, or always right after the same one); returns each side's medians of the
 * measured rounds: stages/s, ms per stage, time to submit. The heap is collected before every run so no side pays
 * for another's garbage.
 */
async function compare(shape: Shape, sides: readonly Side[], rounds: number, warmup: number) {
  const per = new Map(sides.map((s) => [s.name, { perSecond: [] as number[], submitMs: [] as number[], cpu: [] as number[] }]));
  for (let round = 0; round < warmup + rounds; round++) {
    for (let k = 0; k < sides.length; k++) {
      const side = sides[(k + round) % sides.length]!;
      globalThis.gc?.();
      const r = await side.run(shape);
      if (round < warmup) continue;
      per.get(side.name)!.perSecond.push((stagesOf(shape) / r.ms) * 1000);
      per.get(side.name)!.submitMs.push(r.submitMs);
      if (r.cpuUsPerStage !== undefined) per.get(side.name)!.cpu.push(r.cpuUsPerStage);
    }
  }
  return new Map(
    [...per].map(([name, v]) => {
      const perSecond = median(v.perSecond);
      return [name, { perSecond, msPerStage: 1000 / perSecond, submitMs: median(v.submitMs), cpuUsPerStage: v.cpu.length ? median(v.cpu) : undefined }] as const;
    }),
  );
}

const args = benchArgs();
const SHAPES: readonly Shape[] = args.smoke
  ? [
      { kind: 'fan-in', size: 50 },
      { kind: 'chain', size: 20 },
    ]
  : [
      { kind: 'fan-in', size: 10_000 },
      { kind: 'chain', size: 1_000 },
    ];
const ROUNDS = args.smoke ? 1 : 3;
/**
 * Unmeasured rounds of every side before the measured ones, per shape: a server in service, a Redis and its
 * workers have long compiled their hot paths and sized their heaps. One round was not enough for ours when each
 * run had a fresh server warmed by 500 stages: a chain of 1,000 on such a server ran at 1,260–1,520 stages/s, on
 * the same server 3,000 stages later at 1,950–2,240, and the runs of this process (BullMQ's workers, our runners
 * and executors) warm up as well.
 */
const WARMUP_ROUNDS = args.smoke ? 0 : 1;
/** The side that stores nothing: one bare unary Run call per stage (floorRun). */
const FLOOR = 'grpc-js unary floor';
/** The pull path's floor: our executors on Work streams, against a server that only sends the messages (streamFloorSide). */
const STREAM_FLOOR = 'grpc-js Work stream floor';
/** The pull path's application alone: no gRPC (appInProcessSide). */
const APP_IN_PROCESS = 'application in process, pull, NORMAL';
/** The targets: durable against durable, and NORMAL against BullMQ's default setup. */
const TARGETS = { durable: { 'fan-in': 2, chain: 1.5 }, default: { 'fan-in': 1, chain: 1 } } as const;

const figures: Record<string, number | string> = {};
const ratios: Ratio[] = [];
const notes: string[] = [];

const defaultRedis = await probeRedis(DEFAULT_REDIS);
if (!defaultRedis) notes.push(`skipped ours --sync NORMAL vs BullMQ on the default Redis: no Redis at ${DEFAULT_REDIS.host}:${DEFAULT_REDIS.port}`);
const durable = await startDurableRedis();
if (typeof durable === 'string') notes.push(`skipped ours --sync FULL vs BullMQ on a durable Redis: ${durable}`);
const durableRedis = typeof durable === 'string' ? undefined : durable;

const sides: Side[] = [{ name: FLOOR, run: floorRun }, streamFloorSide(), appInProcessSide()];
try {
  if (durableRedis) {
    sides.push(
      oursSide('ours push FULL', 'FULL', 'push'),
      oursSide('ours pull FULL', 'FULL', 'pull'),
      { name: 'BullMQ durable', run: (s) => bullmqRun(s, durableRedis) },
    );
  }
  if (defaultRedis) {
    sides.push(
      oursSide('ours push NORMAL', 'NORMAL', 'push'),
      oursSide('ours pull NORMAL', 'NORMAL', 'pull'),
      { name: 'BullMQ default', run: (s) => bullmqRun(s, DEFAULT_REDIS) },
    );
  }
  // Without any Redis there is nothing to compare ours with: the floors alone are not run either.
  for (const shape of sides.some((side) => side.name.startsWith('ours')) ? SHAPES : []) {
    const r = await compare(shape, sides, ROUNDS, WARMUP_ROUNDS);
    const label = labelOf(shape);
    const get = (name: string) => r.get(name)!;
    for (const [name, v] of r) {
      figures[`${name.startsWith('ours') ? '*' : ''}${label}: ${name} (${name.startsWith('BullMQ') ? 'jobs' : name === FLOOR ? 'calls' : name === STREAM_FLOOR ? 'leases' : 'stages'}/s)`] = v.perSecond;
      if (shape.kind === 'chain') figures[`${name.startsWith('ours') ? '*' : ''}${label}: ${name}, ms per link`] = v.msPerStage;
    }
    for (const [name, v] of r) figures[`${label}: ${name}, submit the graph (ms)`] = v.submitMs;
    // What dominates: the orchestrating process's CPU per stage (the submit included), against the floor's per call.
    for (const [name, v] of r) if (v.cpuUsPerStage !== undefined) figures[`${name.startsWith('ours') ? '*' : ''}${label}: ${name}, CPU per stage (µs)`] = v.cpuUsPerStage;
    // What the targets ask for, against the floor: above 1, no design with one unary call per stage reaches it.
    const floor = get(FLOOR).perSecond;
    if (durableRedis) figures[`*${label}: durable target (${TARGETS.durable[shape.kind]}× BullMQ) / unary floor`] = (TARGETS.durable[shape.kind] * get('BullMQ durable').perSecond) / floor;
    if (defaultRedis) figures[`*${label}: default target (${TARGETS.default[shape.kind]}× BullMQ) / unary floor`] = (TARGETS.default[shape.kind] * get('BullMQ default').perSecond) / floor;
    // The same against the Work stream floor: above 1, no server leasing over Work streams reaches it here.
    const streamFloor = get(STREAM_FLOOR).perSecond;
    if (durableRedis) figures[`*${label}: durable target (${TARGETS.durable[shape.kind]}× BullMQ) / Work stream floor`] = (TARGETS.durable[shape.kind] * get('BullMQ durable').perSecond) / streamFloor;
    if (defaultRedis) figures[`*${label}: default target (${TARGETS.default[shape.kind]}× BullMQ) / Work stream floor`] = (TARGETS.default[shape.kind] * get('BullMQ default').perSecond) / streamFloor;
    figures[`${label}: ours pull ${durableRedis ? 'FULL' : 'NORMAL'} / Work stream floor`] = get(`ours pull ${durableRedis ? 'FULL' : 'NORMAL'}`).perSecond / streamFloor;
    // How much of the application's own rate survives the transport, at the same sync setting.
    if (defaultRedis) figures[`${label}: ours pull NORMAL / ${APP_IN_PROCESS}`] = get('ours pull NORMAL').perSecond / get(APP_IN_PROCESS).perSecond;
    for (const runners of ['push', 'pull'] as const) {
      figures[`${label}: ours ${runners} FULL / unary floor`] = durableRedis ? get(`ours ${runners} FULL`).perSecond / floor : 'not run';
      if (durableRedis) {
        const ours = get(`ours ${runners} FULL`);
        const base = get('BullMQ durable');
        ratios.push(ratio(`${label} ${runners} FULL vs BullMQ fsync-always`, ours.perSecond, base.perSecond, 'stages/s', { target: TARGETS.durable[shape.kind] }));
      }
      if (defaultRedis) {
        const ours = get(`ours ${runners} NORMAL`);
        const base = get('BullMQ default');
        ratios.push(ratio(`${label} ${runners} NORMAL vs BullMQ no persistence`, ours.perSecond, base.perSecond, 'stages/s', { target: TARGETS.default[shape.kind] }));
      }
    }
  }
} finally {
  await Promise.all(sides.map((s) => s.close?.()));
  await durableRedis?.stop();
}
notes.push(
  `durable: ours --sync FULL fsyncs every group commit before it answers, dispatches or hands out a lease; ${durableRedis?.persistence ?? 'durable Redis not run'} (started by this benchmark, stopped afterwards)`,
  `default: ours --sync NORMAL loses nothing when the process is killed, only on power loss; ${defaultRedis?.persistence ?? 'default Redis not run'}`,
  `fan-in N = N no-op stages + 1 that waits for all (N + 1 counted); chain N = N stages, each waiting for the one before; BullMQ chain = a flow nested N deep`,
  `parallelism: ours ${EXECUTORS} push runners × 1 slot (over RunStream), or ${EXECUTORS} pull executors × 1 slot (one Work stream each), vs BullMQ ${EXECUTORS} workers × concurrency 1, all in this process; the server / Redis in their own`,
  `${FLOOR}: the same number of StageRunner.Run calls, as many at a time (4 for the fan-in, 1 for the chain), from a separate process to the same no-op runners, storing and deciding nothing: the ceiling for any design that makes one unary call per stage; a target / floor above 1 needs fewer calls than stages (streaming or batching), not a cheaper server`,
  `${STREAM_FLOOR}: the same ${EXECUTORS} pull executors × 1 slot (one Work stream each, this process) against a grpc-js process that sends only what our server sends on those streams (a lease into each credit, a completed answer per completion), as many attempts leased at a time as the shape allows, deciding, storing and syncing nothing: the ceiling for any server that leases over Work streams here; a target / floor above 1 is out of reach of such a server on this machine`,
  `${APP_IN_PROCESS}: the same shape through our Orchestrator and PullService in this process, on a SQLite file at --sync NORMAL, ${EXECUTORS} sessions × 1 credit completing each lease on the next turn: everything the server decides, appends, commits and folds, without gRPC; its CPU per stage beside the Work stream floor's splits a stage's cost between the application and the transport`,
  `time = submit the whole graph → last stage completed; ms per link = that time / N on the chain; ${ROUNDS} measured round(s) per side, order rotating, median kept`,
  WARMUP_ROUNDS > 0
    ? `warm, as in service: each of our sides is one server kept for all its runs (a fresh workplan per run), as BullMQ's side is one Redis (a fresh key prefix per run); every side runs each shape ${WARMUP_ROUNDS} time(s) unmeasured before its measured rounds`
    : 'no warm-up (smoke)',
);
report({ benchmark: 'bullmq', figures, ratios, notes }, args);
process.exit(0);
