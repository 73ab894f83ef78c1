// The sample log behind docs/debugging.md: the script writes it, and the walkthrough's commands say what the
// document says they say.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SAMPLE_WORKPLAN, writeSampleLog } from '../../scripts/sample-log.js';
import { BIN, tempDir } from '../support/server.js';

const dir = tempDir('turboci-sample-');
after(() => dir.remove());
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });

test('the sample script writes the walkthrough log, and the walkthrough commands explain it', () => {
  const script = fileURLToPath(new URL('../../scripts/sample-log.js', import.meta.url));
  const db = `${dir.path}/sample.db`;
  const made = spawnSync(process.execPath, [script, db], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(made.status, 0, made.stderr);
  assert.match(made.stdout, new RegExp(`workplan ${SAMPLE_WORKPLAN} at v\\d+`));
  assert.deepEqual(writeSampleLog(`${dir.path}/again.db`).workPlanId, SAMPLE_WORKPLAN);

  const events = run('events', '--db', db, '-w', SAMPLE_WORKPLAN, '--node', 'check:tests');
  assert.equal(events.status, 0, events.stderr);
  const explain = run('explain', '--db', db, '-w', SAMPLE_WORKPLAN, 'stage:deploy');
  assert.equal(explain.status, 0, explain.stderr);
  assert.match(explain.stdout, /stage deploy went ATTEMPTING at v\d+ because check tests went FINAL at v\d+, written by request r-tests-done/);
});
