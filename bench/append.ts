// Append cost: events per second through SqliteEventStore.append against raw better-sqlite3 INSERTs of the same
// rows (same columns, same JSON text) into a table with the same schema, at 1, 10 and 100 events per transaction,
// with synchronous FULL (the server's default) and NORMAL, on real files in WAL mode.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Orchestrator } from '../src/app/orchestrator.js';
import type { PendingEvent } from '../src/domain/events.js';
import { encodeEvent } from '../src/infra/event-codec.js';
import { EVENTS_SCHEMA, SqliteEventStore } from '../src/infra/sqlite-event-store.js';
import { tempDir } from '../test/support/server.js';
import { benchArgs, ratio, report, sideBySide, type Ratio } from './harness.js';
import { driveWorkPlan } from './scaling-workload.js';

const args = benchArgs();
const BATCHES = [1, 10, 100] as const;
const SYNCS = ['FULL', 'NORMAL'] as const;
type Sync = (typeof SYNCS)[number];
const ROUNDS = args.smoke ? 2 : 7;
/** Each side appends whole batches for this long per round, then reports events per second. */
const ROUND_MS = args.smoke ? 20 : 350;
/** Events per stream before moving on to the next one, as a server's log moves from workplan to workplan. */
const STREAM_EVENTS = 1000;

/** An event as both sides append it: the domain event for ours, its stored encoding for the baseline. */
interface PoolEvent {
  readonly pending: PendingEvent;
  readonly type: string;
  readonly schemaVersion: number;
  readonly data: string;
}

/**
 * The events a real workplan produces, in the order it produces them (CheckCreated, StageCreated, state changes,
 * attempts, results…): a random-DAG workplan driven to completion through the application layer, read back.
 */
async function eventPool(dir: string): Promise<PoolEvent[]> {
  const store = new SqliteEventStore(join(dir, 'pool.db'), { synchronous: 'NORMAL' });
  try {
    const app = Orchestrator.open(store);
    await driveWorkPlan(app, 'dag', 400);
    app.close();
    return [...store.readAll()].map((rec) => ({ pending: { event: rec.event, causedByVersion: rec.causation.causedByVersion }, ...encodeEvent(rec.event) }));
  } finally {
    store.close();
  }
}

/** Walks the pool and the streams: each call hands out the next `n` events and the stream they go to. */
class Feed {
  private next = 0;
  private stream = 0;
  private version = 0;
  constructor(private readonly pool: readonly PoolEvent[]) {}

  take(n: number): Batch {
    if (this.version + n > STREAM_EVENTS) {
      this.stream++;
      this.version = 0;
    }
    const events: PoolEvent[] = [];
    for (let i = 0; i < n; i++) events.push(this.pool[(this.next + i) % this.pool.length]!);
    this.next = (this.next + n) % this.pool.length;
    const batch: Batch = { streamId: `workplan-${this.stream}`, expected: this.version, events, pending: events.map((e) => e.pending) };
    this.version += n;
    return batch;
  }
}

/** One transaction's worth: built outside the appenders, so neither side pays for the other's input format. */
interface Batch {
  readonly streamId: string;
  readonly expected: number;
  readonly events: readonly PoolEvent[];
  readonly pending: readonly PendingEvent[];
}

type Appender = (batch: Batch) => void;

function ours(dir: string, sync: Sync): { append: Appender; close(): void } {
  const store = new SqliteEventStore(join(dir, `ours-${sync}.db`), { synchronous: sync });
  return {
    append: (b) => {
      store.append(b.streamId, b.expected, b.pending, { requestId: null, recordedAt: Date.now() });
    },
    close: () => store.close(),
  };
}

/** What any SQLite-backed log must at least do: INSERT the encoded rows in one transaction per batch. */
function baseline(dir: string, sync: Sync): { append: Appender; close(): void } {
  const db = new Database(join(dir, `baseline-${sync}.db`));
  db.pragma('busy_timeout = 5000');
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync}`);
  db.exec(EVENTS_SCHEMA); // the store's own DDL: same columns, constraints, index and triggers
  const insert = db.prepare(
    `INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const tx = db.transaction((b: Batch) => {
    const now = Date.now();
    b.events.forEach((e, i) => insert.run(b.streamId, b.expected + i + 1, e.type, e.schemaVersion, e.data, now, null, e.pending.causedByVersion));
  });
  return {
    // IMMEDIATE like the store: the write lock is taken up front in both.
    append: (b) => tx.immediate(b),
    close: () => db.close(),
  };
}

/** Appends batches of `batch` events for ROUND_MS; returns events per second. */
function throughput(append: Appender, feed: Feed, batch: number): number {
  const t0 = process.hrtime.bigint();
  const until = t0 + BigInt(ROUND_MS * 1e6);
  let events = 0;
  let now = t0;
  while (now < until) {
    append(feed.take(batch));
    events += batch;
    now = process.hrtime.bigint();
  }
  return events / (Number(now - t0) / 1e9);
}

async function main(): Promise<void> {
  const dir = tempDir('turboci-bench-append-');
  const figures: Record<string, number> = {};
  const ratios: Ratio[] = [];
  try {
    const pool = await eventPool(dir.path);
    figures['event pool: events'] = pool.length;
    figures['event pool: mean data JSON (bytes)'] = pool.reduce((s, e) => s + e.data.length, 0) / pool.length;
    for (const sync of SYNCS) {
      const a = ours(dir.path, sync);
      const b = baseline(dir.path, sync);
      // Each side walks the same pool in the same order, into its own file.
      const feedA = new Feed(pool);
      const feedB = new Feed(pool);
      try {
        for (const batch of BATCHES) {
          const r = await sideBySide(
            ROUNDS,
            async () => throughput(a.append, feedA, batch),
            async () => throughput(b.append, feedB, batch),
          );
          const star = sync === 'FULL' ? '*' : '';
          figures[`${star}${sync} batch ${batch}: ours (events/s)`] = r.ours;
          figures[`${sync} batch ${batch}: raw INSERT (events/s)`] = r.baseline;
          ratios.push(ratio(`${sync}, ${batch} event${batch > 1 ? 's' : ''}/transaction`, r.ours, r.baseline, 'events/s', { target: 0.5 }));
        }
      } finally {
        a.close();
        b.close();
      }
    }
  } finally {
    dir.remove();
  }
  report(
    {
      benchmark: 'append',
      figures,
      ratios,
      notes: [
        'ours: SqliteEventStore.append (BEGIN IMMEDIATE, stream version check, JSON.stringify of each event, INSERT, RecordedEvent built per event)',
        'baseline: raw better-sqlite3 INSERTs of the same rows (same columns, the same JSON text already encoded) into a copy of the store schema (UNIQUE (stream_id, version), partial request index, triggers), one BEGIN IMMEDIATE transaction per batch',
        `events: the log of a 200-check + 200-stage random-DAG workplan driven to completion through the application layer, replayed in order, ${STREAM_EVENTS} events per stream`,
        `WAL, real files; ${ROUNDS} alternating rounds of ${ROUND_MS} ms per side per setting, medians`,
      ],
    },
    args,
  );
}

await main();
process.exit(0);
