import { existsSync, renameSync, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { checkHashChain } from '../infra/hash-chain.js';
import { checkDatabaseDirectory, databaseError, FatalError } from './fatal.js';
import { refusePostgres } from './open-log.js';
import { UsageError } from './usage-error.js';

export const BACKUP_HELP = `Usage: npx turboci backup --db FILE --out FILE

Takes a consistent copy of the event log in FILE while a server may be running on it and writing (SQLite's
online backup API, one read snapshot: the copy holds every event committed when it started, none half-written).
The copy is written next to --out and renamed into place when complete, then checked (SQLite's quick_check and
the hash chain). --out must not exist.

Restore (the server stopped):
  mv /var/lib/turboci/ci.db /var/lib/turboci/ci.db.damaged          # keep what was there
  rm -f /var/lib/turboci/ci.db-wal /var/lib/turboci/ci.db-shm       # the old file's WAL must not be applied to the copy
  cp ci-backup.db /var/lib/turboci/ci.db
  npx turboci verify --db /var/lib/turboci/ci.db
  npx turboci serve --db /var/lib/turboci/ci.db --accept-data-loss  # the copy ends before what the server last
                                                                    # committed: it says how many events are missing

Options:
  --db FILE    the SQLite event log to copy                     (default: $TURBOCI_DB)
               (a PostgreSQL URL is refused: back it up with pg_dump, see docs/operations.md)
  --out FILE   where to write the copy (must not exist)
  -h, --help   show this help

Examples:
  npx turboci backup --db /var/lib/turboci/ci.db --out /backups/ci-$(date +%F).db`;

export async function backup(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(BACKUP_HELP);
    return 0;
  }
  const dbPath = values.db ?? process.env.TURBOCI_DB;
  if (dbPath === undefined) throw new UsageError('--db FILE is required');
  refusePostgres(dbPath, 'backup', 'use pg_dump (e.g. pg_dump --format=custom --file=turboci.dump URL; docs/operations.md)');
  const out = values.out;
  if (out === undefined) throw new UsageError('--out FILE is required');
  if (!existsSync(dbPath)) throw new FatalError(`${dbPath}: no such database file`);
  if (existsSync(out)) throw new FatalError(`${out} exists; backup writes a new file (remove it, or choose another --out)`);
  checkDatabaseDirectory(out);
  const tmp = `${out}.partial`;
  rmSync(tmp, { force: true });
  let source: Database.Database | undefined;
  try {
    source = new Database(dbPath, { readonly: true, fileMustExist: true });
    source.pragma('busy_timeout = 5000');
    source.prepare('SELECT 1 FROM events LIMIT 1').get();
    // Every remaining page in one step: one read snapshot, so writes by a running server cannot restart the copy.
    await source.backup(tmp, { progress: () => 0x7fffffff });
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = databaseError(dbPath, err);
    if (e instanceof FatalError) throw e;
    throw new FatalError(`cannot back up ${dbPath} to ${out}: ${(err as Error).message}`);
  } finally {
    source?.close();
  }
  const copy = new Database(tmp, { readonly: true, fileMustExist: true });
  try {
    const check = copy.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new FatalError(`the copy ${tmp} fails SQLite's quick_check: ${String(check)}`);
    const chain = checkHashChain(copy);
    if (chain.breaks.length) throw new FatalError(`the copy ${tmp} has a broken hash chain: ${chain.breaks[0]!.detail}`);
    const last = (copy.prepare('SELECT COALESCE(MAX(position), 0) AS p FROM events').get() as { p: number }).p;
    copy.close();
    renameSync(tmp, out);
    console.log(`backed up ${chain.events} events (up to position ${last}) from ${dbPath} to ${out}`);
    return 0;
  } finally {
    if (copy.open) copy.close();
  }
}
