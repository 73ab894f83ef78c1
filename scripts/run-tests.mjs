// `npm test` runs this after the build: every test file on SQLite (the domain specs first), then the API-level
// files again with TURBOCI_TEST_STORE=postgres (a fresh PostgreSQL database per file) plus the replica tests.
//
//   node scripts/run-tests.mjs [all|sqlite|postgres]
//
// PostgreSQL is expected at TURBOCI_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres). Without it the
// PostgreSQL run is skipped with a line saying so, except under CI=true, where a missing database fails the run
// (.ci/run starts it first).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';

const which = process.argv[2] ?? 'all';
if (!['all', 'sqlite', 'postgres'].includes(which)) {
  console.error(`usage: node scripts/run-tests.mjs [all|sqlite|postgres] ("${which}" is none of them)`);
  process.exit(2);
}

/** Every *.test.js under dist/test/DIR (recursively), sorted. */
function testsUnder(dir, { recursive = true } = {}) {
  const root = join('dist/test', dir);
  let entries;
  try {
    entries = readdirSync(root, { recursive, withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.test.js'))
    .map((e) => join(e.parentPath ?? e.path, e.name))
    .sort();
}

function run(label, files, env = {}) {
  console.log(`\n== ${label}: ${files.length} test files`);
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { stdio: 'inherit', env: { ...process.env, ...env } });
  return r.status ?? 1;
}

async function postgresReachable() {
  const server = process.env.TURBOCI_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const client = new pg.Client({ connectionString: server, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.end();
    return null;
  } catch (err) {
    return `${server}: ${err.message}`;
  }
}

let status = 0;
if (which !== 'postgres') {
  const domain = testsUnder('domain');
  const rest = readdirSync('dist/test', { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (['domain', 'replicas'].includes(e.name) ? [] : testsUnder(e.name)) : e.name.endsWith('.test.js') ? [join('dist/test', e.name)] : [],
  );
  status = run('tests on SQLite', [...domain, ...rest.sort()]) || status;
}
if (which !== 'sqlite') {
  const unreachable = await postgresReachable();
  if (unreachable && process.env.CI !== 'true') {
    console.log(`\n== tests on PostgreSQL skipped: no PostgreSQL at ${unreachable} (start it, or set TURBOCI_TEST_PG_URL)`);
  } else {
    const top = readdirSync('dist/test', { withFileTypes: true }).filter((e) => e.isFile() && e.name.endsWith('.test.js')).map((e) => join('dist/test', e.name));
    const files = [...top.sort(), ...['api', 'pull', 'runners', 'graph', 'security', 'ui', 'replicas'].flatMap((d) => testsUnder(d))];
    status = run('API tests on PostgreSQL (TURBOCI_TEST_STORE=postgres) and the replica tests', files, { TURBOCI_TEST_STORE: 'postgres' }) || status;
  }
}
process.exit(status);
