// Stage DAGs end to end, ours against BullMQ flows on Redis — the peer users would otherwise pick for DAGs of jobs.
// Two shapes on both systems: a fan-in (N no-op stages, then one that needs them all) and a chain (each stage needs
// the one before). Measured from submitting the whole graph until its last stage completed, 4 parallel no-op
// executors on each side.
//
//   ours    the real server process (test/support/server.ts, default --sync FULL: fsync per commit, durable), a
//           fresh database per run; the shape written in one WriteNodes; 4 in-process no-op push runners of one
//           slot each (bench/stage-drivers.ts runStagesPush); done on the WorkPlanCompletedEvent.
//   BullMQ  one FlowProducer.add of the shape as a flow on a fresh key prefix; 4 in-process Workers of concurrency
//           1 with no-op processors; done when a worker reports the flow's root (the shape's last job) completed.
//           The queue is obliterated afterwards.
//
// Without a Redis at 127.0.0.1:6379 (CI may have none) it reports "skipped" and exits 0.
import { FlowProducer, Queue, Worker, type FlowJob } from 'bullmq';
import { Redis } from 'ioredis';
import { startServer, tempDir, type ServerProcess } from '../test/support/server.js';
import { benchArgs, median, ratio, report, sideBySide, type Ratio } from './harness.js';
import { chain, fanIn, runStagesPush, type StageSpec } from './stage-drivers.js';

const REDIS = { host: '127.0.0.1', port: 6379 } as const;
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
}

// ---------------------------------------------------------------------------------------------------------------
// BullMQ side

/**
 * Answers within ~2 s whether a Redis is at REDIS, with how it persists (for the note on durability); without one
 * the benchmark reports "skipped".
 */
async function probeRedis(): Promise<{ persistence: string } | undefined> {
  const probe = new Redis({ ...REDIS, lazyConnect: true, connectTimeout: 2000, retryStrategy: () => null, maxRetriesPerRequest: 0 });
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
async function bullmqRun(shape: Shape): Promise<RunDetail & { ms: number }> {
  const prefix = `turboci-bench-${process.pid}-${++bullmqRuns}`;
  const connection = { ...REDIS, maxRetriesPerRequest: null }; // what BullMQ asks of a worker's connection
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
 * One run of ours on a fresh server and database (as BullMQ gets a fresh prefix); startup is not timed. The
 * server keeps its defaults: --sync FULL, and info logs (startServer waits for the "listening" line).
 */
async function oursRun(shape: Shape, sync: 'FULL' | 'NORMAL' = 'FULL'): Promise<RunDetail & { ms: number }> {
  const dir = tempDir('turboci-bench-bullmq-');
  let server: ServerProcess | undefined;
  try {
    server = await startServer(`${dir.path}/bench.db`, ['--sync', sync]);
    const r = await runStagesPush(server.address, specOf(shape), { runners: EXECUTORS, maxConcurrent: 1, timeoutMs: RUN_TIMEOUT_MS });
    return { ms: r.elapsedMs, submitMs: r.writeMs };
  } finally {
    await server?.stop();
    dir.remove();
  }
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Both systems on one shape, alternating; returns stages/s (median of the rounds) for each and the median time to
 * submit the graph. The heap is collected before every run so neither side pays for the other's garbage.
 */
async function compare(shape: Shape, rounds: number) {
  const submits = { ours: [] as number[], baseline: [] as number[] };
  const measure = (run: (s: Shape) => Promise<RunDetail & { ms: number }>, into: number[]) => async () => {
    globalThis.gc?.();
    const r = await run(shape);
    into.push(r.submitMs);
    return (stagesOf(shape) / r.ms) * 1000;
  };
  const perSecond = await sideBySide(rounds, measure(oursRun, submits.ours), measure(bullmqRun, submits.baseline));
  return { perSecond, submitMs: { ours: median(submits.ours), baseline: median(submits.baseline) } };
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
const ROUNDS = args.smoke ? 1 : 2;

const figures: Record<string, number | string> = {};
const ratios: Ratio[] = [];
const notes: string[] = [];

const redis = await probeRedis();
if (!redis) {
  notes.push(`skipped: no Redis at ${REDIS.host}:${REDIS.port}`);
} else {
  for (const shape of SHAPES) {
    const { perSecond, submitMs } = await compare(shape, ROUNDS);
    const label = labelOf(shape);
    figures[`*${label}: ours (stages/s)`] = perSecond.ours;
    figures[`*${label}: BullMQ (jobs/s)`] = perSecond.baseline;
    figures[`${label}: ours WriteNodes of the shape (ms)`] = submitMs.ours;
    figures[`${label}: BullMQ FlowProducer.add (ms)`] = submitMs.baseline;
    ratios.push(ratio(`${label} stages/s`, perSecond.ours, perSecond.baseline, 'stages/s', { target: 2 }));
    // The same against --sync NORMAL: still nothing lost when the process is killed (WAL), only on power loss.
    const normal: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      globalThis.gc?.();
      normal.push((stagesOf(shape) / (await oursRun(shape, 'NORMAL')).ms) * 1000);
    }
    figures[`${label}: ours --sync NORMAL (stages/s)`] = median(normal);
    ratios.push(ratio(`${label} stages/s, ours --sync NORMAL`, median(normal), perSecond.baseline, 'stages/s'));
  }
  notes.push(
    `durability differs: ours (default --sync FULL) fsyncs before it answers or dispatches (group commit), and --sync NORMAL loses nothing when the process is killed, only on power loss; ${redis.persistence}`,
    `fan-in N = N no-op stages + 1 that waits for all (N + 1 counted); chain N = N stages, each waiting for the one before; BullMQ chain = a flow nested N deep`,
    `parallelism: ours ${EXECUTORS} push runners × 1 slot vs BullMQ ${EXECUTORS} workers × concurrency 1, all in this process; the server / Redis in their own`,
    `time = submit the whole graph → last stage completed; ${ROUNDS} round(s) per system, alternating, median kept`,
  );
}
report({ benchmark: 'bullmq', figures, ratios, notes }, args);
process.exit(0);
