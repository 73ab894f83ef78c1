// Upcasting: WorkPlanCreated is at schema version 2 (it gained `createdBy`). A log written before that holds
// version 1 rows; they must stay readable by the CLI and by the server. The old rows are inserted with raw
// better-sqlite3 into a real database file that a real server run produced, exactly as the old code stored them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { CheckState } from '../../src/gen/turboci/v1/common.js';
import { SCHEMA_VERSION } from '../../src/domain/events.js';
import { decodeEvent, UPCASTERS } from '../../src/infra/event-codec.js';
import { BIN, connect, startServer, tempDir } from '../support/server.js';

const dir = tempDir('turboci-upcast-');
after(() => dir.remove());
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
const ndjson = (text: string) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);

test('the codec upcasts WorkPlanCreated v1 to v2, reads v2 as is, and refuses what it cannot read', () => {
  assert.equal(SCHEMA_VERSION.WorkPlanCreated, 2);
  const v1 = { type: 'WorkPlanCreated', schema_version: 1, data: JSON.stringify({ metadata: { team: 'infra' } }) };
  assert.deepEqual(decodeEvent(v1), { type: 'WorkPlanCreated', data: { metadata: { team: 'infra' }, createdBy: '' } });
  const v2 = { type: 'WorkPlanCreated', schema_version: 2, data: JSON.stringify({ metadata: {}, createdBy: 'alice' }) };
  assert.deepEqual(decodeEvent(v2), { type: 'WorkPlanCreated', data: { metadata: {}, createdBy: 'alice' } });
  assert.deepEqual(decodeEvent({ ...v2, data: JSON.stringify({ metadata: {} }) }), { type: 'WorkPlanCreated', data: { metadata: {} } });
  assert.throws(() => decodeEvent(v1, {}), /no upcaster for WorkPlanCreated from schema version 1/);
  assert.throws(() => decodeEvent({ ...v2, schema_version: 3 }), /schema version 3, newer than this server knows \(2\)/);
  // The upcaster only adds the field: a v1 row is otherwise read exactly as it was written.
  assert.deepEqual(UPCASTERS['WorkPlanCreated@1']!({ metadata: { a: 'b' } }), { metadata: { a: 'b' }, createdBy: '' });
});

test('a log holding version 1 rows is read by the CLI and served by the server', async () => {
  const db = `${dir.path}/old.db`;
  // A real server run writes the file (at today's schema versions).
  let server = await startServer(db);
  let conn = connect(server.address);
  const today = (await conn.api.createWorkPlan({ metadata: { k: 'v' } })).workPlan!.id;
  await conn.api.writeNodes({ workPlanId: today, checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }] });
  conn.close();
  assert.equal(await server.stop(), 0);

  // Rows as the code before schema version 2 stored them: WorkPlanCreated without createdBy, at version 1.
  const raw = new Database(db);
  const insert = raw.prepare(
    `INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const at = Date.parse('2024-06-01T08:00:00.000Z');
  insert.run('wp-v1', 1, 'WorkPlanCreated', 1, JSON.stringify({ metadata: { team: 'infra' } }), at, null, null);
  insert.run('wp-v1', 2, 'CheckCreated', 1, JSON.stringify({ checkId: 'lint', kind: 'lint', options: {}, dependencies: null }), at + 1000, 'r-old', null);
  insert.run('wp-v1', 3, 'CheckStateChanged', 1, JSON.stringify({ checkId: 'lint', from: 'PLANNING', to: 'PLANNED' }), at + 1000, 'r-old', null);
  insert.run('wp-v1', 4, 'CheckStateChanged', 1, JSON.stringify({ checkId: 'lint', from: 'PLANNED', to: 'WAITING' }), at + 1000, 'r-old', 3);
  raw.close();

  // The CLI: the row is shown in today's shape, with the version it was stored at.
  const events = run('events', '--db', db, '-w', 'wp-v1', '--json');
  assert.equal(events.status, 0, events.stderr);
  const [created] = ndjson(events.stdout);
  assert.deepEqual(created, {
    position: created!.position,
    workPlanId: 'wp-v1',
    version: 1,
    type: 'WorkPlanCreated',
    schemaVersion: 2,
    storedSchemaVersion: 1,
    recordedAt: '2024-06-01T08:00:00.000Z',
    requestId: null,
    causedByVersion: null,
    data: { metadata: { team: 'infra' }, createdBy: '' },
  });
  const replayed = JSON.parse(run('replay', '--db', db, '-w', 'wp-v1', '--json').stdout) as { workPlan: { metadata: object }; checks: { id: string; state: string }[] };
  assert.deepEqual(replayed.workPlan.metadata, { team: 'infra' });
  assert.deepEqual(replayed.checks.map((c) => [c.id, c.state]), [['lint', 'CHECK_STATE_WAITING']]);
  assert.match(run('explain', '--db', db, '-w', 'wp-v1', 'lint').stdout, /check lint went WAITING at v4 because check lint went PLANNED at v3, written by request r-old/);
  assert.equal(run('verify', '--db', db).status, 0);

  // The server: rebuilds from the old rows, serves them, and appends to the workplan at today's versions.
  server = await startServer(db);
  conn = connect(server.address);
  try {
    assert.deepEqual((await conn.api.getWorkPlan({ id: 'wp-v1' })).workPlan!.metadata, { team: 'infra' });
    const written = await conn.api.writeNodes({ workPlanId: 'wp-v1', checks: [{ id: 'lint', state: CheckState.CHECK_STATE_FINAL }] });
    assert.equal(written.checks[0]!.state, CheckState.CHECK_STATE_FINAL);
    const remote = ndjson(run('events', '--server', server.address, '-w', 'wp-v1', '--json').stdout);
    assert.deepEqual(remote[0]!.data, { metadata: { team: 'infra' }, createdBy: '' });
    assert.equal(remote.length, 5);
    assert.equal(run('verify', '--db', db, '--server', server.address).status, 0);
  } finally {
    conn.close();
    await server.stop();
  }

  // Exported and imported elsewhere, the workplan is stored at today's schema version, and reads the same.
  const moved = `${dir.path}/moved.db`;
  const exported = run('export', '--db', db, '-w', 'wp-v1', '--out', `${dir.path}/wp-v1.ndjson`);
  assert.equal(exported.status, 0, exported.stderr);
  assert.equal(run('import', '--db', moved, `${dir.path}/wp-v1.ndjson`).status, 0);
  const check = new Database(moved, { readonly: true });
  assert.deepEqual(check.prepare("SELECT schema_version, data FROM events WHERE stream_id = 'wp-v1' AND version = 1").get(), {
    schema_version: 2,
    data: JSON.stringify({ metadata: { team: 'infra' }, createdBy: '' }),
  });
  check.close();
  assert.equal(run('replay', '--db', moved, '-w', 'wp-v1', '--json').stdout, run('replay', '--db', db, '-w', 'wp-v1', '--json').stdout);
});
