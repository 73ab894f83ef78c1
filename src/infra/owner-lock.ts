// One server per database. The lock is an open exclusive transaction on `<db>.lock` (a small empty SQLite file):
// SQLite takes it as an OS file lock (fcntl), which the kernel drops when the process ends however it ends, so a
// SIGKILLed server never blocks the next start. The database itself is not locked: the read-only tools (events,
// replay, verify --db) and backups keep working while a server runs. Who holds the lock is read from the commit
// marker (`<db>.position`), which the holder rewrites as soon as it has the lock.
import Database from 'better-sqlite3';
import { readCommitMarker } from './commit-marker.js';

export const lockPath = (dbPath: string): string => `${dbPath}.lock`;

/** Another process serves this database. */
export class DatabaseInUse extends Error {
  override name = 'DatabaseInUse';
}

export interface OwnerLock {
  release(): void;
}

export function acquireOwnerLock(dbPath: string): OwnerLock {
  const db = new Database(lockPath(dbPath));
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('journal_mode = OFF'); // nothing is ever written to it: no journal file next to it
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
    const owner = readCommitMarker(dbPath);
    const who = owner && owner.pid ? `pid ${owner.pid} on host ${owner.host}, serving since ${owner.since}` : 'another process';
    throw new DatabaseInUse(`${dbPath} is in use by another turboci serve (${who}); one server per database (lock: ${lockPath(dbPath)})`);
  }
  return {
    release: () => {
      if (!db.open) return;
      db.exec('ROLLBACK');
      db.close();
    },
  };
}
