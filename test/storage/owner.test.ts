// Issue 12, item 5: one server per database. A second "turboci serve" on the same file refuses to start, naming
// the first one's pid and host; the read-only tools keep working while a server runs; a SIGKILLed server's lock
// dies with it.
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, test } from 'node:test';
import { CheckState } from '../../src/gen/turboci/v1/common.js';
import { connect, startServer, tempDir } from '../support/server.js';
import { runTurboci } from './support.js';

const dir = tempDir('turboci-owner-');
after(() => dir.remove());

test('a second server on the same database refuses to start, naming the first; read-only tools still work', async () => {
  const db = `${dir.path}/owned.db`;
  const first = await startServer(db);
  after(() => first.stop('SIGKILL')); // when an assertion fails midway
  const conn = connect(first.address);
  const id = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }] });

  const second = await runTurboci(['serve', '--port', '0', '--db', db]);
  assert.equal(second.status, 1, second.stderr);
  assert.equal(second.stdout, '', 'the refused server must not print a ready line');
  const lines = second.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, got: ${second.stderr}`);
  assert.ok(lines[0]!.includes(`pid ${first.child.pid}`), lines[0]);
  assert.ok(lines[0]!.includes(`host ${hostname()}`), lines[0]);
  assert.ok(lines[0]!.includes(db), lines[0]);

  // The first server is unaffected: it still takes writes.
  await conn.api.writeNodes({ workPlanId: id, checks: [{ id: 'c2', state: CheckState.CHECK_STATE_PLANNED }] });

  for (const args of [
    ['events', '--db', db, '-w', id],
    ['replay', '--db', db, '-w', id],
    ['verify', '--db', db],
  ]) {
    const r = await runTurboci(args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const events = await runTurboci(['events', '--db', db, '-w', id, '--json']);
  const created = events.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; data: { checkId?: string } })
    .filter((e) => e.type === 'CheckCreated')
    .map((e) => e.data.checkId);
  assert.deepEqual(created, ['c', 'c2'], 'the tool reads the log the server is writing');

  // SIGKILL: no clean-up runs, yet the lock is gone with the process.
  conn.close();
  await first.stop('SIGKILL');
  const third = await startServer(db);
  after(() => third.stop('SIGKILL'));
  const again = connect(third.address);
  const nodes = await again.api.queryNodes({ workPlanId: id });
  assert.deepEqual(nodes.checks.map((c) => c.id).sort(), ['c', 'c2']);
  again.close();
  assert.equal(await third.stop(), 0);
});
