// Events as stored: type, schema version and JSON data. Reading goes through the upcasters, then the zod schema,
// so logs written by older code stay readable after the event model evolves.
import { DomainEvent, SCHEMA_VERSION, type EventType, type RecordedEvent } from '../domain/events.js';
import type { HashedRow } from './hash-chain.js';

export interface StoredEventRow {
  readonly type: string;
  readonly schema_version: number;
  readonly data: string;
}

/** A row whose data column may already be parsed (src/infra/read-ahead.ts parses a batch of rows at once). */
export type ReadRow<R extends StoredEventRow> = Omit<R, 'data'> & { readonly data: string | Record<string, unknown> };

/** Turns data of schema version N into version N+1, keyed by `${type}@${N}`. */
export type Upcaster = (data: Record<string, unknown>) => Record<string, unknown>;
export const UPCASTERS: Readonly<Record<string, Upcaster>> = {
  /** Version 1 did not record who created a workplan: read it as unknown (''). */
  'WorkPlanCreated@1': (data) => ({ ...data, createdBy: '' }),
  // Version 2 of these four records fewer events per stage (see events.ts); version 1 data reads as it is.
  'StageAttemptStateChanged@1': (data) => data,
  // Version 3 records the stage's end on the completing attempt's change; version 2 data reads as it is.
  'StageAttemptStateChanged@2': (data) => data,
  'StageAttemptDispatched@1': (data) => data,
  'StageAttemptLeased@1': (data) => data,
  'StageAttemptCreated@1': (data) => data,
  // Version 2 may record the state a check was created in; version 1 data (no state: PLANNING) reads as it is.
  'CheckCreated@1': (data) => data,
};

export function encodeEvent(event: DomainEvent): { type: string; schemaVersion: number; data: string } {
  return { type: event.type, schemaVersion: SCHEMA_VERSION[event.type], data: JSON.stringify(event.data) };
}

/**
 * `validate: 'upcast'` checks with zod only what had to be upcast; rows already in the current shape are taken as
 * written (the server's own start-up, where the rows are what its deciders built). Everything else, from `verify` to
 * `import`, validates every row.
 */
export type Validation = 'all' | 'upcast';

export function decodeEvent(
  row: ReadRow<StoredEventRow>,
  upcasters: Readonly<Record<string, Upcaster>> = UPCASTERS,
  validate: Validation = 'all',
): DomainEvent {
  const current = SCHEMA_VERSION[row.type as EventType];
  if (current === undefined) throw new Error(`unknown event type ${row.type}`);
  if (row.schema_version > current) {
    throw new Error(`${row.type} has schema version ${row.schema_version}, newer than this server knows (${current})`);
  }
  let data = (typeof row.data === 'string' ? JSON.parse(row.data) : row.data) as Record<string, unknown>;
  if (validate === 'upcast' && row.schema_version === current) return { type: row.type, data } as DomainEvent;
  for (let v = row.schema_version; v < current; v++) {
    const up = upcasters[`${row.type}@${v}`];
    if (!up) throw new Error(`no upcaster for ${row.type} from schema version ${v}`);
    data = up(data);
  }
  return DomainEvent.parse({ type: row.type, data });
}

/** A stored event row, as both stores read it back. */
export interface EventRow extends StoredEventRow {
  readonly position: number;
  readonly stream_id: string;
  readonly version: number;
  readonly recorded_at: number;
  readonly request_id: string | null;
  readonly caused_by_version: number | null;
  readonly principal?: string | null;
  readonly reason?: string | null;
}

/** An event as a row of the log (what its hash covers), encoded at the current schema version. */
export function encodeRow(
  streamId: string,
  version: number,
  event: DomainEvent,
  recordedAt: number,
  requestId: string | null,
  causedByVersion: number | null,
): HashedRow {
  const { type, schemaVersion, data } = encodeEvent(event);
  return { stream_id: streamId, version, type, schema_version: schemaVersion, data, recorded_at: recordedAt, request_id: requestId, caused_by_version: causedByVersion };
}

/** A row as a recorded event; a row that cannot be decoded is named by its position and stream. */
export function recordedFromRow(row: ReadRow<EventRow>, validate: Validation): RecordedEvent {
  let event;
  try {
    event = decodeEvent(row, UPCASTERS, validate);
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
