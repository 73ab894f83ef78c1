// Read-model snapshots are a cache: a server writes them in the background, starts from the latest one plus the
// log's tail, ignores (with a warning) one that is damaged, of another schema or of another log, and holds the same
// read models either way; `turboci verify` compares a snapshot with a full replay.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { ReadModels } from '../../projections/read-models.js';
import { CheckState, ExecutionMode } from '../../src/gen/turboci/v1/common.js';
import { SnapshotFile, snapshotPathFor } from '../../src/infra/snapshot-file.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { BIN, connect, startServer, tempDir, type ServerProcess } from '../support/server.js';
import { eventually, startTestRunner } from '../support/runner.js';
import { connectPull } from '../pull/support.js';

const dir = tempDir('turboci-snapshot-');
after(() => dir.remove());
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });

/**
 * Workplans with checks, dependent stages, runner types and attempts claimed, a push runner with executions in
 * flight, one that unregistered and a pull lease in flight: every projection gets something to snapshot.
 */
async function workload(address: string, tag: string): Promise<void> {
  const { api, close } = connect(address);
  const pull = connectPull(address);
  const runner = await startTestRunner({ runAsync: async () => ({ accepted: true }) });
  try {
    const asyncType = `async-${tag}`;
    await api.registerStageRunner({ runnerId: `push-${tag}`, runnerType: asyncType, address: runner.address, supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC], maxConcurrent: 8, ttlSeconds: 3600n });
    const gone = await api.registerStageRunner({ runnerId: `gone-${tag}`, runnerType: `gone-${tag}`, address: runner.address, ttlSeconds: 3600n });
    await api.unregisterStageRunner({ registrationId: gone.registrationId });
    for (let w = 0; w < 3; w++) {
      const id = (await api.createWorkPlan({ metadata: { tag } })).workPlan!.id;
      await api.writeNodes({
        workPlanId: id,
        checks: [{ id: 'build', state: CheckState.CHECK_STATE_PLANNED }],
        stages: [
          { id: 'compile', runnerType: 'shell', assignments: [{ targetCheckId: 'build' }] },
          { id: 'later', dependencies: { predicate: 1, dependencies: [{ targetId: 'build', targetType: 1 }] } },
          { id: 'deploy', runnerType: asyncType, executionMode: ExecutionMode.EXECUTION_MODE_ASYNC },
        ],
      });
      await api.writeNodes({ workPlanId: id, stages: [{ id: 'later', currentAttempt: { processUid: 'p1' } }] }).catch(() => undefined);
      if (w > 0) await api.writeNodes({ workPlanId: id, checks: [{ id: 'build', state: CheckState.CHECK_STATE_FINAL }] });
    }
    await eventually(async () => (runner.asyncRuns.length === 3 ? true : undefined), 'three executions in flight');
    const leased = await pull.lease({ runnerId: `agent-${tag}`, runnerType: 'shell', waitMs: 0 });
    assert.equal(leased.attempt?.stageId, 'compile', 'a lease in flight');
  } finally {
    pull.close();
    close();
    await runner.close();
  }
}

const rebuilt = (server: ServerProcess) => server.waitForLog((l) => l.msg === 'read models rebuilt from the log');
const ignoredLine = (server: ServerProcess) => server.logs.find((l) => l.msg === 'snapshot ignored; the whole log was replayed');

/** `turboci verify` of the running server's read models against a full replay of its log. */
function verifyServer(server: ServerProcess): void {
  const r = run('verify', '--db', server.dbPath, '--server', server.address, '--json');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal((JSON.parse(r.stdout) as { ok: boolean }).ok, true);
}

/** A log with a snapshot part-way through it, written by a server in the background. */
async function logWithSnapshot(name: string): Promise<string> {
  const db = `${dir.path}/${name}.db`;
  const first = await startServer(db, ['--snapshot-every', '20']);
  try {
    await workload(first.address, 'first');
    const written = await first.waitForLog((l) => l.msg === 'snapshot written', 30_000);
    assert.ok(Number(written.position) > 0, JSON.stringify(written));
  } finally {
    await first.stop();
  }
  const second = await startServer(db, ['--snapshot-every', '0']); // the tail after it, with no newer snapshot
  try {
    await workload(second.address, 'second');
  } finally {
    await second.stop();
  }
  return db;
}

test('a server snapshots in the background, then starts from the snapshot plus the tail with the same read models', async () => {
  const db = await logWithSnapshot('background');
  const server = await startServer(db, ['--snapshot-every', '1000000']);
  try {
    const line = await rebuilt(server);
    assert.ok(Number(line.fromSnapshotPosition) > 0, `started from the snapshot: ${JSON.stringify(line)}`);
    assert.ok(Number(line.eventsReplayed) > 0, 'and folded the tail');
    assert.equal(ignoredLine(server), undefined);
    verifyServer(server);
  } finally {
    await server.stop();
  }
  const verified = run('verify', '--db', db);
  assert.equal(verified.status, 0, verified.stdout + verified.stderr);
});

test('a damaged snapshot, one of another schema, or one of another log is ignored with a warning: full replay', async () => {
  const db = await logWithSnapshot('ignored');
  const path = snapshotPathFor(db);
  const good = readFileSync(path);
  const newline = good.indexOf(0x0a);
  const header = JSON.parse(good.subarray(0, newline).toString()) as Record<string, unknown>;
  const damaged = Buffer.from(good);
  damaged[damaged.length - 10] = damaged[damaged.length - 10]! ^ 0xff;
  const otherSchema = Buffer.concat([Buffer.from(`${JSON.stringify({ ...header, schema: '0:{}' })}\n`), good.subarray(newline + 1)]);
  const otherLog = await logWithSnapshot('other');

  const cases: [string, () => void, RegExp][] = [
    ['damaged', () => writeFileSync(path, damaged), /damaged/],
    ['another schema', () => writeFileSync(path, otherSchema), /another event schema/],
    ['another log', () => copyFileSync(snapshotPathFor(otherLog), path), /not of this log/],
  ];
  for (const [what, spoil, why] of cases) {
    spoil();
    const server = await startServer(db);
    try {
      const line = await rebuilt(server);
      assert.equal(line.fromSnapshotPosition, 0, `${what}: the whole log was replayed`);
      assert.match(String(ignoredLine(server)?.why), why, what);
      verifyServer(server);
    } finally {
      await server.stop();
    }
  }
});

test('turboci snapshot writes one now; verify reports a snapshot that differs from the log', async () => {
  const db = `${dir.path}/cli.db`;
  const server = await startServer(db, ['--snapshot-every', '0']);
  try {
    await workload(server.address, 'cli');
  } finally {
    await server.stop();
  }
  const took = run('snapshot', '--db', db);
  assert.equal(took.status, 0, took.stderr);
  assert.match(took.stdout, /wrote .*cli\.db\.snapshot: position \d+/);
  assert.equal(run('verify', '--db', db).status, 0);

  // The same position, a check's state changed: a well-formed snapshot that is not what the log says.
  const store = new SqliteEventStore(db, { readonly: true });
  const events = [...store.readAll()];
  store.close();
  const models = ReadModels.replay(events);
  const last = events.at(-1)!;
  const model = models.workplan(events.find((e) => e.event.type === 'WorkPlanCreated')!.streamId)!;
  model.checks.set('build', { ...model.checks.get('build')!, state: 'PLANNING' });
  new SnapshotFile(snapshotPathFor(db)).write({ position: last.position, streamId: last.streamId, version: last.version }, models.snapshot());
  const verified = run('verify', '--db', db, '--json');
  assert.equal(verified.status, 1, verified.stdout);
  const report = JSON.parse(verified.stdout) as { differences: { against: string; details: string[] }[] };
  assert.ok(report.differences.some((d) => /read-model snapshot/.test(d.against) && d.details.some((x) => /workplans: .*state/.test(x))), verified.stdout);
});
