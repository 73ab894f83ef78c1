// The floor of any rebuild from the log, in a fresh process like the server's: read every row of the events table
// in position order with better-sqlite3 and JSON.parse its data column, nothing else, on one thread.
// `node restart-baseline.js <db>` prints one JSON line: { events, ms }.
import Database from 'better-sqlite3';
import { EVENT_COLUMNS } from '../src/infra/read-ahead-protocol.js';

interface Row {
  readonly data: string;
}

function main(): void {
  const path = process.argv[2];
  if (!path) throw new Error('usage: restart-baseline.js <db>');
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const t0 = process.hrtime.bigint();
    let events = 0;
    // The columns the store's readAll reads (every column an event is made of; not the hash chain's), so both read
    // the same bytes off the page cache.
    const statement = db.prepare(`SELECT ${EVENT_COLUMNS.join(', ')} FROM events WHERE position > ? ORDER BY position`);
    for (const row of statement.iterate(0) as IterableIterator<Row>) {
      const data: unknown = JSON.parse(row.data);
      if (data !== null) events++;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(JSON.stringify({ events, ms }));
  } finally {
    db.close();
  }
}

main();
