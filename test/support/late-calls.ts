// For the tests of late calls (a lease or an execution that ended): an RPC's outcome as a comparable value, and the
// read-model snapshot that `turboci snapshot` writes beside a SQLite log.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { status, type ServiceError } from '@grpc/grpc-js';
import { readSnapshot, snapshotPathFor } from '../../src/infra/snapshot-file.js';
import { BIN } from './server.js';

/** ['OK', ''] or [status name, details]: what a client of the call was told. */
export type Answer = readonly [string, string];

export async function answerOf(call: Promise<unknown>): Promise<Answer> {
  try {
    await call;
    return ['OK', ''];
  } catch (err) {
    const e = err as ServiceError;
    return [status[e.code], e.details];
  }
}

/** Writes the snapshot of `dbPath` with the CLI (no server may be running on it) and returns its projections. */
export function snapshotProjections<T>(dbPath: string): T {
  const r = spawnSync(process.execPath, [BIN, 'snapshot', '--db', dbPath], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const read = readSnapshot(snapshotPathFor(dbPath));
  assert.equal(read.kind, 'ok', read.kind === 'unusable' ? read.why : '');
  return (read as { state: { projections: T } }).state.projections;
}
