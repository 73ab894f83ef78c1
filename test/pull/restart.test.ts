// The server is SIGKILLed while agents run commands; it comes back on the same address. Leases are still valid or
// expired per policy, and every command's outcome is recorded exactly once. Then SIGTERM drains an agent.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AttemptState, CheckState, StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, startServer, tempDir } from '../support/server.js';
import { eventually } from '../support/runner.js';
import { readLog, startAgent } from './support.js';
import { stablePort } from '../support/ports.js';

test('server SIGKILLed while agents work: after a restart every outcome is recorded exactly once; SIGTERM drains', async () => {
  const dir = tempDir();
  const db = `${dir.path}/restart.db`;
  const port = await stablePort();
  const args = ['--port', String(port), '--heartbeat-interval', '1500'];
  let server = await startServer(db, args);
  let conn = connect(server.address);
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  const ids = ['r0', 'r1', 'r2', 'r3'];
  await conn.api.writeNodes({
    workPlanId,
    checks: ids.map((id) => ({ id: `c-${id}`, state: CheckState.CHECK_STATE_PLANNED })),
    stages: ids.map((id) => ({
      id,
      runnerType: 'survivor',
      maxAttempts: 3,
      args: { command: 'sleep 1.5; echo "ok $TURBOCI_STAGE_ID"' },
      assignments: [{ targetCheckId: `c-${id}` }],
    })),
  });
  const agent = startAgent(`127.0.0.1:${port}`, ['--type', 'survivor', '--concurrency', '2', '--id', 'steady', '--workdir', `${dir.path}/work`]);
  try {
    await eventually(async () => (agent.logs.filter((l) => l.msg === 'started').length >= 2 ? true : undefined), 'two commands running');
    conn.close();
    await server.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    server = await startServer(db, args);
    conn = connect(server.address);
    assert.equal(server.address, `127.0.0.1:${port}`);

    for (const id of ids) {
      await eventually(async () => {
        const s = (await conn.api.queryNodes({ workPlanId, stageIds: [id], includeStages: true })).stages[0]!;
        return s.state === StageState.STAGE_STATE_FINAL ? s : undefined;
      }, `${id} FINAL`, 60_000);
    }
    const { checks, stages } = await conn.api.queryNodes({ workPlanId });
    for (const s of stages) assert.equal(s.attempts.at(-1)!.state, AttemptState.ATTEMPT_STATE_COMPLETE, `${s.id} succeeded`);
    for (const c of checks) {
      assert.equal(c.results.length, 1, `check ${c.id} has exactly one outcome`);
      assert.equal(c.results[0]!.failure, undefined);
      assert.match(String(c.results[0]!.data!.output_tail), new RegExp(`ok ${c.id.slice(2)}$`));
    }
    // Each leased attempt ended exactly one way: completed once, or expired (and was retried).
    const log = readLog(db).filter((e) => e.streamId === workPlanId);
    const ends = new Map<string, string[]>();
    for (const e of log) {
      const d = e.event.data as { stageId?: string; idx?: number };
      const k = `${d.stageId}/${d.idx}`;
      if (e.event.type === 'StageAttemptLeased') {
        assert.ok(!ends.has(k), `${k} leased once`);
        ends.set(k, []);
      }
      if ((e.event.type === 'StageAttemptStateChanged' && e.event.data.completion) || e.event.type === 'StageAttemptLeaseExpired') ends.get(k)!.push(e.event.type);
    }
    for (const [k, v] of ends) assert.equal(v.length, 1, `${k} ended exactly once: ${v.join(', ')}`);
    assert.ok(agent.logs.some((l) => l.msg === 'heartbeat failed; will retry' || l.msg === 'completion failed; retrying' || l.msg === 'lease failed; retrying'),
      'the agent noticed the server was gone');

    // Drain: SIGTERM while a command runs → it finishes and is reported, then the agent exits 0.
    await conn.api.writeNodes({ workPlanId, stages: [{ id: 'last', runnerType: 'survivor', args: { command: 'sleep 1; echo drained' } }] });
    await agent.waitForLog((l) => l.msg === 'started' && l.stageId === 'last');
    assert.equal(await agent.stop('SIGTERM'), 0);
    const last = (await conn.api.queryNodes({ workPlanId, stageIds: ['last'], includeStages: true })).stages[0]!;
    assert.equal(last.state, StageState.STAGE_STATE_FINAL);
    assert.equal(last.attempts[0]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
    assert.match(String(last.attempts[0]!.details!.output_tail), /drained/);
  } finally {
    await agent.stop('SIGKILL');
    conn.close();
    await server.stop();
    dir.remove();
  }
});
