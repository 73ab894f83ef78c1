import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { StreamExists, type ImportedEvent } from '../app/event-store.js';
import type { EventJson } from '../app/eventlog/event-json.js';
import type { DomainEvent } from '../domain/events.js';
import { isValidId } from '../domain/ids.js';
import { decodeEvent } from '../infra/event-codec.js';
import { command } from './log-args.js';
import { logError, openLog, type LogStore } from './open-log.js';
import { CliError } from './log-source.js';
import { UsageError } from './usage-error.js';

export const IMPORT_HELP = `Usage: npx turboci import --db FILE|URL [--as ID] [EXPORT_FILE | -]

Reads a workplan exported by "npx turboci export" (NDJSON, from a file or stdin) and appends its events to the log
in FILE (created if missing) or in the PostgreSQL database at URL (its schema created if missing), with their
versions, times, request ids, causes, principals and reasons, so the workplan's state is identical to the
original. Export and import move workplans between SQLite and PostgreSQL, either way: global positions are
numbered anew after the target log's end, everything else is kept. Every event is decoded (older schema versions
through the upcasters) and validated first; the stream must be whole (versions 1, 2, 3, ... starting with
WorkPlanCreated). All of it is written in one transaction, or nothing is. A workplan that already exists in the
log is refused (use --as to import a copy).

A server keeps its read models in memory: import into a SQLite file no server is running on, then start (or
restart) the server on it. Servers on PostgreSQL fold what other processes commit, so they see an import there
at once. ("npx turboci verify --server" reports a workplan imported behind a server's back.)

Options:
  --db FILE|URL   the event log to import into: a SQLite file, or a PostgreSQL URL
                  postgres://USER[:PASSWORD]@HOST:5432/DBNAME             (default: $TURBOCI_DB)
  --as ID         import the workplan under this id instead of its own
  -h, --help      show this help

Examples:
  npx turboci import --db new.db workplan.ndjson
  npx turboci import --db repro.db --as bug-1234 bug-1234.ndjson && npx turboci serve --db repro.db
  npx turboci export --db old.db -w 6ed53af4-... | npx turboci import --db new.db -
  npx turboci export --db ci.db -w 6ed53af4-... | npx turboci import --db postgres://turboci@db:5432/turboci -`;

export const importCommand = command(async (argv) => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      db: { type: 'string' },
      as: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(IMPORT_HELP);
    return 0;
  }
  const dbPath = values.db ?? process.env.TURBOCI_DB;
  if (dbPath === undefined) throw new UsageError('--db FILE|URL is required');
  if (positionals.length > 1) throw new UsageError('give one export file (or - for stdin)');
  if (values.as !== undefined && !isValidId(values.as)) throw new UsageError(`--as: "${values.as}" is not a workplan id`);
  const inputName = positionals[0] ?? '-';
  const input = inputName === '-' ? process.stdin : createReadStream(inputName);
  const opened = new Promise<void>((resolve, reject) => {
    if (input === process.stdin) resolve();
    else input.once('open', () => resolve()).once('error', (err: Error) => reject(new CliError(`${inputName}: ${err.message}`)));
  });
  await opened;

  // Creates the file or the PostgreSQL schema when missing (WAL or migrations, append-only triggers).
  const log = openLog(dbPath, { applicationName: 'turboci import' });
  const store = log.store;
  const events: ImportedEvent[] = [];
  let streamId: string | undefined;
  let target = '';
  let expected = 1;
  try {
    let lineNo = 0;
    for await (const line of createInterface({ input, crlfDelay: Infinity })) {
      lineNo++;
      if (!line.trim()) continue;
      const where = `${inputName}:${lineNo}`;
      let e: EventJson;
      try {
        e = JSON.parse(line) as EventJson;
      } catch (err) {
        throw new CliError(`${where}: not JSON (${(err as Error).message})`);
      }
      if (typeof e.workPlanId !== 'string' || !e.workPlanId) throw new CliError(`${where}: no workPlanId`);
      if (streamId === undefined) {
        streamId = e.workPlanId;
        target = values.as ?? e.workPlanId;
        if (hasEvents(store, target)) throw streamExists(target, log.describe);
      } else if (e.workPlanId !== streamId) {
        throw new CliError(`${where}: event of workplan ${e.workPlanId} in an export of ${streamId}: one workplan per import`);
      }
      if (e.version !== expected) throw new CliError(`${where}: version ${e.version}, expected ${expected} (the stream must be whole and in order)`);
      if (expected === 1 && e.type !== 'WorkPlanCreated') throw new CliError(`${where}: a stream starts with WorkPlanCreated, not ${e.type}`);
      const recordedAt = Date.parse(e.recordedAt);
      if (!Number.isFinite(recordedAt)) throw new CliError(`${where}: recordedAt "${e.recordedAt}" is not a time`);
      const cause = e.causedByVersion ?? null;
      if (cause !== null && !(Number.isInteger(cause) && cause >= 1 && cause < e.version)) {
        throw new CliError(`${where}: causedByVersion ${cause} is not an earlier version`);
      }
      let event: DomainEvent;
      try {
        event = decodeEvent({ type: e.type, schema_version: e.schemaVersion, data: JSON.stringify(e.data ?? {}) });
      } catch (err) {
        throw new CliError(`${where}: ${e.type} v${e.version} is not a valid event: ${(err as Error).message.split('\n')[0]}`);
      }
      events.push({ version: e.version, recordedAt, causation: { requestId: e.requestId ?? null, causedByVersion: cause, principal: e.principal ?? null, reason: e.reason ?? null }, event });
      expected++;
    }
    if (streamId === undefined) throw new CliError(`${inputName}: no events`);
    try {
      store.importStream(target, events);
    } catch (err) {
      if (err instanceof StreamExists) throw streamExists(target, log.describe);
      throw err;
    }
  } catch (err) {
    throw logError(log, err);
  } finally {
    store.close();
  }
  console.log(`imported ${expected - 1} events: workplan ${target} at v${expected - 1} into ${log.describe}`);
  return 0;
});

const streamExists = (id: string, dbPath: string) =>
  new CliError(`workplan ${id} is already in ${dbPath}; import refuses to merge streams (use --as NEW_ID)`);

function hasEvents(store: LogStore, streamId: string): boolean {
  for (const _ of store.readStream(streamId, { toVersion: 1 })) return true; // leaving the loop closes the read
  return false;
}
