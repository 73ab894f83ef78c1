// One scaling run in a fresh process, so that its peak RSS is its own: `node --expose-gc scaling-worker.js
// --shape chain|fan|dag|nested --nodes N [--warmup N] [--heap-snapshot FILE] [--idle-ms N]`. Prints one JSON line (WorkerResult)
// on stdout. --heap-snapshot writes V8 heap snapshots at rest (after the full GC) to FILE and
// before the run to FILE.before, for scripts/heap-summary.mjs (`node scripts/heap-summary.mjs FILE FILE.before`).
//
// Memory is measured four times after the run (docs/performance.md, "Memory at rest"): right after a double full GC
// (the figure this benchmark always gave), then after the compaction a server does once idle (IdleCompactor), with
// the workplan evicted (only its header left), and with it folded back from the log.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { parseArgs } from 'node:util';
import { compactHeap } from '../src/app/idle-compactor.js';
import { Orchestrator } from '../src/app/orchestrator.js';
import { SqliteEventStore } from '../src/infra/sqlite-event-store.js';
import { tempDir } from '../test/support/server.js';
import { driveWorkPlan, nextTurn, SHAPES, type DriveTimes, type Shape } from './scaling-workload.js';

export interface WorkerResult extends DriveTimes {
  readonly shape: Shape;
  readonly nodes: number;
  /** RSS after a full GC before the run (modules loaded, JIT warm), and after it with every read model loaded. */
  readonly rssBeforeBytes: number;
  readonly rssAtRestBytes: number;
  readonly heapUsedBeforeBytes: number;
  readonly heapUsedAtRestBytes: number;
  /**
   * Where RSS goes: V8's heap as committed (used or not) and memory V8 knows of outside it (typed arrays, buffers),
   * before the run and at rest; the rest of RSS is native (SQLite, malloc, code).
   */
  readonly heapTotalBeforeBytes: number;
  readonly heapTotalAtRestBytes: number;
  readonly externalBeforeBytes: number;
  readonly externalAtRestBytes: number;
  /** The process's peak RSS (getrusage), warm-up included. */
  readonly peakRssBytes: number;
  /** RSS and JS heap used before the run after the same idle wait, compaction and settling as the figures below. */
  readonly rssBeforeQuietBytes: number;
  readonly heapUsedBeforeQuietBytes: number;
  readonly externalBeforeQuietBytes: number;
  /** V8's heap pages physically held (all spaces; before: quiet), and old space's held / used, at rest. */
  readonly heapPhysicalBeforeBytes: number;
  readonly heapPhysicalAtRestBytes: number;
  readonly oldSpacePhysicalAtRestBytes: number;
  readonly oldSpaceUsedAtRestBytes: number;
  /**
   * After the compaction the server does once idle (src/app/idle-compactor.ts: one full GC compacting every page)
   * following --idle-ms of idleness, then up to 1 s (settling) for V8 to unmap the freed pages (off the main
   * thread). The workplan is still in memory.
   */
  readonly compactionMs: number;
  readonly rssCompactedBytes: number;
  readonly heapUsedCompactedBytes: number;
  readonly heapPhysicalCompactedBytes: number;
  readonly externalCompactedBytes: number;
  /** With the complete workplan evicted (Evictor: its header stays), after a full GC and the settling. */
  readonly rssEvictedBytes: number;
  readonly heapUsedEvictedBytes: number;
  /** Folding it back from the log (the next read of an evicted workplan does this), and RSS after it (full GC, settling). */
  readonly foldBackMs: number;
  readonly rssFoldedBackBytes: number;
}

const heapPhysical = () => getHeapSpaceStatistics().reduce((sum, s) => sum + s.physical_space_size, 0);
const oldSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!;

function fullGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc: RSS at rest is measured after a full GC');
  // Twice: the first pass can leave weakly held and finalizable objects for the second.
  gc();
  gc();
}

/** Drives one workplan on its own store; returns the times and the store (open: its read models stay loaded). */
async function run(dir: string, name: string, shape: Shape, nodes: number): Promise<{ times: DriveTimes; app: Orchestrator; store: SqliteEventStore }> {
  // NORMAL: the scaling figure is about the orchestrator; the cost of FULL's fsync per commit is the append benchmark's.
  const store = new SqliteEventStore(join(dir, `${name}.db`), { synchronous: 'NORMAL' });
  const app = Orchestrator.open(store);
  return { times: await driveWorkPlan(app, shape, nodes), app, store };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { shape: { type: 'string' }, nodes: { type: 'string' }, warmup: { type: 'string' }, 'heap-snapshot': { type: 'string' }, 'idle-ms': { type: 'string' } } });
  // How long "idle" lasts before the compaction (an idle server waits --compact-when-idle, 30 s by default; V8's
  // allocation rate, which decides whether a GC shrinks the young generation, looks back 5 s), and the settling
  // time after each GC for V8 to unmap what it freed: --idle-ms N (default 6000; the bench's --smoke passes 0).
  const idleMs = Number(values['idle-ms'] ?? '6000');
  const settleMs = Math.min(1000, idleMs);
  const shape = values.shape as Shape;
  if (!SHAPES.includes(shape)) throw new Error(`--shape: one of ${SHAPES.join(', ')}`);
  const nodes = Number(values.nodes);
  const warmup = Number(values.warmup ?? '1000');
  if (!(nodes >= 2 && warmup >= 2)) throw new Error('--nodes and --warmup: at least 2 (one check + stage pair)');
  const dir = tempDir('turboci-bench-scaling-');
  try {
    // A small run of the same shape first, so a 1k run is not all JIT warm-up (that would flatter the linearity).
    const w = await run(dir.path, 'warmup', shape, warmup);
    w.app.close();
    w.store.close();
    fullGc();
    const before = process.memoryUsage();
    // The baseline of the figures after the run that wait for V8 (compacted, evicted, folded back): the same idle
    // wait, compaction and settling, so that neither side counts pages V8 had not yet given back.
    await sleep(idleMs);
    compactHeap();
    await sleep(settleMs);
    const quiet = process.memoryUsage();
    const heapPhysicalBefore = heapPhysical();
    const snapshotPath = values['heap-snapshot'];
    if (snapshotPath) writeHeapSnapshot(`${snapshotPath}.before`);
    const { times, app, store } = await run(dir.path, 'run', shape, nodes);
    await nextTurn(); // nothing the last write deferred may count as "at rest"
    fullGc();
    const mem = process.memoryUsage();
    const heapPhysicalAtRest = heapPhysical();
    const oldAtRest = oldSpace();
    if (snapshotPath) writeHeapSnapshot(snapshotPath);
    // What an idle server does (IdleCompactor), then what eviction leaves, then the fold-back that undoes it.
    await sleep(idleMs); // V8 shrinks its young generation in a GC only once the allocation rate has fallen
    const compaction = compactHeap();
    await sleep(settleMs);
    const compacted = process.memoryUsage();
    const heapPhysicalCompacted = heapPhysical();
    const [workPlanId] = [...app.models.workplans.residentIds()];
    if (!app.models.workplans.evict(workPlanId!)) throw new Error('the driven workplan could not be evicted');
    fullGc();
    await sleep(settleMs);
    const evicted = process.memoryUsage();
    const t0 = process.hrtime.bigint();
    const back = app.models.workplan(workPlanId!)!;
    const foldBackMs = Number(process.hrtime.bigint() - t0) / 1e6;
    if (back.meta.version !== times.events) throw new Error(`folded back at version ${back.meta.version}, not ${times.events}`);
    fullGc();
    await sleep(settleMs);
    const foldedBackRss = process.memoryUsage.rss();
    const result: WorkerResult = {
      shape,
      nodes,
      ...times,
      rssBeforeBytes: before.rss,
      rssAtRestBytes: mem.rss,
      heapUsedBeforeBytes: before.heapUsed,
      heapUsedAtRestBytes: mem.heapUsed,
      heapTotalBeforeBytes: before.heapTotal,
      heapTotalAtRestBytes: mem.heapTotal,
      externalBeforeBytes: before.external,
      externalAtRestBytes: mem.external,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      rssBeforeQuietBytes: quiet.rss,
      heapUsedBeforeQuietBytes: quiet.heapUsed,
      externalBeforeQuietBytes: quiet.external,
      heapPhysicalBeforeBytes: heapPhysicalBefore,
      heapPhysicalAtRestBytes: heapPhysicalAtRest,
      oldSpacePhysicalAtRestBytes: oldAtRest.physical_space_size,
      oldSpaceUsedAtRestBytes: oldAtRest.space_used_size,
      compactionMs: compaction.ms,
      rssCompactedBytes: compacted.rss,
      heapUsedCompactedBytes: compacted.heapUsed,
      heapPhysicalCompactedBytes: heapPhysicalCompacted,
      externalCompactedBytes: compacted.external,
      rssEvictedBytes: evicted.rss,
      heapUsedEvictedBytes: evicted.heapUsed,
      foldBackMs,
      rssFoldedBackBytes: foldedBackRss,
    };
    app.close();
    store.close();
    console.log(JSON.stringify(result));
  } finally {
    dir.remove();
  }
}

await main();
