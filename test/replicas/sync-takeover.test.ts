// A replica killed while a runner executes one of its synchronous runs: the answer can only come back to that
// process, so a surviving replica must notice it is gone (it no longer holds a connection to the log) and fail
// the attempt, which is then retried and finishes. Real PostgreSQL, two real server processes.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { AttemptState, StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, startServer, type ServerProcess } from '../support/server.js';
import { postgresForFile } from '../support/postgres.js';
import { eventually, startTestRunner, type TestRunner } from '../support/runner.js';

const pgs = await postgresForFile('sync-takeover');
const servers: ServerProcess[] = [];
const runners: TestRunner[] = [];

after(async () => {
  for (const s of servers) await s.stop('SIGKILL');
  for (const r of runners) r.kill();
});

test('a synchronous run of a SIGKILLed replica is failed by another replica and retried there', { skip: pgs.skip }, async () => {
  const url = await pgs.createDatabase();
  const a = await startServer(url);
  servers.push(a);
  const b = await startServer(url);
  servers.push(b);
  const onA = connect(a.address);
  const onB = connect(b.address);
  try {
    let calls = 0;
    // The first call never answers (its answer would die with replica A anyway); the retry succeeds.
    const runner = await startTestRunner({
      run: async () => {
        calls++;
        if (calls === 1) await new Promise(() => undefined);
        return { stageState: StageState.STAGE_STATE_FINAL };
      },
    });
    runners.push(runner);
    await onA.api.registerStageRunner({ runnerId: 'r1', runnerType: 'takeover', address: runner.address, maxConcurrent: 4 });
    const workPlanId = (await onA.api.createWorkPlan({})).workPlan!.id;
    // Written through A: A's group commit dispatches it and A makes the synchronous call.
    await onA.api.writeNodes({ workPlanId, stages: [{ id: 's', runnerType: 'takeover' }] });
    await eventually(async () => (runner.runs.length === 1 ? true : undefined), 'the first Run');
    await a.stop('SIGKILL');

    const stage = await eventually(async () => {
      const s = (await onB.api.queryNodes({ workPlanId, stageIds: ['s'], includeStages: true })).stages[0]!;
      return s.state === StageState.STAGE_STATE_FINAL ? s : undefined;
    }, 'the stage FINAL through replica B', 30_000);
    assert.equal(stage.attempts.length, 2);
    assert.equal(stage.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
    assert.match(stage.attempts[0]!.failure!.message, /the replica that ran it synchronously \(.+\) is gone/);
    assert.equal(stage.attempts[1]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
    assert.equal(runner.runs.length, 2);
    await b.waitForLog((l) => l.msg === 'orphaned run');
  } finally {
    onA.close();
    onB.close();
  }
});
