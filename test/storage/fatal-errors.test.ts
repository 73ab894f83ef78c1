// Issue 12, item 8: fatal errors at start read like an operator's message: one line naming the path or port and
// the cause, exit 1, no stack, and no "a restart rebuilds..." hint where a restart cannot help.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { startServer, tempDir } from '../support/server.js';
import { mountTmpfs, runTurboci, type Ran } from './support.js';

const dir = tempDir('turboci-fatal-');
after(() => dir.remove());

function assertOperatorMessage(r: Ran, mentions: string[], cause: RegExp): void {
  assert.equal(r.status, 1, `exit status; stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  const line = lines[0]!;
  assert.match(line, /^turboci: /);
  for (const m of mentions) assert.ok(line.includes(m), `"${line}" should name ${m}`);
  assert.match(line, cause);
  assert.doesNotMatch(line, /restart/i);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('a database in a directory that does not exist', async () => {
  const db = `${dir.path}/no/such/dir/ci.db`;
  assertOperatorMessage(await runTurboci(['serve', '--port', '0', '--db', db]), [db, `${dir.path}/no/such/dir`], /does not exist/);
});

test('a port in use', async () => {
  const running = await startServer(`${dir.path}/first.db`);
  const port = running.address.split(':').at(-1)!;
  const r = await runTurboci(['serve', '--port', port, '--http-port', '0', '--db', `${dir.path}/second.db`]);
  await running.stop();
  assertOperatorMessage(r, [`127.0.0.1:${port}`], /in use/);
});

test('a corrupt database', async () => {
  const db = `${dir.path}/corrupt.db`;
  writeFileSync(db, Buffer.concat([Buffer.from('this is not a database at all '.repeat(40))]));
  assertOperatorMessage(await runTurboci(['serve', '--port', '0', '--db', db]), [db], /damaged|not a database/);
});

test('a database whose header is fine but whose pages are garbled', async () => {
  const db = `${dir.path}/garbled.db`;
  const valid = await runTurboci(['import', '--db', db, '/dev/null']); // creates the schema, then refuses the empty input
  assert.equal(valid.status, 1);
  const { openSync, writeSync, closeSync, statSync } = await import('node:fs');
  const fd = openSync(db, 'r+');
  const size = statSync(db).size;
  writeSync(fd, Buffer.alloc(size - 100, 0xa5), 100); // keep the 100-byte header, garble every page after it
  closeSync(fd);
  assertOperatorMessage(await runTurboci(['serve', '--port', '0', '--db', db]), [db], /damaged|malformed|not a database/);
});

test('a read-only file system', async (t) => {
  const mnt = `${dir.path}/ro`;
  const m = mountTmpfs(mnt, '1m', true);
  if ('skip' in m) return t.skip(m.skip);
  try {
    const db = `${mnt}/ci.db`;
    assertOperatorMessage(await runTurboci(['serve', '--port', '0', '--db', db]), [db], /read-only/);
  } finally {
    m.unmount();
  }
});
