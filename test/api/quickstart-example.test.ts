// The README's example session (README.md, "An example session") runs as documented against a real server.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { startServer, tempDir } from '../support/server.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/quickstart.js', import.meta.url));

test('examples/quickstart: the dependent stage starts once the check it waits for is FINAL', async () => {
  const dir = tempDir();
  const server = await startServer(`${dir.path}/quickstart.db`);
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [EXAMPLE, server.address], { timeout: 30_000 });
    const lines = stdout.trim().split('\n');
    assert.match(lines[0]!, /^created workplan [0-9a-f-]{36}$/);
    assert.match(lines[1]!, /check build=CHECK_STATE_WAITING, stage compile=STAGE_STATE_ATTEMPTING \(attempt 1 ATTEMPT_STATE_PENDING\), stage deploy=STAGE_STATE_PLANNED/);
    assert.match(lines[2]!, /stage compile=STAGE_STATE_ATTEMPTING \(attempt 1 ATTEMPT_STATE_RUNNING\)/);
    assert.match(lines[3]!, /check build=CHECK_STATE_FINAL, stage compile=STAGE_STATE_FINAL .*stage deploy=STAGE_STATE_ATTEMPTING/);
  } finally {
    await server.stop();
    dir.remove();
  }
});
