// WatchItem → WorkPlanEvent messages (one for the node change, one for the completion, in that order), and their
// wire bytes, encoded once for every watcher that gets them.
import type { Completion, NodeChange } from '../../projections/watch-tracker.js';
import type { LiveLog } from '../app/live-log.js';
import type { LiveRange, WatchItem } from '../app/watch.js';
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

/**
 * The messages of `item`, appended to `out` (returned). Live items reuse the bytes cached on their shared change /
 * completion objects, without allocating anything else.
 */
export function watchItemToBytes(workPlanId: string, item: WatchItem, out: Buffer[] = []): Buffer[] {
  if (!item.snapshot) {
    const change = item.change === null ? null : encoded.get(item.change);
    const completed = item.completed === null ? null : encoded.get(item.completed);
    if (change !== undefined && completed !== undefined && (change !== null || completed !== null)) {
      if (change) out.push(change);
      if (completed) out.push(completed);
      return out;
    }
  }
  const messages = watchItemToProto(workPlanId, item);
  for (let i = 0; i < messages.length; i++) {
    const bytes = Buffer.from(WorkPlanEvent.encode(messages[i]!).finish());
    out.push(bytes);
    if (!item.snapshot) {
      // watchItemToProto makes the change's message first, then the completion's.
      const owner = i === 0 && item.change ? item.change : item.completed;
      if (owner) encoded.set(owner, bytes);
    }
  }
  return out;
}

/**
 * The encoded events of `first` and of the items `more()` gives, for one batch: more are taken only while the batch
 * holds fewer than `maxEvents` events and `maxBytes` bytes (the first item always goes, whatever its size).
 */
export function batchEvents(workPlanId: string, first: WatchItem, more: () => WatchItem | undefined, maxEvents: number, maxBytes: number): Buffer[] {
  const events = watchItemToBytes(workPlanId, first);
  let bytes = 0;
  for (const e of events) bytes += e.length;
  for (let item = events.length < maxEvents && bytes < maxBytes ? more() : undefined; item; ) {
    const from = events.length;
    watchItemToBytes(workPlanId, item, events);
    for (let k = from; k < events.length; k++) bytes += events[k]!.length;
    item = events.length < maxEvents && bytes < maxBytes ? more() : undefined;
  }
  return events;
}

/** The last frame batchFrame built, and the event buffers it was built from (never mutated: see `encoded`). */
let lastEvents: readonly Buffer[] = [];
let lastFrame: Buffer | null = null;

/**
 * A WorkPlanEventBatch made of already encoded WorkPlanEvents: each is field 1 (length-delimited) of the batch, so
 * the shared bytes of every event are framed, not encoded again. Watchers of a workplan are pumped one after the
 * other, and those with the same filter have the very same buffers pending: the frame built for the previous one is
 * returned again when its events are the same buffers in the same order (grpc-js copies a message as it frames it,
 * so one Buffer can be written to many calls). `events` must not be changed afterwards.
 */
export function batchFrame(events: readonly Buffer[]): Buffer {
  if (lastFrame !== null && sameBuffers(events, lastEvents)) return lastFrame;
  lastEvents = events;
  lastFrame = frameOf(events);
  return lastFrame;
}

/** The last frame liveRangeFrame built from each shared live log, and the range it was asked for. */
const rangeFrames = new WeakMap<LiveLog<WatchItem>, { readonly from: number; readonly to: number; readonly end: number; readonly frame: Buffer }>();

/**
 * The batch message for a subscriber's pending live range: its items from `from` on, as many as fit under the limits
 * (the first always does), and `end`, the index after the last one in it. Watchers of a workplan that take every
 * change are pumped one after the other at the same place in its log, so the frame is built once for all of them:
 * a watcher costs a lookup and a write, not a pass over its events.
 */
export function liveRangeFrame(workPlanId: string, range: LiveRange, maxEvents: number, maxBytes: number): { frame: Buffer; end: number } {
  const cached = rangeFrames.get(range.log);
  if (cached && cached.from === range.from && cached.to === range.to) return cached;
  let i = range.from;
  const events = batchEvents(workPlanId, range.log.at(i++), () => (i < range.to ? range.log.at(i++) : undefined), maxEvents, maxBytes);
  const built = { from: range.from, to: range.to, end: i, frame: frameOf(events) };
  rangeFrames.set(range.log, built);
  return built;
}

/** A WorkPlanEventBatch of already encoded WorkPlanEvents. */
function frameOf(events: readonly Buffer[]): Buffer {
  let size = 0;
  for (const e of events) size += 1 + varintSize(e.length) + e.length;
  const frame = Buffer.allocUnsafe(size);
  let at = 0;
  for (const e of events) {
    frame[at++] = 0x0a; // field 1, wire type 2
    let n = e.length;
    while (n > 0x7f) {
      frame[at++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    frame[at++] = n;
    at += e.copy(frame, at);
  }
  return frame;
}

function sameBuffers(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function varintSize(n: number): number {
  let size = 1;
  while (n > 0x7f) {
    size++;
    n >>>= 7;
  }
  return size;
}
