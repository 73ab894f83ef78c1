// The JSON (NDJSON) form of an event: `turboci events --json`, `turboci export`, `turboci import`.
import type { LoggedEvent } from '../event-store.js';

export interface EventJson {
  readonly position: number;
  readonly workPlanId: string;
  readonly version: number;
  readonly type: string;
  /** The shape `data` is in (the current one: older rows are upcast on read). */
  readonly schemaVersion: number;
  /** The schema version of the stored row, when it differs from schemaVersion. */
  readonly storedSchemaVersion?: number;
  /** ISO 8601, millisecond precision. */
  readonly recordedAt: string;
  readonly requestId: string | null;
  readonly causedByVersion: number | null;
  /** Who caused it (a token name, `anonymous`, `system`; null before principals were recorded) and why. */
  readonly principal?: string | null;
  readonly reason?: string | null;
  readonly data: unknown;
}

export function eventToJson(rec: LoggedEvent, schemaVersion: number): EventJson {
  return {
    position: rec.position,
    workPlanId: rec.streamId,
    version: rec.version,
    type: rec.event.type,
    schemaVersion,
    ...(rec.storedSchemaVersion !== undefined && rec.storedSchemaVersion !== schemaVersion
      ? { storedSchemaVersion: rec.storedSchemaVersion }
      : {}),
    recordedAt: new Date(rec.recordedAt).toISOString(),
    requestId: rec.causation.requestId,
    causedByVersion: rec.causation.causedByVersion,
    // Absent in rows recorded before principals were (their JSON reads as it always did).
    ...(rec.causation.principal ? { principal: rec.causation.principal } : {}),
    ...(rec.causation.reason ? { reason: rec.causation.reason } : {}),
    data: rec.event.data,
  };
}
