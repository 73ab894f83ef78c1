import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { StorageFailure, VersionConflict } from '../../src/app/event-store.js';
import { checkHashChain } from '../../src/infra/hash-chain.js';
import type { PendingEvent } from '../../src/domain/events.js';
import { decodeEvent, UPCASTERS } from '../../src/infra/event-codec.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { tempDir } from '../support/server.js';

const dir = tempDir('turboci-store-');
after(() => dir.remove());

const created: PendingEvent = { event: { type: 'WorkPlanCreated', data: { metadata: {} } }, causedByVersion: null };
const check = (id: string): PendingEvent => ({
  event: { type: 'CheckCreated', data: { checkId: id, kind: 'k', options: { a: 1 }, dependencies: null } },
  causedByVersion: null,
});

test('appends get gap-free stream versions and global positions, and read back identically after reopening', () => {
  const path = `${dir.path}/append.db`;
  const store = new SqliteEventStore(path);
  const a = store.append('wp-a', 0, [created, check('c1')], { requestId: 'r1', recordedAt: 1000 });
  const b = store.append('wp-b', 0, [created], { requestId: null, recordedAt: 2000 });
  const a2 = store.append('wp-a', 2, [check('c2')], { requestId: 'r2', recordedAt: 3000 });
  assert.deepEqual(a.map((e) => e.version), [1, 2]);
  assert.deepEqual([...a, ...b, ...a2].map((e) => e.position), [1, 2, 3, 4]);
  store.close();

  const reopened = new SqliteEventStore(path);
  const stream = [...reopened.readStream('wp-a')];
  assert.deepEqual(stream, [...a, ...a2]);
  assert.deepEqual([...reopened.readStream('wp-a', { afterVersion: 1, toVersion: 2 })], [a[1]]);
  assert.deepEqual([...reopened.readAll(2)].map((e) => e.position), [3, 4]);
  reopened.close();
});

test('an append at the wrong expected version is a VersionConflict and appends nothing', () => {
  const store = new SqliteEventStore(`${dir.path}/conflict.db`);
  store.append('wp', 0, [created], { requestId: null, recordedAt: 1 });
  assert.throws(() => store.append('wp', 0, [check('x')], { requestId: null, recordedAt: 2 }), VersionConflict);
  assert.throws(() => store.append('wp', 5, [check('x')], { requestId: null, recordedAt: 2 }), VersionConflict);
  assert.equal([...store.readStream('wp')].length, 1);
  store.close();
});

test('two store handles on one file cannot both append the same version', () => {
  const path = `${dir.path}/two-writers.db`;
  const one = new SqliteEventStore(path);
  const two = new SqliteEventStore(path);
  one.append('wp', 0, [created], { requestId: null, recordedAt: 1 });
  assert.throws(() => two.append('wp', 0, [created], { requestId: null, recordedAt: 1 }), VersionConflict);
  two.append('wp', 1, [check('c')], { requestId: null, recordedAt: 2 });
  assert.deepEqual([...one.readStream('wp')].map((e) => e.version), [1, 2]);
  one.close();
  two.close();
});

test('the log refuses UPDATE and DELETE', () => {
  const path = `${dir.path}/append-only.db`;
  const store = new SqliteEventStore(path);
  store.append('wp', 0, [created], { requestId: null, recordedAt: 1 });
  store.close();
  const db = new Database(path);
  assert.throws(() => db.prepare("UPDATE events SET data = '{}'").run(), /append-only/);
  assert.throws(() => db.prepare('DELETE FROM events').run(), /append-only/);
  db.close();
});

test('a read-only handle reads while a writer appends', () => {
  const path = `${dir.path}/readonly.db`;
  const writer = new SqliteEventStore(path);
  writer.append('wp', 0, [created], { requestId: null, recordedAt: 1 });
  const reader = new SqliteEventStore(path, { readonly: true });
  writer.append('wp', 1, [check('c')], { requestId: null, recordedAt: 2 });
  assert.equal([...reader.readStream('wp')].length, 2);
  assert.throws(() => reader.append('wp', 2, [check('d')], { requestId: null, recordedAt: 3 }), /readonly/i);
  reader.close();
  writer.close();
});

test('an event of an older schema version is upcast on read; a newer one is refused', () => {
  // CheckCreated@0 (a hypothetical earlier shape) called its options "config".
  const upcasters = {
    ...UPCASTERS,
    'CheckCreated@0': (d: Record<string, unknown>) => {
      const { config, ...rest } = d;
      return { ...rest, options: config };
    },
  };
  const old = { type: 'CheckCreated', schema_version: 0, data: JSON.stringify({ checkId: 'c', kind: 'k', config: { x: 1 }, dependencies: null }) };
  assert.deepEqual(decodeEvent(old, upcasters), {
    type: 'CheckCreated',
    data: { checkId: 'c', kind: 'k', options: { x: 1 }, dependencies: null },
  });
  assert.throws(() => decodeEvent(old, UPCASTERS), /no upcaster/);
  assert.throws(() => decodeEvent({ ...old, schema_version: 99 }, upcasters), /newer than this server knows/);
});

test('with group commit, appends are invisible to other connections and lost in a crash until flush(); a conflict spoils only its own append', () => {
  const path = `${dir.path}/group.db`;
  const writer = new SqliteEventStore(path, { groupCommit: true });
  const reader = new SqliteEventStore(path, { readonly: true });
  writer.append('wp-a', 0, [created], { requestId: null, recordedAt: 1 });
  assert.throws(() => writer.append('wp-a', 0, [check('x')], { requestId: null, recordedAt: 2 }), VersionConflict);
  writer.append('wp-b', 0, [created, check('y')], { requestId: null, recordedAt: 3 });
  assert.equal([...writer.readAll()].length, 3, 'the writer reads its own appends');
  assert.equal([...reader.readAll()].length, 0, 'nothing is committed before flush()');
  writer.flush();
  assert.deepEqual([...reader.readAll()].map((e) => `${e.streamId}@${e.version}`), ['wp-a@1', 'wp-b@1', 'wp-b@2']);

  // A crash before flush: the connection goes away without COMMIT, as a killed process's would.
  writer.append('wp-a', 1, [check('lost')], { requestId: null, recordedAt: 4 });
  (writer as unknown as { db: Database.Database }).db.close();
  assert.equal([...reader.readStream('wp-a')].length, 1);
  reader.close();
  const reopened = new SqliteEventStore(path);
  assert.deepEqual([...reopened.readStream('wp-a')].map((e) => e.version), [1]);
  reopened.close();
});

test('with group commit, an insert that fails partway through an append takes its whole group with it, as a StorageFailure', () => {
  const path = `${dir.path}/group-insert-fails.db`;
  const store = new SqliteEventStore(path, { groupCommit: true });
  store.append('wp-a', 0, [created], { requestId: null, recordedAt: 1 });
  store.flush();
  // Another connection makes the second event of wp-b's next append fail inside SQLite (not a version conflict).
  const other = new Database(path);
  other.exec(`CREATE TRIGGER refuse_wp_b_2 BEFORE INSERT ON events WHEN NEW.stream_id = 'wp-b' AND NEW.version = 2 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`);
  store.append('wp-a', 1, [check('in-the-same-group')], { requestId: null, recordedAt: 2 });
  assert.throws(
    () => store.append('wp-b', 0, [created, check('second')], { requestId: null, recordedAt: 3 }),
    (err: Error) => err instanceof StorageFailure && /refused by the test/.test(err.message),
  );
  store.flush();
  assert.deepEqual([...store.readAll()].map((e) => `${e.streamId}@${e.version}`), ['wp-a@1'], 'neither the append nor its group is in the log');
  other.exec('DROP TRIGGER refuse_wp_b_2');
  other.close();
  // The stream tails are read from the log again: the next appends continue where the log ends.
  store.append('wp-a', 1, [check('again')], { requestId: null, recordedAt: 4 });
  store.append('wp-b', 0, [created], { requestId: null, recordedAt: 5 });
  store.flush();
  store.close();
  const reopened = new SqliteEventStore(path);
  assert.deepEqual([...reopened.readAll()].map((e) => `${e.streamId}@${e.version}`), ['wp-a@1', 'wp-a@2', 'wp-b@1']);
  const db = new Database(path, { readonly: true });
  assert.equal(checkHashChain(db).breaks.length, 0);
  db.close();
  reopened.close();
});

test('the commit marker follows every group commit, skips rolled-back appends, and a garbled record reads as none', async () => {
  const { readCommitMarker, markerPath } = await import('../../src/infra/commit-marker.js');
  const { readFileSync, writeFileSync } = await import('node:fs');
  const path = `${dir.path}/marker.db`;
  const store = new SqliteEventStore(path, { groupCommit: true, commitMarker: true });
  store.writeCommitMarker();
  assert.equal(readCommitMarker(path)?.position, 0);
  store.append('wp-a', 0, [created, check('c1')], { requestId: null, recordedAt: 1 });
  store.flush();
  assert.equal(readCommitMarker(path)?.position, 2);
  const width = readFileSync(markerPath(path)).length;
  store.append('wp-a', 2, [check('c2')], { requestId: null, recordedAt: 2 });
  store.rollback();
  store.append('wp-b', 0, [created], { requestId: null, recordedAt: 3 });
  assert.throws(() => store.append('wp-b', 0, [created], { requestId: null, recordedAt: 3 }), VersionConflict);
  store.flush();
  assert.equal(readCommitMarker(path)?.position, 3);
  for (let v = 1; v <= 12; v++) {
    store.append('wp-b', v, [check(`c${v}`)], { requestId: null, recordedAt: 4 });
    store.flush();
  }
  assert.equal(readCommitMarker(path)?.position, 15);
  assert.equal(readFileSync(markerPath(path)).length, width, 'rewritten in place at one width');
  store.close();

  // What a reader racing an in-place rewrite could see: one record's position with another's CRC.
  const text = readFileSync(markerPath(path), 'utf8');
  writeFileSync(markerPath(path), text.replace('"position":15', '"position":16'));
  assert.equal(readCommitMarker(path), null);
  // A marker written by an older server (no CRC) still counts.
  writeFileSync(markerPath(path), JSON.stringify({ position: 7, pid: 1, host: 'h', since: 's' }) + '\n');
  assert.equal(readCommitMarker(path)?.position, 7);
});

test('appends to one stream within one group commit chain and check versions as separate commits do', async () => {
  const path = `${dir.path}/tails.db`;
  const store = new SqliteEventStore(path, { groupCommit: true });
  store.append('wp-t', 0, [created], { requestId: null, recordedAt: 1 });
  store.append('wp-t', 1, [check('c1'), check('c2')], { requestId: null, recordedAt: 2 });
  assert.throws(() => store.append('wp-t', 1, [check('c3')], { requestId: null, recordedAt: 3 }), VersionConflict);
  store.append('wp-t', 3, [check('c3')], { requestId: null, recordedAt: 3 });
  store.rollback();
  store.append('wp-t', 0, [created], { requestId: null, recordedAt: 4 });
  assert.throws(() => store.append('wp-t', 4, [check('c4')], { requestId: null, recordedAt: 5 }), VersionConflict);
  store.append('wp-t', 1, [check('c4')], { requestId: null, recordedAt: 5 });
  store.flush();
  store.append('wp-t', 2, [check('c5')], { requestId: null, recordedAt: 6 });
  store.flush();
  assert.deepEqual([...store.readStream('wp-t')].map((e) => e.version), [1, 2, 3]);
  store.close();
  const db = new Database(path, { readonly: true });
  const report = checkHashChain(db);
  db.close();
  assert.deepEqual({ events: report.events, hashed: report.hashed, breaks: report.breaks }, { events: 3, hashed: 3, breaks: [] });
});

test('syncing off the main thread: COMMIT does not sync; whenDurable calls back in order after an fdatasync, and only then moves the commit marker', async () => {
  const { readCommitMarker } = await import('../../src/infra/commit-marker.js');
  const path = `${dir.path}/off-thread.db`;
  // inlineBelowMs 0: every sync off the main thread, as on a slow disk.
  const store = new SqliteEventStore(path, { groupCommit: true, commitMarker: true, syncOffMainThread: true, syncInlineBelowMs: 0 });
  const db = (store as unknown as { db: Database.Database }).db;
  assert.equal(db.pragma('synchronous', { simple: true }), 1, 'COMMIT runs at NORMAL (1): the fdatasync is ours');
  store.writeCommitMarker();
  const order: string[] = [];
  store.append('wp-a', 0, [created, check('c1')], { requestId: null, recordedAt: 1 });
  store.flush();
  /** Resolves when whenDurable calls back, noting the marker's position at that moment. */
  const durable = (label: string) =>
    new Promise<void>((resolve, reject) =>
      store.whenDurable((err) => {
        order.push(`${label} marker=${readCommitMarker(path)?.position}`);
        if (err) reject(err);
        else resolve();
      }),
    );
  const first = durable('first');
  assert.equal(readCommitMarker(path)?.position, 0, 'the marker never says more than is synced');
  store.append('wp-a', 2, [check('c2')], { requestId: null, recordedAt: 2 });
  store.flush();
  const second = durable('second');
  assert.deepEqual(order, [], 'nothing is called back before the fdatasync has run');
  await Promise.all([first, second]);
  assert.deepEqual(order, ['first marker=2', 'second marker=3']);

  // Closing syncs what is left at once and runs its callbacks.
  store.append('wp-a', 3, [check('c3')], { requestId: null, recordedAt: 3 });
  store.flush();
  let closedWith: Error | null | undefined;
  store.whenDurable((err) => (closedWith = err));
  store.close();
  assert.equal(closedWith, null);
  assert.equal(readCommitMarker(path)?.position, 4);
  const reopened = new SqliteEventStore(path, { readonly: true });
  assert.deepEqual([...reopened.readStream('wp-a')].map((e) => e.version), [1, 2, 3, 4]);
  reopened.close();
});

test('syncing off the main thread is only for group commit at FULL: NORMAL and per-append commits keep SQLite\'s own syncing', () => {
  for (const [options, expected] of [
    [{ groupCommit: true, synchronous: 'NORMAL', syncOffMainThread: true }, 1],
    [{ groupCommit: false, synchronous: 'FULL', syncOffMainThread: true }, 2],
    [{ groupCommit: true, synchronous: 'FULL' }, 2],
  ] as const) {
    const store = new SqliteEventStore(`${dir.path}/sync-${expected}-${options.groupCommit}-${options.synchronous}.db`, options);
    assert.equal((store as unknown as { db: Database.Database }).db.pragma('synchronous', { simple: true }), expected, JSON.stringify(options));
    let called = false;
    store.whenDurable(() => (called = true));
    assert.ok(called, 'nothing to wait for: at once');
    store.close();
  }
});

test('syncs stay on the main thread while they are fast, and move off it once they are slower than the threshold', async () => {
  const { readCommitMarker } = await import('../../src/infra/commit-marker.js');
  const path = `${dir.path}/adaptive.db`;
  // A threshold no real fdatasync beats: the first sync is made here (nothing measured yet), then they move off.
  const store = new SqliteEventStore(path, { groupCommit: true, commitMarker: true, syncOffMainThread: true, syncInlineBelowMs: 1e-9 });
  store.append('wp', 0, [created], { requestId: null, recordedAt: 1 });
  store.flush();
  let first: Error | null | undefined;
  store.whenDurable((err) => (first = err));
  assert.equal(first, null, 'made on the main thread: called back before whenDurable returned');
  assert.equal(readCommitMarker(path)?.position, 1);
  store.append('wp', 1, [check('c')], { requestId: null, recordedAt: 2 });
  store.flush();
  let second: Error | null | undefined;
  const done = new Promise<void>((resolve) =>
    store.whenDurable((err) => {
      second = err;
      resolve();
    }),
  );
  assert.equal(second, undefined, 'slower than the threshold: off the main thread');
  await done;
  assert.equal(second, null);
  assert.equal(readCommitMarker(path)?.position, 2);
  store.close();
});
