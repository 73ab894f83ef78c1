import Database from 'better-sqlite3';
import type { PendingEvent, RecordedEvent } from '../domain/events.js';
import { matchesNode, type EventFilter } from '../app/event-filter.js';
import {
  StreamExists,
  VersionConflict,
  type AppendOptions,
  type EventStore,
  type ImportedEvent,
  type LoggedEvent,
  type StreamSummary,
} from '../app/event-store.js';
import { decodeEvent, encodeEvent, type StoredEventRow } from './event-codec.js';

/** The events table, its index and the triggers that make it append-only. */
export const EVENTS_SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  position          INTEGER PRIMARY KEY,
  stream_id         TEXT    NOT NULL,
  version           INTEGER NOT NULL,
  type              TEXT    NOT NULL,
  schema_version    INTEGER NOT NULL,
  data              TEXT    NOT NULL,
  recorded_at       INTEGER NOT NULL,
  request_id        TEXT,
  caused_by_version INTEGER,
  UNIQUE (stream_id, version)
) STRICT;
CREATE INDEX IF NOT EXISTS events_by_request ON events (stream_id, request_id) WHERE request_id IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS events_are_never_updated BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_are_never_deleted BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
`;

/**
 * Columns added after the table was first created (ALTER TABLE ADD COLUMN when missing): who caused an event
 * (a token name, `anonymous`, `system`) and the reason the caller gave. NULL in rows written before.
 */
const ADDED_COLUMNS: readonly [name: string, decl: string][] = [
  ['principal', 'TEXT'],
  ['reason', 'TEXT'],
];

function migrate(db: Database.Database): void {
  const have = new Set((db.prepare('PRAGMA table_info(events)').all() as { name: string }[]).map((c) => c.name));
  for (const [name, decl] of ADDED_COLUMNS) if (!have.has(name)) db.exec(`ALTER TABLE events ADD COLUMN ${name} ${decl}`);
}

interface EventRow extends StoredEventRow {
  readonly position: number;
  readonly stream_id: string;
  readonly version: number;
  readonly recorded_at: number;
  readonly request_id: string | null;
  readonly caused_by_version: number | null;
  readonly principal?: string | null;
  readonly reason?: string | null;
}

export interface SqliteEventStoreOptions {
  /** Open without write access (inspection tools; safe while a server runs). */
  readonly readonly?: boolean;
  /** FULL survives power loss; NORMAL survives a killed process (WAL), and is faster. */
  readonly synchronous?: 'FULL' | 'NORMAL';
  /**
   * Appends join one open transaction that flush() commits: one commit (one fsync with FULL) for all the writes
   * of a turn of the event loop instead of one each. The server uses it; until flush(), nothing is durable.
   */
  readonly groupCommit?: boolean;
}

export class SqliteEventStore implements EventStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly currentVersion: Database.Statement<[string], { v: number }>;
  private readonly appendTx: Database.Transaction<
    (streamId: string, expected: number, events: readonly PendingEvent[], o: AppendOptions) => RecordedEvent[]
  >;

  readonly groupCommit: boolean;

  constructor(
    readonly path: string,
    options: SqliteEventStoreOptions = {},
  ) {
    this.groupCommit = options.groupCommit ?? false;
    this.db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
    this.db.pragma('busy_timeout = 5000');
    if (!options.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
      this.db.exec(EVENTS_SCHEMA);
      migrate(this.db);
    }
    this.insert = this.db.prepare(
      `INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version, principal, reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.currentVersion = this.db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM events WHERE stream_id = ?');
    this.appendTx = this.db.transaction((streamId: string, expected: number, events: readonly PendingEvent[], o: AppendOptions) => {
      const actual = this.currentVersion.get(streamId)!.v;
      if (actual !== expected) throw new VersionConflict(streamId, expected, actual);
      return events.map((p, i): RecordedEvent => {
        const version = expected + i + 1;
        const { type, schemaVersion, data } = encodeEvent(p.event);
        const principal = o.principal ?? null;
        const reason = o.reason ?? null;
        const info = this.insert.run(streamId, version, type, schemaVersion, data, o.recordedAt, o.requestId, p.causedByVersion, principal, reason);
        return {
          position: Number(info.lastInsertRowid),
          streamId,
          version,
          recordedAt: o.recordedAt,
          causation: { requestId: o.requestId, causedByVersion: p.causedByVersion, principal, reason },
          event: p.event,
        };
      });
    });
  }

  append(streamId: string, expectedVersion: number, events: readonly PendingEvent[], options: AppendOptions): RecordedEvent[] {
    if (events.length === 0) return [];
    if (!this.groupCommit) return this.appendTx.immediate(streamId, expectedVersion, events, options);
    if (!this.db.inTransaction) this.db.exec('BEGIN IMMEDIATE');
    // Inside the open transaction this is a savepoint: a failed append (a version conflict) leaves the others be.
    return this.appendTx(streamId, expectedVersion, events, options);
  }

  flush(): void {
    if (this.db.inTransaction) this.db.exec('COMMIT');
  }

  *readStream(streamId: string, range: { afterVersion?: number; toVersion?: number } = {}): IterableIterator<RecordedEvent> {
    const rows = this.db
      .prepare('SELECT * FROM events WHERE stream_id = ? AND version > ? AND version <= ? ORDER BY version')
      .iterate(streamId, range.afterVersion ?? 0, range.toVersion ?? Number.MAX_SAFE_INTEGER) as IterableIterator<EventRow>;
    for (const row of rows) yield toRecorded(row);
  }

  *readAll(afterPosition = 0): IterableIterator<RecordedEvent> {
    const rows = this.db
      .prepare('SELECT * FROM events WHERE position > ? ORDER BY position')
      .iterate(afterPosition) as IterableIterator<EventRow>;
    for (const row of rows) yield toRecorded(row);
  }

  *readFiltered(f: EventFilter): IterableIterator<LoggedEvent> {
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
    for (const row of this.db.prepare(sql).iterate(...args) as IterableIterator<EventRow>) {
      const rec: LoggedEvent = { ...toRecorded(row), storedSchemaVersion: row.schema_version };
      if (f.node === undefined || matchesNode(rec, f.node)) yield rec;
    }
  }

  workPlans(): StreamSummary[] {
    return this.db
      .prepare(
        `SELECT e.stream_id AS id, (SELECT MAX(version) FROM events WHERE stream_id = e.stream_id) AS version
         FROM events e WHERE e.version = 1 AND e.type = 'WorkPlanCreated' ORDER BY e.position`,
      )
      .all() as StreamSummary[];
  }

  workPlan(id: string): StreamSummary | undefined {
    const row = this.db
      .prepare('SELECT MAX(version) AS v, MIN(CASE WHEN version = 1 THEN type END) AS first FROM events WHERE stream_id = ?')
      .get(id) as { v: number | null; first: string | null };
    return row.v === null || row.first !== 'WorkPlanCreated' ? undefined : { id, version: row.v };
  }

  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
  }

  importStream(streamId: string, events: readonly ImportedEvent[]): void {
    this.db
      .transaction(() => {
        if (this.currentVersion.get(streamId)!.v !== 0) throw new StreamExists(streamId);
        for (const e of events) {
          const { type, schemaVersion, data } = encodeEvent(e.event);
          const c = e.causation;
          this.insert.run(streamId, e.version, type, schemaVersion, data, e.recordedAt, c.requestId, c.causedByVersion, c.principal ?? null, c.reason ?? null);
        }
      })
      .immediate();
  }

  close(): void {
    if (!this.db.open) return;
    this.flush();
    this.db.close();
  }
}

/** A row as a recorded event; a row that cannot be decoded is named by its position and stream. */
function toRecorded(row: EventRow): RecordedEvent {
  let event;
  try {
    event = decodeEvent(row);
  } catch (err) {
    throw new Error(`event at position ${row.position} (${row.stream_id} v${row.version}, ${row.type}) cannot be read: ${(err as Error).message}`);
  }
  return {
    position: row.position,
    streamId: row.stream_id,
    version: row.version,
    recordedAt: row.recorded_at,
    causation: { requestId: row.request_id, causedByVersion: row.caused_by_version, principal: row.principal ?? null, reason: row.reason ?? null },
    event,
  };
}
