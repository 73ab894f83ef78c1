// Memory follows the work in progress, not the history: a complete workplan (every node FINAL) that nobody wrote
// or folded back for --evict-after is evicted from the read models (its header stays) and folded back from its
// stream the next time anything asks for it (projections/workplans.ts).
import type { Logger } from '../logging.js';
import type { Orchestrator } from './orchestrator.js';

export class Evictor {
  private timer: NodeJS.Timeout | null = null;
  evicted = 0;

  constructor(
    private readonly app: Orchestrator,
    private readonly idleMs: number,
    private readonly log: Logger,
  ) {}

  /** Sweeps every idleMs / 2 (at least every 100 ms); idleMs 0 turns eviction off. */
  start(): void {
    if (this.idleMs <= 0) return;
    this.timer = setInterval(() => this.sweep(), Math.max(100, Math.floor(this.idleMs / 2)));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Evicts every complete workplan idle for idleMs; returns how many. */
  sweep(now = this.app.now()): number {
    const workplans = this.app.models.workplans;
    let n = 0;
    for (const id of [...workplans.residentIds()]) {
      const model = workplans.workplan(id)!;
      if (!model.complete) continue; // (a watcher keeps its own copy: eviction does not touch it)
      const lastUse = Math.max(model.meta.updatedAt, workplans.foldedBack(id) ?? 0);
      if (now - lastUse >= this.idleMs && workplans.evict(id)) n++;
    }
    if (n > 0) {
      this.evicted += n;
      this.log.info({ evicted: n, resident: [...workplans.residentIds()].length }, 'idle complete workplans evicted');
    }
    return n;
  }
}
