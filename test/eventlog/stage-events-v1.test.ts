// Since 2026-12-03 a stage's start, a lease, a dispatch, a runner's completion and the stage's end with it each take one event where they
// took two (schema version 2 of StageAttemptCreated, StageAttemptLeased, StageAttemptDispatched and
// StageAttemptStateChanged). A log written before holds the separate events; the CLI and the server must read it as
// they did. The old rows are inserted with raw better-sqlite3 into a real database file, as the old code stored them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { AttemptState, StageState } from '../../src/gen/turboci/v1/common.js';
import { BIN, connect, startServer, tempDir } from '../support/server.js';
import { connectPull } from '../pull/support.js';

const dir = tempDir('turboci-stage-v1-');
after(() => dir.remove());
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
const ndjson = (text: string) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);

test('a log with version 1 stage events (start, lease and completion as separate events) is read and served as before', async () => {
  const db = `${dir.path}/old.db`;
  let server = await startServer(db);
  assert.equal(await server.stop(), 0);

  const raw = new Database(db);
  const insert = raw.prepare(
    `INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const at = Date.now() - 60_000;
  const later = Date.now() + 3_600_000;
  const stage = (stageId: string) => ({
    stageId,
    args: {},
    assignments: [],
    dependencies: null,
    executionMode: 'SYNC',
    runnerType: 'old',
    maxAttempts: 3,
    parentStageId: '',
    attemptTimeoutSeconds: 0,
  });
  const lease = (stageId: string, leaseId: string) => ({
    stageId,
    idx: 1,
    leaseId,
    tokenHash: `hash-${leaseId}`,
    runnerId: 'agent-old',
    runnerType: 'old',
    heartbeatIntervalMs: 60_000,
    expiresAt: later,
    runDeadline: later,
  });
  const rows: [string, number, object, number | null][] = [
    ['WorkPlanCreated', 2, { metadata: {}, createdBy: '' }, null],
    ['StageCreated', 1, stage('done'), null],
    ['StageCreated', 1, stage('busy'), null],
    ['StageStateChanged', 1, { stageId: 'done', from: 'PLANNED', to: 'ATTEMPTING', failure: null }, 2],
    ['StageAttemptCreated', 1, { stageId: 'done', idx: 1 }, 2],
    ['StageStateChanged', 1, { stageId: 'busy', from: 'PLANNED', to: 'ATTEMPTING', failure: null }, 3],
    ['StageAttemptCreated', 1, { stageId: 'busy', idx: 1 }, 3],
    ['StageAttemptLeased', 1, lease('done', 'l-done'), null],
    ['StageAttemptStateChanged', 1, { stageId: 'done', idx: 1, from: 'PENDING', to: 'RUNNING', processUid: 'agent-old', failure: null }, null],
    ['StageAttemptStateChanged', 1, { stageId: 'done', idx: 1, from: 'RUNNING', to: 'COMPLETE', processUid: '', failure: null }, null],
    ['StageStateChanged', 1, { stageId: 'done', from: 'ATTEMPTING', to: 'FINAL', failure: null }, 10],
    ['StageAttemptLeaseCompleted', 1, { stageId: 'done', idx: 1, leaseId: 'l-done', fingerprint: 'fp-1' }, null],
    ['StageAttemptLeased', 1, lease('busy', 'l-busy'), null],
    ['StageAttemptStateChanged', 1, { stageId: 'busy', idx: 1, from: 'PENDING', to: 'RUNNING', processUid: 'agent-old', failure: null }, null],
  ];
  rows.forEach(([type, schemaVersion, data, cause], i) => insert.run('wp-old', i + 1, type, schemaVersion, JSON.stringify(data), at + i, 'r-old', cause));
  raw.close();

  // The CLI: the stages stand as the old code left them, and explain still finds the start.
  const replayed = JSON.parse(run('replay', '--db', db, '-w', 'wp-old', '--json').stdout) as {
    stages: { id: string; state: string; attempts: { state: string; processUid: string }[] }[];
  };
  assert.deepEqual(
    replayed.stages.map((s) => [s.id, s.state, s.attempts.map((a) => [a.state, a.processUid])]),
    [
      ['done', 'STAGE_STATE_FINAL', [['ATTEMPT_STATE_COMPLETE', 'agent-old']]],
      ['busy', 'STAGE_STATE_ATTEMPTING', [['ATTEMPT_STATE_RUNNING', 'agent-old']]],
    ],
  );
  assert.match(run('explain', '--db', db, '-w', 'wp-old', 'stage:busy').stdout, /stage busy went ATTEMPTING at v6 because stage busy was created at v3/);
  assert.equal(run('verify', '--db', db).status, 0);

  // The server: the leased attempt is not offered again, the finished one is finished; new work is written the new way.
  server = await startServer(db);
  const conn = connect(server.address);
  const pull = connectPull(server.address);
  try {
    const busy = (await conn.api.queryNodes({ workPlanId: 'wp-old', stageIds: ['busy'], includeStages: true })).stages[0]!;
    assert.equal(busy.attempts[0]!.state, AttemptState.ATTEMPT_STATE_RUNNING);
    assert.equal((await pull.lease({ runnerId: 'agent-new', runnerType: 'old', waitMs: 0 })).attempt, undefined, 'nothing offerable: busy is leased, done is FINAL');
    await conn.api.writeNodes({ workPlanId: 'wp-old', stages: [{ id: 'fresh', runnerType: 'old' }] });
    const leased = (await pull.lease({ runnerId: 'agent-new', runnerType: 'old', waitMs: 0 })).attempt!;
    assert.equal(leased.stageId, 'fresh');
    await pull.completeLease({ leaseToken: leased.leaseToken, stageState: StageState.STAGE_STATE_FINAL });
    const fresh = (await conn.api.queryNodes({ workPlanId: 'wp-old', stageIds: ['fresh'], includeStages: true })).stages[0]!;
    assert.equal(fresh.state, StageState.STAGE_STATE_FINAL);
    const events = ndjson(run('events', '--server', server.address, '-w', 'wp-old', '--from-version', '15', '--json').stdout);
    assert.deepEqual(
      events.map((e) => [e.type, e.schemaVersion]),
      [
        ['StageCreated', 1],
        ['StageAttemptCreated', 2],
        ['StageAttemptLeased', 2],
        ['StageAttemptStateChanged', 3],
      ],
    );
    assert.equal(events[1]!.data.startsStage, true);
    assert.equal(events[3]!.data.stageTo, 'FINAL');
    assert.deepEqual(events[3]!.data.completion, { via: 'lease', id: leased.leaseId, fingerprint: events[3]!.data.completion.fingerprint });
    assert.equal(run('verify', '--db', db, '--server', server.address).status, 0);
  } finally {
    pull.close();
    conn.close();
    await server.stop();
  }
});
