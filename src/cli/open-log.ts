// The one place a command turns its --db argument into an event store: a SQLite file, or a PostgreSQL URL
// (postgres:// or postgresql://). Every command that takes --db opens it here, so both kinds of log fail the
// same way: one line naming the file or the URL (never its password) and the cause, exit status 1, no stack.
import { existsSync } from 'node:fs';
import { StorageFailure, StreamExists, VersionConflict } from '../app/event-store.js';
import { isPostgresUrl, PostgresEventStore, redactUrl } from '../infra/pg/postgres-event-store.js';
import { SqliteEventStore } from '../infra/sqlite-event-store.js';
import type { Validation } from '../infra/event-codec.js';
import { checkDatabaseDirectory, databaseError, FatalError, postgresError } from './fatal.js';

export type LogStore = SqliteEventStore | PostgresEventStore;

export interface OpenedLog {
  readonly store: LogStore;
  /** The file, or the URL without its password: what messages name. */
  readonly describe: string;
  readonly postgres: boolean;
}

export interface OpenLogOptions {
  /**
   * Inspection tools: a SQLite file must exist and is opened read-only (safe while a server runs); a PostgreSQL
   * database must hold the schema already (it is not created) and is read in read-only transactions.
   */
  readonly readonly?: boolean;
  readonly validate?: Validation;
  /** Shown in pg_stat_activity, so an operator sees which tool holds a connection. */
  readonly applicationName?: string;
}

export { isPostgresUrl, redactUrl };

/** Opens `db`, or throws FatalError with one line saying why not. Writable opens create the schema when missing. */
export function openLog(db: string, options: OpenLogOptions = {}): OpenedLog {
  const readonly = options.readonly ?? false;
  if (isPostgresUrl(db)) {
    const describe = redactUrl(db);
    try {
      const store = new PostgresEventStore(db, {
        readonly,
        ...(options.validate ? { validate: options.validate } : {}),
        applicationName: options.applicationName ?? 'turboci cli',
      });
      return { store, describe, postgres: true };
    } catch (err) {
      throw postgresError(describe, err);
    }
  }
  if (readonly && !existsSync(db)) throw new FatalError(`${db}: no such database file`);
  if (!readonly) checkDatabaseDirectory(db);
  let store: SqliteEventStore | undefined;
  try {
    store = new SqliteEventStore(db, { readonly, ...(options.validate ? { validate: options.validate } : {}) });
    // A file that is not a SQLite event log opens fine and fails at its first read: fail here instead.
    store.count();
    return { store, describe: db, postgres: false };
  } catch (err) {
    store?.close();
    // Read-only, anything that does not read is "not an event log"; a write names the cause (read-only, full...).
    const e = readonly ? err : databaseError(db, err);
    if (e instanceof FatalError) throw e;
    throw new FatalError(`${db}: not a TurboCI event log (${(err as Error).message})`);
  }
}

/** For commands that only work on a SQLite file (backup, snapshot): one line saying what to do instead. */
export function refusePostgres(db: string, command: string, instead: string): void {
  if (isPostgresUrl(db)) throw new FatalError(`${command} works on a SQLite file, not on ${redactUrl(db)}: ${instead}`);
}

/**
 * An error while reading or writing an open log, as one line (connection lost, permission denied on a table,
 * disk full): what the caller cannot act on becomes FatalError; a store's own answers (a version conflict, a
 * stream that exists) and programming errors are returned unchanged.
 */
export function logError(log: Pick<OpenedLog, 'describe' | 'postgres'>, err: unknown): unknown {
  if (err instanceof FatalError || err instanceof VersionConflict || err instanceof StreamExists) return err;
  // The driver's error behind a failed PostgreSQL write says more (its SQLSTATE picks the hint) than the wrapper.
  if (err instanceof StorageFailure && log.postgres && (err.cause as Error | undefined)?.name === 'PgError') return postgresError(log.describe, err.cause);
  if (err instanceof StorageFailure) return new FatalError(err.message.startsWith(log.describe) ? `the event log ${err.message}` : `the event log ${log.describe}: ${err.message}`);
  if (log.postgres && (err as Error)?.name === 'PgError') return postgresError(log.describe, err);
  if (!log.postgres) return databaseError(log.describe, err);
  return err;
}
