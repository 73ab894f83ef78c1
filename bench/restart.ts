// Restart: how long the real server binary takes to serve again on a log of 1M events (smoke: 10k), against the
// floor of any rebuild from the log — reading every row with better-sqlite3 and JSON.parse-ing its data — each in a
// fresh process, alternately. `--restart-1m`: a log of 1M nodes (checks and stages; ~5M events) instead, to show
// how restart grows past the default size.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Orchestrator } from '../src/app/orchestrator.js';
import { SqliteEventStore } from '../src/infra/sqlite-event-store.js';
import { snapshotOnce } from '../src/cli/snapshot.js';
import { startServer, tempDir } from '../test/support/server.js';
import { benchArgs, median, ratio, report, sideBySide, timed } from './harness.js';
import { driveWorkPlan, prng, SHAPES } from './scaling-workload.js';

const args = benchArgs();
/** What the log is sized by: its events (the default), or its nodes with --restart-1m. */
type Size = { readonly of: 'events' | 'nodes'; readonly count: number };
/** TURBOCI_BENCH_RESTART_EVENTS=100000 sizes the log for quicker iterations (figures are reported for 1M). */
const TARGET: Size = process.argv.includes('--restart-1m')
  ? { of: 'nodes', count: args.smoke ? 2_000 : 1_000_000 }
  : { of: 'events', count: Number(process.env.TURBOCI_BENCH_RESTART_EVENTS) || (args.smoke ? 10_000 : 1_000_000) };
const ROUNDS = args.smoke ? 1 : 3;
const BASELINE_WORKER = fileURLToPath(new URL('./restart-baseline.js', import.meta.url));

/** Share of the log driven for real; the rest is copies of those workplans' streams (see `copyStreams`). */
const DRIVEN_SHARE = 0.25;

/**
 * Fills the log the way a busy server does: many workplans of mixed shapes (chain, fan-out/fan-in, random DAG) and
 * sizes (50 to 500 nodes), each created, claimed and completed through Orchestrator.writeNodes. Synchronous NORMAL:
 * how fast we generate is not what is measured.
 */
async function drive(dbPath: string, target: Size): Promise<{ events: number; streams: string[] }> {
  const store = new SqliteEventStore(dbPath, { synchronous: 'NORMAL' });
  const app = Orchestrator.open(store);
  const random = prng(7);
  let events = 0;
  /** The sizes asked for: enough to stop driving (copyStreams counts the nodes the log holds). */
  let nodes = 0;
  try {
    for (let k = 0; (target.of === 'events' ? events : nodes) < target.count; k++) {
      const size = 50 + Math.floor(random() * 450);
      events += (await driveWorkPlan(app, SHAPES[k % SHAPES.length]!, size, k)).events;
      nodes += size;
    }
    return { events, streams: [...app.models.workplanIds()] };
  } finally {
    app.close();
    store.close();
  }
}

/**
 * Appends copies of the driven workplans' streams under new workplan ids (INSERT … SELECT, one stream at a time)
 * until the log holds `target` events: the same event mix, replayed exactly like freshly driven workplans, at a
 * fraction of the cost of driving them (driving all of 1M events would take most of the time budget).
 */
function copyStreams(dbPath: string, streams: readonly string[], driven: { events: number }, target: Size): { events: number; nodes: number; workplans: number } {
  const db = new Database(dbPath);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    const nodesOf = new Map(
      (db.prepare(`SELECT stream_id AS id, COUNT(*) AS n FROM events WHERE type IN ('CheckCreated', 'StageCreated') GROUP BY stream_id`).all() as { id: string; n: number }[]).map((r) => [r.id, r.n]),
    );
    // Counted in the log, not from the sizes asked for: that is what a restart folds.
    let nodes = [...nodesOf.values()].reduce((a, b) => a + b, 0);
    let events = driven.events;
    const copy = db.prepare(
      `INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version)
       SELECT ?, version, type, schema_version, data, recorded_at, request_id, caused_by_version
       FROM events WHERE stream_id = ? ORDER BY version`,
    );
    let workplans = streams.length;
    db.transaction(() => {
      for (let k = 0; (target.of === 'events' ? events : nodes) < target.count; k++, workplans++) {
        const source = streams[k % streams.length]!;
        events += copy.run(randomUUID(), source).changes;
        nodes += nodesOf.get(source) ?? 0;
      }
    })();
    return { events, nodes, workplans };
  } finally {
    db.close();
  }
}

async function generate(dbPath: string, target: Size): Promise<{ events: number; nodes: number; workplans: number; driven: number }> {
  const driven = await drive(dbPath, { of: target.of, count: target.count * DRIVEN_SHARE });
  return { ...copyStreams(dbPath, driven.streams, driven, target), driven: driven.streams.length };
}

interface Restart {
  /** From spawning the server to its 'listening' line: process start, module loading, rebuild, binding. */
  readonly listenMs: number;
  /** What the server reports for Orchestrator.open: replaying the whole log into the read models. */
  readonly rebuildMs: number;
  /** The server's peak RSS once listening (Linux VmHWM), or NaN where /proc is missing. */
  readonly peakRssBytes: number;
}

/** With `snapshot` the server starts from the read-model snapshot beside the log; without, it replays the whole log. */
async function restartServer(dbPath: string, snapshot: boolean): Promise<Restart> {
  const { ms: listenMs, value: server } = await timed(() => startServer(dbPath, snapshot ? ['--snapshot-every', '1000000000'] : ['--snapshot-every', '0']));
  try {
    const rebuilt = await server.waitForLog((l) => l.msg === 'read models rebuilt from the log');
    return { listenMs, rebuildMs: Number(rebuilt.rebuildMs), peakRssBytes: peakRss(server.child.pid) };
  } finally {
    await server.stop();
  }
}

function peakRss(pid: number | undefined): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function rawRead(dbPath: string): { events: number; ms: number } {
  const r = spawnSync(process.execPath, [BASELINE_WORKER, dbPath], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`baseline worker failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { events: number; ms: number };
}

async function main(): Promise<void> {
  const dir = tempDir('turboci-bench-restart-');
  try {
    const dbPath = join(dir.path, 'restart.db');
    const gen = await timed(() => generate(dbPath, TARGET));
    const { events, nodes, workplans, driven } = gen.value;
    const restarts: Restart[] = [];
    const sides = await sideBySide(
      ROUNDS,
      async () => {
        const r = await restartServer(dbPath, false);
        restarts.push(r);
        return r.rebuildMs;
      },
      async () => {
        const r = rawRead(dbPath);
        if (r.events !== events) throw new Error(`baseline read ${r.events} events, the log holds ${events}`);
        return r.ms;
      },
    );
    const listenMs = median(restarts.map((r) => r.listenMs));

    // From a snapshot: written once (what `serve` does in a worker every --snapshot-every events), then the same
    // restarts again, side by side with the same floor.
    const snapped = await timed(() => snapshotOnce(dbPath));
    const fromSnapshot: Restart[] = [];
    const snapSides = await sideBySide(
      ROUNDS,
      async () => {
        const r = await restartServer(dbPath, true);
        fromSnapshot.push(r);
        return r.listenMs;
      },
      async () => rawRead(dbPath).ms,
    );
    report(
      {
        benchmark: 'restart',
        figures: {
          'log events': events,
          'log nodes (checks and stages)': nodes,
          'log workplans': workplans,
          'log size (MB)': statSync(dbPath).size / 2 ** 20,
          'generation (s)': gen.ms / 1000,
          'generation (events/s)': events / (gen.ms / 1000),
          '*time to serve: spawn to listening (ms)': listenMs,
          'rebuild reported by the server (ms)': sides.ours,
          '*replay (events/s)': events / (sides.ours / 1000),
          'baseline: read + JSON.parse every row (ms)': sides.baseline,
          'baseline (events/s)': events / (sides.baseline / 1000),
          'server peak RSS once listening (MB)': median(restarts.map((r) => r.peakRssBytes)) / 2 ** 20,
          'snapshot: size (MB)': snapped.value.bytes / 2 ** 20,
          'snapshot: written in (ms)': snapped.ms,
          '*from the snapshot: time to serve, spawn to listening (ms)': snapSides.ours,
          'from the snapshot: rebuild reported by the server (ms)': median(fromSnapshot.map((r) => r.rebuildMs)),
          'from the snapshot: server peak RSS once listening (MB)': median(fromSnapshot.map((r) => r.peakRssBytes)) / 2 ** 20,
        },
        ratios: [
          ratio('rebuild vs raw read + JSON.parse', sides.ours, sides.baseline, 'ms', { lowerIsBetter: true, target: 0.8 }),
          ratio('start from a snapshot, spawn to listening, vs 1 s', snapSides.ours, 1000, 'ms', { lowerIsBetter: true, target: 1 }),
          ratio('start from a snapshot, spawn to listening, vs raw read + JSON.parse', snapSides.ours, snapSides.baseline, 'ms', { lowerIsBetter: true }),
        ],
        notes: [
          `the log (≥ ${TARGET.count} ${TARGET.of}, ${workplans} workplans): ${driven} workplans of mixed shapes (chain, fan-out/fan-in, random DAG; 50-500 nodes) created, claimed and completed through Orchestrator.writeNodes (sync NORMAL) until they held ${DRIVEN_SHARE * 100}% of it, then copies of their streams under new workplan ids (INSERT … SELECT) for the rest: the same event mix at a fraction of the generation time`,
          `ours: the real server binary (bin/turboci.js serve --port 0 --db <log>) in a fresh process; its rebuildMs (loading the read models: every event read, decoded, upcast where its schema is older (and then zod-validated) and folded; complete workplans kept as headers once the log moves on) is compared; spawn-to-listening adds node start-up and module loading. The server reads the rows on a second thread (src/infra/read-ahead.ts) while its main thread parses and folds: it uses two cores, the floor one`,
          `baseline: a fresh process reading every row (SELECT <the columns readAll reads> ... ORDER BY position) with better-sqlite3 and JSON.parse of the data column, on one thread, timed from the query on (process start-up and opening excluded, as from the server's rebuildMs); ratio = baseline / ours, the fraction of that floor we reach`,
          `${ROUNDS} rounds each, alternating; medians`,
          'the full-replay rounds run with --snapshot-every 0 (no snapshot read or written); the snapshot rounds start from a snapshot of the whole log written once beforehand with the code `turboci snapshot` runs (the server writes them in a worker thread as it goes), so they replay no tail',
        ],
      },
      args,
    );
  } finally {
    dir.remove();
  }
}

await main();
process.exit(0);
