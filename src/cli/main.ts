import { backup } from './backup.js';
import { approveCommand } from './approve.js';
import { events } from './events.js';
import { FatalError } from './fatal.js';
import { explain } from './explain.js';
import { exportCommand } from './export.js';
import { importCommand } from './import.js';
import { replay } from './replay.js';
import { runner } from './runner.js';
import { serve } from './serve.js';
import { snapshotCommand } from './snapshot.js';
import { token } from './token.js';
import { verify } from './verify.js';
import { UsageError } from './usage-error.js';

const HELP = `Usage: npx turboci <command> [options]

TurboCI-Lite: an event-sourced CI workflow orchestrator (checks, stages, dependencies) served over gRPC.

Commands:
  serve     start the gRPC server on a SQLite event log or a PostgreSQL database (postgres://...)
  runner    a pull runner agent: leases attempts of its runner type and runs their args.command
  approve   approve or reject an approval gate (a check written with approval_gate)
  token     create, list and revoke API tokens (for serve --auth on)

Event log tools (--db FILE or --db postgres://URL, read-only, safe while servers run; most also take --server):
  events    list events, filtered by workplan, node, type, version, position or time (table or NDJSON)
  replay    rebuild a workplan as of a version or a time; --step shows the change each event made
  explain   a node's history and, for every transition, the chain of causes back to a client request
  verify    replay the whole log and compare with a server's read models or a snapshot; exit 1 on a difference
  export    write a workplan's events as NDJSON (move it to another server, attach it to a bug report)
  import    append an exported workplan to a database, identical to the original
  snapshot  write the read-model snapshot of a SQLite file now, so that a start replays only the log after it
  backup    a consistent copy of a SQLite file, taken while a server runs on it (PostgreSQL: pg_dump)

Run "npx turboci <command> --help" for a command's options and examples.`;

export const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  serve,
  runner,
  approve: approveCommand,
  token,
  events,
  replay,
  explain,
  verify,
  export: exportCommand,
  import: importCommand,
  snapshot: snapshotCommand,
  backup,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP);
    return command ? 0 : 2;
  }
  const run = COMMANDS[command];
  try {
    if (!run) throw new UsageError(`unknown command "${command}"`);
    return await run(rest);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`turboci: ${(err as Error).message}\nRun "npx turboci ${run ? `${command} ` : ''}--help" for usage.`);
      return 2;
    }
    if (err instanceof FatalError) {
      console.error(`turboci: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
