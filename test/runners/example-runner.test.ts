// examples/runner: the documented runner registers, runs a stage and reports, as a separate process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { CheckState, StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, startServer, tempDir } from '../support/server.js';
import { eventually } from '../support/runner.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/runner.js', import.meta.url));

test('examples/runner registers, runs a stage and reports a result on its check', async () => {
  const dir = tempDir();
  const server = await startServer(`${dir.path}/example-runner.db`);
  const conn = connect(server.address);
  const child = spawn(process.execPath, [EXAMPLE, '--server', server.address, '--type', 'echo', '--id', 'example-1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const lines = createInterface({ input: child.stdout! });
    const [ready] = (await once(lines, 'line')) as [string];
    assert.match(ready, /runner example-1 \(type echo\) listening on 127\.0\.0\.1:\d+, registration /);
    const printed: string[] = [];
    lines.on('line', (line: string) => printed.push(line));
    const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
    await conn.api.writeNodes({
      workPlanId,
      checks: [{ id: 'greeting', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [{ id: 'say', runnerType: 'echo', args: { message: 'hello' }, assignments: [{ targetCheckId: 'greeting' }] }],
    });
    const check = await eventually(async () => {
      const c = (await conn.api.queryNodes({ workPlanId, checkIds: ['greeting'], includeChecks: true })).checks[0]!;
      return c.state === CheckState.CHECK_STATE_FINAL ? c : undefined;
    }, 'the check FINAL');
    assert.deepEqual(check.results[0]!.data, { echo: 'hello', runner: 'example-1' });
    const stage = (await conn.api.queryNodes({ workPlanId, stageIds: ['say'], includeStages: true })).stages[0]!;
    assert.equal(stage.state, StageState.STAGE_STATE_FINAL);
    assert.deepEqual(printed, [`running stage say attempt 1 of ${workPlanId} (RunStream)`], 'sent on the RunStream');
    child.kill('SIGTERM');
    await once(child, 'exit');
    await eventually(async () => ((await conn.api.listStageRunners({ runnerType: 'echo' })).runners.length === 0 ? true : undefined), 'unregistered');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    conn.close();
    await server.stop();
    dir.remove();
  }
});
