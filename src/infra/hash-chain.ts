// Each event's hash covers its stored content and the hash of the event before it in its stream, so a rewrite of
// any event in the middle of a stream (or a lost one) shows as a break in the chain. It guards against damage
// (a garbled page, a hand edit, a stale copy spliced in), not against someone who recomputes the whole chain.
//
//   hash(v) = sha256( hash(v-1) or nothing for v = 1  ||  JSON [stream_id, version, type, schema_version, data,
//                                                              recorded_at, request_id, caused_by_version] )
//
// The data is hashed as stored (the JSON text), so computing a hash costs one sha256 over the row, no re-encoding.
import { hash } from 'node:crypto';
import Database from 'better-sqlite3';

/** The columns a hash covers, as stored. */
export interface HashedRow {
  readonly stream_id: string;
  readonly version: number;
  readonly type: string;
  readonly schema_version: number;
  readonly data: string;
  readonly recorded_at: number;
  readonly request_id: string | null;
  readonly caused_by_version: number | null;
}

export function chainHash(previous: Buffer | null, row: HashedRow): Buffer {
  const json = JSON.stringify([row.stream_id, row.version, row.type, row.schema_version, row.data, row.recorded_at, row.request_id, row.caused_by_version]);
  // One-shot hashing of one buffer: a Hash object per event (createHash, update, update, digest) cost ~30% more.
  if (!previous) return hash('sha256', json, 'buffer');
  // previous || json, assembled in a buffer reused from call to call (hash copies nothing it keeps).
  const length = previous.length + Buffer.byteLength(json);
  if (scratch.length < length) scratch = Buffer.allocUnsafeSlow(Math.max(length, 2 * scratch.length));
  previous.copy(scratch, 0);
  scratch.write(json, previous.length);
  return hash('sha256', scratch.subarray(0, length), 'buffer');
}

let scratch = Buffer.allocUnsafeSlow(4096);

export interface ChainBreak {
  readonly streamId: string;
  readonly version: number;
  readonly position: number;
  readonly detail: string;
}

export interface ChainReport {
  readonly events: number;
  /** Events with a stored hash (events written before hash chains existed have none; their chain is computed). */
  readonly hashed: number;
  readonly breaks: ChainBreak[];
}

/** A stored row as the chain check reads it: the hashed columns, its position and its stored hash. */
export type ChainRow = HashedRow & { readonly position: number; readonly hash: Buffer | Uint8Array | null };

/** Every row of a SQLite log in position order (read-only), for checkHashChain. */
export function sqliteChainRows(db: Database.Database): IterableIterator<ChainRow> {
  const columns = db.prepare('SELECT name FROM pragma_table_info(?)').all('events') as { name: string }[];
  const hasHash = columns.some((c) => c.name === 'hash');
  return db
    .prepare(
      `SELECT position, stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version, ${hasHash ? 'hash' : 'NULL AS hash'}
       FROM events ORDER BY position`,
    )
    .iterate() as IterableIterator<ChainRow>;
}

/**
 * Walks every stream's chain in one pass over the rows, in position order (a SQLite file through sqliteChainRows,
 * a PostgreSQL log through PostgresEventStore.rawRows: the chain is the same on both, so a log moved between them
 * checks the same). Events written before the hash column existed (NULL hash) have their chain value computed here,
 * and the first hashed event of such a stream must continue it: the writer computes it the same way. An event
 * without a hash after a hashed one in its stream is a break too.
 */
export function checkHashChain(source: Database.Database | Iterable<ChainRow>, maxBreaks = 100): ChainReport {
  const rows = source instanceof Database ? sqliteChainRows(source) : source;
  const last = new Map<string, { version: number; hash: Buffer; hashedBefore: boolean }>();
  const breaks: ChainBreak[] = [];
  let events = 0;
  let hashed = 0;
  for (const row of rows) {
    events++;
    const prev = last.get(row.stream_id);
    const computed = chainHash(prev && prev.version === row.version - 1 ? prev.hash : null, row);
    let hashedBefore = prev?.hashedBefore ?? false;
    const brk = (detail: string) => {
      if (breaks.length < maxBreaks) breaks.push({ streamId: row.stream_id, version: row.version, position: row.position, detail });
    };
    if (row.hash) {
      hashed++;
      const stored = Buffer.isBuffer(row.hash) ? row.hash : Buffer.from(row.hash);
      if (prev && prev.version !== row.version - 1) {
        // verify's own version check reports the gap; the chain cannot be checked across it
      } else if (!computed.equals(stored)) {
        brk(
          `hash chain broken at ${row.stream_id} v${row.version} (position ${row.position}): the stored hash does not match the event and the one before it (changed after it was written, or an event before it was replaced)`,
        );
      }
      hashedBefore = true;
      // Go on from what is stored, so one rewritten event is reported once, not for the rest of its stream.
      last.set(row.stream_id, { version: row.version, hash: stored, hashedBefore });
    } else {
      if (hashedBefore) brk(`${row.stream_id} v${row.version} (position ${row.position}) has no hash, but earlier events of its stream do (written behind the server's back?)`);
      last.set(row.stream_id, { version: row.version, hash: computed, hashedBefore });
    }
  }
  return { events, hashed, breaks };
}
