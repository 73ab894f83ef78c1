// The event log on PostgreSQL, shared by any number of servers (replicas).
//
// Positions: gap-free and in commit order. Writers serialize on one transaction-scoped advisory lock
// (APPEND_LOCK): a writer takes it, reads what others committed since it last looked, and numbers its own events
// from the highest position it then sees. No other writer can commit in between, so positions are assigned in
// commit order, and a reader that tails `position > last seen` can never miss a row that commits later with a
// smaller number (the classic trap of sequences, whose values become visible out of commit order). The lock is
// released by COMMIT or ROLLBACK, or by PostgreSQL when the writer's connection dies.
//
// Versions: the table's UNIQUE (stream_id, version) refuses a duplicate whatever any writer believes, and append()
// checks the expected version against the stream's head as of the lock.
//
// Append-only: triggers refuse UPDATE, DELETE and TRUNCATE (schema.ts).
import type { PendingEvent, RecordedEvent } from '../../domain/events.js';
import { matchesNode, type EventFilter } from '../../app/event-filter.js';
import {
  StorageFailure,
  StreamExists,
  VersionConflict,
  type AppendOptions,
  type EventStore,
  type ImportedEvent,
  type LoggedEvent,
  type SharedLog,
  type StreamSummary,
} from '../../app/event-store.js';
import { encodeRow, recordedFromRow, type EventRow, type Validation } from '../event-codec.js';
import { chainHash } from '../hash-chain.js';
import { APPEND_LOCK, checkSchema, migrate, NOTIFY_CHANNEL } from './schema.js';
import { PgError, SyncPg } from './sync-client.js';

export interface PostgresEventStoreOptions {
  readonly readonly?: boolean;
  /** Appends join one transaction that flush() commits (the server); otherwise each append commits itself. */
  readonly groupCommit?: boolean;
  readonly validate?: Validation;
  /** Shown in pg_stat_activity (when there is no serverId). */
  readonly applicationName?: string;
  /**
   * A serving process: its connections are named `turboci serve <serverId>` in pg_stat_activity, which is how the
   * other replicas tell that it is still there (liveServers).
   */
  readonly serverId?: string;
}

const SERVER_PREFIX = 'turboci serve ';

/** A row of turboci_events as the driver returns it. */
export interface PgEventRow extends EventRow {
  readonly hash: Buffer | Uint8Array | null;
}

interface Head {
  readonly version: number;
  readonly hash: Buffer | null;
}

const PAGE = 5_000;
/** The largest stream version the schema holds (integer). */
const MAX_VERSION = 2_147_483_647;
const COLUMNS = 'position, stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version, hash, principal, reason';

/** `postgres://` and `postgresql://` URLs name a PostgreSQL log; anything else is a SQLite file. */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db);
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}

export class PostgresEventStore implements EventStore, SharedLog {
  readonly groupCommit: boolean;
  readonly shared: SharedLog = this;
  /** The URL without its password (messages, logs). */
  readonly describe: string;
  private readonly pg: SyncPg;
  private readonly readonly: boolean;
  private readonly validate: Validation;
  /** Inside a write transaction, holding APPEND_LOCK. */
  private writing = false;
  /** This transaction's rows, inserted at flush (they are numbered already: the lock is held). */
  private pending: { row: unknown[]; recorded: RecordedEvent }[] = [];
  private nextPosition = 0;
  /** Stream heads (version and chain hash) as of `headsAt`: every row up to it went through here. */
  private readonly heads = new Map<string, Head>();
  private headsAt = 0;

  constructor(
    readonly url: string,
    options: PostgresEventStoreOptions = {},
  ) {
    this.groupCommit = options.groupCommit ?? false;
    this.readonly = options.readonly ?? false;
    this.validate = options.validate ?? 'all';
    this.describe = redactUrl(url);
    this.pg = new SyncPg(url, {
      applicationName: options.serverId ? `${SERVER_PREFIX}${options.serverId}` : (options.applicationName ?? 'turboci'),
      setup: [
        // A writer that stops (SIGSTOP, a hung host) must not hold the append lock for ever.
        "SET idle_in_transaction_session_timeout = '15s'",
        ...(this.readonly ? ['SET default_transaction_read_only = on'] : []),
      ],
    });
    try {
      if (this.readonly) checkSchema(this.pg);
      else migrate(this.pg);
    } catch (err) {
      this.pg.close();
      throw err;
    }
  }

  /**
   * Opens this turn's write transaction (a no-op while one is open): takes the append lock and returns every event
   * other writers committed after `afterPosition`, which the caller folds before it decides anything. Its own
   * appends then continue the log after them.
   */
  beginWrite(afterPosition: number): RecordedEvent[] {
    if (this.writing) return [];
    this.assertWritable();
    let rows: PgEventRow[];
    try {
      const results = this.pg.query([
        { sql: 'BEGIN' },
        { sql: 'SELECT pg_advisory_xact_lock($1)', params: [APPEND_LOCK] },
        { sql: `SELECT ${COLUMNS} FROM turboci_events WHERE position > $1 ORDER BY position`, params: [afterPosition] },
        { sql: 'SELECT COALESCE(MAX(position), 0) AS p FROM turboci_events' },
      ]);
      rows = results[2] as PgEventRow[];
      const max = (results[3] as { p: number }[])[0]!.p;
      const last = rows.length > 0 ? rows[rows.length - 1]!.position : afterPosition;
      if (last !== max) throw new PgError(`the log ends at position ${max}, but this server has folded up to ${last}`);
      this.writing = true;
      this.nextPosition = max + 1;
    } catch (err) {
      this.abort();
      throw this.failure(err);
    }
    this.track(afterPosition, rows);
    return rows.map((r) => this.decode(r));
  }

  /** What other writers committed after `afterPosition` (no lock: committed rows always form a prefix). */
  tail(afterPosition: number): RecordedEvent[] {
    if (this.writing) return [];
    const rows = this.pg.rows<PgEventRow>(`SELECT ${COLUMNS} FROM turboci_events WHERE position > $1 ORDER BY position LIMIT ${PAGE}`, [afterPosition]);
    this.track(afterPosition, rows);
    return rows.map((r) => this.decode(r));
  }

  /** Calls `wake` when another writer commits (LISTEN/NOTIFY: a wake-up only; the position is the truth). */
  onCommitted(wake: () => void, onError: (message: string) => void): () => void {
    return this.pg.listen(NOTIFY_CHANNEL, wake, onError);
  }

  liveServers(): ReadonlySet<string> {
    const rows = this.pg.rows<{ name: string }>(
      'SELECT DISTINCT application_name AS name FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1',
      [`${SERVER_PREFIX}%`],
    );
    return new Set(rows.map((r) => r.name.slice(SERVER_PREFIX.length).replace(/ \(listen\)$/, '')));
  }

  append(streamId: string, expectedVersion: number, events: readonly PendingEvent[], o: AppendOptions): RecordedEvent[] {
    if (events.length === 0) return [];
    this.assertWritable();
    const own = !this.writing;
    if (own) this.lockForAppend();
    try {
      const head = this.head(streamId);
      const actual = head?.version ?? 0;
      if (actual !== expectedVersion) throw new VersionConflict(streamId, expectedVersion, actual);
      let previous = head?.hash ?? null;
      const principal = o.principal ?? null;
      const reason = o.reason ?? null;
      const recorded = events.map((p, i): RecordedEvent => {
        const version = expectedVersion + i + 1;
        const row = encodeRow(streamId, version, p.event, o.recordedAt, o.requestId, p.causedByVersion);
        const { type, schema_version: schemaVersion, data } = row;
        previous = chainHash(previous, row);
        const rec: RecordedEvent = {
          position: this.nextPosition++,
          streamId,
          version,
          recordedAt: o.recordedAt,
          causation: { requestId: o.requestId, causedByVersion: p.causedByVersion, principal, reason },
          event: p.event,
        };
        this.pending.push({
          row: [rec.position, streamId, version, type, schemaVersion, data, o.recordedAt, o.requestId, p.causedByVersion, previous, principal, reason],
          recorded: rec,
        });
        return rec;
      });
      this.heads.set(streamId, { version: expectedVersion + events.length, hash: previous });
      if (own && !this.groupCommit) this.flush();
      return recorded;
    } catch (err) {
      if (own && !this.groupCommit) this.rollback();
      throw err;
    }
  }

  /** Inserts this transaction's rows, notifies the other servers and commits; releases the lock. */
  flush(): void {
    if (!this.writing) return;
    const rows = this.pending;
    try {
      const statements = [];
      if (rows.length > 0) {
        const columns: unknown[][] = Array.from({ length: 12 }, () => []);
        for (const { row } of rows) for (let c = 0; c < 12; c++) columns[c]!.push(row[c]);
        statements.push({
          sql: `INSERT INTO turboci_events (${COLUMNS})
                SELECT * FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::text[], $5::integer[], $6::text[], $7::bigint[],
                                     $8::text[], $9::integer[], $10::bytea[], $11::text[], $12::text[])`,
          params: columns,
        });
        statements.push({ sql: 'SELECT pg_notify($1, $2)', params: [NOTIFY_CHANNEL, String(rows[rows.length - 1]!.recorded.position)] });
      }
      statements.push({ sql: 'COMMIT' });
      this.pg.query(statements);
    } catch (err) {
      this.abort();
      throw this.failure(err);
    }
    this.writing = false;
    this.pending = [];
    if (rows.length > 0) this.headsAt = rows[rows.length - 1]!.recorded.position;
  }

  rollback(): void {
    this.abort();
  }

  /** The highest committed position (0 for an empty log). */
  lastPosition(): number {
    return this.pg.rows<{ p: number }>('SELECT COALESCE(MAX(position), 0) AS p FROM turboci_events')[0]!.p;
  }

  *readStream(streamId: string, range: { afterVersion?: number; toVersion?: number } = {}): IterableIterator<RecordedEvent> {
    // version is an integer column: a bound past 2^31-1 is refused by PostgreSQL (22003), not taken as "no bound".
    const to = Math.min(range.toVersion ?? MAX_VERSION, MAX_VERSION);
    let after = range.afterVersion ?? 0;
    for (;;) {
      const rows = this.pg.rows<PgEventRow>(
        // bigint parameters: `version` is an integer column, and an open range's bound (2^53 - 1) is not an integer.
        `SELECT ${COLUMNS} FROM turboci_events WHERE stream_id = $1 AND version > $2::bigint AND version <= $3::bigint ORDER BY version LIMIT ${PAGE}`,
        [streamId, after, to],
      );
      for (const row of rows) yield this.decode(row);
      if (rows.length < PAGE) break;
      after = rows[rows.length - 1]!.version;
    }
    for (const p of this.pending) {
      const r = p.recorded;
      if (r.streamId === streamId && r.version > (range.afterVersion ?? 0) && r.version <= to) yield r;
    }
  }

  *readAll(afterPosition = 0): IterableIterator<RecordedEvent> {
    let after = afterPosition;
    for (;;) {
      const rows = this.pg.rows<PgEventRow>(`SELECT ${COLUMNS} FROM turboci_events WHERE position > $1 ORDER BY position LIMIT ${PAGE}`, [after]);
      for (const row of rows) yield this.decode(row);
      if (rows.length < PAGE) break;
      after = rows[rows.length - 1]!.position;
    }
    for (const p of this.pending) if (p.recorded.position > afterPosition) yield p.recorded;
  }

  eventAt(position: number): RecordedEvent | undefined {
    const [row] = this.pg.rows<PgEventRow>(`SELECT ${COLUMNS} FROM turboci_events WHERE position = $1`, [position]);
    if (row) return this.decode(row);
    return this.pending.find((p) => p.recorded.position === position)?.recorded;
  }

  *readFiltered(f: EventFilter): IterableIterator<LoggedEvent> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: (n: number) => string, value: unknown) => {
      params.push(value);
      where.push(sql(params.length));
    };
    if (f.workPlanId !== undefined) add((n) => `stream_id = $${n}`, f.workPlanId);
    if (f.types?.length) add((n) => `type = ANY($${n}::text[])`, [...f.types]);
    // ::bigint: a bound past 2^31 (--to-version 99999999999) is a bound, not an error of the integer column.
    if (f.fromVersion !== undefined) add((n) => `version >= $${n}::bigint`, f.fromVersion);
    if (f.toVersion !== undefined) add((n) => `version <= $${n}::bigint`, f.toVersion);
    if (f.fromPosition !== undefined) add((n) => `position >= $${n}`, f.fromPosition);
    if (f.toPosition !== undefined) add((n) => `position <= $${n}`, f.toPosition);
    if (f.since !== undefined) add((n) => `recorded_at >= $${n}`, f.since);
    if (f.until !== undefined) add((n) => `recorded_at <= $${n}`, f.until);
    // One workplan reads in version order, the rest in commit order; both page on that column.
    const key = f.workPlanId !== undefined ? 'version' : 'position';
    let after = 0;
    for (;;) {
      const conditions = [...where, `${key} > $${params.length + 1}`];
      const rows = this.pg.rows<PgEventRow>(
        `SELECT ${COLUMNS} FROM turboci_events WHERE ${conditions.join(' AND ')} ORDER BY ${key} LIMIT ${PAGE}`,
        [...params, after],
      );
      for (const row of rows) {
        const rec: LoggedEvent = { ...this.decode(row), storedSchemaVersion: row.schema_version };
        if (f.node === undefined || matchesNode(rec, f.node)) yield rec;
      }
      if (rows.length < PAGE) break;
      after = rows[rows.length - 1]![key];
    }
  }

  workPlans(): StreamSummary[] {
    return this.pg.rows<StreamSummary>(
      `SELECT e.stream_id AS id, (SELECT MAX(version) FROM turboci_events WHERE stream_id = e.stream_id) AS version
       FROM turboci_events e WHERE e.version = 1 AND e.type = 'WorkPlanCreated' ORDER BY e.position`,
    );
  }

  workPlan(id: string): StreamSummary | undefined {
    const [row] = this.pg.rows<{ v: number | null; first: string | null }>(
      'SELECT MAX(version) AS v, MIN(CASE WHEN version = 1 THEN type END) AS first FROM turboci_events WHERE stream_id = $1',
      [id],
    );
    return !row || row.v === null || row.first !== 'WorkPlanCreated' ? undefined : { id, version: row.v };
  }

  count(): number {
    return this.pg.rows<{ n: number }>('SELECT COUNT(*)::bigint AS n FROM turboci_events')[0]!.n + this.pending.length;
  }

  /** The stream keeps its versions, times and causes; it is numbered after the log's end, under the append lock. */
  importStream(streamId: string, events: readonly ImportedEvent[]): void {
    this.assertWritable();
    if (this.writing) throw new Error('importStream inside an open write transaction');
    this.lockForAppend();
    try {
      if (this.head(streamId)) throw new StreamExists(streamId);
      let previous: Buffer | null = null;
      for (const e of events) {
        const row = encodeRow(streamId, e.version, e.event, e.recordedAt, e.causation.requestId, e.causation.causedByVersion);
        const { type, schema_version: schemaVersion, data } = row;
        previous = chainHash(previous, row);
        const position = this.nextPosition++;
        this.pending.push({
          row: [position, streamId, e.version, type, schemaVersion, data, e.recordedAt, row.request_id, row.caused_by_version, previous, e.causation.principal ?? null, e.causation.reason ?? null],
          recorded: { ...e, position, streamId },
        });
      }
      this.flush();
    } catch (err) {
      this.rollback();
      throw err;
    }
  }

  /** Every row in position order with its stored hash (verify's chain check). */
  *rawRows(): IterableIterator<PgEventRow> {
    let after = 0;
    for (;;) {
      const rows = this.pg.rows<PgEventRow>(`SELECT ${COLUMNS} FROM turboci_events WHERE position > $1 ORDER BY position LIMIT ${PAGE}`, [after]);
      yield* rows;
      if (rows.length < PAGE) break;
      after = rows[rows.length - 1]!.position;
    }
  }

  close(): void {
    try {
      this.flush();
    } finally {
      this.pg.close();
    }
  }

  /** A write outside the server's turns (a CLI command): lock, and number after the log's end. */
  private lockForAppend(): void {
    try {
      const results = this.pg.query([
        { sql: 'BEGIN' },
        { sql: 'SELECT pg_advisory_xact_lock($1)', params: [APPEND_LOCK] },
        { sql: 'SELECT COALESCE(MAX(position), 0) AS p FROM turboci_events' },
      ]);
      const max = (results[2] as { p: number }[])[0]!.p;
      if (max !== this.headsAt) {
        // Others wrote since these heads were read: read them again when needed.
        this.heads.clear();
        this.headsAt = max;
      }
      this.writing = true;
      this.nextPosition = max + 1;
    } catch (err) {
      this.abort();
      throw this.failure(err);
    }
  }

  /** A stream's head as of the lock: from the rows this store has seen, or read once. */
  private head(streamId: string): Head | undefined {
    const known = this.heads.get(streamId);
    if (known) return known;
    const [row] = this.pg.rows<{ version: number; hash: Buffer | null }>(
      'SELECT version, hash FROM turboci_events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1',
      [streamId],
    );
    if (!row) return undefined;
    const head = { version: row.version, hash: row.hash ? Buffer.from(row.hash) : null };
    this.heads.set(streamId, head);
    return head;
  }

  /** Folds rows read after `after` into the heads, if the heads were up to `after` (else they start over). */
  private track(after: number, rows: readonly PgEventRow[]): void {
    if (after !== this.headsAt) this.heads.clear();
    for (const r of rows) this.heads.set(r.stream_id, { version: r.version, hash: r.hash ? Buffer.from(r.hash) : null });
    this.headsAt = rows.length > 0 ? rows[rows.length - 1]!.position : after;
  }

  /** Ends the open transaction, if any, dropping its rows; the heads are read again when next needed. */
  private abort(): void {
    this.writing = false;
    this.pending = [];
    this.heads.clear();
    this.headsAt = -1;
    try {
      this.pg.query([{ sql: 'ROLLBACK' }]);
    } catch {
      // the connection is gone, and its transaction with it
    }
  }

  private assertWritable(): void {
    if (this.readonly) throw new StorageFailure('other', `${this.describe}: opened read-only`);
  }

  private failure(err: unknown): Error {
    if (err instanceof StorageFailure || err instanceof VersionConflict || err instanceof StreamExists) return err;
    const e = err as PgError;
    // 53100 disk_full, 53200 out_of_memory; the rest (connection lost, read-only, timeouts) are "other".
    return new StorageFailure(e.code === '53100' ? 'full' : 'other', `${this.describe}: ${e.message}${e.code ? ` (${e.code})` : ''}`, { cause: err });
  }

  private decode(row: PgEventRow): RecordedEvent {
    return recordedFromRow(row, this.validate);
  }
}
