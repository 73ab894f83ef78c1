// A registered runner that cannot be reached (its process died without unregistering) is held back with a growing
// backoff instead of being handed the next attempt at once: a stage does not burn its attempts in a hot loop while
// the runner is down, and runs as soon as the runner is back at its address. Real server, real gRPC.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AttemptState, StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, startServer, tempDir, type ServerProcess } from '../support/server.js';
import { eventually, sleep, startTestRunner, type TestRunner } from '../support/runner.js';
import { stablePort } from '../support/ports.js';

let dir: ReturnType<typeof tempDir>;
let server: ServerProcess;
let conn: ReturnType<typeof connect>;
let runner: TestRunner | undefined;

before(async () => {
  dir = tempDir();
  server = await startServer(`${dir.path}/unreachable.db`);
  conn = connect(server.address);
});
after(async () => {
  conn.close();
  await server.stop();
  runner?.kill();
  dir.remove();
});

test('a runner that is down is backed off, not retried at once: the stage keeps its attempts and runs when the runner is back', async () => {
  const port = await stablePort();
  await conn.api.registerStageRunner({ runnerId: 'gone', runnerType: 'flaky-host', address: `127.0.0.1:${port}`, maxConcurrent: 1 });
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'build', runnerType: 'flaky-host', maxAttempts: 10 }] });
  const stage = async () => (await conn.api.queryNodes({ workPlanId, stageIds: ['build'], includeStages: true })).stages[0]!;

  await eventually(async () => ((await stage()).attempts.some((a) => a.state === AttemptState.ATTEMPT_STATE_INCOMPLETE) ? true : undefined), 'a first failed dispatch');
  await sleep(1500);
  const meanwhile = await stage();
  assert.equal(meanwhile.state, StageState.STAGE_STATE_ATTEMPTING, 'not failed for good');
  assert.ok(meanwhile.attempts.length <= 3, `${meanwhile.attempts.length} attempts in 1.5 s against a runner that is down: a hot loop`);
  const incomplete = meanwhile.attempts.find((a) => a.state === AttemptState.ATTEMPT_STATE_INCOMPLETE)!;
  assert.match(incomplete.failure?.message ?? '', /unreachable/);

  runner = await startTestRunner({ run: async () => ({ stageState: StageState.STAGE_STATE_FINAL }) }, undefined, { port });
  const done = await eventually(async () => {
    const s = await stage();
    return s.state === StageState.STAGE_STATE_FINAL ? s : undefined;
  }, 'the stage FINAL once the runner is back', 45_000);
  assert.equal(done.attempts.at(-1)!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
  assert.ok(done.attempts.length <= 8, `${done.attempts.length} attempts`);
  assert.equal(runner.runs.length, 1);
});
