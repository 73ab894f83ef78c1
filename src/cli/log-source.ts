// Where the debugging commands read events from: a database, a SQLite file or a PostgreSQL URL (read-only, safe
// while servers run on it), or a running server (the TurboCIEventLog RPCs). Both stream: nothing loads a whole log
// into memory.
import { status, type ServiceError } from '@grpc/grpc-js';
import { channel, connectOptionsFrom, type ConnectOptions } from '../client/connect.js';
import { unary, type UnaryMethod } from '../client/unary.js';
import { matches, type EventFilter } from '../app/event-filter.js';
import type { LoggedEvent, StreamSummary } from '../app/event-store.js';
import { DomainEvent, SCHEMA_VERSION, type EventType } from '../domain/events.js';
import {
  GetReadModelDigestRequest,
  GetWorkPlanAtRequest,
  ReadEventsRequest,
  TurboCIEventLogClient,
  type WorkPlanDigest,
  type GetWorkPlanAtResponse,
  type LoggedEvent as ProtoEvent,
} from '../gen/turboci/v1/eventlog.js';
import { FatalError } from './fatal.js';
import { logError, openLog, type LogStore } from './open-log.js';
import { UsageError } from './usage-error.js';

/** A failure to report in one line (exit 1): no such workplan, unreadable file, server error. */
export class CliError extends Error {
  override name = 'CliError';
}

export type WorkPlanSummary = StreamSummary;

export interface LogSource {
  readonly describe: string;
  /** Matching events: in stream order for one workplan, in commit (position) order otherwise. */
  events(filter: EventFilter): AsyncIterable<LoggedEvent>;
  /** The workplan's current version, or CliError when there is no such workplan. */
  workPlan(id: string): Promise<WorkPlanSummary>;
  close(): void;
}

/**
 * A database opened read-only through its event store (all SQL lives there): a SQLite file (safe while a server
 * runs on it) or a PostgreSQL URL (read-only transactions; the schema must be there). Read errors (a damaged row,
 * a lost connection) become one-line errors.
 */
export class DatabaseLog implements LogSource {
  readonly store: LogStore;
  readonly describe: string;
  readonly postgres: boolean;

  constructor(readonly path: string) {
    const opened = openLog(path, { readonly: true });
    this.store = opened.store;
    this.describe = opened.describe;
    this.postgres = opened.postgres;
  }

  async *events(f: EventFilter): AsyncIterable<LoggedEvent> {
    yield* this.eventsSync(f);
  }

  /** The same, synchronously (no await between rows: the fastest way through a large file). */
  *eventsSync(f: EventFilter): IterableIterator<LoggedEvent> {
    try {
      yield* this.store.readFiltered(f);
    } catch (err) {
      throw this.failure(err);
    }
  }

  async workPlan(id: string): Promise<WorkPlanSummary> {
    const found = this.read(() => this.store.workPlan(id));
    if (!found) throw new CliError(`no workplan "${id}" in ${this.describe}`);
    return found;
  }

  /** Every workplan in the log with its version, in creation order. */
  workPlans(): WorkPlanSummary[] {
    return this.read(() => this.store.workPlans());
  }

  count(): number {
    return this.read(() => this.store.count());
  }

  close(): void {
    this.store.close();
  }

  private read<T>(f: () => T): T {
    try {
      return f();
    } catch (err) {
      throw this.failure(err);
    }
  }

  private failure(err: unknown): unknown {
    if (err instanceof CliError) return err;
    const e = logError(this, err);
    // A row that cannot be decoded (SQLite or PostgreSQL) names its position: one line, like every other cause.
    return e instanceof FatalError ? e : new CliError((err as Error).message);
  }
}

const DEADLINE_MS = 30_000;

/** A running server's TurboCIEventLog service. */
export class ServerLog implements LogSource {
  readonly client: TurboCIEventLogClient;
  readonly describe: string;

  constructor(readonly address: string, connect: ConnectOptions = {}) {
    const ch = channel(connect);
    this.client = new TurboCIEventLogClient(address, ch.credentials, ch.options);
    this.describe = `server ${address}`;
  }

  /** One call to the server; a failure becomes a one-line CliError naming the status. */
  private async call<Req, Res>(method: UnaryMethod<Req, Res>, req: Req): Promise<Res> {
    try {
      return await unary(method.bind(this.client), req, { timeoutMs: DEADLINE_MS });
    } catch (err) {
      const e = err as ServiceError;
      throw new CliError(`${this.describe}: ${status[e.code] ?? e.code}: ${e.details || e.message}`);
    }
  }

  async *events(f: EventFilter): AsyncIterable<LoggedEvent> {
    if (f.workPlanId === undefined) throw new UsageError('--workplan is required with --server');
    if (f.fromPosition !== undefined || f.toPosition !== undefined) throw new UsageError('--from-position/--to-position need --db');
    let pageToken = '';
    do {
      const page = await this.call(
        this.client.readEvents,
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
    const res = await this.call(this.client.readEvents, ReadEventsRequest.fromPartial({ workPlanId: id, pageSize: 1 }));
    return { id, version: Number(res.workPlanVersion) };
  }

  workPlanAt(id: string, target: { version?: number; at?: number }): Promise<GetWorkPlanAtResponse> {
    return this.call(
      this.client.getWorkPlanAt,
      GetWorkPlanAtRequest.fromPartial({ workPlanId: id, version: target.version ?? 0, at: target.at === undefined ? undefined : new Date(target.at) }),
    );
  }

  /** Versions as numbers: a stream version never gets near 2^53. */
  async digests(ids: readonly string[], includeState: boolean): Promise<{ digests: Array<Omit<WorkPlanDigest, 'version'> & { version: number }> }> {
    const res = await this.call(this.client.getReadModelDigest, GetReadModelDigestRequest.fromPartial({ workPlanIds: [...ids], includeState }));
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
    causation: {
      requestId: e.requestId || null,
      causedByVersion: e.causedByVersion === undefined ? null : Number(e.causedByVersion),
      principal: e.principal || null,
      reason: e.reason || null,
    },
    event: DomainEvent.parse({ type: e.type, data: e.data ?? {} }),
  };
}

/** The current schema version of an event type. */
export const schemaVersionOf = (type: string): number => SCHEMA_VERSION[type as EventType] ?? 0;

/** Opens --db or --server (exactly one). */
export function openSource(
  values: { db?: string | undefined; server?: string | undefined } & Parameters<typeof connectOptionsFrom>[0],
): DatabaseLog | ServerLog {
  if (values.db !== undefined && values.server !== undefined) throw new UsageError('give --db or --server, not both');
  if (values.server !== undefined) return new ServerLog(values.server, connectOptionsFrom(values));
  const db = values.db ?? process.env.TURBOCI_DB;
  if (db === undefined) throw new UsageError('--db FILE|URL (or --server HOST:PORT) is required');
  return new DatabaseLog(db);
}
