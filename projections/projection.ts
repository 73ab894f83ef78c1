import type { EventType, RecordedEvent } from '../src/domain/events.js';

/** A read model folded from the log. Knows events, never gRPC. */
export interface Projection {
  readonly name: string;
  /** The event types `fold` is given; other events never reach it. */
  readonly handles: readonly EventType[];
  /** Folds one recorded event. Projections are folded in the order ReadModels lists them. */
  fold(rec: RecordedEvent): void;
}

/** Folds `batch` into `projection`, skipping the event types it does not handle. */
export function foldBatch(projection: Projection, handles: ReadonlySet<EventType>, batch: readonly RecordedEvent[]): void {
  for (const rec of batch) if (handles.has(rec.event.type)) projection.fold(rec);
}
