// Approval gates: the Approve call, and the timer that times gates out at their deadline. The timers are fed from
// the event bus and rebuilt from the read models on start (like the reaper's), so a deadline survives a restart and
// one that passed while the server was down fires right after it starts.
import type { Subscription } from 'rxjs';
import { decideApprovalTimeout, decideApprove, type Approve } from '../domain/decide-approval.js';
import type { RecordedEvent } from '../domain/events.js';
import type { Check } from '../domain/model.js';
import type { Logger } from '../logging.js';
import type { Orchestrator } from './orchestrator.js';
import type { Actor } from '../domain/events.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ApproveRequest extends Approve {
  readonly workPlanId: string;
  readonly requestId: string | null;
}

export interface ApproveResult {
  readonly check: Check;
  readonly version: number;
}

/** The Approve call: one decide-and-commit; the resolver finalizes the gate in the same write when it completes it. */
/** Records an approval or rejection by `actor` (whose principal is the approver). */
export function approve(app: Orchestrator, req: ApproveRequest, actor?: Actor): ApproveResult {
  const answered = req.requestId !== null && app.models.workplan(req.workPlanId)?.requests.has(req.requestId);
  // A retry of an answered request appends nothing and answers with the gate as it stands.
  if (!answered) app.decideAndCommit(req.workPlanId, req.requestId, (draft) => decideApprove(req, draft), actor ?? { principal: req.principal });
  const model = app.models.workplan(req.workPlanId)!;
  return { check: model.check(req.checkId)!, version: model.meta.version };
}

export class ApprovalTimer {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private subscription: Subscription | null = null;

  constructor(
    private readonly app: Orchestrator,
    private readonly log: Logger,
  ) {}

  /** Arms a timer for every pending gate with a deadline in the read models, then follows the bus. */
  start(): void {
    // Only the workplans in memory: the others are complete (every gate FINAL), and asking for one would fold it
    // back from the log (on a 1M-event log, that was most of the start-up time).
    for (const workPlanId of [...this.app.models.workplans.residentIds()]) {
      for (const check of this.app.models.workplan(workPlanId)!.checks.values()) this.arm(workPlanId, check);
    }
    this.subscription = this.app.bus.batches$.subscribe((batch) => this.observe(batch));
  }

  stop(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Gates armed now (for tests and logs). */
  get armed(): number {
    return this.timers.size;
  }

  private observe(batch: readonly RecordedEvent[]): void {
    for (const rec of batch) {
      const e = rec.event;
      if (e.type === 'CheckCreated' && e.data.gate?.deadline != null) {
        const check = this.app.models.workplan(rec.streamId)?.check(e.data.checkId);
        if (check) this.arm(rec.streamId, check);
      } else if (e.type === 'CheckStateChanged' && e.data.to === 'FINAL') {
        this.disarm(key(rec.streamId, e.data.checkId));
      }
    }
  }

  private arm(workPlanId: string, check: Check): void {
    const deadline = check.gate?.deadline ?? null;
    if (deadline === null || check.state === 'FINAL') return;
    const k = key(workPlanId, check.id);
    this.disarm(k);
    const timer = setTimeout(() => {
      this.timers.delete(k);
      const current = this.app.models.workplan(workPlanId)?.check(check.id);
      if (!current || current.state === 'FINAL') return;
      if (this.app.now() < deadline) {
        this.arm(workPlanId, current); // a timer capped at MAX_TIMER_MS, or a clock that moved back
        return;
      }
      try {
        const written = this.app.decideAndCommit(workPlanId, null, (draft) => decideApprovalTimeout({ checkId: check.id }, draft));
        if (written.length > 0) this.log.info({ workPlanId, checkId: check.id, deadline: new Date(deadline).toISOString() }, 'approval timed out');
      } catch (err) {
        this.log.error({ err, workPlanId, checkId: check.id }, 'timing out an approval gate failed');
      }
    }, Math.min(Math.max(deadline - this.app.now(), 0), MAX_TIMER_MS));
    this.timers.set(k, timer);
  }

  private disarm(k: string): void {
    const t = this.timers.get(k);
    if (t) clearTimeout(t);
    this.timers.delete(k);
  }
}

const key = (workPlanId: string, checkId: string) => `${workPlanId}\u0000${checkId}`;
