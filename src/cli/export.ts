import { CLIENT_ARG_HELP, CLIENT_ARG_OPTIONS } from '../client/connect.js';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { eventToJson } from '../app/eventlog/event-json.js';
import { command, out } from './log-args.js';
import { CliError, openSource, schemaVersionOf } from './log-source.js';
import { UsageError } from './usage-error.js';

export const EXPORT_HELP = `Usage: npx turboci export (--db FILE|URL | --server HOST:PORT) --workplan ID [--out FILE]

Writes a workplan's whole event stream as NDJSON (one event per line, the "npx turboci events --json" form), to move
the workplan to another server or to attach it to a bug report. "npx turboci import" reads it back into any database
and the workplan comes out identical: same versions, times, request ids, causes, principals and reasons, so
QueryNodes answers the same. Either end may be a SQLite file or a PostgreSQL URL: this is how workplans move
between them. Events are streamed, not loaded: a workplan of any size exports in constant memory.

Options:
  --db FILE|URL        the SQLite event log, opened read-only (safe while a server runs),  (default: $TURBOCI_DB)
                       or a PostgreSQL URL, postgres://USER[:PASSWORD]@HOST:5432/DBNAME
  --server HOST:PORT   read the events from a running server (TurboCIEventLog.ReadEvents)
${CLIENT_ARG_HELP}
  -w, --workplan ID    the workplan to export
  -o, --out FILE       write to FILE instead of stdout
  -h, --help           show this help

Examples:
  npx turboci export --db turboci.db -w 6ed53af4-... > workplan.ndjson
  npx turboci export --server ci-1:50051 -w 6ed53af4-... --out bug-1234.ndjson
  npx turboci export --db old.db -w 6ed53af4-... | npx turboci import --db new.db -
  npx turboci export --db ci.db -w 6ed53af4-... | npx turboci import --db postgres://turboci@db.internal:5432/turboci -`;

export const exportCommand = command(async (argv) => {
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string' },
      server: { type: 'string' },
      ...CLIENT_ARG_OPTIONS,
      workplan: { type: 'string', short: 'w' },
      out: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(EXPORT_HELP);
    return 0;
  }
  if (!values.workplan) throw new UsageError('--workplan ID is required');
  const source = openSource(values);
  const file = values.out === undefined ? undefined : createWriteStream(values.out);
  try {
    const { version } = await source.workPlan(values.workplan);
    const write = file
      ? async (line: string) => {
          if (!file.write(`${line}\n`)) await once(file, 'drain');
        }
      : out;
    let n = 0;
    // Up to the version seen now: a workplan still being written exports as a consistent prefix.
    for await (const rec of source.events({ workPlanId: values.workplan, toVersion: version })) {
      await write(JSON.stringify(eventToJson(rec, schemaVersionOf(rec.event.type))));
      n++;
    }
    if (n !== version) throw new CliError(`read ${n} events of workplan ${values.workplan}, expected ${version}`);
    if (file) console.error(`exported ${n} events of workplan ${values.workplan} (v${version}) to ${values.out}`);
    return 0;
  } finally {
    source.close();
    if (file) {
      file.end();
      await once(file, 'close');
    }
  }
});
