// Worker-thread half of a read-ahead (src/infra/read-ahead.ts): steps through the log's rows on its own read-only
// connection and hands them to the reading thread in batches, so that the reading thread spends its time folding,
// not in SQLite and in making a JavaScript object of every row.
import { workerData, type MessagePort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { EVENT_COLUMNS, FIELDS, NAMES, type ReadAheadBatch, type ReadAheadJob, type ReadAheadMessage } from './read-ahead-protocol.js';

const job = workerData as ReadAheadJob;
const port: MessagePort = job.port;
const control = new Int32Array(job.control);

function post(message: ReadAheadMessage, transfer: ArrayBuffer[] = []): void {
  // Bounded: at most `ahead` batches wait unread, so a large log is never all in memory twice.
  while (Atomics.load(control, 0) >= job.ahead) Atomics.wait(control, 0, Atomics.load(control, 0), 100);
  Atomics.add(control, 0, 1);
  port.postMessage(message, transfer);
  Atomics.add(control, 1, 1);
  Atomics.notify(control, 1);
}

function run(): void {
  const db = new Database(job.path, { readonly: true, fileMustExist: true });
  try {
    // The columns an event is made of (not the hash: nothing a read returns needs it). principal and reason are
    // missing from logs that no server has opened since they were added: read as NULL.
    const present = new Set((db.prepare('SELECT name FROM pragma_table_info(?)').all('events') as { name: string }[]).map((c) => c.name));
    const columns = EVENT_COLUMNS.map((c) => (present.has(c) ? c : 'NULL')).join(', ');
    const statement = db.prepare(`SELECT ${columns} FROM events WHERE position > ? AND position <= ? ORDER BY position`).raw(true);
    // Stream ids and types are sent once each, then by index: a log names far fewer of them than it has rows.
    const streams = new Map<string, number>();
    const types = new Map<string, number>();
    const index = (known: Map<string, number>, value: string, fresh: string[]) => {
      let i = known.get(value);
      if (i === undefined) known.set(value, (i = known.size)), fresh.push(value);
      return i;
    };
    let batch = emptyBatch(job.batchRows);
    let data: string[] = [];
    let texts = new Map<string, number>();
    const text = (value: string | null) => (value === null ? -1 : index(texts, value, batch.texts));
    const flush = () => {
      const message: ReadAheadBatch = { ...batch, data: `[${data.join(',')}]` };
      post(message, [batch.numbers.buffer, batch.names.buffer]);
      batch = emptyBatch(job.batchRows);
      data = [];
      texts = new Map();
    };
    // Indexes into EVENT_COLUMNS.
    for (const row of statement.iterate(job.afterPosition, job.toPosition) as IterableIterator<unknown[]>) {
      const i = batch.count;
      const n = FIELDS * i;
      batch.numbers[n] = row[0] as number;
      batch.numbers[n + 1] = row[2] as number;
      batch.numbers[n + 2] = row[4] as number;
      batch.numbers[n + 3] = row[6] as number;
      batch.numbers[n + 4] = (row[8] as number | null) ?? -1;
      const m = NAMES * i;
      batch.names[m] = index(streams, row[1] as string, batch.newStreams);
      batch.names[m + 1] = index(types, row[3] as string, batch.newTypes);
      batch.names[m + 2] = text(row[7] as string | null);
      batch.names[m + 3] = text(row[9] as string | null);
      batch.names[m + 4] = text(row[10] as string | null);
      data.push(row[5] as string);
      if (++batch.count === job.batchRows) flush();
    }
    if (batch.count > 0) flush();
    post({ kind: 'end' });
  } finally {
    db.close();
  }
}

function emptyBatch(rows: number): Omit<ReadAheadBatch, 'data'> {
  return { kind: 'rows', count: 0, numbers: new Float64Array(FIELDS * rows), names: new Int32Array(NAMES * rows), texts: [], newStreams: [], newTypes: [] };
}

try {
  run();
} catch (err) {
  // The reading thread goes on from the last row it has on its own connection (and meets the same error there).
  post({ kind: 'failed', error: (err as Error).message });
}
