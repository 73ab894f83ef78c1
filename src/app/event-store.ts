import type { PendingEvent, RecordedEvent } from '../domain/events.js';
import type { EventFilter } from './event-filter.js';

/** Thrown when a stream's version is not the one the appender expected. */
export class VersionConflict extends Error {
  constructor(
    readonly streamId: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`stream ${streamId} is at version ${actual}, expected ${expected}`);
    this.name = 'VersionConflict';
  }
}

/**
 * The log could not be written (disk full, I/O error, read-only file): the append or commit did not happen, and
 * with group commit neither did any other append since the last flush. Reading still works.
 */
export class StorageFailure extends Error {
  constructor(
    /** full: SQLITE_FULL (disk or file system full); other: any other write failure. */
    readonly reason: 'full' | 'other',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StorageFailure';
  }
}

export interface AppendOptions {
  readonly requestId: string | null;
  readonly recordedAt: number;
  /** Who caused the events (causation.principal) and why (causation.reason). */
  readonly principal?: string | null;
  readonly reason?: string | null;
}

/** Thrown by importStream when the stream already has events. */
export class StreamExists extends Error {
  constructor(readonly streamId: string) {
    super(`stream ${streamId} already has events`);
    this.name = 'StreamExists';
  }
}

/** A recorded event, with the schema version it was stored at when the reader knows it. */
export interface LoggedEvent extends RecordedEvent {
  /** The schema version of the stored row (older ones were upcast to the current shape on read). */
  readonly storedSchemaVersion?: number;
}

/** A stream and its current version. */
export interface StreamSummary {
  readonly id: string;
  readonly version: number;
}

/** An event as another log recorded it: imported with the same version, time and causes. */
export type ImportedEvent = Omit<RecordedEvent, 'position' | 'streamId'>;

/**
 * A log that other servers write too (PostgreSQL replicas). A server decides on its own read models, so before it
 * decides it folds what the others committed: beginWrite takes the log's write lock for this turn's group commit
 * (released by flush or rollback) and hands back the events committed since the server last looked, and nobody
 * else commits until the flush. Between writes, tail and onCommitted keep reads and watches current.
 */
export interface SharedLog {
  /** Opens the turn's write transaction (a no-op while one is open); the events committed after afterPosition. */
  beginWrite(afterPosition: number): RecordedEvent[];
  /** Events committed after afterPosition (a page of them), without the lock; [] while a write is open. */
  tail(afterPosition: number): RecordedEvent[];
  /** Calls wake when another server commits (a hint: tail is the truth). Returns the unsubscription. */
  onCommitted(wake: () => void, onError: (message: string) => void): () => void;
  /** The ids of the server processes connected to the log now (see PostgresEventStoreOptions.serverId). */
  liveServers(): ReadonlySet<string>;
}

/** The append-only event log. The only source of truth; everything else is folded from it. */
export interface EventStore {
  /** Set when other servers append to this log too (see SharedLog). */
  readonly shared?: SharedLog;
  /** Appends atomically after `expectedVersion` (0 for a new stream), or throws VersionConflict. */
  append(streamId: string, expectedVersion: number, events: readonly PendingEvent[], options: AppendOptions): RecordedEvent[];
  /** A stream's events with afterVersion < version <= toVersion, in order. */
  readStream(streamId: string, range?: { afterVersion?: number; toVersion?: number }): IterableIterator<RecordedEvent>;
  /** Every event after a global position, in commit order. */
  readAll(afterPosition?: number): IterableIterator<RecordedEvent>;
  /** The event at a global position, if there is one. */
  eventAt(position: number): RecordedEvent | undefined;
  /** Matching events: in stream order for one workplan, in commit (position) order otherwise. */
  readFiltered(filter: EventFilter): IterableIterator<LoggedEvent>;
  /** Workplan streams (those that start with WorkPlanCreated) and their versions, in creation order. */
  workPlans(): StreamSummary[];
  /** One workplan stream's version, or undefined when there is no such workplan. */
  workPlan(id: string): StreamSummary | undefined;
  /** How many events the log holds. */
  count(): number;
  /** Appends a whole stream exported from another log, atomically; StreamExists if it has events here. */
  importStream(streamId: string, events: readonly ImportedEvent[]): void;
  /** True when appends are durable only once flush() commits them (group commit); false when each commits itself. */
  readonly groupCommit: boolean;
  /** Makes every append so far durable (a no-op for a store whose every append commits by itself). */
  flush(): void;
  /**
   * Only on a store whose flush() commits before the commit is on disk (SQLite syncing off the main thread): calls
   * back once everything flushed so far is durable, in call order; with an error if it may not be.
   */
  whenDurable?(cb: (err: Error | null) => void): void;
  /** Drops every append since the last flush (after a StorageFailure: the open group is gone, or must go). */
  rollback?(): void;
  close(): void;
}
