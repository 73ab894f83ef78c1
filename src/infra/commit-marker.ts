// The last position the server committed, remembered outside the database in `<db>.position`: no file can prove
// its own tail is missing (a truncated WAL or database file just looks shorter), but this one can say so. Written
// after every group commit (write a temporary file, then rename it over the old one: a reader sees the old or the
// new marker, never half of one) and read at start: a log that ends before it has lost acknowledged events.
// The marker also names the server that owns the database (pid, host, since), for the one that is refused.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface CommitMarker {
  /** The highest event position committed. */
  readonly position: number;
  readonly pid: number;
  readonly host: string;
  /** When that server started (ISO 8601). */
  readonly since: string;
}

export const markerPath = (dbPath: string): string => `${dbPath}.position`;

/** The marker next to dbPath; null when there is none (a new database, or one never served) or it is unreadable. */
export function readCommitMarker(dbPath: string): CommitMarker | null {
  let text: string;
  try {
    text = readFileSync(markerPath(dbPath), 'utf8');
  } catch {
    return null;
  }
  try {
    const m = JSON.parse(text) as Partial<CommitMarker>;
    if (!Number.isSafeInteger(m.position) || (m.position as number) < 0) return null;
    return { position: m.position as number, pid: Number(m.pid) || 0, host: String(m.host ?? ''), since: String(m.since ?? '') };
  } catch {
    return null;
  }
}

/** Writes the marker of one server process; cheap enough for every group commit (no fsync: see below). */
export class CommitMarkerWriter {
  private readonly path: string;
  private readonly tmp: string;
  private readonly owner: { pid: number; host: string; since: string };
  private written = -1;

  constructor(dbPath: string) {
    this.path = markerPath(dbPath);
    this.tmp = `${this.path}.tmp`;
    this.owner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  }

  /**
   * Records `position` if it moved. Not fsynced: after a killed process the page cache still has it; after a power
   * loss it may be older than the log (harmless: the check only fails when the log is shorter than the marker) or,
   * with --sync NORMAL, newer than what reached the disk, which is exactly the loss it exists to report.
   */
  write(position: number): void {
    if (position === this.written) return;
    writeFileSync(this.tmp, JSON.stringify({ position, ...this.owner }) + '\n');
    renameSync(this.tmp, this.path);
    this.written = position;
  }
}
