// Where the debugging commands read events from: a database file (read-only, safe while a server runs on it) or
// a running server (the TurboCIEventLog RPCs). Both stream: nothing loads a whole log into memory.
import { existsSync } from 'node:fs';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { matches, type EventFilter, type LoggedEvent } from '../app/eventlog.js';
import { DomainEvent, SCHEMA_VERSION, type EventType } from '../domain/events.js';
import {
  GetReadModelDigestRequest,
  GetWorkPlanAtRequest,
  ReadEventsRequest,
  TurboCIEventLogClient,
  type GetReadModelDigestResponse,
  type WorkPlanDigest,
  type GetWorkPlanAtResponse,
  type LoggedEvent as ProtoEvent,
  type ReadEventsResponse,
} from '../gen/turboci/v1/eventlog.js';
import { decodeEvent } from '../infra/event-codec.js';
import { UsageError } from './usage-error.js';

/** A failure to report in one line (exit 1): no such workplan, unreadable file, server error. */
export class CliError extends Error {
  override name = 'CliError';
}

export interface WorkPlanSummary {
  readonly id: string;
  readonly version: number;
}

export interface LogSource {
  readonly describe: string;
  /** Matching events: in stream order for one workplan, in commit (position) order otherwise. */
  events(filter: EventFilter): AsyncIterable<LoggedEvent>;
  /** The workplan's current version, or CliError when there is no such workplan. */
  workPlan(id: string): Promise<WorkPlanSummary>;
  close(): void;
}

interface Row {
  readonly position: number;
  readonly stream_id: string;
  readonly version: number;
  readonly type: string;
  readonly schema_version: number;
  readonly data: string;
  readonly recorded_at: number;
  readonly request_id: string | null;
  readonly caused_by_version: number | null;
}

/** A SQLite event log opened read-only. */
export class FileLog implements LogSource {
  readonly db: Database.Database;
  readonly describe: string;

  constructor(readonly path: string) {
    if (!existsSync(path)) throw new CliError(`${path}: no such database file`);
    try {
      this.db = new Database(path, { readonly: true, fileMustExist: true });
      this.db.pragma('busy_timeout = 5000');
      this.db.prepare('SELECT 1 FROM events LIMIT 1').get();
    } catch (err) {
      throw new CliError(`${path}: not a TurboCI event log (${(err as Error).message})`);
    }
    this.describe = path;
  }

  async *events(f: EventFilter): AsyncIterable<LoggedEvent> {
    yield* this.eventsSync(f);
  }

  /** The same, synchronously (no await between rows: the fastest way through a large file). */
  *eventsSync(f: EventFilter): IterableIterator<LoggedEvent> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    const add = (sql: string, ...values: (string | number)[]) => {
      where.push(sql);
      args.push(...values);
    };
    if (f.workPlanId !== undefined) add('stream_id = ?', f.workPlanId);
    if (f.types?.length) add(`type IN (${f.types.map(() => '?').join(', ')})`, ...f.types);
    if (f.fromVersion !== undefined) add('version >= ?', f.fromVersion);
    if (f.toVersion !== undefined) add('version <= ?', f.toVersion);
    if (f.fromPosition !== undefined) add('position >= ?', f.fromPosition);
    if (f.toPosition !== undefined) add('position <= ?', f.toPosition);
    if (f.since !== undefined) add('recorded_at >= ?', f.since);
    if (f.until !== undefined) add('recorded_at <= ?', f.until);
    const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${
      f.workPlanId !== undefined ? 'version' : 'position'
    }`;
    for (const row of this.db.prepare(sql).iterate(...args) as IterableIterator<Row>) {
      const rec = toLogged(row);
      if (f.node === undefined || matches(rec, { node: f.node })) yield rec;
    }
  }

  async workPlan(id: string): Promise<WorkPlanSummary> {
    const row = this.db
      .prepare('SELECT MAX(version) AS v, MIN(CASE WHEN version = 1 THEN type END) AS first FROM events WHERE stream_id = ?')
      .get(id) as { v: number | null; first: string | null };
    if (row.v === null || row.first !== 'WorkPlanCreated') throw new CliError(`no workplan "${id}" in ${this.path}`);
    return { id, version: row.v };
  }

  /** Every workplan in the file with its version, in creation order. */
  workPlans(): WorkPlanSummary[] {
    return this.db
      .prepare(
        `SELECT e.stream_id AS id, (SELECT MAX(version) FROM events WHERE stream_id = e.stream_id) AS version
         FROM events e WHERE e.version = 1 AND e.type = 'WorkPlanCreated' ORDER BY e.position`,
      )
      .all() as WorkPlanSummary[];
  }

  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function toLogged(row: Row): LoggedEvent {
  let event: DomainEvent;
  try {
    event = decodeEvent(row);
  } catch (err) {
    throw new CliError(`event at position ${row.position} (${row.stream_id} v${row.version}, ${row.type}) cannot be read: ${(err as Error).message}`);
  }
  return {
    position: row.position,
    streamId: row.stream_id,
    version: row.version,
    recordedAt: row.recorded_at,
    causation: { requestId: row.request_id, causedByVersion: row.caused_by_version },
    event,
    storedSchemaVersion: row.schema_version,
  };
}

const DEADLINE_MS = 30_000;

/** A running server's TurboCIEventLog service. */
export class ServerLog implements LogSource {
  readonly client: TurboCIEventLogClient;
  readonly describe: string;

  constructor(readonly address: string) {
    this.client = new TurboCIEventLogClient(address, credentials.createInsecure());
    this.describe = `server ${address}`;
  }

  private call<Res>(method: 'readEvents' | 'getWorkPlanAt' | 'getReadModelDigest', req: object): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const fn = (this.client as unknown as Record<string, Function>)[method]!;
      fn.call(this.client, req, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (err: ServiceError | null, res: Res) =>
        err ? reject(new CliError(`${this.describe}: ${status[err.code] ?? err.code}: ${err.details || err.message}`)) : resolve(res),
      );
    });
  }

  async *events(f: EventFilter): AsyncIterable<LoggedEvent> {
    if (f.workPlanId === undefined) throw new UsageError('--workplan is required with --server');
    if (f.fromPosition !== undefined || f.toPosition !== undefined) throw new UsageError('--from-position/--to-position need --db');
    let pageToken = '';
    do {
      const page = await this.call<ReadEventsResponse>(
        'readEvents',
        ReadEventsRequest.fromPartial({
          workPlanId: f.workPlanId,
          afterVersion: Math.max(0, (f.fromVersion ?? 1) - 1),
          toVersion: f.toVersion ?? 0,
          types: f.types ? [...f.types] : [],
          pageToken,
        }),
      );
      for (const e of page.events) {
        const rec = fromProto(e);
        if (matches(rec, f)) yield rec;
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  async workPlan(id: string): Promise<WorkPlanSummary> {
    const res = await this.call<ReadEventsResponse>('readEvents', ReadEventsRequest.fromPartial({ workPlanId: id, pageSize: 1 }));
    return { id, version: Number(res.workPlanVersion) };
  }

  workPlanAt(id: string, target: { version?: number; at?: number }): Promise<GetWorkPlanAtResponse> {
    return this.call(
      'getWorkPlanAt',
      GetWorkPlanAtRequest.fromPartial({ workPlanId: id, version: target.version ?? 0, at: target.at === undefined ? undefined : new Date(target.at) }),
    );
  }

  /** Versions as numbers: a stream version never gets near 2^53. */
  async digests(ids: readonly string[], includeState: boolean): Promise<{ digests: Array<Omit<WorkPlanDigest, 'version'> & { version: number }> }> {
    const res = await this.call<GetReadModelDigestResponse>('getReadModelDigest', GetReadModelDigestRequest.fromPartial({ workPlanIds: [...ids], includeState }));
    return { digests: res.digests.map((d) => ({ ...d, version: Number(d.version) })) };
  }

  close(): void {
    this.client.close();
  }
}

function fromProto(e: ProtoEvent): LoggedEvent {
  return {
    position: Number(e.position),
    streamId: e.workPlanId,
    version: Number(e.version),
    recordedAt: e.recordedAt?.getTime() ?? 0,
    causation: { requestId: e.requestId || null, causedByVersion: e.causedByVersion === undefined ? null : Number(e.causedByVersion) },
    event: DomainEvent.parse({ type: e.type, data: e.data ?? {} }),
  };
}

/** The current schema version of an event type. */
export const schemaVersionOf = (type: string): number => SCHEMA_VERSION[type as EventType] ?? 0;

/** Opens --db or --server (exactly one). */
export function openSource(values: { db?: string | undefined; server?: string | undefined }): FileLog | ServerLog {
  if (values.db !== undefined && values.server !== undefined) throw new UsageError('give --db or --server, not both');
  if (values.server !== undefined) return new ServerLog(values.server);
  const db = values.db ?? process.env.TURBOCI_DB;
  if (db === undefined) throw new UsageError('--db FILE (or --server HOST:PORT) is required');
  return new FileLog(db);
}
