// Real PostgreSQL for the tests that need it: every test file gets databases of its own, created with a random name
// (CREATE DATABASE) and dropped after its tests (DROP DATABASE ... WITH (FORCE), which also ends connections a
// failed test left open), so files can run in parallel and a crashed run leaves nothing another run trips on.
//
// The server is TURBOCI_TEST_PG_URL (an admin URL: a role that may CREATE DATABASE and CREATE ROLE), by default
// postgres://postgres@127.0.0.1:5432/postgres. When nothing answers there the tests skip, saying why; with
// TURBOCI_TEST_PG_REQUIRED=1 (CI) they fail instead, so a CI without PostgreSQL cannot pass by skipping.
import { randomBytes } from 'node:crypto';
import { after } from 'node:test';
import pg from 'pg';

export const ADMIN_URL = process.env.TURBOCI_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface PostgresForFile {
  /** false when PostgreSQL answers; otherwise why this file's tests are skipped (pass it as the `skip` option). */
  readonly skip: string | false;
  /** A fresh, empty database (random name), dropped after the file's tests; its URL as the admin role. */
  createDatabase(): Promise<string>;
  /** A LOGIN role with no privileges beyond PUBLIC's (dropped after the file's databases); its URL for `db`. */
  createRole(db: string, password?: string): Promise<{ name: string; url: string }>;
  /** Runs one statement on `url` (a database URL from createDatabase) on a connection of its own. */
  sql<T = Record<string, unknown>>(url: string, text: string, params?: unknown[]): Promise<T[]>;
}

/** The same URL naming another database (and, if given, another user and password). */
export function withDatabase(url: string, database: string, user?: { name: string; password?: string }): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  if (user) {
    u.username = user.name;
    u.password = user.password ?? '';
  }
  return u.toString();
}

const quote = (ident: string) => `"${ident.replace(/"/g, '""')}"`;

/**
 * Call once at the top of a test file (top-level await): checks that PostgreSQL answers and registers the
 * after() hook that drops everything this file created.
 */
export async function postgresForFile(label: string): Promise<PostgresForFile> {
  const skip = await reachable();
  if (skip && process.env.TURBOCI_TEST_PG_REQUIRED === '1') throw new Error(`TURBOCI_TEST_PG_REQUIRED=1 but ${skip}`);
  const databases: string[] = [];
  const roles: string[] = [];
  const prefix = `turboci_t_${label.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 30)}`;
  const admin = async <T>(text: string, params?: unknown[], url = ADMIN_URL): Promise<T[]> => {
    const client = new pg.Client({ connectionString: url, application_name: 'turboci tests' });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  };
  after(async () => {
    if (skip) return;
    for (const db of databases) await admin(`DROP DATABASE IF EXISTS ${quote(db)} WITH (FORCE)`);
    for (const role of roles) await admin(`DROP ROLE IF EXISTS ${quote(role)}`);
  });
  return {
    skip,
    async createDatabase() {
      const name = `${prefix}_${randomBytes(6).toString('hex')}`;
      databases.push(name); // before CREATE: a half-made database is dropped too
      await admin(`CREATE DATABASE ${quote(name)}`);
      return withDatabase(ADMIN_URL, name);
    },
    async createRole(dbUrl, password) {
      const name = `${prefix}_role_${randomBytes(4).toString('hex')}`;
      roles.push(name);
      await admin(`CREATE ROLE ${quote(name)} LOGIN${password ? ` PASSWORD '${password.replace(/'/g, "''")}'` : ''}`);
      return { name, url: withDatabase(dbUrl, new URL(dbUrl).pathname.slice(1), { name, ...(password ? { password } : {}) }) };
    },
    sql: (url, text, params) => admin(text, params, url),
  };
}

async function reachable(): Promise<string | false> {
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return false;
  } catch (err) {
    return `PostgreSQL is not reachable at ${ADMIN_URL} (${(err as Error).message}); set TURBOCI_TEST_PG_URL to an admin URL to run these tests`;
  } finally {
    await client.end().catch(() => undefined);
  }
}
