// `turboci snapshot`: write the read-model snapshot of a database now (what `serve` does in the background every
// --snapshot-every events), so that the next start folds only what came after it.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { takeSnapshot } from '../app/snapshots.js';
import { SnapshotFile, snapshotPathFor } from '../infra/snapshot-file.js';
import { SqliteEventStore } from '../infra/sqlite-event-store.js';
import { command } from './log-args.js';
import { CliError } from './log-source.js';
import { refusePostgres } from './open-log.js';
import { UsageError } from './usage-error.js';

export const SNAPSHOT_HELP = `Usage: npx turboci snapshot --db FILE

Folds the event log into a read-model snapshot, FILE.snapshot, beside it: the state of every projection as of the
log's last event. A server starting on FILE then restores it and replays only the events after it. A running server
writes one by itself every --snapshot-every events; this command is safe while it runs (it reads the log read-only).

A snapshot is a cache, never a source of truth: a damaged one, one of another event schema, or one that is not of
this log is ignored with a warning and the server replays the whole log. "npx turboci verify --db FILE" compares it
with a full replay; deleting FILE.snapshot is always safe.

Options:
  --db FILE    the SQLite event log                     (default: $TURBOCI_DB)
               (a PostgreSQL URL is refused: servers on PostgreSQL keep no snapshot and replay the log at start)
  -h, --help   show this help

Example:
  npx turboci snapshot --db turboci.db`;

export interface SnapshotResult {
  readonly position: number;
  readonly bytes: number;
  readonly tailEvents: number;
  readonly ignored?: string;
}

/**
 * Writes the snapshot of `dbPath` now, in this thread. `background`: the server's own snapshots, which read the log
 * on this thread alone (no read-ahead worker) to leave the other core to serving.
 */
export function snapshotOnce(dbPath: string, options: { background?: boolean } = {}): SnapshotResult {
  const store = new SqliteEventStore(dbPath, { readonly: true, validate: 'upcast', ...(options.background ? { readAheadMinRows: Number.POSITIVE_INFINITY } : {}) });
  try {
    const { point, bytes, loaded } = takeSnapshot(store, new SnapshotFile(snapshotPathFor(dbPath)));
    return { position: point?.position ?? 0, bytes, tailEvents: loaded.tailEvents, ...(loaded.ignored ? { ignored: loaded.ignored } : {}) };
  } finally {
    store.close();
  }
}

/** Writes the snapshot of `dbPath` in a worker thread, so that the caller's event loop keeps serving. */
export function snapshotInWorker(dbPath: string): Promise<SnapshotResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./snapshot-worker.js', import.meta.url), { workerData: { dbPath } });
    worker.once('message', (m: { ok: true; result: SnapshotResult } | { ok: false; error: string }) => (m.ok ? resolve(m.result) : reject(new Error(m.error))));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`snapshot worker exited (${code}) without an answer`)));
  });
}

export const snapshotCommand = command(async (argv) => {
  const { values } = parseArgs({ args: argv, options: { db: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(SNAPSHOT_HELP);
    return 0;
  }
  const dbPath = values.db ?? process.env.TURBOCI_DB;
  if (dbPath === undefined) throw new UsageError('--db FILE is required');
  refusePostgres(dbPath, 'snapshot', 'servers on PostgreSQL keep no snapshot file; each replays the log at start');
  if (!existsSync(dbPath)) throw new CliError(`${dbPath}: no such database file`);
  const started = Date.now();
  const r = snapshotOnce(dbPath);
  if (r.ignored) console.error(`turboci: the previous snapshot was ignored: ${r.ignored}`);
  if (r.position === 0) console.log(`${dbPath} holds no events: no snapshot written`);
  else if (r.bytes === 0) console.log(`${snapshotPathFor(dbPath)} is already at position ${r.position}`);
  else console.log(`wrote ${snapshotPathFor(dbPath)}: position ${r.position}, ${(r.bytes / 2 ** 20).toFixed(1)} MiB, ${r.tailEvents} events folded, ${Date.now() - started} ms`);
  return 0;
});
