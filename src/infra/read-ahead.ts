// Reading a large part of the log on two threads: a worker steps through the rows on its own read-only connection
// (src/infra/read-ahead-worker.ts) while the caller's thread parses and folds them. Reading a row with better-sqlite3
// costs about three times what parsing its data does, so a start that replays the whole log keeps its thread for
// the fold. The caller sees the same events in the same order, decoded the same way, and the same errors: whatever
// the worker cannot do (start, read a row, hand over data that parses) is read on the caller's own connection from
// the last event it yielded.
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { RecordedEvent } from '../domain/events.js';
import { recordedFromRow, type Validation } from './event-codec.js';
import { FIELDS, NAMES, type ReadAheadJob, type ReadAheadMessage } from './read-ahead-protocol.js';

/** Below this many rows a worker's start (tens of ms) costs more than it saves. */
export const READ_AHEAD_MIN_ROWS = 20_000;
const BATCH_ROWS = 1000;
const AHEAD = 16;
/** A worker that hands over nothing for this long is taken for stuck: the rest is read on the caller's connection. */
const STALL_MS = 30_000;

export interface ReadAheadRange {
  readonly path: string;
  readonly afterPosition: number;
  readonly toPosition: number;
  readonly validate: Validation;
}

/**
 * The events after `afterPosition` up to `toPosition`, in position order. `rest(after)` reads on the caller's own
 * connection: it takes over where the worker stops short.
 */
export function* readAhead(range: ReadAheadRange, rest: (afterPosition: number) => IterableIterator<RecordedEvent>): IterableIterator<RecordedEvent> {
  const control = new SharedArrayBuffer(8);
  const counters = new Int32Array(control);
  const { port1, port2 } = new MessageChannel();
  const job: ReadAheadJob = {
    path: range.path,
    afterPosition: range.afterPosition,
    toPosition: range.toPosition,
    batchRows: BATCH_ROWS,
    ahead: AHEAD,
    port: port2,
    control,
  };
  let worker: Worker;
  try {
    worker = new Worker(new URL('./read-ahead-worker.js', import.meta.url), { workerData: job, transferList: [port2] });
  } catch {
    port1.close();
    yield* rest(range.afterPosition);
    return;
  }
  worker.unref();
  let taken = 0;
  // Blocking on purpose: the caller iterates synchronously (a start replays before it serves anything).
  const next = (): ReadAheadMessage | undefined => {
    const deadline = Date.now() + STALL_MS;
    for (;;) {
      const got = receiveMessageOnPort(port1);
      if (got) {
        taken++;
        Atomics.sub(counters, 0, 1);
        Atomics.notify(counters, 0);
        return got.message as ReadAheadMessage;
      }
      if (Date.now() > deadline) return undefined;
      Atomics.wait(counters, 1, taken, 100);
    }
  };
  let last = range.afterPosition;
  const streams: string[] = [];
  const types: string[] = [];
  try {
    for (;;) {
      const message = next();
      if (message?.kind === 'end') return;
      if (message?.kind !== 'rows') break;
      streams.push(...message.newStreams);
      types.push(...message.newTypes);
      let data: Record<string, unknown>[];
      try {
        data = JSON.parse(message.data) as Record<string, unknown>[];
      } catch {
        break; // a row whose data is not JSON: the caller's connection reads it and says which
      }
      const { numbers, names, texts } = message;
      const text = (i: number) => (i < 0 ? null : texts[i]!);
      for (let i = 0; i < message.count; i++) {
        const n = FIELDS * i;
        const m = NAMES * i;
        const row = {
          position: numbers[n]!,
          stream_id: streams[names[m]!]!,
          version: numbers[n + 1]!,
          type: types[names[m + 1]!]!,
          schema_version: numbers[n + 2]!,
          data: data[i]!,
          recorded_at: numbers[n + 3]!,
          request_id: text(names[m + 2]!),
          caused_by_version: numbers[n + 4]! < 0 ? null : numbers[n + 4]!,
          principal: text(names[m + 3]!),
          reason: text(names[m + 4]!),
        };
        yield recordedFromRow(row, range.validate);
        last = row.position;
      }
    }
    yield* rest(last);
  } finally {
    port1.close();
    void worker.terminate();
  }
}
