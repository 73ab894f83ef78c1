// The PostgreSQL event store against a real PostgreSQL (a fresh database per test): the EventStore contract as the
// SQLite store keeps it, the guarantees the database itself enforces (append-only triggers, the unique stream
// version), positions in commit order while replicas write at the same time, and the versioned schema.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { StorageFailure, StreamExists, VersionConflict } from '../../src/app/event-store.js';
import { SCHEMA_VERSION, type PendingEvent, type RecordedEvent } from '../../src/domain/events.js';
import { checkHashChain } from '../../src/infra/hash-chain.js';
import { PostgresEventStore } from '../../src/infra/pg/postgres-event-store.js';
import { NoSchema, SchemaTooNew } from '../../src/infra/pg/schema.js';
import { postgresForFile } from '../support/postgres.js';
import type { WriterData, WriterResult } from './pg-writer.js';

const pg = await postgresForFile('event_store');
const skip = pg.skip;
const open: PostgresEventStore[] = [];
/** A store that is closed after the file's tests even when an assertion fails first. */
const store = (url: string, options?: ConstructorParameters<typeof PostgresEventStore>[1]) => {
  const s = new PostgresEventStore(url, options);
  open.push(s);
  return s;
};
after(() => {
  for (const s of open) s.close();
});

const created: PendingEvent = { event: { type: 'WorkPlanCreated', data: { metadata: { repo: 'r' } } }, causedByVersion: null };
const check = (id: string, causedByVersion: number | null = null): PendingEvent => ({
  event: { type: 'CheckCreated', data: { checkId: id, kind: 'k', options: { a: 1 }, dependencies: null } },
  causedByVersion,
});
const positions = (events: Iterable<RecordedEvent>) => [...events].map((e) => e.position);

test('appends get gap-free versions and positions, and every reader returns them as appended, after reopening too', { skip }, async () => {
  const url = await pg.createDatabase();
  const s = store(url);
  const a = s.append('wp-a', 0, [created, check('c1')], { requestId: 'r1', recordedAt: 1000, principal: 'alice', reason: 'first' });
  const b = s.append('wp-b', 0, [created], { requestId: null, recordedAt: 2000 });
  const a2 = s.append('wp-a', 2, [check('c2', 2)], { requestId: 'r2', recordedAt: 3000 });
  const t = s.append('tokens', 0, [check('not-a-workplan')], { requestId: null, recordedAt: 4000 });
  assert.deepEqual(a.map((e) => e.version), [1, 2]);
  assert.deepEqual(positions([...a, ...b, ...a2, ...t]), [1, 2, 3, 4, 5]);
  assert.deepEqual(a[0]!.causation, { requestId: 'r1', causedByVersion: null, principal: 'alice', reason: 'first' });
  s.close();

  const r = store(url);
  assert.deepEqual([...r.readStream('wp-a')], [...a, ...a2]);
  assert.deepEqual([...r.readStream('wp-a', { afterVersion: 1, toVersion: 2 })], [a[1]]);
  assert.deepEqual([...r.readStream('no-such-stream')], []);
  assert.deepEqual(positions(r.readAll()), [1, 2, 3, 4, 5]);
  assert.deepEqual(positions(r.readAll(2)), [3, 4, 5]);
  assert.deepEqual(r.eventAt(4), a2[0]);
  assert.equal(r.eventAt(99), undefined);
  assert.equal(r.count(), 5);
  assert.equal(r.lastPosition(), 5);
  // Workplans are the streams that start with WorkPlanCreated, in creation order.
  assert.deepEqual(r.workPlans(), [{ id: 'wp-a', version: 3 }, { id: 'wp-b', version: 1 }]);
  assert.deepEqual(r.workPlan('wp-a'), { id: 'wp-a', version: 3 });
  assert.equal(r.workPlan('tokens'), undefined);
  assert.equal(r.workPlan('nope'), undefined);

  const byType = [...r.readFiltered({ types: ['CheckCreated'] })];
  assert.deepEqual(positions(byType), [2, 4, 5]);
  assert.ok(byType.every((e) => e.storedSchemaVersion === SCHEMA_VERSION.CheckCreated));
  assert.deepEqual(positions(r.readFiltered({ workPlanId: 'wp-a', fromVersion: 2 })), [2, 4]);
  assert.deepEqual(positions(r.readFiltered({ workPlanId: 'wp-a', toVersion: 99_999_999_999 })), [1, 2, 4]);
  assert.deepEqual(positions(r.readFiltered({ fromPosition: 2, toPosition: 3 })), [2, 3]);
  assert.deepEqual(positions(r.readFiltered({ since: 2000, until: 3000 })), [3, 4]);
  assert.deepEqual(positions(r.readFiltered({ workPlanId: 'wp-a', node: 'check:c2' })), [4]);
});

test('a stale expected version is a VersionConflict and appends nothing, also for a replica that never read the stream', { skip }, async () => {
  const url = await pg.createDatabase();
  const one = store(url);
  const two = store(url);
  one.append('wp', 0, [created], { requestId: null, recordedAt: 1 });
  assert.throws(() => one.append('wp', 0, [check('x')], { requestId: null, recordedAt: 2 }), VersionConflict);
  assert.throws(() => one.append('wp', 5, [check('x')], { requestId: null, recordedAt: 2 }), VersionConflict);
  // The other connection never saw the stream: it reads the head under the append lock, not from memory.
  assert.throws(() => two.append('wp', 0, [created], { requestId: null, recordedAt: 3 }), VersionConflict);
  two.append('wp', 1, [check('c')], { requestId: null, recordedAt: 4 });
  assert.throws(() => one.append('wp', 1, [check('d')], { requestId: null, recordedAt: 5 }), VersionConflict);
  assert.deepEqual([...one.readStream('wp')].map((e) => e.version), [1, 2]);
  assert.deepEqual(positions(one.readAll()), [1, 2]);
  assert.equal(one.count(), 2);
});

test('the database refuses a duplicate stream version and a duplicate position written by raw SQL', { skip }, async () => {
  const url = await pg.createDatabase();
  const s = store(url);
  s.append('wp', 0, [created], { requestId: null, recordedAt: 1 });
  const insert = `INSERT INTO turboci_events (position, stream_id, version, type, schema_version, data, recorded_at)
                  VALUES ($1, $2, $3, 'CheckCreated', 1, '{}', 1)`;
  await assert.rejects(pg.sql(url, insert, [2, 'wp', 1]), (err: { code?: string; constraint?: string }) => {
    assert.equal(err.code, '23505'); // unique_violation
    assert.equal(err.constraint, 'turboci_events_stream_version');
    return true;
  });
  await assert.rejects(pg.sql(url, insert, [1, 'other', 1]), { code: '23505' });
  await assert.rejects(pg.sql(url, insert, [0, 'other', 1]), { code: '23514' }); // position > 0
  assert.equal(s.count(), 1);
});

test('UPDATE, DELETE and TRUNCATE are refused by the database itself', { skip }, async () => {
  const url = await pg.createDatabase();
  const s = store(url);
  s.append('wp', 0, [created, check('c')], { requestId: 'r', recordedAt: 1 });
  for (const sql of [
    "UPDATE turboci_events SET data = '{}' WHERE position = 2",
    'DELETE FROM turboci_events WHERE position = 2',
    'TRUNCATE turboci_events',
  ]) {
    await assert.rejects(pg.sql(url, sql), (err: Error & { code?: string }) => {
      assert.equal(err.code, '42501', sql);
      assert.match(err.message, /append-only/, sql);
      return true;
    });
  }
  const [row] = await pg.sql<{ n: string }>(url, 'SELECT COUNT(*) AS n FROM turboci_events');
  assert.equal(Number(row!.n), 2);
  assert.deepEqual(checkHashChain(s.rawRows()).breaks, []);
});

test('two replicas taking turns: each folds the other\'s events at beginWrite and numbers its own after them', { skip }, async () => {
  const url = await pg.createDatabase();
  const a = store(url, { groupCommit: true });
  const b = store(url, { groupCommit: true });
  assert.deepEqual(a.beginWrite(0), []);
  const a1 = a.append('wp', 0, [created], { requestId: 'a1', recordedAt: 1 });
  // Group commit: nothing is visible to others before flush, but this store reads its own pending events.
  assert.deepEqual(positions(a.readStream('wp')), [1]);
  a.flush();
  const seenByB = b.beginWrite(0);
  assert.deepEqual(seenByB, a1);
  const b1 = b.append('wp', 1, [check('b', 1)], { requestId: 'b1', recordedAt: 2 });
  b.flush();
  const seenByA = a.beginWrite(1);
  assert.deepEqual(seenByA, b1);
  const a2 = a.append('wp', 2, [check('a')], { requestId: 'a2', recordedAt: 3 });
  a.rollback(); // a failed turn leaves nothing behind
  assert.equal(a.count(), 2);
  a.beginWrite(2);
  const a3 = a.append('wp', 2, [check('a')], { requestId: 'a3', recordedAt: 4 });
  assert.equal(a3[0]!.position, a2[0]!.position); // the rolled-back position is not a gap
  a.flush();
  assert.deepEqual(positions(b.tail(2)), [3]);
  assert.deepEqual([...b.readStream('wp')].map((e) => e.causation.requestId), ['a1', 'b1', 'a3']);
});

test('replicas writing at the same time: positions are gap-free and in commit order, and a tailer sees every event once, in order', { skip }, async () => {
  const url = await pg.createDatabase();
  const shared = 'wp-shared';
  const setup = store(url);
  setup.append(shared, 0, [created], { requestId: null, recordedAt: 1 });
  const writers = 3;
  const rounds = 40;
  const total = 1 + writers * rounds * 2;

  const tailer = store(url, { readonly: true });
  let wakes = 0;
  let wake: (() => void) | null = null;
  const unlisten = tailer.onCommitted(
    () => {
      wakes++;
      wake?.();
    },
    (message) => assert.fail(`listener: ${message}`),
  );
  const results = Array.from({ length: writers }, (_, i) => {
    const data: WriterData = { url, name: `w${i}`, rounds, shared };
    const worker = new Worker(new URL('./pg-writer.js', import.meta.url), { workerData: data });
    return new Promise<WriterResult>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`writer w${i} exited (${code}) without a result`)));
    });
  });
  let finished = false;
  const all = Promise.all(results).finally(() => {
    finished = true;
    wake?.();
  });
  all.catch(() => undefined); // awaited below; a failure must not end the tail loop as an unhandled rejection

  // Tail while they write: each page must continue exactly where the last one ended.
  const seen: number[] = [];
  let last = 0;
  let pages = 0;
  for (;;) {
    const wasFinished = finished;
    const wakesBefore = wakes;
    const page = tailer.tail(last);
    if (page.length > 0) {
      pages++;
      for (const e of page) {
        assert.equal(e.position, last + 1, `after position ${last} the tailer read ${e.position}`);
        seen.push(e.position);
        last = e.position;
      }
      continue;
    }
    if (wasFinished) break; // every writer had committed before this read, and it found nothing new
    if (wakes === wakesBefore && !finished) await new Promise<void>((resolve) => (wake = resolve));
    wake = null;
  }
  unlisten();
  const done = await all;

  assert.equal(seen.length, total);
  assert.deepEqual(seen, Array.from({ length: total }, (_, i) => i + 1));
  const written = done.flatMap((r) => r.positions).sort((x, y) => x - y);
  assert.deepEqual(written, Array.from({ length: total - 1 }, (_, i) => i + 2), 'every writer got positions of its own, none twice');
  // The shared stream: every writer appended at the version it had folded, and no append conflicted.
  const versions = [...setup.readStream(shared)].map((e) => e.version);
  assert.deepEqual(versions, Array.from({ length: 1 + writers * rounds }, (_, i) => i + 1));
  assert.deepEqual(done.flatMap((r) => r.sharedVersions).sort((x, y) => x - y), versions.slice(1));
  // They did write at the same time: some writer folded another's commit between two of its own.
  assert.ok(done.some((r) => r.folded.slice(1).some((n) => n > 0)), 'the writers never interleaved');
  assert.ok(pages >= 1);
  assert.deepEqual(checkHashChain(setup.rawRows()).breaks, []);
});

test('the schema is migrated once: turboci_schema_migrations records version 1, and a second open runs nothing again', { skip }, async () => {
  const url = await pg.createDatabase();
  store(url).close();
  const first = await pg.sql<{ version: number; description: string; applied_at: Date }>(url, 'SELECT version, description, applied_at FROM turboci_schema_migrations');
  assert.equal(first.length, 1);
  assert.equal(first[0]!.version, 1);
  assert.match(first[0]!.description, /event log/);
  store(url).close();
  store(url, { readonly: true }).close();
  const second = await pg.sql<{ version: number; applied_at: Date }>(url, 'SELECT version, applied_at FROM turboci_schema_migrations');
  assert.deepEqual(second, [{ version: 1, applied_at: first[0]!.applied_at }]);
  const tables = await pg.sql<{ t: string }>(url, "SELECT tablename AS t FROM pg_tables WHERE tablename LIKE 'turboci%' ORDER BY 1");
  assert.deepEqual(tables.map((r) => r.t), ['turboci_events', 'turboci_schema_migrations']);
});

test('a schema newer than this build is refused, for writing and for reading; a database without one is not a log', { skip }, async () => {
  const url = await pg.createDatabase();
  store(url).close();
  await pg.sql(url, "INSERT INTO turboci_schema_migrations (version, description) VALUES (2, 'from the future')");
  assert.throws(() => new PostgresEventStore(url), (err) => err instanceof SchemaTooNew && err.found === 2);
  assert.throws(() => new PostgresEventStore(url, { readonly: true }), SchemaTooNew);

  const empty = await pg.createDatabase();
  assert.throws(() => new PostgresEventStore(empty, { readonly: true }), NoSchema);
  const [t] = await pg.sql<{ t: string | null }>(empty, "SELECT to_regclass('turboci_events')::text AS t");
  assert.equal(t!.t, null, 'a read-only open created nothing');
});

test('a read-only store refuses appends and imports', { skip }, async () => {
  const url = await pg.createDatabase();
  store(url).append('wp', 0, [created], { requestId: null, recordedAt: 1 });
  const ro = store(url, { readonly: true });
  assert.throws(() => ro.append('wp', 1, [check('c')], { requestId: null, recordedAt: 2 }), StorageFailure);
  assert.throws(() => ro.importStream('wp2', []), StorageFailure);
  assert.equal(ro.count(), 1);
});

test('importStream keeps versions, times and causes, numbers positions after the log, and refuses an existing stream', { skip }, async () => {
  const url = await pg.createDatabase();
  const s = store(url);
  s.append('other', 0, [created], { requestId: null, recordedAt: 1 });
  const events = [
    { version: 1, recordedAt: 10, causation: { requestId: 'r1', causedByVersion: null, principal: 'alice', reason: 'why' }, event: created.event },
    { version: 2, recordedAt: 20, causation: { requestId: 'r1', causedByVersion: 1, principal: 'system', reason: null }, event: check('c').event },
  ];
  s.importStream('wp', events);
  const back = [...s.readStream('wp')];
  assert.deepEqual(back.map(({ position, streamId, ...rest }) => rest), events);
  assert.deepEqual(positions(back), [2, 3]);
  assert.throws(() => s.importStream('wp', events), StreamExists);
  assert.equal(s.count(), 3);
  assert.deepEqual(checkHashChain(s.rawRows()), { events: 3, hashed: 3, breaks: [] });
});

test('a store whose connection is terminated connects again, but never inside the transaction it lost', { skip }, async () => {
  const url = await pg.createDatabase();
  const name = `turboci test victim ${process.pid}`;
  const s = store(url, { groupCommit: true, applicationName: name });
  const terminate = () => pg.sql(url, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [name]);
  s.beginWrite(0);
  s.append('wp', 0, [created], { requestId: 'kept-1', recordedAt: 1 });
  s.flush();

  // Terminated inside a write: its lock and its reads are gone, so the commit fails rather than going on elsewhere.
  s.beginWrite(1);
  s.append('wp', 1, [check('lost')], { requestId: 'lost', recordedAt: 2 });
  await terminate();
  assert.throws(() => s.flush(), StorageFailure);
  // The next turn runs on a new connection.
  assert.deepEqual(s.beginWrite(1), []);
  s.append('wp', 1, [check('kept')], { requestId: 'kept-2', recordedAt: 3 });
  s.flush();

  // Terminated between transactions: at most the call that finds out fails; then it reads again.
  const reader = store(url, { readonly: true, applicationName: name });
  assert.equal(reader.count(), 2);
  await terminate();
  let count: number;
  try {
    count = reader.count();
  } catch {
    count = reader.count();
  }
  assert.equal(count, 2);
  assert.deepEqual([...reader.readAll()].map((e) => [e.position, e.version, e.causation.requestId]), [
    [1, 1, 'kept-1'],
    [2, 2, 'kept-2'],
  ]);
  assert.deepEqual(checkHashChain(reader.rawRows()).breaks, []);
});
