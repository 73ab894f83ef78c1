import { byWhom } from '../app/eventlog/explain.js';
import { CLIENT_ARG_HELP, CLIENT_ARG_OPTIONS } from '../client/connect.js';
import { parseArgs } from 'node:util';
import type { WorkPlanModel } from '../../projections/workplan-model.js';
import { describeChange, describeEvent } from '../app/eventlog/describe.js';
import { replayWorkPlan, type NodeSnapshot, type ReplayTarget } from '../app/eventlog/replay.js';
import { queryNodes } from '../app/queries.js';
import type { Check, DependencyGroup, Stage } from '../domain/model.js';
import { eventNode, type RecordedEvent } from '../domain/events.js';
import { GetWorkPlanAtResponse } from '../gen/turboci/v1/eventlog.js';
import { ALL_NODES } from '../transport/eventlog-service.js';
import { checkToProto, stageToProto, workPlanToProto } from '../transport/to-proto.js';
import { command, integer, iso, out, table, time } from './log-args.js';
import { CliError, DatabaseLog, openSource, ServerLog, type LogSource } from './log-source.js';
import { UsageError } from './usage-error.js';

export const REPLAY_HELP = `Usage: npx turboci replay (--db FILE|URL | --server HOST:PORT) --workplan ID [--at-version N | --at-time TIME] [--step] [--json]

Rebuilds a workplan from its events, through the same projections the server uses, as of a stream version or a
time (default: its latest version), and prints it: the header, every check with its state and results, every
stage with its state and attempts. --step also prints, for every event up to there, the change it made.

Options:
  --db FILE|URL        the SQLite event log, opened read-only, or a PostgreSQL URL (default: $TURBOCI_DB)
                       postgres://USER[:PASSWORD]@HOST:5432/DBNAME, read in read-only transactions
  --server HOST:PORT   a running server (TurboCIEventLog.GetWorkPlanAt; --step reads the events)
${CLIENT_ARG_HELP}
  -w, --workplan ID    the workplan
  --all                every workplan in the log (--db only; not with --at-version or --step)
  --at-version N       as of stream version N
  --at-time TIME       as of the last event recorded at or before TIME (ISO 8601 or epoch ms)
  --step               print each event and the fields it changed ("state: PLANNED → WAITING")
  --from-version N     with --step: start printing at version N (the state before it is still folded)
  --json               one JSON object per workplan per line: {"workPlan", "checks", "stages"}, in the proto JSON
                       mapping, exactly as QueryNodes would have answered at that version; with --step, one
                       JSON object per event first ({"version", "type", "node", "changes"})
  -h, --help           show this help

Examples:
  npx turboci replay --db turboci.db -w 6ed53af4-...
  npx turboci replay --db turboci.db -w 6ed53af4-... --at-version 12
  npx turboci replay --db postgres://turboci@db.internal:5432/turboci -w 6ed53af4-... --step
  npx turboci replay --db turboci.db -w 6ed53af4-... --at-time 2025-01-31T12:00:00Z --json
  npx turboci replay --db turboci.db -w 6ed53af4-... --step --from-version 8 --at-version 15
  npx turboci replay --db turboci.db --all --json > snapshot.ndjson     # a snapshot for "npx turboci verify --snapshot"
  npx turboci replay --server 127.0.0.1:50051 -w 6ed53af4-... --at-version 3`;

export const replay = command(async (argv) => {
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string' },
      server: { type: 'string' },
      ...CLIENT_ARG_OPTIONS,
      workplan: { type: 'string', short: 'w' },
      all: { type: 'boolean' },
      'at-version': { type: 'string' },
      'at-time': { type: 'string' },
      step: { type: 'boolean' },
      'from-version': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(REPLAY_HELP);
    return 0;
  }
  const target: ReplayTarget = { version: integer('--at-version', values['at-version'], 1), at: time('--at-time', values['at-time']) };
  if (target.version !== undefined && target.at !== undefined) throw new UsageError('give --at-version or --at-time, not both');
  const from = integer('--from-version', values['from-version'], 1) ?? 1;
  if (values['from-version'] !== undefined && !values.step) throw new UsageError('--from-version goes with --step');
  if (values.all && (values.workplan || values.step || target.version !== undefined)) {
    throw new UsageError('--all replays every workplan: not with --workplan, --step or --at-version');
  }
  if (!values.all && !values.workplan) throw new UsageError('--workplan ID (or --all) is required');
  const source = openSource(values);
  try {
    if (values.all) {
      if (!(source instanceof DatabaseLog)) throw new UsageError('--all needs --db');
      for (const wp of source.workPlans()) {
        const model = await replayWorkPlan(source.eventsSync({ workPlanId: wp.id }), wp.id, target);
        if (model) await print(model, wp.version, values.json ?? false);
      }
      return 0;
    }
    const id = values.workplan!;
    const current = (await source.workPlan(id)).version;
    if (target.version !== undefined && target.version > current) throw new CliError(`workplan ${id} is at version ${current}, not ${target.version}`);
    if (source instanceof ServerLog && !values.step) {
      const res = await source.workPlanAt(id, target);
      if (values.json) await out(JSON.stringify(GetWorkPlanAtResponse.toJSON(res)));
      else await out(`(from ${source.describe}; --json for every field)\n${JSON.stringify(GetWorkPlanAtResponse.toJSON(res), null, 2)}`);
      return 0;
    }
    const model = await replayWorkPlan(source.events({ workPlanId: id, toVersion: target.version }), id, target, values.step ? step(from, values.json ?? false) : undefined);
    if (!model) throw new CliError(`workplan ${id} did not exist yet at ${iso(target.at ?? 0)}`);
    await print(model, current, values.json ?? false);
    return 0;
  } finally {
    (source as LogSource).close();
  }
});

function step(from: number, json: boolean) {
  return async (rec: RecordedEvent, before: NodeSnapshot | undefined, after: NodeSnapshot | undefined): Promise<void> => {
    if (rec.version < from) return;
    const node = eventNode(rec.event);
    const changes = describeChange(before, after);
    if (json) {
      const { causedByVersion, requestId } = rec.causation;
      const principal = rec.causation.principal ?? null;
      const reason = rec.causation.reason ?? null;
      const line = { version: rec.version, type: rec.event.type, node: node ? `${node.kind}:${node.id}` : null, recordedAt: iso(rec.recordedAt), requestId, causedByVersion, principal, reason, changes };
      await out(JSON.stringify(line));
      return;
    }
    const cause = rec.causation.causedByVersion === null ? `request ${rec.causation.requestId ?? '-'}` : `caused by v${rec.causation.causedByVersion}`;
    await out(`v${rec.version}  ${iso(rec.recordedAt)}  ${rec.event.type}  ${describeEvent(rec.event)}  (${cause}${byWhom(rec.causation.principal, rec.causation.reason)})`);
    for (const c of changes) await out(`      ${c}`);
  };
}

/** The state in the proto JSON mapping: what QueryNodes answered at that version. */
export function stateJson(model: WorkPlanModel): { workPlan: unknown; checks: unknown[]; stages: unknown[] } {
  const id = model.meta.id;
  const page = queryNodes(model, ALL_NODES);
  return GetWorkPlanAtResponse.toJSON({
    workPlan: workPlanToProto(model.meta),
    checks: page.checks.map((c) => checkToProto(id, c)),
    stages: page.stages.map((s) => stageToProto(id, s)),
  }) as { workPlan: unknown; checks: unknown[]; stages: unknown[] };
}

async function print(model: WorkPlanModel, current: number, json: boolean): Promise<void> {
  if (json) {
    await out(JSON.stringify(stateJson(model)));
    return;
  }
  const m = model.meta;
  const meta = Object.entries(m.metadata).map(([k, v]) => `${k}=${v}`).join(' ');
  await out(`workplan ${m.id} at v${m.version} of ${current} (last event ${iso(m.updatedAt)})${meta ? `\n  metadata: ${meta}` : ''}`);
  const checks = [...model.checks.values()];
  const stages = [...model.stages.values()];
  if (checks.length) await out(`\n${table(['CHECK', 'STATE', 'KIND', 'DEPENDS ON', 'RESULTS'], checks.map(checkRow))}`);
  if (stages.length) await out(`\n${table(['STAGE', 'STATE', 'ATTEMPTS', 'DEPENDS ON', 'ASSIGNED', 'FAILURE'], stages.map(stageRow))}`);
  if (!checks.length && !stages.length) await out('  (no nodes)');
}

function deps(n: Check | Stage): string {
  const g = n.dependencies;
  if (!g || (g.edges.length === 0 && !g.groups?.length)) return '';
  return group(g);
}

/** `AND check:a, (OR check:b, check:c)`: nested groups in parentheses. */
function group(g: DependencyGroup): string {
  const rule = g.threshold > 0 ? `${g.threshold} of` : g.predicate;
  const members = [...g.edges.map((e) => `${e.kind}:${e.id}`), ...(g.groups ?? []).map((sub) => `(${group(sub)})`)];
  return `${rule} ${members.join(', ')}`;
}

function checkRow(c: Check): string[] {
  const results = c.results
    .map((r) => `#${r.id} by ${r.ownerType || '?'}:${r.ownerId || '?'}${r.finalizedAt !== null ? ' finalized' : ''}${r.failure ? ` failure "${r.failure.message}"` : ''}`)
    .join('; ');
  return [c.id, c.state, c.kind, deps(c), results];
}

function stageRow(s: Stage): string[] {
  const attempts = s.attempts
    .map((a) => `${a.idx} ${a.state}${a.processUid ? ` (${a.processUid})` : ''}${a.failure ? ` "${a.failure.message}"` : ''}`)
    .join('; ');
  return [s.id, s.state, `${attempts || '-'} [max ${s.maxAttempts}]`, deps(s), s.assignments.map((a) => a.checkId).join(', '), s.failure?.message ?? ''];
}
