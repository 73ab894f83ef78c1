import type { PendingEvent, RecordedEvent } from '../domain/events.js';

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
}

/** The append-only event log. The only source of truth; everything else is folded from it. */
export interface EventStore {
  /** Appends atomically after `expectedVersion` (0 for a new stream), or throws VersionConflict. */
  append(streamId: string, expectedVersion: number, events: readonly PendingEvent[], options: AppendOptions): RecordedEvent[];
  /** A stream's events with afterVersion < version <= toVersion, in order. */
  readStream(streamId: string, range?: { afterVersion?: number; toVersion?: number }): IterableIterator<RecordedEvent>;
  /** Every event after a global position, in commit order. */
  readAll(afterPosition?: number): IterableIterator<RecordedEvent>;
  /** True when appends are durable only once flush() commits them (group commit); false when each commits itself. */
  readonly groupCommit: boolean;
  /** Makes every append so far durable (a no-op for a store whose every append commits by itself). */
  flush(): void;
  /** Drops every append since the last flush (after a StorageFailure: the open group is gone, or must go). */
  rollback?(): void;
  close(): void;
}
