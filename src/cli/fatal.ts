// Why a command cannot run, for an operator: one line naming the path or port and the cause; main prints it on
// stderr as "turboci: ..." and exits 1. No stack: the cause is outside the program, and a restart will not help.
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DatabaseInUse } from '../infra/owner-lock.js';

export class FatalError extends Error {
  override name = 'FatalError';
}

/** The directory a database file goes in must exist (SQLite creates the file, not its directory). */
export function checkDatabaseDirectory(dbPath: string): void {
  const dir = dirname(resolve(dbPath));
  if (!existsSync(dir)) throw new FatalError(`cannot open the event log ${dbPath}: directory ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new FatalError(`cannot open the event log ${dbPath}: ${dir} is not a directory`);
  if (existsSync(dbPath) && statSync(dbPath).isDirectory()) throw new FatalError(`cannot open the event log ${dbPath}: it is a directory`);
}

/** An error opening or reading a database file, as one line; other errors are returned unchanged. */
export function databaseError(dbPath: string, err: unknown): unknown {
  if (err instanceof FatalError) return err;
  if (err instanceof DatabaseInUse) return new FatalError(err.message);
  const code = String((err as { code?: unknown }).code ?? '');
  const message = (err as Error).message ?? String(err);
  if (code.startsWith('SQLITE_READONLY') || /readonly|read-only/i.test(message)) {
    return new FatalError(`cannot write the event log ${dbPath}: the file or its file system is read-only (${message})`);
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return new FatalError(`cannot open the event log ${dbPath}: ${message} (is the directory writable? is the file system read-only?)`);
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new FatalError(`the event log ${dbPath} is damaged: ${message}; restore it from a backup (see "turboci backup --help")`);
  }
  if (code === 'SQLITE_FULL') return new FatalError(`cannot write the event log ${dbPath}: ${message}; free some space and start again`);
  if (code.startsWith('SQLITE_IOERR')) return new FatalError(`cannot read or write the event log ${dbPath}: I/O error (${message})`);
  if (code.startsWith('SQLITE_')) return new FatalError(`the event log ${dbPath}: ${message} (${code})`);
  return err;
}

/**
 * An error opening a PostgreSQL log, as one line naming the URL (without its password) and the cause: unreachable,
 * refused, no such database, no permission, a schema from a newer version.
 */
export function postgresError(describe: string, err: unknown): FatalError {
  if (err instanceof FatalError) return err;
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const code = e.code ?? '';
  const why =
    code === 'ERR_INVALID_URL' ? 'not a valid URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME)'
    : code === '3D000' ? `${message} (create it, or name another database in the URL)`
    : code === '42501' ? `permission denied: ${message} (${privilegeHint(message)})`
    : code === '28P01' || code === '28000' ? `authentication failed: ${message}`
    : /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|timeout/i.test(message) ? `cannot connect: ${message} (is PostgreSQL running there?)`
    : message;
  return new FatalError(`the event log ${describe}: ${why}`);
}

/** Which grant the role lacks, from PostgreSQL's "permission denied for <object>". */
function privilegeHint(message: string): string {
  if (/for database/i.test(message)) return 'the role needs CONNECT on the database';
  if (/for table/i.test(message)) return 'the role needs SELECT on turboci_events and turboci_schema_migrations, and INSERT on turboci_events to write';
  return 'the role needs CREATE on the schema to make the tables, then SELECT and INSERT; see docs/operations.md';
}

/** A failed bind, as one line naming the address. */
export function listenError(host: string, port: number, err: unknown): unknown {
  const message = (err as Error).message ?? String(err);
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (/EADDRINUSE/.test(message)) return new FatalError(`cannot listen on ${address}: the port is in use by another process`);
  if (/EADDRNOTAVAIL/.test(message)) return new FatalError(`cannot listen on ${address}: no such address on this machine`);
  if (/EACCES/.test(message)) return new FatalError(`cannot listen on ${address}: permission denied (ports below 1024 need privileges)`);
  if (/No address added/.test(message)) return new FatalError(`cannot listen on ${address}: ${message.replace(/^No address added out of total \d+ resolved errors: /, '')}`);
  return err;
}
