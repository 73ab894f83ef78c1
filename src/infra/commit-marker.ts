// The last position the server committed, remembered outside the database in `<db>.position`: no file can prove
// its own tail is missing (a truncated WAL or database file just looks shorter), but this one can say so. Written
// after every group commit and read at start: a log that ends before it has lost acknowledged events.
// The marker also names the server that owns the database (pid, host, since), for the one that is refused.
//
// A server creates its marker whole (a temporary file renamed over the old one), then rewrites it in place: one
// pwrite of a fixed-width record per commit. Open + write + close + rename on every commit was 3-6% of the server's
// CPU under small writes. A reader racing an in-place write could see half of one, so each record carries a CRC of
// its fields; a reader that gets a mismatch reads again.
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { crc32 } from 'node:zlib';

export interface CommitMarker {
  /** The highest event position committed. */
  readonly position: number;
  readonly pid: number;
  readonly host: string;
  /** When that server started (ISO 8601). */
  readonly since: string;
}

export const markerPath = (dbPath: string): string => `${dbPath}.position`;

const fieldsCrc = (m: { position: number; pid: number; host: string; since: string }): number =>
  crc32(`${m.position}|${m.pid}|${m.host}|${m.since}`);

/** The marker next to dbPath; null when there is none (a new database, or one never served) or it is unreadable. */
export function readCommitMarker(dbPath: string): CommitMarker | null {
  // A mismatched CRC is a read that raced the owner's in-place rewrite: the next read sees a whole record.
  for (let attempt = 0; attempt < 20; attempt++) {
    let text: string;
    try {
      text = readFileSync(markerPath(dbPath), 'utf8');
    } catch {
      return null;
    }
    let m: Partial<CommitMarker> & { crc?: unknown };
    try {
      m = JSON.parse(text) as Partial<CommitMarker> & { crc?: unknown };
    } catch {
      continue;
    }
    const marker = { position: m.position as number, pid: Number(m.pid) || 0, host: String(m.host ?? ''), since: String(m.since ?? '') };
    // Markers of older servers have no CRC: they were only ever written whole.
    if (m.crc !== undefined && m.crc !== fieldsCrc(marker)) continue;
    if (!Number.isSafeInteger(marker.position) || marker.position < 0) return null;
    return marker;
  }
  return null;
}

/** Writes the marker of one server process; cheap enough for every group commit (no fsync: see below). */
export class CommitMarkerWriter {
  private readonly path: string;
  private readonly tmp: string;
  private readonly owner: { pid: number; host: string; since: string };
  private written = -1;
  /** The marker file, open for in-place rewrites once this writer has created it; its record's width. */
  private fd: number | null = null;
  private width = 0;

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
    const fields = { position, ...this.owner };
    const record = Buffer.from(JSON.stringify({ ...fields, crc: fieldsCrc(fields) }));
    if (this.fd !== null && record.length < this.width) {
      // Same width every time (padded with JSON whitespace), so no byte of an older, longer record is left behind.
      writeSync(this.fd, this.padded(record), 0, this.width, 0);
    } else {
      // The first write (or a record that outgrew the width): a whole new file, renamed into place.
      this.close();
      this.width = Math.max(256, record.length + 64);
      writeFileSync(this.tmp, this.padded(record));
      renameSync(this.tmp, this.path);
      this.fd = openSync(this.path, 'r+');
    }
    this.written = position;
  }

  private padded(record: Buffer): Buffer {
    const out = Buffer.alloc(this.width, 0x20);
    record.copy(out);
    out[this.width - 1] = 0x0a;
    return out;
  }

  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}
