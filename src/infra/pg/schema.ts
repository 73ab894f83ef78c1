// The PostgreSQL schema, created when missing and versioned: each migration runs once, in order, recorded in
// turboci_schema_migrations, so a later schema change has a place to go. A database whose schema is newer than
// this build knows is refused rather than written with the wrong shape.
import type { SyncPg } from './sync-client.js';

/** The application's advisory lock keys (pg_advisory_xact_lock takes one bigint). */
export const APPEND_LOCK = 7_283_619_001;
const MIGRATION_LOCK = 7_283_619_002;

/** The channel each commit notifies, with the commit's last position as the payload. */
export const NOTIFY_CHANNEL = 'turboci_events';

interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'the event log: gap-free positions, gap-free stream versions, append-only',
    sql: `
CREATE TABLE turboci_events (
  position          bigint  PRIMARY KEY CHECK (position > 0),
  stream_id         text    NOT NULL,
  version           integer NOT NULL CHECK (version > 0),
  type              text    NOT NULL,
  schema_version    integer NOT NULL,
  data              text    NOT NULL,
  recorded_at       bigint  NOT NULL,
  request_id        text,
  caused_by_version integer,
  hash              bytea,
  principal         text,
  reason            text,
  CONSTRAINT turboci_events_stream_version UNIQUE (stream_id, version)
);
CREATE INDEX turboci_events_by_request ON turboci_events (stream_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX turboci_events_first ON turboci_events (position) WHERE version = 1;
CREATE FUNCTION turboci_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the event log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER turboci_events_are_never_changed BEFORE UPDATE OR DELETE ON turboci_events
  FOR EACH ROW EXECUTE FUNCTION turboci_events_append_only();
CREATE TRIGGER turboci_events_are_never_truncated BEFORE TRUNCATE ON turboci_events
  FOR EACH STATEMENT EXECUTE FUNCTION turboci_events_append_only();
`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** The database's schema is newer than this build: it must not write it, nor guess what it means. */
export class SchemaTooNew extends Error {
  constructor(readonly found: number) {
    super(`its TurboCI schema is version ${found}, newer than this turboci knows (${SCHEMA_VERSION}); run a newer turboci`);
    this.name = 'SchemaTooNew';
  }
}

/** Not a TurboCI database (a read-only open found no schema). */
export class NoSchema extends Error {
  constructor() {
    super('it holds no TurboCI event log (no turboci_schema_migrations table)');
    this.name = 'NoSchema';
  }
}

/**
 * Brings the schema up to date, once, even with several servers starting at the same time. A schema already at
 * this version is only read: a role with SELECT and INSERT on the log (no CREATE) can serve it.
 */
export function migrate(pg: SyncPg): void {
  // Up to date: no DDL at all. CREATE TABLE IF NOT EXISTS needs CREATE on the schema even when the table is there,
  // so without this a role granted only SELECT and INSERT (the owner having migrated) could never start.
  if (existingVersion(pg) === SCHEMA_VERSION) return;
  pg.query([
    { sql: 'BEGIN' },
    { sql: 'SELECT pg_advisory_xact_lock($1)', params: [MIGRATION_LOCK] },
    {
      sql: `CREATE TABLE IF NOT EXISTS turboci_schema_migrations (
              version     integer PRIMARY KEY,
              description text NOT NULL,
              applied_at  timestamptz NOT NULL DEFAULT now())`,
    },
  ]);
  try {
    const at = currentVersion(pg);
    if (at > SCHEMA_VERSION) throw new SchemaTooNew(at);
    for (const m of MIGRATIONS) {
      if (m.version <= at) continue;
      pg.query([{ sql: m.sql }, { sql: 'INSERT INTO turboci_schema_migrations (version, description) VALUES ($1, $2)', params: [m.version, m.description] }]);
    }
    pg.query([{ sql: 'COMMIT' }]);
  } catch (err) {
    pg.query([{ sql: 'ROLLBACK' }]);
    throw err;
  }
}

/** For readers: the schema must be there, and not newer than this build. */
export function checkSchema(pg: SyncPg): void {
  const at = existingVersion(pg);
  if (at === null || at < 1) throw new NoSchema();
}

/** The schema's version without creating anything (null: no migrations table); SchemaTooNew when it is newer. */
function existingVersion(pg: SyncPg): number | null {
  const [exists] = pg.rows<{ t: string | null }>("SELECT to_regclass('turboci_schema_migrations')::text AS t");
  if (!exists?.t) return null;
  const at = currentVersion(pg);
  if (at > SCHEMA_VERSION) throw new SchemaTooNew(at);
  return at;
}

function currentVersion(pg: SyncPg): number {
  const [row] = pg.rows<{ v: number | null }>('SELECT MAX(version) AS v FROM turboci_schema_migrations');
  return row?.v ?? 0;
}
