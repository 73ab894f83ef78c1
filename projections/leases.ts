// The pull read model, folded from workplan events: attempts that pull runners may lease (per runner type), the
// leases in flight (per type and workplan, for limits and fairness) and their token hashes. Derived only from
// events, so a restart (or a replay) knows exactly what is offerable and what is leased.
// Only leases in flight are indexed: a lease that has ended is found through its workplan (the token names it, see
// PullService.find), so this index, the server's memory and its snapshots grow with the work in flight, not with
// every lease ever granted.
import { attemptTransition, type AttemptTransition, type RecordedEvent } from '../src/domain/events.js';
import { isTerminalAttempt, type JsonObject } from '../src/domain/model.js';
import type { SnapshotProjection } from './projection.js';
import type { WorkPlanLookup } from './workplans.js';

export interface OfferableAttempt {
  readonly workPlanId: string;
  readonly stageId: string;
  readonly idx: number;
  readonly runnerType: string;
  readonly priority: number;
  /** args.runner_labels of the stage: a runner must carry every one of them. */
  readonly labels: Readonly<Record<string, string>>;
  /** When the attempt was opened (epoch ms) and its global position (older first). */
  readonly createdAt: number;
  readonly position: number;
  /** The stage's policy values (0 = the server's default). */
  readonly retryBackoffMs: number;
  readonly pickupTimeoutMs: number;
}

export interface LeaseRef {
  readonly workPlanId: string;
  readonly stageId: string;
  readonly idx: number;
  readonly leaseId: string;
  readonly runnerType: string;
  readonly runnerId: string;
  readonly expiresAt: number;
  readonly runDeadline: number;
  /** The principal that leased it (null: recorded before principals were). */
  readonly owner: string | null;
}

/** Offerable attempts of one runner type in one workplan, per priority, each in position order (oldest first). */
type PlanQueue = Map<number, Map<string, OfferableAttempt>>;

export class LeaseIndex implements SnapshotProjection {
  readonly name = 'leases';
  readonly handles = [
    'StageAttemptCreated',
    'StageAttemptDispatchDeclined',
    'StageAttemptDispatched',
    'StageAttemptLeased',
    'StageAttemptLeaseExtended',
    'StageAttemptStateChanged',
  ] as const;

  constructor(private readonly workplans: WorkPlanLookup) {}

  private readonly offerable = new Map<string, Map<string, OfferableAttempt>>();
  /** The same attempts per runner type and workplan, so a lease looks at the head of each workplan's queue. */
  private readonly queues = new Map<string, Map<string, PlanQueue>>();
  /** token hash → lease, for the leases in flight (the same as `active`, by another key). */
  private readonly byToken = new Map<string, LeaseRef>();
  private readonly active = new Map<string, LeaseRef>();
  private readonly activePerType = new Map<string, Map<string, number>>();

  snapshot(): unknown {
    return { offerable: this.offerable, queues: this.queues, byToken: this.byToken, active: this.active, activePerType: this.activePerType };
  }
  restore(state: unknown): void {
    Object.assign(this, state);
  }

  offerableOf(runnerType: string): IterableIterator<OfferableAttempt> {
    return (this.offerable.get(runnerType) ?? new Map<string, OfferableAttempt>()).values();
  }
  offerableAttempt(runnerType: string, workPlanId: string, stageId: string): OfferableAttempt | undefined {
    return this.offerable.get(runnerType)?.get(key(workPlanId, stageId));
  }
  /**
   * For each workplan with offerable attempts of `runnerType`, its first one that `eligible` accepts in the order
   * highest priority, then oldest. Costs one step per workplan plus one per attempt `eligible` turns down.
   */
  *headsPerWorkPlan(runnerType: string, eligible: (o: OfferableAttempt) => boolean): IterableIterator<OfferableAttempt> {
    for (const queue of this.queues.get(runnerType)?.values() ?? []) {
      const priorities = [...queue.keys()].sort((a, b) => b - a);
      found: for (const p of priorities) {
        for (const o of queue.get(p)!.values()) {
          if (eligible(o)) {
            yield o;
            break found;
          }
        }
      }
    }
  }
  *allOfferable(): IterableIterator<OfferableAttempt> {
    for (const q of this.offerable.values()) yield* q.values();
  }
  byTokenHash(hash: string): LeaseRef | undefined {
    return this.byToken.get(hash);
  }
  activeLeases(): IterableIterator<LeaseRef> {
    return this.active.values();
  }
  activeLease(leaseId: string): LeaseRef | undefined {
    return this.active.get(leaseId);
  }
  /** Leases in flight for a runner type (optionally in one workplan). */
  inFlight(runnerType: string, workPlanId?: string): number {
    const perPlan = this.activePerType.get(runnerType);
    if (!perPlan) return 0;
    if (workPlanId !== undefined) return perPlan.get(workPlanId) ?? 0;
    let n = 0;
    for (const v of perPlan.values()) n += v;
    return n;
  }

  /** Folded after the workplan projection: the model already holds `rec`. */
  fold(rec: RecordedEvent): void {
    this.foldFact(rec);
    const t = attemptTransition(rec.event);
    if (t) this.foldTransition(rec.streamId, t);
  }

  /** An attempt left PENDING (no longer offerable) or ended (its lease, if any, no longer counts). */
  private foldTransition(workPlanId: string, t: AttemptTransition): void {
    const stage = this.workplans.workplan(workPlanId)!.stage(t.stageId)!;
    if (t.from === 'PENDING' || t.from === 'SCHEDULED') this.withdraw(stage.runnerType, workPlanId, stage.id);
    const lease = stage.attempts.find((a) => a.idx === t.idx)?.lease;
    if (lease && isTerminalAttempt(t.to) && this.active.delete(lease.leaseId)) {
      this.byToken.delete(lease.tokenHash);
      this.count(lease.runnerType, workPlanId, -1);
    }
  }

  private foldFact(rec: RecordedEvent): void {
    const model = this.workplans.workplan(rec.streamId)!;
    const e = rec.event;
    switch (e.type) {
      case 'StageAttemptCreated':
      case 'StageAttemptDispatchDeclined': {
        const stage = model.stage(e.data.stageId)!;
        if (!stage.runnerType) return;
        const attempt = stage.attempts.find((a) => a.idx === e.data.idx)!;
        let q = this.offerable.get(stage.runnerType);
        if (!q) this.offerable.set(stage.runnerType, (q = new Map()));
        this.withdraw(stage.runnerType, rec.streamId, stage.id);
        const offer: OfferableAttempt = {
          workPlanId: rec.streamId,
          stageId: stage.id,
          idx: e.data.idx,
          runnerType: stage.runnerType,
          priority: stage.priority,
          labels: runnerLabels(stage.args),
          createdAt: attempt.createdAt,
          position: rec.position,
          retryBackoffMs: stage.policy.retryBackoffMs,
          pickupTimeoutMs: stage.policy.pickupTimeoutMs,
        };
        q.set(key(rec.streamId, stage.id), offer);
        this.enqueue(offer);
        return;
      }
      case 'StageAttemptLeased': {
        const d = e.data;
        const ref: LeaseRef = {
          workPlanId: rec.streamId,
          stageId: d.stageId,
          idx: d.idx,
          leaseId: d.leaseId,
          runnerType: d.runnerType,
          runnerId: d.runnerId,
          expiresAt: d.expiresAt,
          runDeadline: d.runDeadline,
          owner: rec.causation.principal ?? null,
        };
        this.byToken.set(d.tokenHash, ref);
        this.active.set(d.leaseId, ref);
        this.count(d.runnerType, rec.streamId, +1);
        return;
      }
      case 'StageAttemptLeaseExtended': {
        const ref = this.active.get(e.data.leaseId);
        if (ref) this.active.set(ref.leaseId, { ...ref, expiresAt: e.data.expiresAt });
        return;
      }
      default:
        return;
    }
  }

  private enqueue(o: OfferableAttempt): void {
    let plans = this.queues.get(o.runnerType);
    if (!plans) this.queues.set(o.runnerType, (plans = new Map()));
    let queue = plans.get(o.workPlanId);
    if (!queue) plans.set(o.workPlanId, (queue = new Map()));
    let level = queue.get(o.priority);
    if (!level) queue.set(o.priority, (level = new Map()));
    level.set(o.stageId, o); // events come in position order, so insertion order is position order
  }

  /** No longer offerable (leased, dispatched, ended, or about to be offered again as a new entry). */
  private withdraw(runnerType: string, workPlanId: string, stageId: string): void {
    const q = this.offerable.get(runnerType);
    const o = q?.get(key(workPlanId, stageId));
    if (!o) return;
    q!.delete(key(workPlanId, stageId));
    const plans = this.queues.get(runnerType)!;
    const queue = plans.get(workPlanId)!;
    const level = queue.get(o.priority)!;
    level.delete(stageId);
    if (level.size === 0) queue.delete(o.priority);
    if (queue.size === 0) plans.delete(workPlanId);
  }

  private count(runnerType: string, workPlanId: string, delta: number): void {
    let perPlan = this.activePerType.get(runnerType);
    if (!perPlan) this.activePerType.set(runnerType, (perPlan = new Map()));
    const n = (perPlan.get(workPlanId) ?? 0) + delta;
    if (n <= 0) perPlan.delete(workPlanId);
    else perPlan.set(workPlanId, n);
  }
}

/** A stage's args.runner_labels, when it is an object: only its string values count. */
function runnerLabels(args: JsonObject): Record<string, string> {
  const raw = args.runner_labels;
  const out: Record<string, string> = {};
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') out[k] = v;
  }
  return out;
}

const key = (workPlanId: string, stageId: string) => `${workPlanId}\u0000${stageId}`;
