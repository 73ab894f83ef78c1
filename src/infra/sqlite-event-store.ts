import Database from 'better-sqlite3';
import type { PendingEvent, RecordedEvent } from '../domain/events.js';
import { matchesNode, type EventFilter } from '../app/event-filter.js';
import {
  StorageFailure,
  StreamExists,
  VersionConflict,
  type AppendOptions,
  type EventStore,
  type ImportedEvent,
  type LoggedEvent,
  type StreamSummary,
} from '../app/event-store.js';
import { CommitMarkerWriter } from './commit-marker.js';
import { encodeRow, recordedFromRow, type EventRow, type Validation } from './event-codec.js';
import { chainHash, type HashedRow } from './hash-chain.js';
import { READ_AHEAD_MIN_ROWS, readAhead } from './read-ahead.js';
import { WalSync, type DurableCallback } from './wal-sync.js';

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
 * Migration: the hash chain column (see hash-chain.ts). Adding a nullable column rewrites no row, and the log stays
 * append-only: events written before it keep a NULL hash. Their chain values are computed when needed (by verify,
 * and by the first append to such a stream, which continues the chain from them) rather than stored after the fact.
 */
function addHashColumn(db: Database.Database): void {
  const columns = new Set((db.prepare('SELECT name FROM pragma_table_info(?)').all('events') as { name: string }[]).map((c) => c.name));
  if (!columns.has('hash')) db.exec('ALTER TABLE events ADD COLUMN hash BLOB');
  // Who caused an event (a token name, `anonymous`, `system`) and the reason the caller gave; NULL in older rows.
  // (Not part of the hash chain, whose row shape predates them.)
  if (!columns.has('principal')) db.exec('ALTER TABLE events ADD COLUMN principal TEXT');
  if (!columns.has('reason')) db.exec('ALTER TABLE events ADD COLUMN reason TEXT');
}

const STREAM_RANGE = 'SELECT * FROM events WHERE stream_id = ? AND version > ? AND version <= ? ORDER BY version';

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
  /**
   * With groupCommit and synchronous FULL: COMMIT at NORMAL and make each commit durable with an fdatasync of the
   * WAL off the main thread (wal-sync.ts); whoever lets a commit's effects out waits for whenDurable(). The server.
   */
  readonly syncOffMainThread?: boolean;
  /** With syncOffMainThread: syncs faster than this on average stay on the main thread (see wal-sync.ts; default 1 ms). */
  readonly syncInlineBelowMs?: number;
  /** Write the commit marker `<path>.position` after every commit (the server; see commit-marker.ts). */
  readonly commitMarker?: boolean;
  /** What reads validate with zod: every row (default), or only rows that had to be upcast (see decodeEvent). */
  readonly validate?: Validation;
  /**
   * SQLite's page cache for this connection, in KiB (default DEFAULT_CACHE_KIB). better-sqlite3 is built with a
   * 16 MiB default; the log's hot pages (the tail of the table and of its indexes) fit in far less, and the rest of
   * a read is the OS page cache's. See docs/performance.md, "Memory at rest".
   */
  readonly cacheKiB?: number;
  /** readAll reads ahead on a worker thread from this many rows on (default READ_AHEAD_MIN_ROWS; Infinity: never). */
  readonly readAheadMinRows?: number;
}

/** SQLite's write failures (full, I/O, read-only, …): StorageFailure. */
const isWriteFailure = (err: unknown): err is Error & { code: string } => {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|CORRUPT|NOTADB|PERM)/.test(code);
};

/** 2 MiB: SQLite's own default (better-sqlite3 raises it to 16 MiB, which a large log fills and keeps). */
export const DEFAULT_CACHE_KIB = 2048;

export class SqliteEventStore implements EventStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly streamTail: Database.Statement<[string], { version: number; hash: Buffer | null }>;
  private readonly marker: CommitMarkerWriter | null;
  /** Set when commits are made durable off the main thread (options.syncOffMainThread). */
  private readonly walSync: WalSync | null;
  /** The last position committed and not yet handed to walSync: the marker may say it once it is synced. */
  private unsyncedPosition = 0;
  /** Something was appended since the commit marker was last written. */
  private appended = false;
  /**
   * The highest position appended since the last commit, when known for sure (0: ask the database). Saves a
   * MAX(position) query per commit; an append that failed never sets it, and a rollback or failed commit clears it.
   */
  private pendingPosition = 0;
  /**
   * Each stream's tail (version, chain hash) as the open group-commit transaction left it, so a stream written
   * several times in one transaction is looked up once: nobody else writes while it is open (BEGIN IMMEDIATE holds
   * the write lock). Emptied whenever the transaction ends or an append fails.
   */
  private readonly tails = new Map<string, { version: number; hash: Buffer | null }>();
  private tailAfter: { version: number; hash: Buffer | null } | null = null;
  private readonly maxPosition: Database.Statement<[], { p: number }>;
  private readonly streamRange: Database.Statement;
  /** An append's checks and inserts; appendTx runs it in a transaction of its own (no group commit). */
  private readonly appendRows: (streamId: string, expected: number, events: readonly PendingEvent[], o: AppendOptions) => RecordedEvent[];
  private readonly appendTx: Database.Transaction<
    (streamId: string, expected: number, events: readonly PendingEvent[], o: AppendOptions) => RecordedEvent[]
  >;

  readonly groupCommit: boolean;
  private readonly readonly: boolean;
  private readonly validate: Validation;
  private readonly readAheadMinRows: number;

  constructor(
    readonly path: string,
    options: SqliteEventStoreOptions = {},
  ) {
    this.groupCommit = options.groupCommit ?? false;
    this.readonly = options.readonly ?? false;
    this.validate = options.validate ?? 'all';
    this.readAheadMinRows = options.readAheadMinRows ?? READ_AHEAD_MIN_ROWS;
    this.db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma(`cache_size = -${Math.max(64, Math.floor(options.cacheKiB ?? DEFAULT_CACHE_KIB))}`);
    this.walSync = null;
    if (!options.readonly) {
      this.db.pragma('journal_mode = WAL');
      const offThread = (options.synchronous ?? 'FULL') === 'FULL' && options.syncOffMainThread === true && this.groupCommit;
      this.walSync = offThread ? new WalSync(`${path}-wal`, options.syncInlineBelowMs) : null;
      this.db.pragma(`synchronous = ${offThread ? 'NORMAL' : (options.synchronous ?? 'FULL')}`);
      this.db.exec(EVENTS_SCHEMA);
      addHashColumn(this.db);
    }
    this.marker = options.commitMarker && !options.readonly ? new CommitMarkerWriter(path) : null;
    this.insert = options.readonly
      ? this.db.prepare('SELECT 1')
      : this.db.prepare(
          `INSERT INTO events (stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version, hash, principal, reason)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        );
    this.streamTail = this.db.prepare(
      options.readonly
        ? 'SELECT version, NULL AS hash FROM events WHERE stream_id = ? ORDER BY version DESC LIMIT 1'
        : 'SELECT version, hash FROM events WHERE stream_id = ? ORDER BY version DESC LIMIT 1',
    );
    this.maxPosition = this.db.prepare('SELECT COALESCE(MAX(position), 0) AS p FROM events');
    this.streamRange = this.db.prepare(STREAM_RANGE);
    this.appendRows = (streamId: string, expected: number, events: readonly PendingEvent[], o: AppendOptions) => {
      const tail = this.tails.get(streamId) ?? this.streamTail.get(streamId);
      const actual = tail?.version ?? 0;
      if (actual !== expected) throw new VersionConflict(streamId, expected, actual);
      let previous = tail ? (tail.hash ?? this.legacyChainTail(streamId)) : null;
      const recorded = events.map((p, i): RecordedEvent => {
        const version = expected + i + 1;
        const row = encodeRow(streamId, version, p.event, o.recordedAt, o.requestId, p.causedByVersion);
        const { type, schema_version: schemaVersion, data } = row;
        previous = chainHash(previous, row);
        const principal = o.principal ?? null;
        const reason = o.reason ?? null;
        const info = this.insert.run(streamId, version, type, schemaVersion, data, o.recordedAt, o.requestId, p.causedByVersion, previous, principal, reason);
        this.appended = true;
        return {
          position: Number(info.lastInsertRowid),
          streamId,
          version,
          recordedAt: o.recordedAt,
          causation: { requestId: o.requestId, causedByVersion: p.causedByVersion, principal, reason },
          event: p.event,
        };
      });
      this.tailAfter = { version: expected + events.length, hash: previous };
      return recorded;
    };
    this.appendTx = this.db.transaction(this.appendRows);
  }

  append(streamId: string, expectedVersion: number, events: readonly PendingEvent[], options: AppendOptions): RecordedEvent[] {
    if (events.length === 0) return [];
    if (this.readonly) throw new StorageFailure('other', `${this.path}: attempt to write a readonly database (opened read-only)`);
    return this.writing(() => {
      if (!this.groupCommit) {
        const recorded = this.appendTx.immediate(streamId, expectedVersion, events, options);
        this.pendingPosition = recorded[recorded.length - 1]!.position;
        this.markCommitted();
        return recorded;
      }
      if (!this.db.inTransaction) {
        this.tails.clear();
        this.db.exec('BEGIN IMMEDIATE');
        this.pendingPosition = 0;
      }
      // No savepoint around it (two more statements per append): the version is checked before the first insert,
      // so a conflict leaves the others be. An insert that fails (SQLite's write failures, or a bug) may leave part
      // of this append behind: then the whole group goes, as a StorageFailure, and the server rebuilds from the log.
      let recorded: RecordedEvent[];
      try {
        recorded = this.appendRows(streamId, expectedVersion, events, options);
      } catch (err) {
        if (err instanceof VersionConflict) {
          this.tails.clear();
          throw err;
        }
        this.rollback();
        if (isWriteFailure(err)) throw err;
        throw new StorageFailure('other', `${this.path}: an append failed, and its group commit with it: ${(err as Error).message}`, { cause: err });
      }
      this.tails.set(streamId, this.tailAfter!);
      this.pendingPosition = recorded[recorded.length - 1]!.position;
      return recorded;
    });
  }

  flush(): void {
    this.tails.clear();
    if (!this.db.inTransaction) return;
    try {
      this.writing(() => this.db.exec('COMMIT'));
    } catch (err) {
      this.pendingPosition = 0;
      throw err;
    }
    this.markCommitted();
  }

  /**
   * Calls back once everything committed so far is on disk: at once when COMMIT itself syncs, else after the
   * WAL's next fdatasync (see syncOffMainThread); the commit marker then moves up to it. An error means it may
   * not be: nothing of it may be let out.
   */
  whenDurable(cb: DurableCallback): void {
    if (!this.walSync) {
      cb(null);
      return;
    }
    const position = this.unsyncedPosition;
    this.unsyncedPosition = 0;
    this.walSync.request((err) => {
      if (!err && position > 0) this.writeMarker(position);
      cb(err);
    });
  }

  rollback(): void {
    // After SQLITE_FULL or an I/O error SQLite may have rolled the transaction back already; then there is none.
    this.tails.clear();
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.appended = false;
    this.pendingPosition = 0;
  }

  /** The highest position in the log (0 when it is empty). */
  lastPosition(): number {
    return this.maxPosition.get()!.p;
  }

  /** Writes the commit marker now (the server, once it has decided to serve this log). */
  writeCommitMarker(): void {
    this.marker?.write(this.lastPosition());
  }

  /** Runs a write; SQLite's write failures (full, I/O, read-only) become StorageFailure, the rest pass through. */
  private writing<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (!isWriteFailure(err)) throw err;
      const code = err.code;
      const reason = code === 'SQLITE_FULL' ? 'full' : 'other';
      throw new StorageFailure(reason, `${this.path}: ${(err as Error).message} (${code})`, { cause: err });
    }
  }

  private markCommitted(): void {
    if (!this.marker || !this.appended) return;
    this.appended = false;
    // The committed maximum: the last position this transaction appended (positions only grow within one), else
    // read back (a max lookup on the primary key); never a position that was rolled back.
    const position = this.pendingPosition || this.lastPosition();
    this.pendingPosition = 0;
    // Off the main thread, the marker says a position only once it is synced (whenDurable): never more than the disk holds.
    if (this.walSync) this.unsyncedPosition = position;
    else this.writeMarker(position);
  }

  private writeMarker(position: number): void {
    try {
      this.marker?.write(position);
    } catch {
      // The events are committed; the marker stays behind (it only ever reports a log shorter than itself).
    }
  }

  /** The chain value of a stream written before hash chains (its events have no stored hash): computed from v1. */
  private legacyChainTail(streamId: string): Buffer | null {
    let previous: Buffer | null = null;
    const rows = this.db
      .prepare('SELECT stream_id, version, type, schema_version, data, recorded_at, request_id, caused_by_version, hash FROM events WHERE stream_id = ? ORDER BY version')
      .iterate(streamId) as IterableIterator<HashedRow & { hash: Buffer | null }>;
    for (const row of rows) previous = row.hash ?? chainHash(previous, row);
    return previous;
  }

  *readStream(streamId: string, range: { afterVersion?: number; toVersion?: number } = {}): IterableIterator<RecordedEvent> {
    // Prepared once: with --auth on every call reads the token stream's tail through here. A statement still being
    // iterated (another readStream not finished) is busy: then this one gets its own.
    const statement = this.streamRange.busy ? this.db.prepare(STREAM_RANGE) : this.streamRange;
    const rows = statement.iterate(streamId, range.afterVersion ?? 0, range.toVersion ?? Number.MAX_SAFE_INTEGER) as IterableIterator<EventRow>;
    for (const row of rows) yield recordedFromRow(row, this.validate);
  }

  /**
   * A long read (a start replaying the log, replay, verify) is read ahead by a worker thread on its own connection,
   * up to the last position this connection sees when the first event is asked for (where a read on this
   * connection would start too). Not while a transaction is open: the worker would not see its uncommitted rows.
   */
  *readAll(afterPosition = 0): IterableIterator<RecordedEvent> {
    const toPosition = this.lastPosition();
    if (toPosition - afterPosition < this.readAheadMinRows || this.db.memory || this.db.inTransaction) yield* this.readRows(afterPosition);
    else yield* readAhead({ path: this.path, afterPosition, toPosition, validate: this.validate }, (after) => this.readRows(after));
  }

  private *readRows(afterPosition: number): IterableIterator<RecordedEvent> {
    const rows = this.db
      .prepare('SELECT * FROM events WHERE position > ? ORDER BY position')
      .iterate(afterPosition) as IterableIterator<EventRow>;
    for (const row of rows) yield recordedFromRow(row, this.validate);
  }

  eventAt(position: number): RecordedEvent | undefined {
    const row = this.db.prepare('SELECT * FROM events WHERE position = ?').get(position) as EventRow | undefined;
    return row && recordedFromRow(row, this.validate);
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
      const rec: LoggedEvent = { ...recordedFromRow(row, this.validate), storedSchemaVersion: row.schema_version };
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

  /** The stream keeps its versions, times and causes; its hash chain is computed here as appends compute it. */
  importStream(streamId: string, events: readonly ImportedEvent[]): void {
    if (this.readonly) throw new StorageFailure('other', `${this.path}: attempt to write a readonly database (opened read-only)`);
    this.writing(() =>
      this.db
        .transaction(() => {
          if (this.streamTail.get(streamId)) throw new StreamExists(streamId);
          let previous: Buffer | null = null;
          for (const e of events) {
            const row = encodeRow(streamId, e.version, e.event, e.recordedAt, e.causation.requestId, e.causation.causedByVersion);
            const { type, schema_version: schemaVersion, data } = row;
            previous = chainHash(previous, row);
            this.insert.run(streamId, e.version, type, schemaVersion, data, e.recordedAt, row.request_id, row.caused_by_version, previous, e.causation.principal ?? null, e.causation.reason ?? null);
          }
          this.appended = true;
        })
        .immediate(),
    );
    this.markCommitted();
  }

  close(): void {
    if (!this.db.open) return;
    this.flush();
    if (this.walSync) {
      this.walSync.close(); // syncs what is left, and runs what waited for it
      if (this.unsyncedPosition > 0) this.writeMarker(this.unsyncedPosition);
    }
    this.db.close();
    this.marker?.close();
  }
}
