// The turboci binary on PostgreSQL, against a real PostgreSQL (fresh databases for this file): bad URLs fail in one
// line; export/import move workplans SQLite → PostgreSQL → SQLite unchanged; the event-log tools print the same for
// a SQLite log and its PostgreSQL copy; token writes to a PostgreSQL log; backup and snapshot refuse a URL.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { SAMPLE_WORKPLAN, writeSampleLog } from '../../scripts/sample-log.js';
import { ADMIN_URL, postgresForFile, withDatabase } from '../support/postgres.js';
import { BIN, connect, startServer, tempDir } from '../support/server.js';

const pg = await postgresForFile('cli');
const skip = pg.skip;
const dir = tempDir('turboci-pg-cli-');
after(() => dir.remove());

const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
const ok = (...args: string[]): string => {
  const r = run(...args);
  assert.equal(r.status, 0, `turboci ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
};
/** Exit status 1 and exactly one line on stderr, "turboci: ...", with no stack frame and no password in it. */
function failsInOneLine(r: ReturnType<typeof run>, pattern: RegExp, password?: string): string {
  assert.equal(r.status, 1, `exit ${r.status}; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `more than one line on stderr:\n${r.stderr}`);
  assert.match(lines[0]!, /^turboci: /);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
  assert.match(lines[0]!, pattern);
  if (password) assert.ok(!r.stderr.includes(password), `the password is on stderr: ${r.stderr}`);
  return lines[0]!;
}
/** The admin URL with a password (trust auth ignores it): messages must never show it. */
const withPassword = (url: string, password: string) => {
  const u = new URL(url);
  u.password = password;
  return u.toString();
};

const AUDITED = 'wp-audited';

/** A SQLite log with the sample workplan (the real orchestrator) and a workplan whose events carry principals and reasons. */
/** Writes the sample log (and a second, audited workplan) to `path`; returns the sample workplan's final version. */
function sqliteLog(path: string): number {
  const { version } = writeSampleLog(path);
  const store = new SqliteEventStore(path);
  try {
    store.append(AUDITED, 0, [{ event: { type: 'WorkPlanCreated', data: { metadata: { team: 'infra' } } }, causedByVersion: null }], {
      requestId: 'r-create',
      recordedAt: Date.parse('2025-02-01T08:00:00.000Z'),
      principal: 'ci-bot',
      reason: null,
    });
    store.append(AUDITED, 1, [{ event: { type: 'CheckCreated', data: { checkId: 'lint', kind: 'lint', options: { strict: true }, dependencies: null } }, causedByVersion: null }], {
      requestId: 'r-lint',
      recordedAt: Date.parse('2025-02-01T08:00:02.250Z'),
      principal: 'alice',
      reason: 'added by hand after the outage',
    });
  } finally {
    store.close();
  }
  return version;
}

test('serve and the tools refuse a bad PostgreSQL URL in one line, exit 1, no stack, no password', { skip }, async () => {
  const password = 's3cret-pw';
  const serve = (db: string) => run('serve', '--port', '0', '--http-port', '0', '--db', db);

  const unreachable = withPassword('postgres://postgres@127.0.0.1:1/turboci', password);
  failsInOneLine(serve(unreachable), /the event log postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/turboci: cannot connect: .*ECONNREFUSED/, password);
  failsInOneLine(run('events', '--db', unreachable), /cannot connect/, password);
  // A URL node-postgres cannot parse (port past 65535): an answer at once, not a wait for a thread that died.
  const malformed = `postgres://postgres:${password}@127.0.0.1:99999/turboci`;
  failsInOneLine(serve(malformed), /the event log postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:99999\/turboci: not a valid URL/, password);
  failsInOneLine(run('token', 'list', '--db', malformed), /not a valid URL/, password);

  const missing = withPassword(withDatabase(ADMIN_URL, `turboci_t_no_such_db_${process.pid}`), password);
  failsInOneLine(serve(missing), /database "turboci_t_no_such_db_\d+" does not exist/, password);
  failsInOneLine(run('import', '--db', missing, '-'), /does not exist/, password);

  // A role that may log in but not create tables (PostgreSQL 15: public is not writable by other roles).
  const fresh = await pg.createDatabase();
  const role = await pg.createRole(fresh, password);
  failsInOneLine(serve(role.url), /permission denied/, password);
  failsInOneLine(run('token', 'create', '--db', role.url, '--name', 'x', '--role', 'admin'), /permission denied/, password);
  // Once the schema is there (made by its owner), the role still may not read it.
  ok('token', 'create', '--db', fresh, '--name', 'owner', '--role', 'admin');
  failsInOneLine(run('events', '--db', role.url), /permission denied/, password);
  failsInOneLine(serve(role.url), /permission denied/, password);

  // A role that may not even connect to the database.
  const closed = await pg.createDatabase();
  await pg.sql(closed, `REVOKE CONNECT ON DATABASE "${new URL(closed).pathname.slice(1)}" FROM PUBLIC`);
  const outsider = await pg.createRole(closed, password);
  failsInOneLine(serve(outsider.url), /permission denied for database .*\(the role needs CONNECT on the database\)/, password);

  const newer = await pg.createDatabase();
  ok('token', 'create', '--db', newer, '--name', 'owner', '--role', 'admin'); // the schema at this build's version
  await pg.sql(newer, "INSERT INTO turboci_schema_migrations (version, description) VALUES (99, 'a later turboci')");
  const newerWithPassword = withPassword(newer, password);
  failsInOneLine(serve(newerWithPassword), /schema is version 99, newer than this turboci knows/, password);
  failsInOneLine(run('verify', '--db', newerWithPassword), /version 99/, password);
  failsInOneLine(run('import', '--db', newerWithPassword, '-'), /version 99/, password);

  // A read-only tool does not create a schema: an empty database is not a log.
  const empty = await pg.createDatabase();
  failsInOneLine(run('events', '--db', empty), /holds no TurboCI event log/);
  const [t] = await pg.sql<{ t: string | null }>(empty, "SELECT to_regclass('turboci_schema_migrations')::text AS t");
  assert.equal(t!.t, null);
});

test('least privilege: once the owner made the schema, SELECT is enough to read, and SELECT and INSERT to write and serve', { skip }, async () => {
  const url = await pg.createDatabase();
  ok('token', 'create', '--db', url, '--name', 'owner', '--role', 'admin'); // the owner creates the schema
  const reader = await pg.createRole(url);
  const writer = await pg.createRole(url);
  await pg.sql(url, `GRANT SELECT ON turboci_events, turboci_schema_migrations TO "${reader.name}", "${writer.name}"`);
  await pg.sql(url, `GRANT INSERT ON turboci_events TO "${writer.name}"`);

  assert.match(ok('token', 'list', '--db', reader.url), /owner\tadmin\tactive/);
  assert.match(ok('events', '--db', reader.url), /TokenCreated/);
  failsInOneLine(run('token', 'create', '--db', reader.url, '--name', 'x', '--role', 'reader'), /permission denied for table turboci_events \(the role needs .*INSERT on turboci_events/);

  ok('token', 'create', '--db', writer.url, '--name', 'bot', '--role', 'writer');
  const server = await startServer(writer.url);
  try {
    const { api, close } = connect(server.address);
    try {
      const wp = (await api.createWorkPlan({ metadata: { by: 'writer role' } })).workPlan!.id;
      assert.match(ok('events', '--db', reader.url, '-w', wp), /WorkPlanCreated/);
    } finally {
      close();
    }
  } finally {
    assert.equal(await server.stop(), 0);
  }
  const [migrations] = await pg.sql<{ n: string }>(url, 'SELECT COUNT(*) AS n FROM turboci_schema_migrations');
  assert.equal(Number(migrations!.n), 1);
});

test('a server on PostgreSQL folds an import another process commits, and verify --db URL --server finds no difference', { skip }, async () => {
  const source = `${dir.path}/served.db`;
  const sampleVersion = sqliteLog(source);
  const file = `${dir.path}/served.ndjson`;
  ok('export', '--db', source, '-w', SAMPLE_WORKPLAN, '--out', file);
  const url = await pg.createDatabase();
  const server = await startServer(url);
  try {
    const { api, close } = connect(server.address);
    try {
      const own = (await api.createWorkPlan({ metadata: { on: 'postgres' } })).workPlan!.id;
      ok('import', '--db', url, file);
      // The server hears of the commit by NOTIFY (or its timer) and folds it: wait for that, not for a time.
      let version = 0;
      for (const deadline = Date.now() + 15_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
        version = Number((await api.getWorkPlan({ id: SAMPLE_WORKPLAN }).catch(() => ({ workPlan: { version: 0 } }))).workPlan?.version ?? 0);
        if (version > 0) break;
      }
      assert.equal(version, sampleVersion, 'the server folded the imported workplan');
      const verified = run('verify', '--db', url, '--server', server.address);
      assert.equal(verified.status, 0, verified.stdout + verified.stderr);
      // The sample's events and the server's own workplan's one.
      assert.match(verified.stdout, new RegExp(`replayed ${sampleVersion + 1} events of 2 workplans through the projections\ncompared 2 read models\nOK: no differences`));
      assert.match(ok('replay', '--db', url, '-w', own), /workplan \S+ at v1 of 1/);
    } finally {
      close();
    }
  } finally {
    assert.equal(await server.stop(), 0);
  }
});

test('export/import move workplans SQLite → PostgreSQL → SQLite with the same versions, times, causes, principals and reasons', { skip }, async () => {
  const source = `${dir.path}/source.db`;
  sqliteLog(source);
  const url = await pg.createDatabase();
  const back = `${dir.path}/back.db`;
  for (const wp of [SAMPLE_WORKPLAN, AUDITED]) {
    const fromSqlite = ok('export', '--db', source, '-w', wp);
    const file = `${dir.path}/${wp}.ndjson`;
    writeFileSync(file, fromSqlite);
    assert.match(ok('import', '--db', url, file), new RegExp(`workplan ${wp} at v\\d+ into postgres://`));
    const fromPostgres = ok('export', '--db', url, '-w', wp);
    // Imported in the same order into an empty log, even the positions are the same.
    assert.equal(fromPostgres, fromSqlite, `${wp}: SQLite and PostgreSQL exports differ`);
    const again = `${dir.path}/${wp}.pg.ndjson`;
    ok('export', '--db', url, '-w', wp, '--out', again);
    ok('import', '--db', back, again);
    assert.equal(ok('export', '--db', back, '-w', wp), fromSqlite, `${wp}: the PostgreSQL → SQLite copy differs`);
  }
  const audited = ok('export', '--db', url, '-w', AUDITED).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    audited.map((e) => [e.version, e.recordedAt, e.requestId, e.principal, e.reason ?? null]),
    [
      [1, '2025-02-01T08:00:00.000Z', 'r-create', 'ci-bot', null],
      [2, '2025-02-01T08:00:02.250Z', 'r-lint', 'alice', 'added by hand after the outage'],
    ],
  );
  const causes = ok('export', '--db', url, '-w', SAMPLE_WORKPLAN).trim().split('\n').map((l) => (JSON.parse(l) as { causedByVersion: number | null }).causedByVersion);
  assert.ok(causes.some((c) => c !== null), 'the sample has resolver events with causes');

  // A workplan that is there already is refused; --as imports a copy after the log's end.
  const file = `${dir.path}/${SAMPLE_WORKPLAN}.ndjson`;
  failsInOneLine(run('import', '--db', url, file), /workplan wp-sample is already in postgres:\/\/.*use --as/);
  ok('import', '--db', url, '--as', 'wp-copy', file);
  const copy = ok('export', '--db', url, '-w', 'wp-copy').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const original = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    copy.map(({ position, workPlanId, ...rest }) => rest),
    original.map(({ position, workPlanId, ...rest }) => rest),
  );
  assert.equal(copy[0]!.position, original.length + 3, 'numbered after the two workplans already there');

  const verified = JSON.parse(ok('verify', '--db', url, '--json')) as { events: number; workplans: number; ok: boolean; differences: unknown[] };
  assert.deepEqual(verified, { events: 2 * original.length + 2, workplans: 3, compared: 0, differences: [], ok: true });
  assert.match(ok('verify', '--db', url), /OK: no differences/);
});

test('events, replay and explain print the same for a SQLite log and its PostgreSQL copy', { skip }, async () => {
  const source = `${dir.path}/same.db`;
  sqliteLog(source);
  const url = await pg.createDatabase();
  for (const wp of [SAMPLE_WORKPLAN, AUDITED]) {
    const file = `${dir.path}/same-${wp}.ndjson`;
    ok('export', '--db', source, '-w', wp, '--out', file);
    ok('import', '--db', url, file);
  }
  const views: string[][] = [
    ['events'],
    ['events', '--json'],
    ['events', '-w', SAMPLE_WORKPLAN, '--node', 'check:tests'],
    ['events', '--type', 'StageStateChanged,CheckCreated', '--since', '2025-01-31T12:00:03Z', '--json'],
    ['events', '-w', SAMPLE_WORKPLAN, '--from-version', '5', '--to-version', '99999999999'],
    ['events', '--from-position', '3', '--to-position', '7', '--limit', '3'],
    ['replay', '-w', SAMPLE_WORKPLAN],
    ['replay', '-w', SAMPLE_WORKPLAN, '--at-version', '12', '--json'],
    ['replay', '-w', SAMPLE_WORKPLAN, '--step', '--from-version', '8', '--at-version', '15'],
    ['replay', '-w', AUDITED, '--step', '--json'],
    ['replay', '--all', '--json'],
    ['replay', '-w', SAMPLE_WORKPLAN, '--at-time', '2025-01-31T12:00:06Z'],
    ['explain', '-w', SAMPLE_WORKPLAN, 'stage:deploy'],
    ['explain', '-w', SAMPLE_WORKPLAN, '--node', 'check:tests', '--json'],
    ['explain', '-w', AUDITED, 'check:lint'],
  ];
  for (const args of views) {
    const fromSqlite = ok(args[0]!, '--db', source, ...args.slice(1));
    assert.ok(fromSqlite.trim().length > 0, `${args.join(' ')} printed nothing`);
    assert.equal(ok(args[0]!, '--db', url, ...args.slice(1)), fromSqlite, `turboci ${args.join(' ')}: SQLite and PostgreSQL differ`);
  }
  assert.match(ok('explain', '--db', url, '-w', SAMPLE_WORKPLAN, 'stage:deploy'), /stage deploy went ATTEMPTING at v\d+ because check tests went FINAL/);
  // The same one-line answers for what is not there.
  const noWorkplan = failsInOneLine(run('events', '--db', url, '-w', 'nope'), /no workplan "nope" in postgres:\/\//);
  assert.equal(noWorkplan.replace(/postgres:\/\/\S+/, 'LOG'), failsInOneLine(run('events', '--db', source, '-w', 'nope'), /no workplan/).replace(source, 'LOG'));
  failsInOneLine(run('explain', '--db', url, '-w', SAMPLE_WORKPLAN, 'check:nope'), /no node "check:nope"/);
});

test('verify finds an event changed behind the triggers\' back in a PostgreSQL log (hash chain)', { skip }, async () => {
  const source = `${dir.path}/chain.db`;
  sqliteLog(source);
  const url = await pg.createDatabase();
  const file = `${dir.path}/chain.ndjson`;
  ok('export', '--db', source, '-w', SAMPLE_WORKPLAN, '--out', file);
  ok('import', '--db', url, file);
  assert.match(ok('verify', '--db', url), /OK: no differences/);
  // Only the table's owner can do this, and only by switching the trigger off: the check must still see it.
  await pg.sql(url, 'ALTER TABLE turboci_events DISABLE TRIGGER turboci_events_are_never_changed');
  await pg.sql(url, "UPDATE turboci_events SET recorded_at = recorded_at + 1 WHERE stream_id = 'wp-sample' AND version = 7");
  await pg.sql(url, 'ALTER TABLE turboci_events ENABLE TRIGGER turboci_events_are_never_changed');
  const r = run('verify', '--db', url);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /DIFFERENCE workplan wp-sample \(hash chain, v7\):\n {2}hash chain broken at wp-sample v7 \(position 7\)/);
  assert.match(r.stdout, /FAILED: 1 difference/);
});

test('token create, list and revoke write and read the tokens stream of a PostgreSQL log', { skip }, async () => {
  const url = await pg.createDatabase();
  const created = run('token', 'create', '--db', url, '--name', 'ci-bot', '--role', 'writer', '--expires', '30d');
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.stdout.trim(), /^\S{20,}$/, 'the secret, on stdout');
  const [row] = await pg.sql<{ type: string; principal: string; data: string }>(url, "SELECT type, principal, data FROM turboci_events WHERE stream_id = 'tokens'");
  assert.equal(row!.type, 'TokenCreated');
  assert.match(row!.principal, /^cli:/);
  assert.ok(!row!.data.includes(created.stdout.trim()), 'only the hash of the secret is stored');
  const listed = JSON.parse(ok('token', 'list', '--db', url, '--json').trim()) as { name: string; status: string };
  assert.deepEqual([listed.name, listed.status], ['ci-bot', 'active']);
  assert.equal(run('token', 'revoke', 'ci-bot', '--db', url).status, 0);
  assert.match(ok('token', 'list', '--db', url), /ci-bot\twriter\trevoked/);
  ok('token', 'create', '--db', url, '--name', 'agents', '--role', 'runner', '--runner-type', 'shell');
  const r = run('token', 'create', '--db', url, '--name', 'agents', '--role', 'runner', '--runner-type', 'shell');
  assert.equal(r.status, 1, r.stderr); // a name in use (a DomainError): the command's own one-line answer
  assert.match(r.stderr, /^turboci token: .*token "agents" already exists/);
  const [n] = await pg.sql<{ n: string }>(url, "SELECT COUNT(*) AS n FROM turboci_events WHERE stream_id = 'tokens'");
  assert.equal(Number(n!.n), 3);
});

test('a server on PostgreSQL with --auth on takes tokens created and revoked by the CLI while it runs', { skip }, async () => {
  const url = await pg.createDatabase();
  const admin = ok('token', 'create', '--db', url, '--name', 'root', '--role', 'admin').trim();
  const server = await startServer(url, ['--auth', 'on']);
  try {
    const root = connect(server.address, { token: admin });
    const later = ok('token', 'create', '--db', url, '--name', 'later', '--role', 'writer').trim();
    const writer = connect(server.address, { token: later });
    try {
      const wp = (await root.api.createWorkPlan({ metadata: {} })).workPlan!.id;
      // Created after the start: the server reads the tokens stream on the call (PostgreSQL: through the store).
      const own = (await writer.api.createWorkPlan({ metadata: {} })).workPlan!.id;
      assert.notEqual(own, wp);
      ok('token', 'revoke', 'later', '--db', url);
      await assert.rejects(writer.api.createWorkPlan({ metadata: {} }), (err: { code?: number }) => err.code === 16); // UNAUTHENTICATED
      const principals = ok('events', '--db', url, '--type', 'WorkPlanCreated', '--json').trim().split('\n').map((l) => (JSON.parse(l) as { principal?: string }).principal);
      assert.deepEqual(principals, ['root', 'later']);
    } finally {
      root.close();
      writer.close();
    }
  } finally {
    assert.equal(await server.stop(), 0);
  }
});

test('backup and snapshot refuse a PostgreSQL URL in one line; every command that takes --db says a URL works', { skip }, async () => {
  const url = withPassword(await pg.createDatabase(), 'pw-not-shown');
  const backup = failsInOneLine(run('backup', '--db', url, '--out', `${dir.path}/x.db`), /use pg_dump/, 'pw-not-shown');
  assert.match(backup, /^turboci: backup works on a SQLite file, not on postgres:\/\//);
  failsInOneLine(run('snapshot', '--db', url), /snapshot works on a SQLite file.*replays the log at start/, 'pw-not-shown');
  for (const cmd of ['events', 'replay', 'explain', 'verify', 'export', 'import', 'token']) {
    assert.match(ok(cmd, '--help'), /--db (FILE|PATH)\|URL/, `${cmd} --help`);
    assert.match(ok(cmd, '--help'), /postgres:\/\//, `${cmd} --help`);
  }
  assert.match(ok('backup', '--help'), /pg_dump/);
  assert.match(ok('--help'), /postgres:\/\//);
});
