// What the two halves of a read-ahead (read-ahead.ts, read-ahead-worker.ts) say to each other.
import type { MessagePort } from 'node:worker_threads';

export interface ReadAheadJob {
  readonly path: string;
  readonly afterPosition: number;
  /** The last position the reader's own connection saw: the worker reads no further, whatever is appended meanwhile. */
  readonly toPosition: number;
  readonly batchRows: number;
  /** Batches that may wait unread. */
  readonly ahead: number;
  readonly port: MessagePort;
  /** Int32 [batches posted and not yet taken, batches posted in all]: flow control and the reader's wake-up. */
  readonly control: SharedArrayBuffer;
}

/** What the worker reads of each row, in this order. */
export const EVENT_COLUMNS = [
  'position',
  'stream_id',
  'version',
  'type',
  'schema_version',
  'data',
  'recorded_at',
  'request_id',
  'caused_by_version',
  'principal',
  'reason',
] as const;

/** Numbers per row in ReadAheadBatch.numbers: position, version, schema version, recorded at, caused by version (-1: none). */
export const FIELDS = 5;
/** Indexes per row in ReadAheadBatch.names: stream, type (into the streams and types sent so far), request id, principal, reason (into the batch's texts; -1: null). */
export const NAMES = 5;

export interface ReadAheadBatch {
  readonly kind: 'rows';
  count: number;
  readonly numbers: Float64Array<ArrayBuffer>;
  readonly names: Int32Array<ArrayBuffer>;
  /** The rows' data columns as one JSON array: the reader parses a batch with one JSON.parse. */
  readonly data: string;
  /** The batch's request ids, principals and reasons, each once: they repeat from row to row. */
  readonly texts: string[];
  readonly newStreams: string[];
  readonly newTypes: string[];
}

export type ReadAheadMessage = ReadAheadBatch | { readonly kind: 'end' } | { readonly kind: 'failed'; readonly error: string };
