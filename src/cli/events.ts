import { byWhom } from '../app/eventlog/explain.js';
import { CLIENT_ARG_HELP, CLIENT_ARG_OPTIONS } from '../client/connect.js';
import { parseArgs } from 'node:util';
import type { EventFilter } from '../app/event-filter.js';
import { describeEvent } from '../app/eventlog/describe.js';
import { eventToJson } from '../app/eventlog/event-json.js';
import { UsageError } from './usage-error.js';
import { eventNode } from '../domain/events.js';
import { command, integer, iso, list, out, pad, time } from './log-args.js';
import { openSource, schemaVersionOf } from './log-source.js';

export const EVENTS_HELP = `Usage: npx turboci events (--db FILE|URL | --server HOST:PORT) [filters] [--json]

Lists events from the log, oldest first: an aligned table, or one JSON object per line (NDJSON) with --json.
--db opens the file read-only (safe while a server runs on it), or reads a PostgreSQL log in read-only
transactions; --server reads one workplan's events over gRPC (TurboCIEventLog.ReadEvents) and needs --workplan.
Filters combine with AND.

Options:
  --db FILE|URL          the SQLite event log, or a PostgreSQL URL         (default: $TURBOCI_DB)
                         postgres://USER[:PASSWORD]@HOST:5432/DBNAME
  --server HOST:PORT     a running server instead of a file
${CLIENT_ARG_HELP}
  -w, --workplan ID      only this workplan's events (stream order)
  -n, --node ID          only events about this node: "c1", "check:c1" or "stage:s1"
  -t, --type TYPE        only these event types; repeat or comma-separate (e.g. CheckStateChanged)
  --from-version N       stream versions from N ...
  --to-version N         ... up to N (inclusive)
  --from-position N      global log positions from N ... (--db only)
  --to-position N        ... up to N (inclusive)
  --since TIME           recorded at or after TIME (ISO 8601 or epoch ms)
  --until TIME           recorded at or before TIME
  --limit N              stop after N events
  --json                 NDJSON: position, workPlanId, version, type, schemaVersion, recordedAt, requestId,
                         causedByVersion, data (and storedSchemaVersion for rows upcast from an older version)
  -h, --help             show this help

Columns: POS (global position), VER (stream version), CAUSE (the version of the event the resolver reacted to;
empty for what a client wrote), REQUEST (the client request that carried it).

Examples:
  npx turboci events --db turboci.db
  npx turboci events --db turboci.db -w 6ed53af4-... --node check:build
  npx turboci events --db turboci.db --type CheckStateChanged,StageStateChanged --since 2025-01-31T12:00:00Z
  npx turboci events --db postgres://turboci@db.internal:5432/turboci -w 6ed53af4-...
  npx turboci events --db turboci.db -w 6ed53af4-... --from-version 10 --to-version 20 --json | jq .data
  npx turboci events --server 127.0.0.1:50051 -w 6ed53af4-... --type StageAttemptStateChanged`;

export const events = command(async (argv) => {
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string' },
      server: { type: 'string' },
      ...CLIENT_ARG_OPTIONS,
      workplan: { type: 'string', short: 'w' },
      node: { type: 'string', short: 'n' },
      type: { type: 'string', short: 't', multiple: true },
      'from-version': { type: 'string' },
      'to-version': { type: 'string' },
      'from-position': { type: 'string' },
      'to-position': { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(EVENTS_HELP);
    return 0;
  }
  const filter: EventFilter = {
    workPlanId: values.workplan,
    node: values.node,
    types: list(values.type),
    fromVersion: integer('--from-version', values['from-version'], 1),
    toVersion: integer('--to-version', values['to-version'], 1),
    fromPosition: integer('--from-position', values['from-position'], 1),
    toPosition: integer('--to-position', values['to-position'], 1),
    since: time('--since', values.since),
    until: time('--until', values.until),
  };
  const limit = integer('--limit', values.limit, 1) ?? Infinity;
  // Usage errors come before any output (the table header included).
  if (values.server !== undefined && filter.workPlanId === undefined) throw new UsageError('--workplan is required with --server');
  if (values.server !== undefined && (filter.fromPosition !== undefined || filter.toPosition !== undefined)) {
    throw new UsageError('--from-position/--to-position need --db');
  }
  const source = openSource(values);
  try {
    if (filter.workPlanId !== undefined) await source.workPlan(filter.workPlanId);
    const oneWorkPlan = filter.workPlanId !== undefined;
    const widths = oneWorkPlan ? [7, 5, 24, 28, 18, 5, 14] : [7, 36, 5, 24, 28, 18, 5, 14];
    if (!values.json) {
      const header = ['POS', 'WORKPLAN', 'VER', 'RECORDED', 'TYPE', 'NODE', 'CAUSE', 'REQUEST', 'WHAT'];
      await out(pad(oneWorkPlan ? header.filter((h) => h !== 'WORKPLAN') : header, widths));
    }
    let n = 0;
    for await (const rec of source.events(filter)) {
      if (n++ >= limit) break;
      if (values.json) {
        await out(JSON.stringify(eventToJson(rec, schemaVersionOf(rec.event.type))));
        continue;
      }
      const node = eventNode(rec.event);
      const cells = [
        String(rec.position),
        rec.streamId,
        String(rec.version),
        iso(rec.recordedAt),
        rec.event.type,
        node ? `${node.kind}:${node.id}` : '',
        rec.causation.causedByVersion === null ? '' : `v${rec.causation.causedByVersion}`,
        requestCell(rec.causation.requestId),
        describeEvent(rec.event) + byWhom(rec.causation.principal, rec.causation.reason),
      ];
      await out(pad(oneWorkPlan ? cells.filter((_, i) => i !== 1) : cells, widths));
    }
    if (!values.json && n === 0) console.error('(no events match)');
    return 0;
  } finally {
    source.close();
  }
});

/** The request id as it is (no JSON quotes; empty when there is none), cut to 40 characters. */
function requestCell(requestId: string | null): string {
  if (!requestId) return '';
  return requestId.length > 40 ? `${requestId.slice(0, 39)}…` : requestId;
}
