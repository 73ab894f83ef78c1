// The turboci binary: help, usage errors, graceful shutdown, and a restart that serves the same state.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { CheckState } from '../../src/gen/turboci/v1/common.js';
import { BIN, connect, startServer, tempDir } from '../support/server.js';

const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });

test('--help answers for the tool and for serve', () => {
  const top = run('--help');
  assert.equal(top.status, 0);
  assert.match(top.stdout, /Commands:\n\s+serve/);
  const serve = run('serve', '--help');
  assert.equal(serve.status, 0);
  for (const flag of ['--port', '--db', '--log-level', 'TURBOCI_PORT', 'Examples:']) assert.ok(serve.stdout.includes(flag), flag);
});

test('usage errors say what is wrong, point to --help and exit 2', () => {
  const bad = run('serve', '--port', 'eighty');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--port: "eighty" is not a whole number/);
  assert.match(bad.stderr, /turboci serve --help/);
  const unknown = run('serve', '--colour');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /--colour/);
  assert.equal(run('launch').status, 2);
});

test('SIGTERM drains and exits 0; the restarted server serves exactly the same state', async () => {
  const dir = tempDir();
  const db = `${dir.path}/restart.db`;
  const first = await startServer(db);
  let conn = connect(first.address);
  const id = (await conn.api.createWorkPlan({ metadata: { k: 'v' } })).workPlan!.id;
  await conn.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }], stages: [{ id: 's' }] });
  const before = await conn.api.queryNodes({ workPlanId: id });
  const plan = await conn.api.getWorkPlan({ id });
  conn.close();
  assert.equal(await first.stop('SIGTERM'), 0);
  assert.ok(first.logs.some((l) => l.msg === 'stopped'));

  const second = await startServer(db);
  conn = connect(second.address);
  assert.deepEqual(await conn.api.queryNodes({ workPlanId: id }), before);
  assert.deepEqual(await conn.api.getWorkPlan({ id }), plan);
  conn.close();
  assert.equal(await second.stop('SIGINT'), 0);
  dir.remove();
});

test('at --log-level warn the server still prints its ready line (the only way to learn a --port 0), and nothing per call', async () => {
  const dir = tempDir();
  const server = await startServer(`${dir.path}/quiet.db`, ['--log-level', 'warn']); // resolves on the "listening" line
  const conn = connect(server.address);
  await conn.api.createWorkPlan({});
  conn.close();
  assert.equal(await server.stop('SIGTERM'), 0);
  assert.deepEqual(server.logs.map((l) => l.msg), ['listening']);
  dir.remove();
});
