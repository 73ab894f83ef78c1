// Memory at rest follows what is live, not what a busy period left behind. Every event replaces the node objects it
// changes; the old versions have usually been promoted to V8's old generation by then, so a busy period leaves the
// old-space pages holding scattered live objects between dead ones. V8's full GCs compact only a few of those pages
// (at most a few MB of live objects each, even in its memory reducer), so a process idle after loading a large
// workplan kept about twice its live heap as RSS, for good (measured in docs/performance.md, "Memory at rest").
//
// The IdleCompactor gives that back once the server is idle: when nothing was appended for idleMs after something
// was, and the heap holds at least minWastedBytes more than it uses (fragmented old space, and the young generation
// grown to its maximum, which a GC at a low allocation rate shrinks), it runs one full GC that compacts every page.
// That GC stops the thread (0.2-1.3 s with 85-120 MB live, 4.6 s with 1.16 GB, on a shared 2-core machine): it
// runs once per busy period, only when the log has been still for idleMs, and says so in the log.
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../logging.js';

/**
 * Heap physically held but not used, in old space (pages fragmented by dead objects) and in the young generation
 * (grown to its maximum under load, ~32 MB, a few MB of it used): what an idle compaction gives back. A GC at a low
 * allocation rate shrinks the young generation, and the compaction empties fragmented pages. (Used counts objects
 * that died since the last GC too, so this is a lower bound.)
 */
export function wastedHeapBytes(): number {
  let wasted = 0;
  for (const s of getHeapSpaceStatistics()) {
    if (s.space_name === 'old_space' || s.space_name === 'new_space') wasted += Math.max(0, s.physical_space_size - s.space_used_size);
  }
  return wasted;
}

let gcFunction: (() => void) | undefined;

/**
 * V8's gc() without starting node with --expose-gc: a context created while the flag is set gets it (the flag is
 * cleared again at once, so no other context sees a `gc`). When the process already has one (--expose-gc), that one.
 */
function fullGc(): () => void {
  if (gcFunction) return gcFunction;
  const own = (globalThis as { gc?: () => void }).gc;
  if (typeof own === 'function') return (gcFunction = own);
  setFlagsFromString('--expose-gc');
  try {
    gcFunction = runInNewContext('gc') as () => void;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return gcFunction;
}

export interface Compaction {
  readonly ms: number;
  /** Old and new space physically held but not used (wastedHeapBytes), and RSS, before the GC. */
  readonly wastedBeforeBytes: number;
  readonly rssBeforeBytes: number;
}

/** One full GC that evacuates every old-space page it can (V8's --compact-on-every-full-gc, for this GC only). */
export function compactHeap(): Compaction {
  const gc = fullGc();
  const wastedBeforeBytes = wastedHeapBytes();
  const rssBeforeBytes = process.memoryUsage.rss();
  const t0 = process.hrtime.bigint();
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gc();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  // (What it gave back shows later: V8 unmaps the evacuated pages off the main thread.)
  return { ms, wastedBeforeBytes, rssBeforeBytes };
}

export interface IdleCompactorOptions {
  /** Nothing appended for this long counts as idle; 0 turns the compactor off. */
  readonly idleMs: number;
  /** Below this much wasted heap (wastedHeapBytes), a compaction is not worth its pause (default 16 MiB). */
  readonly minWastedBytes?: number;
}

export class IdleCompactor {
  private timer: NodeJS.Timeout | null = null;
  private lastActivity: number;
  private lastSeen: number;
  /** Something was appended since the last compaction (or the start): the next idle period may compact. */
  private busy = true;
  compactions = 0;

  constructor(
    /** A number that moves whenever the server works (the read models' log position). */
    private readonly activity: () => number,
    private readonly options: IdleCompactorOptions,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    this.lastSeen = activity();
    this.lastActivity = clock();
  }

  /** Looks every idleMs / 4 (at least every second). */
  start(): void {
    if (this.options.idleMs <= 0) return;
    this.timer = setInterval(() => this.check(), Math.max(1000, Math.floor(this.options.idleMs / 4)));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Compacts if the server is idle after a busy period and enough is wasted; returns the compaction if it ran. */
  check(now = this.clock()): Compaction | undefined {
    const seen = this.activity();
    if (seen !== this.lastSeen) {
      this.lastSeen = seen;
      this.lastActivity = now;
      this.busy = true;
      return undefined;
    }
    if (!this.busy || now - this.lastActivity < this.options.idleMs) return undefined;
    this.busy = false; // once per busy period, whatever it finds
    if (wastedHeapBytes() < (this.options.minWastedBytes ?? 16 * 2 ** 20)) return undefined;
    const c = compactHeap();
    this.compactions++;
    // Logged a second later, once V8 has unmapped the pages it emptied: RSS right after the GC is higher than before.
    const logged = setTimeout(() => {
      const after = { wastedAfterMiB: mib(wastedHeapBytes()), rssAfterMiB: mib(process.memoryUsage.rss()) };
      this.log.info({ ms: Math.round(c.ms), wastedBeforeMiB: mib(c.wastedBeforeBytes), rssBeforeMiB: mib(c.rssBeforeBytes), ...after }, 'heap compacted while idle');
    }, 1000);
    logged.unref();
    return c;
  }
}

const mib = (n: number) => Math.round(n / 2 ** 20);
