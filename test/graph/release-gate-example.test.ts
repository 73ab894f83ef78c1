// The README's release gate example runs as documented against a real server: the example, then `turboci approve`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { StageState } from '../../src/gen/turboci/v1/common.js';
import { BIN, connect, startServer, tempDir } from '../support/server.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/release-gate.js', import.meta.url));
const run = promisify(execFile);

test('examples/release-gate: deploy waits for the platforms and the approval; turboci approve releases it', async () => {
  const dir = tempDir();
  const server = await startServer(`${dir.path}/release.db`);
  const conn = connect(server.address);
  try {
    const { stdout } = await run(process.execPath, [EXAMPLE, server.address], { timeout: 30_000 });
    const lines = stdout.trim().split('\n');
    assert.match(lines[0]!, /^created workplan [0-9a-f-]{36}$/);
    const workPlanId = lines[0]!.split(' ')[2]!;
    assert.match(lines[1]!, /^plan -> v\d+: gate release=CHECK_STATE_WAITING, stage deploy=STAGE_STATE_PLANNED$/);
    assert.match(lines[2]!, /^platforms FINAL -> v\d+: stage deploy=STAGE_STATE_PLANNED \(waits for the approval\)$/);
    assert.equal(lines[3], `approve with: turboci approve --server ${server.address} -w ${workPlanId} --check release --comment "ship it"`);
    const approved = await run(process.execPath, [BIN, 'approve', '--server', server.address, '-w', workPlanId, '--check', 'release', '--comment', 'ship it'], { timeout: 30_000 });
    assert.match(approved.stdout, /^check release: FINAL \(1 of 1 approvals\) at v\d+\napproved\n$/);
    const { stages } = await conn.api.queryNodes({ workPlanId, stageIds: ['deploy'], includeStages: true });
    assert.equal(stages[0]!.state, StageState.STAGE_STATE_ATTEMPTING);
    const why = await run(process.execPath, [BIN, "explain", "--server", server.address, "-w", workPlanId, "stage:deploy"], { timeout: 30_000 });
    assert.match(why.stdout, /dependencies satisfied by check release/);
  } finally {
    conn.close();
    await server.stop();
    dir.remove();
  }
});
