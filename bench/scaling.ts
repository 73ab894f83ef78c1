// Scaling: a workplan of N nodes in three shapes (chain, wide fan-out/fan-in, random DAG with ~3 dependencies per
// node), created with WriteNodes and driven to completion (every attempt claimed, then completed with its check's
// result), in-process through Orchestrator.writeNodes on a real SQLite file. Each (shape, N) runs in a fresh process
// (bench/scaling-worker.ts) so peak RSS is that run's own. The baseline of each shape is its own smallest run:
// linear scaling means the cost per node stays what it is at 1k.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchArgs, median, ratio, report, type Ratio } from './harness.js';
import type { WorkerResult } from './scaling-worker.js';
import { SHAPES, WRITE_BATCH_NODES, type Shape } from './scaling-workload.js';

const args = benchArgs();
const SIZES = args.smoke ? [100, 300] : [1_000, 10_000, 100_000];
/**
 * `--scaling-1m[=SHAPE,...]`: also a run of 1M nodes per shape (all, or those named), for memory growth past 100k.
 * Not in the default run: a 1M run takes ~10 minutes per shape on 2 shared cores.
 */
const MILLION = 1_000_000;
const millionArg = process.argv.slice(2).find((a) => a === '--scaling-1m' || a.startsWith('--scaling-1m='));
const MILLION_SHAPES: readonly Shape[] = !millionArg
  ? []
  : millionArg.includes('=')
    ? (millionArg.slice(millionArg.indexOf('=') + 1).split(',') as Shape[])
    : SHAPES;
for (const shape of MILLION_SHAPES) if (!SHAPES.includes(shape)) throw new Error(`--scaling-1m: unknown shape "${shape}" (${SHAPES.join(', ')})`);
const SMALLEST = SIZES[0]!;
const LARGEST = SIZES.at(-1)!;
/** The smallest size runs this many times (median): at 1k a run is a fraction of a second, and noise weighs most. */
const SMALL_REPEATS = args.smoke ? 1 : 3;
const WARMUP_NODES = args.smoke ? 100 : 2_000;
const WORKER = fileURLToPath(new URL('./scaling-worker.js', import.meta.url));
const MIB = 2 ** 20;
/** The memory budget per node at rest. */
const BYTES_PER_NODE_TARGET = 1024;

function runWorker(shape: Shape, nodes: number): WorkerResult {
  // A 1M-node workplan in progress needs more than V8's default old space on a small machine.
  const heap = nodes >= MILLION ? ['--max-old-space-size=8192'] : [];
  const idle = args.smoke ? ['--idle-ms', '0'] : [];
  const argv = ['--expose-gc', ...heap, WORKER, '--shape', shape, '--nodes', String(nodes), '--warmup', String(WARMUP_NODES), ...idle];
  // The timeout kills a worker that hangs; stderr passes through so a failing one says why.
  const timeout = nodes >= MILLION ? 3_600_000 : 300_000;
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`scaling worker ${shape} ${nodes} failed (${r.status ?? r.signal})`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as WorkerResult;
}

const totalMs = (r: WorkerResult) => r.createMs + r.claimMs + r.completeMs;
/** RSS the run added, right after a full GC with every read model still loaded, per node (the old measure). */
const immediateBytesPerNode = (r: WorkerResult) => (r.rssAtRestBytes - r.rssBeforeBytes) / r.nodes;
/**
 * RSS the run added once the process is idle and has done what an idle server does (IdleCompactor's compaction,
 * V8 given time to unmap), the workplan still in memory, per node: the memory target's figure since 2026-12-03.
 */
const restBytesPerNode = (r: WorkerResult) => (r.rssCompactedBytes - r.rssBeforeQuietBytes) / r.nodes;
const evictedBytesPerNode = (r: WorkerResult) => (r.rssEvictedBytes - r.rssBeforeQuietBytes) / r.nodes;
/** JS heap used (after a full GC) the run added, per node; typed arrays' contents are outside it (external). */
const heapBytesPerNode = (r: WorkerResult) => (r.heapUsedAtRestBytes - r.heapUsedBeforeBytes) / r.nodes;
/** V8's heap pages physically held, at rest after the compaction, that the run added, per node. */
const heapPhysicalPerNode = (r: WorkerResult) => (r.heapPhysicalCompactedBytes - r.heapPhysicalBeforeBytes) / r.nodes;
const label = (n: number) => (n >= MILLION ? `${n / MILLION}M` : n >= 1000 ? `${n / 1000}k` : String(n));

/** The run of the smallest size with the median time out of SMALL_REPEATS. */
function smallestRun(shape: Shape): WorkerResult {
  const runs = Array.from({ length: SMALL_REPEATS }, () => runWorker(shape, SMALLEST));
  const m = median(runs.map(totalMs));
  return runs.reduce((best, r) => (Math.abs(totalMs(r) - m) < Math.abs(totalMs(best) - m) ? r : best));
}

function figuresOf(r: WorkerResult): Record<string, number | string> {
  const k = `${r.shape} ${label(r.nodes)}`;
  return {
    [`${k}: time (ms)`]: totalMs(r),
    [`${k}: create / claim / complete (ms)`]: [r.createMs, r.claimMs, r.completeMs].map((x) => x.toFixed(0)).join(' / '),
    [`${k}: events appended`]: r.events,
    [`${k}: peak RSS (MB)`]: r.peakRssBytes / MIB,
    [`${k}: RSS at rest per node, idle server: compacted (bytes)`]: restBytesPerNode(r),
    [`${k}: RSS per node right after the double gc(), old measure (bytes)`]: immediateBytesPerNode(r),
    [`${k}: JS heap used at rest per node (bytes)`]: heapBytesPerNode(r),
    [`${k}: JS heap committed right after the gc() per node (bytes)`]: (r.heapTotalAtRestBytes - r.heapTotalBeforeBytes) / r.nodes,
    [`${k}: old space held / used right after the gc() (MB)`]: `${(r.oldSpacePhysicalAtRestBytes / MIB).toFixed(1)} / ${(r.oldSpaceUsedAtRestBytes / MIB).toFixed(1)}`,
    [`${k}: compacted: V8 heap pages held / outside them (native: malloc, SQLite, code) per node (bytes)`]: `${heapPhysicalPerNode(r).toFixed(0)} / ${(restBytesPerNode(r) - heapPhysicalPerNode(r)).toFixed(0)}`,
    [`${k}: compacted: JS heap used / external (typed arrays, buffers) per node (bytes)`]: `${((r.heapUsedCompactedBytes - r.heapUsedBeforeQuietBytes) / r.nodes).toFixed(0)} / ${((r.externalCompactedBytes - r.externalBeforeQuietBytes) / r.nodes).toFixed(0)}`,
    [`${k}: idle compaction pause (ms)`]: r.compactionMs,
    [`${k}: RSS per node with the workplan evicted (bytes)`]: evictedBytesPerNode(r),
    [`${k}: folding it back from the log (ms)`]: r.foldBackMs,
    [`${k}: RSS per node once folded back, before any compaction (bytes)`]: (r.rssFoldedBackBytes - r.rssBeforeQuietBytes) / r.nodes,
  };
}

function linearity(): string {
  const [small, big] = [label(SMALLEST), label(LARGEST)];
  const times = LARGEST / SMALLEST;
  return (
    `linearity = (time per node at ${small}) / (time per node at ${big}) = ${times} × time(${small}) / time(${big}): > 1 is good, ` +
    `target ≥ 0.83, i.e. time(${big}) ≤ 1.2 × ${times} × time(${small}); time(${small}) is the median of ${SMALL_REPEATS} runs`
  );
}

function main(): void {
  const figures: Record<string, number | string> = {};
  const ratios: Ratio[] = [];
  const largest: WorkerResult[] = [];
  for (const shape of SHAPES) {
    const runs = [smallestRun(shape), ...SIZES.slice(1).map((n) => runWorker(shape, n))];
    for (const r of runs) Object.assign(figures, figuresOf(r));
    const small = runs[0]!;
    const big = runs.at(-1)!;
    largest.push(big);
    figures[`*${shape} ${label(big.nodes)} nodes: time (s)`] = totalMs(big) / 1000;
    // Time per 1k nodes at the largest size (ours) vs at the smallest (baseline); lowerIsBetter makes the ratio
    // baseline / ours, which is the linearity.
    const per1k = (r: WorkerResult) => (totalMs(r) / r.nodes) * 1000;
    const name = `linearity ${shape} (${label(small.nodes)} vs ${label(big.nodes)})`;
    ratios.push(ratio(name, per1k(big), per1k(small), 'ms per 1k nodes', { lowerIsBetter: true, target: 0.83 }));
  }
  const perNode = Math.max(...largest.map(restBytesPerNode));
  figures[`*RSS at rest per node, ${label(LARGEST)} nodes, worst shape, idle server: compacted (bytes)`] = perNode;
  figures[`*RSS per node right after the double gc() (the old measure), ${label(LARGEST)} nodes, worst shape (bytes)`] = Math.max(...largest.map(immediateBytesPerNode));
  figures[`*RSS per node with the workplan evicted, ${label(LARGEST)} nodes, worst shape (bytes)`] = Math.max(...largest.map(evictedBytesPerNode));
  figures[`*JS heap used at rest per node, ${label(LARGEST)} nodes, worst shape (bytes)`] = Math.max(...largest.map(heapBytesPerNode));
  for (const shape of MILLION_SHAPES) {
    const r = runWorker(shape, MILLION);
    Object.assign(figures, figuresOf(r));
    figures[`*${shape} 1M nodes: RSS at rest (compacted) / old measure / JS heap used per node (bytes)`] =
      `${restBytesPerNode(r).toFixed(0)} / ${immediateBytesPerNode(r).toFixed(0)} / ${heapBytesPerNode(r).toFixed(0)}`;
  }
  const memory = `memory at rest per node, idle server: compacted (${label(LARGEST)}, worst shape)`;
  ratios.push(ratio(memory, perNode, BYTES_PER_NODE_TARGET, 'bytes/node', { lowerIsBetter: true, target: 1 }));
  report(
    {
      benchmark: 'scaling',
      figures,
      ratios,
      notes: [
        'in-process through the application layer (Orchestrator.writeNodes on a real SqliteEventStore file, synchronous NORMAL); gRPC costs are measured by the transport benchmark, fsync costs by the append benchmark',
        'N counts nodes = checks + stages: N/2 checks and N/2 stages, each stage assigned its own check and depending on the checks of its predecessors (chain: the previous one; fan: one root fans out to N/2-2 stages that one sink waits for; dag: 3 distinct earlier ones, seeded PRNG; nested: 8 distinct earlier ones in a 3-level group, (a AND b) OR (c AND d), AND, (e AND f) OR (g AND h), the nested dependency groups of issue 17)',
        `time = create (WriteNodes of ${WRITE_BATCH_NODES} nodes each) + drive (per stage: one WriteNodes claiming its attempt with a process_uid, one completing it: check result + FINAL, attempt COMPLETE); ready stages are learnt from the WriteNodes answers, no polling`,
        `each (shape, N) in a fresh process after a ${WARMUP_NODES}-node warm-up of the same shape (JIT); peak RSS is the process's getrusage maximum`,
        `RSS at rest (since 2026-12-03, the memory ratio's figure) = what an idle server holds: after ${args.smoke ? '0' : '6'} s idle, the compacting full GC the server's IdleCompactor runs once idle (serve --compact-when-idle), and up to 1 s for V8 to unmap the freed pages, every read model loaded, minus the same measure before the run; the old measure (right after a double global.gc(), minus RSS after a gc() before the run) is printed beside it: it counts the old-space pages the run fragmented and the young generation as grown`,
        'evicted = the same after the Evictor drops the complete workplan (its header stays) and a full GC; folding back = reading its stream from the log and folding it, as the next use of an evicted workplan does (validating every row: the server validates only upcast ones)',
        linearity(),
        `JS heap committed = V8's heap pages at rest, used or not (RSS holds them); V8 heap pages held = the physical size of every space (getHeapSpaceStatistics); outside them = the rest of RSS (malloc: SQLite's page cache, 2 MiB since 2026-12-03, was better-sqlite3's 16 MiB; array buffers' contents; code); external = process.memoryUsage().external (typed arrays of the dependency index, buffers); --scaling-1m[=SHAPE,...] adds 1M-node runs`,
        `memory ratio = ${BYTES_PER_NODE_TARGET} bytes / (RSS at rest per node at the largest N, worst shape), target ≥ 1`,
      ],
    },
    args,
  );
}

main();
process.exit(0);
