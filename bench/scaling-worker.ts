// One scaling run in a fresh process, so that its peak RSS is its own: `node --expose-gc scaling-worker.js
// --shape chain|fan|dag|nested --nodes N [--warmup N] [--heap-snapshot FILE]`. Prints one JSON line (WorkerResult)
// on stdout. --heap-snapshot writes V8 heap snapshots at rest (after the full GC) to FILE and
// before the run to FILE.before, for scripts/heap-summary.mjs (`node scripts/heap-summary.mjs FILE FILE.before`).
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { parseArgs } from 'node:util';
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
}

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
  const { values } = parseArgs({ options: { shape: { type: 'string' }, nodes: { type: 'string' }, warmup: { type: 'string' }, 'heap-snapshot': { type: 'string' } } });
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
    const snapshotPath = values['heap-snapshot'];
    if (snapshotPath) writeHeapSnapshot(`${snapshotPath}.before`);
    const { times, app, store } = await run(dir.path, 'run', shape, nodes);
    await nextTurn(); // nothing the last write deferred may count as "at rest"
    fullGc();
    const mem = process.memoryUsage();
    if (snapshotPath) writeHeapSnapshot(snapshotPath);
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
    };
    app.close();
    store.close();
    console.log(JSON.stringify(result));
  } finally {
    dir.remove();
  }
}

await main();
