// Which event store the API tests run on, and fresh PostgreSQL databases for them.
//
// `TURBOCI_TEST_STORE=postgres` (npm run test:postgres) makes startServer/serverPerFile serve every test file's
// log from its own new PostgreSQL database instead of a SQLite file, so the same test files prove both stores.
// The admin connection (CREATE/DROP DATABASE) uses `pg` directly: the store itself never creates databases.
// (test/support/postgres.ts makes databases per test file for the store and CLI tests; this one maps the paths an
// API test names to databases for the whole file, and shares its server URL.)
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ADMIN_URL, withDatabase } from './postgres.js';
import type { RecordedEvent } from '../../src/domain/events.js';
import type { EventStore } from '../../src/app/event-store.js';
import { isPostgresUrl, PostgresEventStore } from '../../src/infra/pg/postgres-event-store.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';


export type TestStore = 'sqlite' | 'postgres';

/** The store this test run serves API tests from. */
export function testStore(): TestStore {
  const v = (process.env.TURBOCI_TEST_STORE ?? 'sqlite').toLowerCase();
  if (v !== 'sqlite' && v !== 'postgres') throw new Error(`TURBOCI_TEST_STORE: "${v}" is not sqlite or postgres`);
  return v;
}

export const onPostgres = testStore() === 'postgres';

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL, application_name: 'turboci tests' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A new, empty database (named tci_<random>, so parallel test files never meet); its URL. */
export async function createDatabase(): Promise<string> {
  const name = `tci_${randomBytes(8).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  return withDatabase(ADMIN_URL, name);
}

/** Drops a database made by createDatabase, closing whatever connections are still open on it. */
export async function dropDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  if (!/^tci_[0-9a-f]+$/.test(name)) throw new Error(`not a test database: ${url}`);
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

/**
 * On PostgreSQL, each SQLite path a test names stands for one database, created when first served: a test that
 * restarts a server on "the same file" gets the same database back, and reads "the file" from that database.
 */
const databases = new Map<string, Promise<string>>();
const created = new Map<string, string>();

/** The log a server of this test run gets for `dbPath` (a URL is taken as it is). */
export async function logFor(dbPath: string, store: TestStore = testStore()): Promise<string> {
  if (store === 'sqlite' || isPostgresUrl(dbPath)) return dbPath;
  let url = databases.get(dbPath);
  if (!url) {
    url = createDatabase().then((u) => (created.set(dbPath, u), u));
    databases.set(dbPath, url);
  }
  return url;
}

/** Drops every database logFor created (after the test file). */
export async function dropTestDatabases(): Promise<void> {
  for (const url of databases.values()) await dropDatabase(await url);
  databases.clear();
  created.clear();
}

/** Opens a server's log (a SQLite file, the database standing for it, or a PostgreSQL URL) read-only; safe while the server runs. */
export function openLog(db: string): EventStore & { close(): void } {
  db = created.get(db) ?? db;
  return isPostgresUrl(db) ? new PostgresEventStore(db, { readonly: true, applicationName: 'turboci tests' }) : new SqliteEventStore(db, { readonly: true });
}

/** Every event in the log, in commit order. */
export function readAllEvents(db: string): RecordedEvent[] {
  const store = openLog(db);
  try {
    return [...store.readAll()];
  } finally {
    store.close();
  }
}

/**
 * startServer's option for a server whose log the test also reads or writes with the CLI's `--db FILE` (`turboci
 * token create`, `events`, `replay`): the CLI of this branch opens SQLite files only, so such a server keeps its file
 * in the PostgreSQL run too. TODO(merge with pgcli): pass the URL to the CLI and drop this.
 */
export const cliNeedsFile = { store: 'sqlite' } as const;
