// A long readAll is read ahead on a worker thread (src/infra/read-ahead.ts). Whichever way a log is read, the caller
// must get the same events, decoded the same way, and the same errors.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { ReadModels } from '../../projections/read-models.js';
import { loadReadModels } from '../../src/app/snapshots.js';
import { SCHEMA_VERSION, type PendingEvent } from '../../src/domain/events.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { tempDir } from '../support/server.js';
import { Orchestrator } from '../../src/app/orchestrator.js';
import { canonicalJson, readModelState } from '../../src/app/eventlog/digest.js';

const dir = tempDir('turboci-read-ahead-');
after(() => dir.remove());

const created: PendingEvent = { event: { type: 'WorkPlanCreated', data: { metadata: { team: 'ünïcode ✓' } } }, causedByVersion: null };
const check = (id: string): PendingEvent => ({
  event: { type: 'CheckCreated', data: { checkId: id, kind: 'k', options: { n: id.length, quote: 'a "b" \\ c' }, dependencies: null } },
  causedByVersion: 1,
});

/** A log of `n` workplans of 30 events each, with and without request ids, principals and reasons. */
function writeLog(path: string, n: number): void {
  const store = new SqliteEventStore(path, { synchronous: 'NORMAL' });
  for (let w = 0; w < n; w++) {
    const id = `wp-${w}`;
    store.append(id, 0, [created], { requestId: null, recordedAt: 1_700_000_000_000 + w });
    for (let v = 1; v < 30; v++) {
      store.append(id, v, [check(`c${v}`)], {
        requestId: v % 3 === 0 ? `req-${w}-${v}` : null,
        recordedAt: 1_700_000_000_000 + w * 100 + v,
        principal: v % 2 === 0 ? 'alice' : null,
        reason: v % 5 === 0 ? `because ${v}` : null,
      });
    }
  }
  store.close();
}

/** How many events a read yields before it fails, and why it fails (null: it does not). */
function readUntilError(store: SqliteEventStore): { read: number; error: string | null } {
  let read = 0;
  try {
    for (const _ of store.readAll(0)) read++;
    return { read, error: null };
  } catch (err) {
    return { read, error: (err as Error).message };
  }
}

const sequential = (path: string, validate: 'all' | 'upcast' = 'all') =>
  new SqliteEventStore(path, { readonly: true, validate, readAheadMinRows: Number.POSITIVE_INFINITY });
const ahead = (path: string, validate: 'all' | 'upcast' = 'all') => new SqliteEventStore(path, { readonly: true, validate, readAheadMinRows: 1 });

function both<T>(path: string, read: (store: SqliteEventStore) => T, validate: 'all' | 'upcast' = 'all'): [T, T] {
  const [a, b] = [sequential(path, validate), ahead(path, validate)];
  try {
    return [read(a), read(b)];
  } finally {
    a.close();
    b.close();
  }
}

test('read ahead on a worker, the log reads as the same events as on the caller’s connection, from any position', () => {
  const path = `${dir.path}/same.db`;
  writeLog(path, 120); // 3,600 events: several batches of the worker's
  for (const from of [0, 1, 1799, 3599, 3600]) {
    const [a, b] = both(path, (s) => [...s.readAll(from)]);
    assert.equal(b.length, 3600 - from);
    assert.deepEqual(b, a, `from position ${from}`);
  }
  const [a, b] = both(path, (s) => [...s.readAll(0)], 'upcast');
  assert.deepEqual(b, a);
  // Causation read back per row, not shifted between rows (version v + 1 was written at v).
  const at = (version: number) => b.find((r) => r.streamId === 'wp-7' && r.version === version)!.causation;
  assert.deepEqual(at(30), { requestId: null, causedByVersion: 1, principal: null, reason: null });
  assert.deepEqual(at(16), { requestId: 'req-7-15', causedByVersion: 1, principal: null, reason: 'because 15' });
  assert.deepEqual(at(11), { requestId: null, causedByVersion: 1, principal: 'alice', reason: 'because 10' });
});

test('read ahead: rows of an older schema are upcast, and a bad row fails with the same error either way', () => {
  const path = `${dir.path}/bad.db`;
  writeLog(path, 40);
  const db = new Database(path);
  const insert = db.prepare('INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at) VALUES (?, ?, ?, ?, ?, ?)');
  // WorkPlanCreated version 1 had no createdBy: read as ''.
  insert.run('wp-old', 1, 'WorkPlanCreated', 1, JSON.stringify({ metadata: {} }), 5);
  const [a, b] = both(path, (s) => [...s.readAll(0)]);
  assert.deepEqual(b, a);
  assert.deepEqual(b.at(-1)!.event, { type: 'WorkPlanCreated', data: { metadata: {}, createdBy: '' } });

  // Data that is not JSON, after a few batches' worth of good rows.
  insert.run('wp-old', 2, 'CheckCreated', 1, '{"checkId": "x", oops', 6);
  const [x, y] = both(path, readUntilError);
  assert.match(x.error ?? '', /event at position 1202 \(wp-old v2, CheckCreated\) cannot be read/);
  assert.deepEqual(y, x);
  assert.equal(y.read, 40 * 30 + 1, 'every event before the bad one was read');
  db.close();
});

test('read ahead: data that parses but is no valid event fails validation the same way, and passes it the same way when only upcasts are validated', () => {
  const path = `${dir.path}/invalid.db`;
  writeLog(path, 40);
  const db = new Database(path);
  db.prepare('INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at) VALUES (?, ?, ?, ?, ?, ?)').run('wp-0', 31, 'CheckCreated', SCHEMA_VERSION.CheckCreated, JSON.stringify({ checkId: 7 }), 9);
  db.close();
  const [x, y] = both(path, readUntilError);
  assert.match(x.error ?? '', /event at position 1201 \(wp-0 v31, CheckCreated\) cannot be read/);
  assert.deepEqual(y, x);
  const [a, b] = both(path, (s) => [...s.readAll(0)], 'upcast');
  assert.deepEqual(b, a);
});

test('read ahead: a read is of the log as it is when its first event is asked for, as on the caller’s connection', () => {
  const path = `${dir.path}/appending.db`;
  writeLog(path, 100);
  const writer = new SqliteEventStore(path, { synchronous: 'NORMAL' });
  let stream = 0;
  const more = () => writer.append(`more-${stream++}`, 0, [created, check('x')], { requestId: null, recordedAt: 1 });
  const reads = both(path, (s) => {
    const atCall = s.lastPosition();
    const events = s.readAll(0);
    more(); // before the first event is asked for: part of the read
    let read = events.next().done ? 0 : 1;
    more(); // after: not part of it
    for (const _ of events) read++;
    return read - atCall;
  });
  assert.deepEqual(reads, [2, 2]);
  writer.close();
});

test('read ahead: a reader that stops early leaves no worker behind, and the store reads again at once', () => {
  const path = `${dir.path}/early.db`;
  writeLog(path, 100);
  const store = ahead(path);
  let n = 0;
  for (const _ of store.readAll(0)) if (++n === 10) break;
  assert.equal([...store.readAll(2990)].length, 10);
  store.close();
});

test('a start that replays the log keeps complete workplans as headers, folded back the same when asked for', () => {
  const path = `${dir.path}/evict.db`;
  const store = new SqliteEventStore(path, { synchronous: 'NORMAL' });
  const app = Orchestrator.open(store);
  const plan = (i: number, state: 'FINAL' | 'PLANNED') => {
    const id = app.createWorkPlan({}).id;
    app.writeNodes({ workPlanId: id, requestId: `r${i}`, checks: [{ id: 'c', state }], stages: [] });
    return id;
  };
  const finished = plan(0, 'FINAL');
  const grown = plan(1, 'FINAL');
  const reopened = plan(2, 'FINAL');
  const open = plan(3, 'PLANNED');
  // Written to after they completed: one stays complete (a new FINAL check), one is in progress again.
  app.writeNodes({ workPlanId: grown, requestId: 'x', checks: [{ id: 'late', state: 'FINAL' }], stages: [] });
  app.writeNodes({ workPlanId: reopened, requestId: 'y', checks: [{ id: 'd', state: 'PLANNED' }], stages: [] });
  const ids = [finished, grown, reopened, open];
  const live = ids.map((id) => canonicalJson(readModelState(app.models.workplan(id)!)));
  app.close();
  store.close();

  const reader = new SqliteEventStore(path, { readonly: true, validate: 'upcast' });
  const loaded = loadReadModels(reader, null);
  // `grown` was evicted when the log moved on, folded back for its later write, and then kept (not read back again
  // and again); `finished` is a header only.
  assert.deepEqual(new Set(loaded.models.workplans.residentIds()), new Set([grown, reopened, open]));
  assert.equal(loaded.models.workplans.foldBacks, 2);
  const replayed = ReadModels.replay(reader.readAll());
  ids.forEach((id, i) => {
    assert.equal(canonicalJson(readModelState(loaded.models.workplan(id)!)), live[i], id);
    assert.equal(canonicalJson(readModelState(replayed.workplan(id)!)), live[i], id);
  });
  assert.equal(loaded.models.workplans.foldBacks, 3, 'the header is folded back when asked for');
  // serve --evict-after 0: nothing leaves memory, at start either.
  const kept = loadReadModels(reader, null, { evictComplete: false });
  assert.deepEqual(new Set(kept.models.workplans.residentIds()), new Set(ids));
  assert.equal(kept.models.workplans.foldBacks, 0);
  reader.close();
});
