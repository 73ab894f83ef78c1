// Selecting events: what `turboci events` and the event-log tools ask the store (or a server) for.
import { eventNode, type RecordedEvent } from '../domain/events.js';

/** What a filtered read selects; every field is optional and they combine with AND. */
export interface EventFilter {
  readonly workPlanId?: string;
  readonly types?: readonly string[];
  /** A node id, optionally `check:` or `stage:` prefixed. */
  readonly node?: string;
  readonly fromVersion?: number;
  readonly toVersion?: number;
  readonly fromPosition?: number;
  readonly toPosition?: number;
  /** Epoch ms, inclusive. */
  readonly since?: number;
  /** Epoch ms, inclusive. */
  readonly until?: number;
}

export function matchesNode(rec: RecordedEvent, node: string): boolean {
  const about = eventNode(rec.event);
  if (!about) return false;
  const colon = node.indexOf(':');
  const kind = colon > 0 ? node.slice(0, colon) : '';
  if (kind === 'check' || kind === 'stage') return about.kind === kind && about.id === node.slice(colon + 1);
  return about.id === node;
}

/** The filters a reader could not apply itself (it applies what it can, e.g. in SQL). */
export function matches(rec: RecordedEvent, f: EventFilter): boolean {
  if (f.workPlanId !== undefined && rec.streamId !== f.workPlanId) return false;
  if (f.types?.length && !f.types.includes(rec.event.type)) return false;
  if (f.node !== undefined && !matchesNode(rec, f.node)) return false;
  if (f.fromVersion !== undefined && rec.version < f.fromVersion) return false;
  if (f.toVersion !== undefined && rec.version > f.toVersion) return false;
  if (f.fromPosition !== undefined && rec.position < f.fromPosition) return false;
  if (f.toPosition !== undefined && rec.position > f.toPosition) return false;
  if (f.since !== undefined && rec.recordedAt < f.since) return false;
  if (f.until !== undefined && rec.recordedAt > f.until) return false;
  return true;
}
