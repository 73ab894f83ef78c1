// When the pumps of watch streams run. A write wakes every watcher of its workplan at once (from the bus callback,
// where nothing may be written synchronously): their pumps all run from one setImmediate, in the order they were
// woken, instead of one setImmediate each. A stream with a coalescing window (max_batch_delay_ms) that wrote less
// than a window ago waits for the next boundary of its window (a multiple of it on the monotonic clock): every stream
// due at the same boundary is pumped by one timer, one after the other, so watchers fed by the same writes write
// the same pending events back to back (and share their batch frame: see batchFrame).
import { performance } from 'node:perf_hooks';

/** A stream's pump; `at` is when it was due (performance.now() ms): now, or its window boundary. */
export type Pump = (at: number) => void;

export class PumpScheduler {
  private queued: Pump[] = [];
  private immediate = false;
  /** Pumps waiting for a window boundary, by that boundary. */
  private readonly slots = new Map<number, Pump[]>();

  now(): number {
    return performance.now();
  }

  /** Runs `pump` at the next turn of the event loop, with the pumps woken in this one. */
  soon(pump: Pump): void {
    this.queued.push(pump);
    if (this.immediate) return;
    this.immediate = true;
    setImmediate(this.runQueued);
  }

  /** Runs `pump` at the first multiple of `windowMs` at or after `notBefore` (performance.now() ms). */
  at(notBefore: number, windowMs: number, pump: Pump): void {
    const due = Math.ceil(notBefore / windowMs) * windowMs;
    const slot = this.slots.get(due);
    if (slot) {
      slot.push(pump);
      return;
    }
    const pumps = [pump];
    this.slots.set(due, pumps);
    // unref: an open stream keeps the server running anyway; a closed one has nothing left to pump.
    setTimeout(() => {
      this.slots.delete(due);
      run(pumps, due);
    }, Math.max(0, due - this.now())).unref();
  }

  private readonly runQueued = (): void => {
    const pumps = this.queued;
    this.queued = [];
    this.immediate = false;
    run(pumps, this.now());
  };
}

/** Each pump catches its own errors (see WatchService); one that throws anyway must not starve the others. */
function run(pumps: readonly Pump[], at: number): void {
  let failed: unknown;
  for (const pump of pumps) {
    try {
      pump(at);
    } catch (err) {
      failed ??= err;
    }
  }
  if (failed !== undefined) throw failed;
}
