import { CLIENT_ARG_HELP, CLIENT_ARG_OPTIONS, connectOptionsFrom } from '../client/connect.js';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ReadModels } from '../../projections/read-models.js';
import type { WorkPlanModel } from '../../projections/workplan-model.js';
import { canonicalJson, digestReadModel, jsonDifferences } from '../app/eventlog/digest.js';
import { replayWorkPlan } from '../app/eventlog/replay.js';
import { readSnapshot as readModelSnapshot, snapshotPathFor } from '../infra/snapshot-file.js';
import { command, out } from './log-args.js';
import { CliError, DatabaseLog, ServerLog } from './log-source.js';
import { isPostgresUrl, logError } from './open-log.js';
import { PostgresEventStore } from '../infra/pg/postgres-event-store.js';
import { readCommitMarker } from '../infra/commit-marker.js';
import { FatalError } from './fatal.js';
import { stateJson } from './replay.js';
import { postgresStorageDifferences, storageDifferences } from './verify-storage.js';
import { UsageError } from './usage-error.js';

export const VERIFY_HELP = `Usage: npx turboci verify --db FILE|URL [--server HOST:PORT] [--snapshot FILE]... [--progress] [--json]

Replays the whole log through the projections (the code the server folds read models with) and checks it:

  - every event decodes (through the upcasters) and validates, stream versions are gap-free, and every event
    folds (no event about an unknown node, attempt or workplan);
  - the hash chain: each event's stored hash matches its content and the hash of the event before it in its
    stream (an event changed or replaced in the middle of a stream is a break; events written before hash
    chains have no stored hash: their chain is computed, and the first hashed event must continue it);
  - the commit marker FILE.position (SQLite only; written by the server after every commit): a log that ends before the
    position it names has lost events from its end (a truncated or damaged WAL or database file);
  - with --server: the running server's in-memory read models equal the replay. The server answers a sha256 of
    each workplan's canonical read model (TurboCIEventLog.GetReadModelDigest: nodes, dependency indexes, request
    ids); each is compared with the replay at the same version, so a server that keeps writing is not a
    difference. A workplan the server does not hold, or holds behind the log (events written behind its back),
    is one. For a mismatch the server's state is fetched and the differing fields are shown.
  - the read-model snapshot beside the log (SQLite only; FILE.snapshot, written by "npx turboci serve" and "npx turboci
    snapshot"), when there is one: every projection it holds equals the replay at its position. One the server
    would ignore (damaged, of another schema) is reported on stderr, not as a difference: a start replays the whole
    log then.
  - with --snapshot: a persisted projection, as written by "npx turboci replay --json" (one workplan per line, each
    at its own version), equals the replay at that version.

Any difference is reported and the exit status is 1; 0 means everything matched. A progress bar goes to stderr
on a terminal for logs of 10000 events or more (--progress forces it, --no-progress hides it).

Options:
  --db FILE|URL        the SQLite event log, opened read-only, or a PostgreSQL URL (default: $TURBOCI_DB)
                       postgres://USER[:PASSWORD]@HOST:5432/DBNAME, read in read-only transactions
  --server HOST:PORT   compare with this running server's read models
${CLIENT_ARG_HELP}
  --snapshot FILE      compare with this snapshot (NDJSON from "npx turboci replay --json"); repeatable
  --progress           always show the progress bar; --no-progress: never
  --json               one JSON document: {events, workplans, compared, differences: [{workPlanId, against,
                       version, details}], ok}
  -h, --help           show this help

Examples:
  npx turboci verify --db turboci.db
  npx turboci verify --db /var/lib/turboci/ci.db --server 127.0.0.1:50051
  npx turboci verify --db postgres://turboci@db.internal:5432/turboci --server ci-1:50051
  npx turboci replay --db turboci.db --all --json > snapshot.ndjson && npx turboci verify --db turboci.db --snapshot snapshot.ndjson`;

interface Difference {
  readonly workPlanId: string;
  readonly against: string;
  readonly version: number | null;
  readonly details: string[];
}

interface SnapshotEntry {
  readonly file: string;
  readonly line: number;
  readonly id: string;
  readonly version: number;
  readonly state: unknown;
}

export const verify = command(async (argv) => {
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string' },
      server: { type: 'string' },
      ...CLIENT_ARG_OPTIONS,
      snapshot: { type: 'string', multiple: true },
      progress: { type: 'boolean' },
      'no-progress': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(VERIFY_HELP);
    return 0;
  }
  const dbPath = values.db ?? process.env.TURBOCI_DB;
  if (dbPath === undefined) throw new UsageError('--db FILE|URL is required: verify replays a log');
  const snapshots = (values.snapshot ?? []).flatMap(readSnapshot);
  // A PostgreSQL log has neither a commit marker nor a snapshot file beside it (see verify-storage.ts).
  const postgres = isPostgresUrl(dbPath);
  const marker = postgres ? null : readCommitMarker(dbPath); // before the log is read: the log then holds at least this much
  const file = new DatabaseLog(dbPath);
  const storage = () => {
    try {
      return file.store instanceof PostgresEventStore ? postgresStorageDifferences(file.store) : storageDifferences(dbPath, marker);
    } catch (err) {
      throw logError(file, err);
    }
  };
  const server = values.server === undefined ? undefined : new ServerLog(values.server, connectOptionsFrom(values));
  const differences: Difference[] = [];
  let compared = 0;
  try {
    // 1. What the server holds, asked before the log is read: the log then has at least those versions.
    const first = server ? new Map((await server.digests([], false)).digests.map((d) => [d.workPlanId, d])) : new Map();

    // 2. One pass over the whole log, capturing each workplan's state at the versions to compare.
    const captures = new Map<string, Map<number, (m: WorkPlanModel) => void>>();
    const capture = (id: string, version: number, take: (m: WorkPlanModel) => void) => {
      let at = captures.get(id);
      if (!at) captures.set(id, (at = new Map()));
      const prev = at.get(version);
      at.set(version, prev ? (m) => (prev(m), take(m)) : take);
    };
    const atServer = new Map<string, string>();
    for (const [id, d] of first) capture(id, d.version, (m) => atServer.set(id, digestReadModel(m).sha256));
    const atSnapshot = new Map<SnapshotEntry, string>();
    for (const s of snapshots) capture(s.id, s.version, (m) => atSnapshot.set(s, canonicalJson(stateJson(m))));

    // The read-model snapshot: every projection compared with the replay when it reaches the snapshot's position.
    const modelSnapshot = postgres ? ({ kind: 'missing' } as ReturnType<typeof readModelSnapshot>) : readModelSnapshot(snapshotPathFor(dbPath));
    if (modelSnapshot.kind === 'unusable') console.error(`turboci: warning: ${modelSnapshot.why}; a server would ignore it and replay the whole log`);
    const saved = modelSnapshot.kind === 'ok' ? { header: modelSnapshot.header, models: ReadModels.restore(modelSnapshot.state as Parameters<typeof ReadModels.restore>[0]) } : undefined;
    let snapshotCompared = false;

    const total = file.count();
    const bar = progressBar(total, values.progress ?? (!values['no-progress'] && process.stderr.isTTY === true && total >= 10_000));
    const models = new ReplayState();
    let n = 0;
    try {
      for (const rec of file.eventsSync({})) {
        const gap = models.apply(rec);
        if (gap) differences.push({ workPlanId: rec.streamId, against: 'log', version: rec.version, details: [gap] });
        if (saved && rec.position === saved.header.position && rec.streamId === saved.header.streamId && rec.version === saved.header.version) {
          snapshotCompared = true;
          compared++;
          const details = compareModels(models.models, saved.models);
          if (details.length) differences.push({ workPlanId: '', against: `read-model snapshot ${snapshotPathFor(dbPath)}`, version: null, details });
        }
        const take = captures.get(rec.streamId)?.get(rec.version);
        const model = models.models.workplan(rec.streamId);
        if (take && model) take(model);
        bar.tick(++n);
      }
    } catch (err) {
      bar.done(n);
      if (err instanceof FatalError) throw err; // the log cannot be read (a lost connection): not a difference
      const message = err instanceof CliError ? err.message : `event ${n + 1} does not fold: ${(err as Error).message}`;
      differences.push({ workPlanId: '', against: 'log', version: null, details: [message] });
      differences.push(...storage().differences);
      return report(values.json ?? false, n, 0, compared, differences);
    }
    bar.done(n);
    if (saved && !snapshotCompared) {
      const h = saved.header;
      console.error(`turboci: warning: ${snapshotPathFor(dbPath)} is at position ${h.position} (${h.streamId} v${h.version}), which is not in this log; a server would ignore it`);
    }
    const logIds = [...models.models.workplanIds()];
    differences.push(...storage().differences);

    // 3. The server: every workplan it held, at the version it held it.
    if (server) {
      const recheck = new Set<string>();
      for (const [id, d] of first) {
        const model = models.models.workplan(id);
        if (!model) {
          differences.push({ workPlanId: id, against: server.describe, version: d.version, details: ['the server holds this workplan; the log has no such workplan'] });
          continue;
        }
        const mine = atServer.get(id);
        if (mine === undefined) {
          differences.push({ workPlanId: id, against: server.describe, version: d.version, details: [`the server is at v${d.version}; the log only goes to v${model.meta.version}`] });
          continue;
        }
        compared++;
        if (mine !== d.sha256) differences.push(await explainMismatch(file, server, id));
        else if (model.meta.version > d.version) recheck.add(id); // the log went on: the server must have too
      }
      for (const id of logIds) if (!first.has(id)) recheck.add(id);
      if (recheck.size) {
        const now = new Map((await server.digests([...recheck], false)).digests.map((d) => [d.workPlanId, d]));
        for (const id of recheck) {
          const logVersion = models.models.workplan(id)!.meta.version;
          const d = now.get(id);
          if (!d) {
            differences.push({ workPlanId: id, against: server.describe, version: logVersion, details: [`the log has this workplan (v${logVersion}); the server's read models do not`] });
          } else if (d.version < logVersion) {
            differences.push({ workPlanId: id, against: server.describe, version: d.version, details: [`the server's read model is at v${d.version}, the log at v${logVersion} (events written behind the server's back?)`] });
          } else {
            compared++;
            const mine = await replayWorkPlan(file.eventsSync({ workPlanId: id, toVersion: d.version }), id, { version: d.version });
            if (!mine || mine.meta.version !== d.version) {
              differences.push({ workPlanId: id, against: server.describe, version: d.version, details: [`the server is at v${d.version}; the log does not have it`] });
            } else if (digestReadModel(mine).sha256 !== d.sha256) differences.push(await explainMismatch(file, server, id));
          }
        }
      }
    }

    // 4. Snapshots: each workplan at the version it was taken at.
    for (const s of snapshots) {
      const against = `snapshot ${s.file}:${s.line}`;
      const mine = atSnapshot.get(s);
      if (mine === undefined) {
        const model = models.models.workplan(s.id);
        const why = model ? `the log only goes to v${model.meta.version}` : 'the log has no such workplan';
        differences.push({ workPlanId: s.id, against, version: s.version, details: [`the snapshot is at v${s.version}; ${why}`] });
        continue;
      }
      compared++;
      if (mine !== canonicalJson(s.state)) {
        const details = jsonDifferences(JSON.parse(mine), JSON.parse(canonicalJson(s.state))).map((d) => `${d}   (log → snapshot)`);
        differences.push({ workPlanId: s.id, against, version: s.version, details });
      }
    }
    return report(values.json ?? false, n, logIds.length, compared, differences);
  } finally {
    file.close();
    server?.close();
  }
});

/** The replay, plus the log's own invariant: each stream's versions go 1, 2, 3... */
class ReplayState {
  readonly models = new ReadModels();
  private readonly last = new Map<string, number>();

  apply(rec: Parameters<ReadModels['apply']>[0]): string | null {
    const prev = this.last.get(rec.streamId) ?? 0;
    this.last.set(rec.streamId, rec.version);
    this.models.apply(rec);
    return rec.version === prev + 1 ? null : `stream ${rec.streamId}: version ${rec.version} follows ${prev}`;
  }
}

/** Fetches the server's state and shows which fields differ from the replay at the same version. */
async function explainMismatch(file: DatabaseLog, server: ServerLog, id: string): Promise<Difference> {
  const d = (await server.digests([id], true)).digests[0];
  if (!d) return { workPlanId: id, against: server.describe, version: null, details: ['digests differ; the workplan is gone from the server now'] };
  const mine = await replayWorkPlan(file.eventsSync({ workPlanId: id, toVersion: d.version }), id, { version: d.version });
  const local = mine ? JSON.parse(digestReadModel(mine).json) : null;
  const details = jsonDifferences(local, JSON.parse(d.stateJson || 'null')).map((x) => `${x}   (log → server)`);
  return { workPlanId: id, against: server.describe, version: d.version, details: details.length ? details : ['digests differ'] };
}

function readSnapshot(path: string): SnapshotEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`--snapshot ${path}: ${(err as Error).message}`);
  }
  const entries: SnapshotEntry[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let state: { workPlan?: { id?: unknown; version?: unknown } };
    try {
      state = JSON.parse(line) as typeof state;
    } catch (err) {
      throw new CliError(`--snapshot ${path}:${i + 1}: not JSON (${(err as Error).message}); expected "npx turboci replay --json" output`);
    }
    const id = state.workPlan?.id;
    const version = Number(state.workPlan?.version);
    if (typeof id !== 'string' || !Number.isInteger(version)) throw new CliError(`--snapshot ${path}:${i + 1}: no workPlan.id and workPlan.version`);
    entries.push({ file: path, line: i + 1, id, version, state });
  });
  return entries;
}

async function report(json: boolean, events: number, workplans: number, compared: number, differences: Difference[]): Promise<number> {
  const ok = differences.length === 0;
  if (json) {
    await out(JSON.stringify({ events, workplans, compared, differences, ok }));
    return ok ? 0 : 1;
  }
  await out(`replayed ${events} event${events === 1 ? '' : 's'} of ${workplans} workplan${workplans === 1 ? '' : 's'} through the projections`);
  if (compared) await out(`compared ${compared} read model${compared === 1 ? '' : 's'}`);
  for (const d of differences) {
    await out(`DIFFERENCE ${d.workPlanId ? `workplan ${d.workPlanId} ` : ''}(${d.against}${d.version === null ? '' : `, v${d.version}`}):`);
    for (const line of d.details) await out(`  ${line}`);
  }
  await out(ok ? 'OK: no differences' : `FAILED: ${differences.length} difference${differences.length === 1 ? '' : 's'}`);
  return ok ? 0 : 1;
}

function progressBar(total: number, show: boolean): { tick(n: number): void; done(n: number): void } {
  if (!show || total === 0) return { tick: () => {}, done: () => {} };
  let shown = -1;
  const draw = (n: number) => {
    const pct = Math.floor((n / total) * 100);
    if (pct === shown) return;
    shown = pct;
    const width = 30;
    const full = Math.round((pct / 100) * width);
    process.stderr.write(`\rverify [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${String(pct).padStart(3)}% ${n}/${total} events`);
  };
  draw(0);
  return { tick: draw, done: (n) => (draw(n), process.stderr.write('\n')) };
}

/** Where two sets of read models differ, projection by projection (canonical JSON, first differences). */
function compareModels(replayed: ReadModels, snapshot: ReadModels): string[] {
  const mine = replayed.snapshot().projections;
  const theirs = snapshot.snapshot().projections;
  const out: string[] = [];
  for (const name of Object.keys(mine)) {
    const a = canonicalJson(mine[name]);
    const b = canonicalJson(theirs[name]);
    if (a !== b) out.push(...jsonDifferences(JSON.parse(a), JSON.parse(b), 5).map((d) => `${name}: ${d}   (log → snapshot)`));
  }
  return out;
}
