import type { EventType, RecordedEvent } from '../src/domain/events.js';

/** A read model folded from the log. Knows events, never gRPC. */
export interface Projection {
  readonly name: string;
  /** The event types `fold` is given; other events never reach it. */
  readonly handles: readonly EventType[];
  /** Folds one recorded event. Projections are folded in the order ReadModels lists them. */
  fold(rec: RecordedEvent): void;
}

/**
 * A projection whose state can be saved in a read-model snapshot (projections/snapshot.ts) and taken back: plain
 * data (Maps, Sets, arrays, objects; objects shared between its indexes stay shared through the round trip).
 */
export interface SnapshotProjection extends Projection {
  snapshot(): unknown;
  restore(state: unknown): void;
}

/** Folds `batch` into `projection`, skipping the event types it does not handle. */
export function foldBatch(projection: Projection, handles: ReadonlySet<EventType>, batch: readonly RecordedEvent[]): void {
  for (const rec of batch) if (handles.has(rec.event.type)) projection.fold(rec);
}
