import { CLIENT_ARG_HELP, CLIENT_ARG_OPTIONS } from '../client/connect.js';
import { parseArgs } from 'node:util';
import { explainNode } from '../app/eventlog/explain.js';
import { command, integer, out } from './log-args.js';
import { CliError, openSource } from './log-source.js';
import { UsageError } from './usage-error.js';

export const EXPLAIN_HELP = `Usage: npx turboci explain (--db FILE|URL | --server HOST:PORT) --workplan ID [--node] NODE [--at-version N] [--json]

Explains a node: its history (every event about it and the fields each changed) and, for every transition, the
chain of events that caused it back to the client request that started it. The resolver records which event it
reacted to (causedByVersion) and every event carries the request id of the write it was part of, so the chain is
read from the log, not guessed:

  stage deploy went ATTEMPTING at v15 because check build went FINAL at v14, because stage compile went FINAL
  at v13, written by request r-42

Options:
  --db FILE|URL        the SQLite event log, opened read-only, or a PostgreSQL URL (default: $TURBOCI_DB)
                       postgres://USER[:PASSWORD]@HOST:5432/DBNAME, read in read-only transactions
  --server HOST:PORT   a running server (reads the events with TurboCIEventLog.ReadEvents)
${CLIENT_ARG_HELP}
  -w, --workplan ID    the workplan
  -n, --node NODE      the node: "build", "check:build" or "stage:compile" (or give it as the last argument)
  --at-version N       explain the node as of stream version N
  --json               one JSON document: {workPlanId, node, version, current, history: [{version, type,
                       summary, changes, causedBy: [{version, type, summary, requestId}], because}]}
  -h, --help           show this help

Examples:
  npx turboci explain --db turboci.db -w 6ed53af4-... check:build
  npx turboci explain --db turboci.db -w 6ed53af4-... --node deploy --at-version 15
  npx turboci explain --db postgres://turboci@db.internal:5432/turboci -w 6ed53af4-... check:build
  npx turboci explain --server 127.0.0.1:50051 -w 6ed53af4-... stage:compile --json | jq '.history[].because'`;

export const explain = command(async (argv) => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      db: { type: 'string' },
      server: { type: 'string' },
      ...CLIENT_ARG_OPTIONS,
      workplan: { type: 'string', short: 'w' },
      node: { type: 'string', short: 'n' },
      'at-version': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(EXPLAIN_HELP);
    return 0;
  }
  if (positionals.length > 1 || (positionals.length === 1 && values.node)) throw new UsageError('give one node');
  const node = values.node ?? positionals[0];
  if (!node) throw new UsageError('which node? give --node NODE (e.g. check:build)');
  if (!values.workplan) throw new UsageError('--workplan ID is required');
  const atVersion = integer('--at-version', values['at-version'], 1);
  const source = openSource(values);
  try {
    const current = (await source.workPlan(values.workplan)).version;
    if (atVersion !== undefined && atVersion > current) throw new CliError(`workplan ${values.workplan} is at version ${current}, not ${atVersion}`);
    const x = await explainNode(source.events({ workPlanId: values.workplan, toVersion: atVersion }), values.workplan, node);
    if (!x || x.history.length === 0) throw new CliError(`no node "${node}" in workplan ${values.workplan}${atVersion ? ` at v${atVersion}` : ''}`);
    if (values.json) {
      await out(JSON.stringify(x));
      return 0;
    }
    const n = x.current;
    const now = n ? `${n.state}` : 'not created';
    await out(`${x.node.kind} ${x.node.id} in workplan ${x.workPlanId}, at v${x.version}: ${now}`);
    if (n && 'results' in n) for (const r of n.results) await out(`  result #${r.id} by ${r.ownerType}:${r.ownerId}${r.finalizedAt !== null ? ' (finalized)' : ''}${r.failure ? `, failure "${r.failure.message}"` : ''}`);
    if (n && 'attempts' in n) {
      for (const a of n.attempts) await out(`  attempt ${a.idx}: ${a.state}${a.processUid ? ` (process ${a.processUid})` : ''}${a.failure ? `, failure "${a.failure.message}"` : ''}`);
      if (n.failure) await out(`  failure: ${n.failure.message}`);
    }
    await out('\nHistory (oldest first):');
    for (const h of x.history) {
      await out(`\nv${h.version}  ${h.recordedAt}  ${h.type}  (position ${h.position})`);
      await out(`  ${h.because}`);
      if (h.satisfiedBy) await out(`  ${h.satisfiedBy}`);
      for (const c of h.changes) await out(`    ${c}`);
    }
    return 0;
  } finally {
    source.close();
  }
});
