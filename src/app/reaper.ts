// The reaper enforces stages' execution policies on pull-leased attempts: pickup timeout (PENDING too long), two
// missed heartbeats, run timeout. Its timers are fed from the event bus and rebuilt from the read models on start,
// so leases that ran out while the server was down expire at once after a restart. Every expiry is an event
// (StageAttemptLeaseExpired with its reason) beside the attempt's INCOMPLETE, and the resolver retries as usual.
import type { Subscription } from 'rxjs';
import type { LeaseRef, OfferableAttempt } from '../../projections/leases.js';
import { decideLeaseExpiry, decidePickupExpiry } from '../domain/decide-leases.js';
import { attemptTransition, type RecordedEvent } from '../domain/events.js';
import { isTerminalAttempt } from '../domain/model.js';
import type { Logger } from '../logging.js';
import type { Orchestrator } from './orchestrator.js';
import type { PullService } from './pull-service.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

export class Reaper {
  private readonly leaseTimers = new Map<string, NodeJS.Timeout>();
  private readonly pickupTimers = new Map<string, NodeJS.Timeout>();
  private subscription: Subscription | null = null;

  constructor(
    private readonly app: Orchestrator,
    private readonly pull: PullService,
    private readonly log: Logger,
  ) {}

  start(): void {
    const { leases } = this.app.models;
    for (const ref of [...leases.activeLeases()]) this.armLease(ref);
    for (const o of [...leases.allOfferable()]) this.armPickup(o);
    this.subscription = this.app.bus.batches$.subscribe((batch) => this.observe(batch));
  }

  stop(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
    for (const t of [...this.leaseTimers.values(), ...this.pickupTimers.values()]) clearTimeout(t);
    this.leaseTimers.clear();
    this.pickupTimers.clear();
  }

  private observe(batch: readonly RecordedEvent[]): void {
    const { leases } = this.app.models;
    for (const rec of batch) {
      const e = rec.event;
      switch (e.type) {
        case 'StageAttemptLeased':
        case 'StageAttemptLeaseExtended': {
          const ref = leases.activeLease(e.data.leaseId);
          if (ref) this.armLease(ref);
          break;
        }
        case 'StageAttemptCreated':
        case 'StageAttemptDispatchDeclined': {
          const type = this.app.models.workplan(rec.streamId)?.stage(e.data.stageId)?.runnerType ?? '';
          const o = leases.offerableAttempt(type, rec.streamId, e.data.stageId);
          if (o?.idx === e.data.idx) this.armPickup(o);
          break;
        }
        default:
          break;
      }
      const t = attemptTransition(e);
      if (t) {
        if (t.from === 'PENDING' || t.from === 'SCHEDULED') this.disarm(this.pickupTimers, attemptKey(rec.streamId, t.stageId, t.idx));
        if (isTerminalAttempt(t.to)) {
          const lease = this.app.models.workplan(rec.streamId)?.stage(t.stageId)?.attempts.find((a) => a.idx === t.idx)?.lease;
          if (lease) this.disarm(this.leaseTimers, lease.leaseId);
        }
      }
    }
  }

  private armLease(ref: LeaseRef): void {
    this.disarm(this.leaseTimers, ref.leaseId);
    const at = Math.min(ref.expiresAt, ref.runDeadline);
    const timer = setTimeout(() => {
      this.leaseTimers.delete(ref.leaseId);
      const current = this.app.models.leases.activeLease(ref.leaseId);
      if (!current) return;
      const now = this.app.now();
      if (now < Math.min(current.expiresAt, current.runDeadline)) {
        this.armLease(current); // extended meanwhile
        return;
      }
      const stage = this.app.models.workplan(current.workPlanId)?.stage(current.stageId);
      const interval = stage?.attempts.find((a) => a.idx === current.idx)?.lease?.heartbeatIntervalMs ?? 0;
      const [reason, message] =
        now >= current.runDeadline
          ? (['RUN_TIMEOUT', `run timeout: runner ${current.runnerId} did not complete it by ${new Date(current.runDeadline).toISOString()}`] as const)
          : ([
              'HEARTBEATS_MISSED',
              `lease expired: runner ${current.runnerId} missed 2 heartbeats (interval ${interval} ms) by ${new Date(current.expiresAt).toISOString()}`,
            ] as const);
      this.commit(current.workPlanId, { stageId: current.stageId, idx: current.idx, leaseId: current.leaseId, reason }, () =>
        this.app.decideAndCommit(current.workPlanId, null, (draft) => decideLeaseExpiry({ target: current, reason, message }, draft)),
      );
    }, delay(at - this.app.now()));
    this.leaseTimers.set(ref.leaseId, timer);
  }

  private armPickup(o: OfferableAttempt): void {
    const timeout = o.pickupTimeoutMs || this.pull.config.defaultPickupTimeoutMs;
    if (timeout <= 0) return;
    const k = attemptKey(o.workPlanId, o.stageId, o.idx);
    this.disarm(this.pickupTimers, k);
    const at = this.pull.offerableAt(o) + timeout;
    const timer = setTimeout(() => {
      this.pickupTimers.delete(k);
      const message = `pickup timeout: no runner of type "${o.runnerType}" took it within ${timeout} ms`;
      this.commit(o.workPlanId, { stageId: o.stageId, idx: o.idx, reason: 'PICKUP_TIMEOUT' }, () =>
        this.app.decideAndCommit(o.workPlanId, null, (draft) => decidePickupExpiry({ stageId: o.stageId, idx: o.idx, message }, draft)),
      );
    }, delay(at - this.app.now()));
    this.pickupTimers.set(k, timer);
  }

  private commit(workPlanId: string, what: object, write: () => RecordedEvent[]): void {
    try {
      if (write().length > 0) this.log.info({ workPlanId, ...what }, 'attempt expired');
    } catch (err) {
      this.log.error({ err, workPlanId, ...what }, 'expiring an attempt failed');
    }
  }

  private disarm(timers: Map<string, NodeJS.Timeout>, key: string): void {
    const t = timers.get(key);
    if (t) clearTimeout(t);
    timers.delete(key);
  }
}

const delay = (ms: number) => Math.min(Math.max(ms, 0), MAX_TIMER_MS);
const attemptKey = (workPlanId: string, stageId: string, idx: number) => `${workPlanId}\u0000${stageId}\u0000${idx}`;
