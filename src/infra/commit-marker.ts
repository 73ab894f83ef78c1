// The last position the server committed, remembered outside the database in `<db>.position`: no file can prove
// its own tail is missing (a truncated WAL or database file just looks shorter), but this one can say so. Written
// after every group commit and read at start: a log that ends before it has lost acknowledged events.
// The marker also names the server that owns the database (pid, host, since), for the one that is refused.
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
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

/** Every marker is written at this size, so each write replaces the whole of the previous one. */
const RECORD_BYTES = 256;

/**
 * Writes the marker of one server process, at every group commit: one write(2) of a fixed-size record at offset 0
 * of a file kept open. (It used to write a temporary file and rename it over the marker: a quarter of the server's
 * CPU on a chain of stages, renames being slow on this kind of file system.) A reader never sees half a record from
 * a running or killed writer: a write of one record within one page is applied whole to the page cache. A record
 * torn by a power loss does not parse, and an unreadable marker is no marker (readCommitMarker).
 */
export class CommitMarkerWriter {
  private readonly fd: number;
  private readonly owner: { pid: number; host: string; since: string };
  private readonly record = Buffer.alloc(RECORD_BYTES);
  private written = -1;

  constructor(dbPath: string) {
    // Not truncated on open: the marker of the previous server is read (and checked) after the store is opened.
    this.fd = openSync(markerPath(dbPath), constants.O_WRONLY | constants.O_CREAT, 0o644);
    this.owner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  }

  /**
   * Records `position` if it moved. Not fsynced: after a killed process the page cache still has it; after a power
   * loss it may be older than the log (harmless: the check only fails when the log is shorter than the marker) or,
   * with --sync NORMAL, newer than what reached the disk, which is exactly the loss it exists to report.
   */
  write(position: number): void {
    if (position === this.written) return;
    const json = JSON.stringify({ position, ...this.owner });
    this.record.fill(0x20);
    const n = this.record.write(json, 0, RECORD_BYTES - 1, 'utf8');
    if (n < json.length) {
      // A host name too long for the record: keep the position, which is what the check reads.
      this.record.fill(0x20);
      this.record.write(JSON.stringify({ position, pid: this.owner.pid }), 0, 'utf8');
    }
    this.record[RECORD_BYTES - 1] = 0x0a;
    writeSync(this.fd, this.record, 0, RECORD_BYTES, 0);
    this.written = position;
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}
