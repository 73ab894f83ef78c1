// Read-model snapshots beside the log (`<db>.snapshot`): a cache that makes a start fold only the log's tail, never a
// source of truth. One file, replaced atomically (write, fsync, rename): a JSON header line, then the state as
// v8-serialized bytes, checked by a CRC-32 and tied to the event schema it was folded under.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { deserialize, serialize } from 'node:v8';
import { crc32 } from 'node:zlib';
import type { SnapshotPoint, SnapshotRead, SnapshotStore } from '../app/snapshots.js';
import { SCHEMA_VERSION } from '../domain/events.js';

/**
 * Bumped when what the projections keep changes shape; with the event schema versions, it decides usability.
 * 4: the runner registry keeps who made each live registration (format 3 left it out, so a start from such a
 * snapshot forgot the owners of registrations made before it); an execution in flight keeps its own; a registration
 * with nothing in flight has no load entry.
 */
export const SNAPSHOT_FORMAT = 4;
const SCHEMA = `${SNAPSHOT_FORMAT}:${JSON.stringify(SCHEMA_VERSION)}`;

export interface SnapshotHeader {
  readonly schema: string;
  /** The global position of the last event folded into it. */
  readonly position: number;
  /** That event's stream and version: a log that no longer has it there is not the log the snapshot came from. */
  readonly streamId: string;
  readonly version: number;
  readonly createdAt: number;
  readonly bytes: number;
  readonly crc32: number;
}

export const snapshotPathFor = (dbPath: string): string => `${dbPath}.snapshot`;

export function writeSnapshot(path: string, at: SnapshotPoint, state: unknown): SnapshotHeader {
  const payload = serialize(state);
  const header: SnapshotHeader = { schema: SCHEMA, ...at, createdAt: Date.now(), bytes: payload.length, crc32: crc32(payload) };
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, `${JSON.stringify(header)}\n`);
    writeSync(fd, payload);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return header;
}

export function readSnapshot(path: string): SnapshotRead {
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'unusable', why: `cannot read ${path}: ${(err as Error).message}` };
  }
  const nl = file.indexOf(0x0a);
  let header: SnapshotHeader;
  try {
    header = JSON.parse(file.subarray(0, nl < 0 ? file.length : nl).toString('utf8')) as SnapshotHeader;
  } catch {
    return { kind: 'unusable', why: `${path} has no snapshot header` };
  }
  if (header.schema !== SCHEMA) return { kind: 'unusable', why: `${path} was written for another event schema or snapshot format` };
  const payload = file.subarray(nl + 1);
  if (payload.length !== header.bytes || crc32(payload) !== header.crc32) return { kind: 'unusable', why: `${path} is damaged (checksum mismatch)` };
  try {
    return { kind: 'ok', header, state: deserialize(payload) };
  } catch (err) {
    return { kind: 'unusable', why: `${path} cannot be decoded: ${(err as Error).message}` };
  }
}

/** The snapshot file of a database, as the application's SnapshotStore. */
export class SnapshotFile implements SnapshotStore {
  readonly describe: string;
  constructor(readonly path: string) {
    this.describe = `snapshot ${path}`;
  }
  read(): SnapshotRead {
    return readSnapshot(this.path);
  }
  write(at: SnapshotPoint, state: unknown): { bytes: number } {
    return writeSnapshot(this.path, at, state);
  }
}
