// The checks of verify that need the stored rows, not the events: the hash chain (hash-chain.ts) and, for a SQLite
// file, the commit marker (commit-marker.ts), which together see damage a replay cannot: an event rewritten in the
// middle of its stream, and events missing from the end of the log. PostgreSQL has no commit marker: its own WAL
// and commit protocol keep a committed row, and replicas share the log, so no one server's marker could speak for it.
import Database from 'better-sqlite3';
import { markerPath, type CommitMarker } from '../infra/commit-marker.js';
import { checkHashChain } from '../infra/hash-chain.js';
import type { PostgresEventStore } from '../infra/pg/postgres-event-store.js';

export interface StorageDifference {
  readonly workPlanId: string;
  readonly against: string;
  readonly version: number | null;
  readonly details: string[];
}

/**
 * `marker` must be read before the log is (a server may keep committing): the log then holds at least that much.
 */
export function storageDifferences(dbPath: string, marker: CommitMarker | null): { hashed: number; differences: StorageDifference[] } {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const differences: StorageDifference[] = [];
    const last = (db.prepare('SELECT COALESCE(MAX(position), 0) AS p FROM events').get() as { p: number }).p;
    if (marker && last < marker.position) {
      const missing = marker.position - last;
      differences.push({
        workPlanId: '',
        against: `commit marker ${markerPath(dbPath)}`,
        version: null,
        details: [`the log ends at position ${last}, but the server committed up to position ${marker.position}: ${missing} event${missing === 1 ? '' : 's'} missing from the end`],
      });
    }
    const chain = checkHashChain(db);
    for (const b of chain.breaks) differences.push({ workPlanId: b.streamId, against: 'hash chain', version: b.version, details: [b.detail] });
    return { hashed: chain.hashed, differences };
  } finally {
    db.close();
  }
}

/** The hash chain of a PostgreSQL log, read in position order through the store (the same check as a file's). */
export function postgresStorageDifferences(store: PostgresEventStore): { hashed: number; differences: StorageDifference[] } {
  const chain = checkHashChain(store.rawRows());
  return {
    hashed: chain.hashed,
    differences: chain.breaks.map((b) => ({ workPlanId: b.streamId, against: 'hash chain', version: b.version, details: [b.detail] })),
  };
}
