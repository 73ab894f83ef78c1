// The server is SIGKILLed with executions in flight; after a restart it knows every one of them from the log.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AttemptState, ExecutionMode, StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, startServer, tempDir } from '../support/server.js';
import { eventually, startTestRunner } from '../support/runner.js';

test('SIGKILL with executions in flight: callbacks still accepted, overdue ones retried, load equals a recount', async () => {
  const dir = tempDir();
  const db = `${dir.path}/restart.db`;
  const runner = await startTestRunner({ runAsync: async () => ({ accepted: true }) });
  let server = await startServer(db);
  let conn = connect(server.address);
  await conn.api.registerStageRunner({
    runnerId: 'async-r',
    runnerType: 'ci',
    address: runner.address,
    supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC],
    maxConcurrent: 5,
    ttlSeconds: 3600n,
  });
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({
    workPlanId,
    stages: [
      { id: 'long', runnerType: 'ci', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC },
      { id: 'short', runnerType: 'ci', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC, attemptTimeoutSeconds: 2 },
      { id: 'other', runnerType: 'ci', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC },
    ],
  });
  await eventually(async () => (runner.asyncRuns.length === 3 ? true : undefined), 'three RunAsync calls');
  const exec = (stage: string) => runner.asyncRuns.find((r) => r.stageId === stage)!.executionId;
  await conn.api.updateStageExecution({ executionId: exec('other'), message: 'working' });
  conn.close();
  await server.stop('SIGKILL');

  // Let the short execution's deadline pass while the server is down.
  await new Promise((r) => setTimeout(r, 2_200));
  server = await startServer(db);
  conn = connect(server.address);

  // The registration and its load came back from the log: 'long' and 'other' are in flight; 'short' was overdue.
  const short = await eventually(async () => {
    const s = (await conn.api.queryNodes({ workPlanId, stageIds: ['short'], includeStages: true })).stages[0]!;
    return s.attempts.length >= 2 ? s : undefined;
  }, 'short retried');
  assert.equal(short.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
  assert.match(short.attempts[0]!.failure!.message, /deadline exceeded/);

  // Callbacks for executions started before the crash are accepted.
  assert.deepEqual(
    await conn.api.completeStageExecution({ executionId: exec('long'), stageState: StageState.STAGE_STATE_FINAL }),
    { acknowledged: true },
  );
  const { stages } = await conn.api.queryNodes({ workPlanId, includeStages: true });
  const byId = new Map(stages.map((s) => [s.id, s]));
  assert.equal(byId.get('long')!.state, StageState.STAGE_STATE_FINAL);
  assert.equal(byId.get('other')!.attempts[0]!.state, AttemptState.ATTEMPT_STATE_RUNNING);

  // current_load equals a recount of unfinished dispatched attempts in the log's state.
  const inFlight = stages.flatMap((s) => s.attempts).filter(
    (a) => a.execution && a.state !== AttemptState.ATTEMPT_STATE_COMPLETE && a.state !== AttemptState.ATTEMPT_STATE_INCOMPLETE,
  ).length;
  const [listed] = (await conn.api.listStageRunners({ runnerType: 'ci' })).runners;
  assert.equal(listed!.runnerId, 'async-r');
  assert.equal(listed!.currentLoad, inFlight);
  assert.ok(inFlight >= 2, `expected 'other' and the retried 'short' in flight, got ${inFlight}`);

  conn.close();
  await server.stop();
  runner.kill();
  dir.remove();
});
