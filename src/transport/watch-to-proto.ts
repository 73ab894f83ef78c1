// WatchItem → WorkPlanEvent messages (one for the node change, one for the completion, in that order), and their
// wire bytes, encoded once for every watcher that gets them.
import type { Completion, NodeChange } from '../../projections/watch-tracker.js';
import type { WatchItem } from '../app/watch.js';
import { CheckState, StageState } from '../gen/turboci/v1/common.js';
import { WorkPlanEvent } from '../gen/turboci/v1/service.js';
import { CHECK_STATE, checkToProto, STAGE_STATE, stageToProto } from './to-proto.js';

export function watchItemToProto(workPlanId: string, item: WatchItem): WorkPlanEvent[] {
  const out: WorkPlanEvent[] = [];
  const timestamp = new Date(item.timestamp);
  const c = item.change;
  if (c?.kind === 'check') {
    out.push({
      timestamp,
      version: BigInt(item.version),
      snapshot: item.snapshot,
      principal: item.principal ?? '',
      reason: item.reason ?? '',
      checkEvent: {
        checkId: c.after.id,
        oldState: c.before ? CHECK_STATE[c.before.state] : CheckState.CHECK_STATE_UNKNOWN,
        newState: CHECK_STATE[c.after.state],
        check: checkToProto(workPlanId, c.after),
      },
    });
  } else if (c?.kind === 'stage') {
    out.push({
      timestamp,
      version: BigInt(item.version),
      snapshot: item.snapshot,
      principal: item.principal ?? '',
      reason: item.reason ?? '',
      stageEvent: {
        stageId: c.after.id,
        oldState: c.before ? STAGE_STATE[c.before.state] : StageState.STAGE_STATE_UNKNOWN,
        newState: STAGE_STATE[c.after.state],
        stage: stageToProto(workPlanId, c.after),
      },
    });
  }
  if (item.completed) {
    out.push({ timestamp, version: BigInt(item.version), snapshot: item.snapshot, principal: item.principal ?? '', reason: item.reason ?? '', completedEvent: { ...item.completed } });
  }
  return out;
}

/**
 * A live change goes to every watcher of the workplan whose filter matches, as the same NodeChange / Completion
 * object: its bytes are encoded once and shared (with 100 watchers, serialization was a quarter of the fan-out
 * cost). Snapshot and resumed items are per subscriber and encoded each time.
 */
const encoded = new WeakMap<NodeChange | Completion, Buffer>();

export function watchItemToBytes(workPlanId: string, item: WatchItem): Buffer[] {
  const shared = !item.snapshot ? [item.change, item.completed].filter((x): x is NodeChange | Completion => x !== null) : [];
  const cached = shared.map((x) => encoded.get(x));
  if (shared.length > 0 && cached.every((b) => b !== undefined)) return [...(cached as Buffer[])];
  const bytes = watchItemToProto(workPlanId, item).map((m) => Buffer.from(WorkPlanEvent.encode(m).finish()));
  shared.forEach((x, i) => encoded.set(x, bytes[i]!));
  return bytes;
}

/**
 * A WorkPlanEventBatch made of already encoded WorkPlanEvents: each is field 1 (length-delimited) of the batch, so
 * the shared bytes of every event are framed, not encoded again.
 */
export function batchFrame(events: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of events) parts.push(FIELD_1_LEN, varint(e.length), e);
  return Buffer.concat(parts);
}

const FIELD_1_LEN = Buffer.from([0x0a]); // field 1, wire type 2

function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}
