import { FatalError } from './fatal.js';
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

type Command = (argv: string[]) => Promise<number>;

/**
 * Each command's module is loaded when that command runs: the server's modules (gRPC, SQLite, zod, RxJS) take
 * ~0.5 s to load, and `turboci --help`, `token` or `approve` need most of them not at all.
 */
export const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./serve.js')).serve,
  runner: async () => (await import('./runner.js')).runner,
  approve: async () => (await import('./approve.js')).approveCommand,
  token: async () => (await import('./token.js')).token,
  events: async () => (await import('./events.js')).events,
  replay: async () => (await import('./replay.js')).replay,
  explain: async () => (await import('./explain.js')).explain,
  verify: async () => (await import('./verify.js')).verify,
  export: async () => (await import('./export.js')).exportCommand,
  import: async () => (await import('./import.js')).importCommand,
  snapshot: async () => (await import('./snapshot.js')).snapshotCommand,
  backup: async () => (await import('./backup.js')).backup,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP);
    return command ? 0 : 2;
  }
  const load = COMMANDS[command];
  try {
    if (!load) throw new UsageError(`unknown command "${command}"`);
    return await (await load())(rest);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`turboci: ${(err as Error).message}\nRun "npx turboci ${load ? `${command} ` : ''}--help" for usage.`);
      return 2;
    }
    if (err instanceof FatalError) {
      console.error(`turboci: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
