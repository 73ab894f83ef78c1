// Issue 12, item 7: damage that verify did not see. Real server processes on real files:
//   - an event garbled in the middle of the file (the replay still folds it) is a break in the hash chain;
//   - a database written before hash chains migrates: new events continue a chain computed over the old ones;
//   - a WAL lost after a SIGKILL: the server refuses to serve a log that ends before its commit marker, saying how
//     many events are missing, unless --accept-data-loss; verify reports the loss too;
//   - backup takes a consistent copy while writes run, and the documented restore serves it.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, copyFileSync, truncateSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { CheckState } from '../../src/gen/turboci/v1/common.js';
import type { PendingEvent } from '../../src/domain/events.js';
import { readCommitMarker } from '../../src/infra/commit-marker.js';
import { chainHash, type HashedRow } from '../../src/infra/hash-chain.js';
import { EVENTS_SCHEMA, SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { connect, startServer, tempDir } from '../support/server.js';
import { runTurboci } from './support.js';

const dir = tempDir('turboci-integrity-');
after(() => dir.remove());

/** Overwrites the one occurrence of `from` in the file with `to` (same length): damage SQLite does not notice. */
function garble(path: string, from: string, to: string): void {
  assert.equal(from.length, to.length);
  const bytes = readFileSync(path);
  const at = bytes.indexOf(from);
  assert.ok(at >= 0, `"${from}" is not in ${path}`);
  assert.equal(bytes.indexOf(from, at + 1), -1, `"${from}" occurs more than once`);
  bytes.write(to, at);
  writeFileSync(path, bytes);
}

test('verify finds an event changed in the middle of its stream (the replay alone does not)', async () => {
  const db = `${dir.path}/garbled.db`;
  const server = await startServer(db);
  after(() => server.stop('SIGKILL'));
  const conn = connect(server.address);
  const id = (await conn.api.createWorkPlan({})).workPlan!.id;
  for (let i = 0; i < 6; i++) {
    await conn.api.writeNodes({ workPlanId: id, checks: [{ id: `c${i}`, state: CheckState.CHECK_STATE_PLANNED, options: { note: `note-${i}-AAAAAAAA` } }] });
  }
  conn.close();
  assert.equal(await server.stop(), 0); // closing checkpoints the WAL into the file
  const ok = await runTurboci(['verify', '--db', db]);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);

  const raw = new Database(db, { readonly: true });
  const { version } = raw.prepare(`SELECT version FROM events WHERE data LIKE '%note-3-AAAAAAAA%'`).get() as { version: number };
  raw.close();
  garble(db, 'note-3-AAAAAAAA', 'note-3-BBBBBBBB');
  const r = await runTurboci(['verify', '--db', db, '--json']);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as { differences: { workPlanId: string; against: string; version: number }[] };
  // The replay folds the changed event without complaint: the hash chain is what sees it, at exactly that event.
  assert.deepEqual(
    report.differences.map((d) => [d.against, d.workPlanId, d.version]),
    [['hash chain', id, version]],
  );
});

test('a database from before hash chains: old events keep no hash, new ones continue a chain computed over them', async () => {
  const db = `${dir.path}/legacy.db`;
  const old = new Database(db);
  old.pragma('journal_mode = WAL');
  old.exec(EVENTS_SCHEMA); // the schema as it was: no hash column
  const insert = old.prepare(
    'INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  insert.run('wp', 1, 'WorkPlanCreated', 2, JSON.stringify({ metadata: { legacy: 'LEGACY-VALUE-1' }, createdBy: '' }), 1000, null, null);
  insert.run('wp', 2, 'CheckCreated', 1, JSON.stringify({ checkId: 'old', kind: 'k', options: {}, dependencies: null }), 2000, 'r1', null);
  old.close();

  const store = new SqliteEventStore(db);
  const check: PendingEvent = { event: { type: 'CheckCreated', data: { checkId: 'new', kind: 'k', options: {}, dependencies: null } }, causedByVersion: null };
  store.append('wp', 2, [check], { requestId: 'r2', recordedAt: 3000 });
  store.close();

  const raw = new Database(db, { readonly: true });
  const rows = raw.prepare('SELECT * FROM events ORDER BY position').all() as (HashedRow & { hash: Buffer | null })[];
  raw.close();
  assert.deepEqual(rows.map((r) => r.hash === null), [true, true, false], 'old rows are not rewritten');
  const expected = chainHash(chainHash(chainHash(null, rows[0]!), rows[1]!), rows[2]!);
  assert.ok(rows[2]!.hash!.equals(expected), 'the first hashed event continues the chain computed over the old ones');
  const ok = await runTurboci(['verify', '--db', db]);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);

  garble(db, 'LEGACY-VALUE-1', 'LEGACY-VALUE-2');
  const r = await runTurboci(['verify', '--db', db]);
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stdout, /hash chain broken at wp v3/);
});

test('a WAL lost after SIGKILL: the server refuses to start, saying how many events are missing, unless --accept-data-loss', async () => {
  const db = `${dir.path}/lost-wal.db`;
  const server = await startServer(db);
  after(() => server.stop('SIGKILL'));
  const conn = connect(server.address);
  const id = (await conn.api.createWorkPlan({})).workPlan!.id;
  for (let i = 0; i < 10; i++) await conn.api.writeNodes({ workPlanId: id, checks: [{ id: `c${i}`, state: CheckState.CHECK_STATE_PLANNED }] });
  conn.close();
  await server.stop('SIGKILL');
  const marker = readCommitMarker(db);
  assert.ok(marker && marker.position >= 11, `the marker names the last commit: ${JSON.stringify(marker)}`);
  assert.equal(marker.pid, server.child.pid);

  assert.ok(existsSync(`${db}-wal`));
  truncateSync(`${db}-wal`, 0); // what a lost or garbled WAL looks like to SQLite: no committed frames
  rmSync(`${db}-shm`, { force: true });

  const refused = await runTurboci(['serve', '--port', '0', '--db', db]);
  assert.equal(refused.status, 1, refused.stderr);
  const lines = refused.stderr.trim().split('\n');
  assert.equal(lines.length, 1, refused.stderr);
  const m = /ends at position (\d+).* up to position (\d+).*: (\d+) acknowledged events are missing/.exec(lines[0]!);
  assert.ok(m, lines[0]);
  assert.equal(Number(m[2]), marker.position);
  assert.equal(Number(m[3]), marker.position - Number(m[1]));
  assert.ok(lines[0]!.includes('--accept-data-loss'));

  const v = await runTurboci(['verify', '--db', db]);
  assert.equal(v.status, 1, v.stdout + v.stderr);
  assert.match(v.stdout, new RegExp(`server committed up to position ${marker.position}: ${m[3]} events missing from the end`));

  const accepted = await startServer(db, ['--accept-data-loss']);
  const warned = await accepted.waitForLog((l) => l.level === 40 && typeof l.missing === 'number');
  assert.equal(warned.missing, Number(m[3]));
  assert.equal(await accepted.stop(), 0);
  // It owns what is left now: the next start needs no flag.
  const next = await startServer(db);
  assert.equal(await next.stop(), 0);
});

test('backup takes a consistent copy while writes run; the documented restore serves it', async () => {
  const db = `${dir.path}/live.db`;
  const copy = `${dir.path}/live-backup.db`;
  const server = await startServer(db);
  after(() => server.stop('SIGKILL'));
  const conn = connect(server.address);
  const id = (await conn.api.createWorkPlan({})).workPlan!.id;
  const acked: string[] = [];
  let stop = false;
  const writer = async (w: number) => {
    for (let i = 0; !stop; i++) {
      const checkId = `w${w}-${i}`;
      await conn.api.writeNodes({ workPlanId: id, checks: [{ id: checkId, state: CheckState.CHECK_STATE_PLANNED, options: { pad: 'p'.repeat(2000) } }] });
      acked.push(checkId);
    }
  };
  const writers = [0, 1, 2].map(writer);
  while (acked.length < 100) await new Promise((r) => setTimeout(r, 20));
  const ackedBefore = [...acked];
  const b = await runTurboci(['backup', '--db', db, '--out', copy]);
  const ackedDuring = acked.length;
  while (acked.length < ackedDuring + 50) await new Promise((r) => setTimeout(r, 20));
  stop = true;
  await Promise.all(writers);
  conn.close();
  assert.equal(b.status, 0, b.stderr);
  assert.match(b.stdout, /^backed up \d+ events/);

  const v = await runTurboci(['verify', '--db', copy]);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  // Consistent: the copy is exactly the original's first N events (a snapshot), holding every write acknowledged
  // before the backup started, and the writes went on meanwhile.
  const rowsOf = (path: string) => {
    const d = new Database(path, { readonly: true });
    const rows = d.prepare('SELECT position, stream_id, version, data, hash FROM events ORDER BY position').all() as { data: string }[];
    d.close();
    return rows;
  };
  assert.equal(await server.stop(), 0);
  const original = rowsOf(db);
  const copied = rowsOf(copy);
  assert.ok(copied.length < original.length, 'the writes went on after the backup');
  assert.deepEqual(copied, original.slice(0, copied.length));
  const inCopy = copied.map((r) => r.data).join('\n');
  for (const c of ackedBefore) assert.ok(inCopy.includes(`"checkId":"${c}"`), `${c} was acknowledged before the backup started`);

  // Restore as README and "backup --help" say: replace the file (and drop the old WAL), then accept the loss.
  rmSync(`${db}-wal`, { force: true });
  rmSync(`${db}-shm`, { force: true });
  copyFileSync(copy, db);
  const refused = await runTurboci(['serve', '--port', '0', '--db', db]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, new RegExp(`${original.length - copied.length} acknowledged events are missing`));
  const restored = await startServer(db, ['--accept-data-loss']);
  const c = connect(restored.address);
  const live = new Set((await c.api.queryNodes({ workPlanId: id, includeChecks: true })).checks.map((x) => x.id));
  for (const id2 of ackedBefore) assert.ok(live.has(id2));
  c.close();
  assert.equal(await restored.stop(), 0);
});

test('an imported workplan carries the same hash chain as one the server wrote', async () => {
  const db = `${dir.path}/export-src.db`;
  const server = await startServer(db);
  after(() => server.stop('SIGKILL'));
  const conn = connect(server.address);
  const id = (await conn.api.createWorkPlan({})).workPlan!.id;
  for (let i = 0; i < 3; i++) await conn.api.writeNodes({ workPlanId: id, checks: [{ id: `c${i}`, state: CheckState.CHECK_STATE_PLANNED }] });
  conn.close();
  assert.equal(await server.stop(), 0);
  const exported = `${dir.path}/wp.ndjson`;
  const ex = await runTurboci(['export', '--db', db, '-w', id]);
  assert.equal(ex.status, 0, ex.stderr);
  writeFileSync(exported, ex.stdout);
  const target = `${dir.path}/import-target.db`;
  const im = await runTurboci(['import', '--db', target, exported]);
  assert.equal(im.status, 0, im.stderr);
  const hashes = (path: string) => {
    const d = new Database(path, { readonly: true });
    const rows = d.prepare('SELECT hash FROM events WHERE stream_id = ? ORDER BY version').all(id) as { hash: Buffer | null }[];
    d.close();
    return rows.map((r) => r.hash?.toString('hex') ?? null);
  };
  assert.ok(hashes(target).every((h) => h !== null));
  assert.deepEqual(hashes(target), hashes(db), 'same events, same chain');
  const v = await runTurboci(['verify', '--db', target]);
  assert.equal(v.status, 0, v.stdout + v.stderr);
});

test('serve --help and backup --help document the new flag and command', async () => {
  const serve = await runTurboci(['serve', '--help']);
  assert.match(serve.stdout, /--accept-data-loss/);
  const backup = await runTurboci(['backup', '--help']);
  assert.equal(backup.status, 0);
  for (const word of ['--db', '--out', 'Restore', '--accept-data-loss']) assert.ok(backup.stdout.includes(word), word);
  const top = await runTurboci(['--help']);
  assert.match(top.stdout, /backup\s+a consistent copy/);
  const verify = await runTurboci(['verify', '--help']);
  assert.match(verify.stdout, /hash chain/);
});
