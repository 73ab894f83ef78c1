// Application side of the pull protocol: the scheduler that leases attempts to pull runners (long-poll waiters
// woken by the event bus, never by polling the store), heartbeats and completions. Every lease decision is one
// synchronous decideAndCommit, so two runners never lease the same attempt.
import { hash, randomBytes, randomUUID } from 'node:crypto';
import { completionFingerprint } from './completion-fingerprint.js';
import { filter, merge, Subject, type Subscription } from 'rxjs';
import type { LeaseRef, OfferableAttempt } from '../../projections/leases.js';
import {
  decideHeartbeat,
  decideLease,
  decideLeaseCompletion,
  type LeaseGrant,
} from '../domain/decide-leases.js';
import type { ExecutionCompletion } from '../domain/decide-completion.js';
import { DomainError, failedPrecondition, permissionDenied } from '../domain/errors.js';
import type { Caller } from '../domain/commands.js';
import { ANONYMOUS_PRINCIPAL, type Actor } from '../domain/events.js';
import type { RecordedEvent } from '../domain/events.js';
import type { JsonObject, Stage } from '../domain/model.js';
import type { Logger } from '../logging.js';
import type { Orchestrator } from './orchestrator.js';
import { coalescePerTurn } from './next-turn.js';
import { namingWorkPlan, workPlanNamedBy } from './workplan-named.js';

export interface PullConfig {
  /** runner type → most leases in flight at once; types not listed use defaultLimit (0 = no limit). */
  readonly limits: ReadonlyMap<string, number>;
  readonly defaultLimit: number;
  readonly defaultHeartbeatIntervalMs: number;
  readonly defaultRunTimeoutMs: number;
  readonly defaultPickupTimeoutMs: number;
  readonly defaultRetryBackoffMs: number;
}

export const DEFAULT_PULL_CONFIG: PullConfig = {
  limits: new Map(),
  defaultLimit: 0,
  defaultHeartbeatIntervalMs: 10_000,
  defaultRunTimeoutMs: 600_000,
  defaultPickupTimeoutMs: 0,
  defaultRetryBackoffMs: 0,
};

export interface LeaseRequest {
  readonly runnerId: string;
  readonly runnerType: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly waitMs: number;
  /** Lease up to this many attempts at once (the runner's free slots); at least 1. */
  readonly maxAttempts?: number;
}

/** Most attempts one Lease (or one CompleteLease's lease_next) may take. */
export const MAX_LEASE_BATCH = 64;

export interface LeasedAttempt {
  readonly leaseId: string;
  readonly leaseToken: string;
  readonly expiresAt: number;
  readonly heartbeatIntervalMs: number;
  readonly runDeadline: number;
  readonly workPlanId: string;
  readonly stageId: string;
  readonly idx: number;
  readonly args: JsonObject;
  readonly checks: { checkId: string; kind: string; options: JsonObject }[];
}

/** Someone waiting for attempts: a long-polling Lease call, or an agent's Work stream with credit. */
interface Waiter {
  readonly req: LeaseRequest;
  readonly caller: Caller;
  /** How many attempts it takes now (0: none, for now). */
  want(): number;
  /** Hands it what was leased for it (at least one attempt). */
  take(leased: LeasedAttempt[]): void;
  /** The server stops: no more attempts for it. */
  stop(): void;
}

/** Most credit a Work stream may have outstanding (attempts leased to it and not yet given back). */
export const MAX_WORK_CREDIT = 1000;

/**
 * An agent's Work stream, as the scheduler sees it: a waiter that stays, taking as many attempts as its credit
 * allows. Each lease uses one credit; completions and add_credit give credit back.
 */
export class WorkSession implements Waiter {
  private credit = 0;
  private draining = false;
  private closed = false;

  constructor(
    private readonly pull: PullService,
    readonly req: LeaseRequest,
    readonly caller: Caller,
    private readonly deliver: (leased: LeasedAttempt[]) => void,
    private readonly stopped: () => void,
  ) {}

  want(): number {
    return this.draining || this.closed ? 0 : this.credit;
  }

  take(leased: LeasedAttempt[]): void {
    this.credit -= leased.length;
    this.deliver(leased);
  }

  stop(): void {
    this.close();
    this.stopped();
  }

  /** More attempts may be leased to it now (credit capped at MAX_WORK_CREDIT); those offerable are, at once. */
  addCredit(n: number): void {
    this.credit = Math.min(this.credit + n, MAX_WORK_CREDIT);
    this.pull.serve(this);
  }

  /** Applies a completion as CompleteLease does (throws its DomainError). */
  complete(token: string, completion: Omit<ExecutionCompletion, 'fingerprint'>): void {
    this.pull.sawAgent(this.req);
    this.pull.complete(token, completion, this.caller);
  }

  /** Nothing more is leased to it; completions are still taken. */
  drain(): void {
    this.draining = true;
  }

  /** The stream ended: it waits no more. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pull.forget(this);
  }
}

export const hashToken = (token: string): string => hash('sha256', token, 'base64url');

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Random bytes drawn 8 KiB at a time: one system call per 256 lease tokens instead of one per token. */
const TOKEN_BYTES = 32;
let tokenPool = Buffer.alloc(0);
let tokenPoolAt = 0;

/**
 * A fresh lease token: 256 random bits (base64url) naming its workplan (see workplan-named.ts). The log keeps the
 * hash of the whole token, so the name cannot be swapped for another.
 */
function newLeaseToken(workPlanId: string): string {
  if (tokenPoolAt + TOKEN_BYTES > tokenPool.length) {
    tokenPool = randomBytes(TOKEN_BYTES * 256);
    tokenPoolAt = 0;
  }
  const secret = tokenPool.toString('base64url', tokenPoolAt, tokenPoolAt + TOKEN_BYTES);
  tokenPoolAt += TOKEN_BYTES;
  return namingWorkPlan(secret, workPlanId);
}

/** How long the runners page lists a pull agent after its last call (an open Work stream counts as a call). */
const AGENT_WINDOW_MS = 600_000;

export class PullService {
  private readonly waiters: Waiter[] = [];
  /** Pull agents by runner id, as of their last call (what the runners page shows); kept AGENT_WINDOW_MS. */
  private readonly seen = new Map<string, { runnerType: string; labels: Readonly<Record<string, string>>; lastSeen: number }>();
  private seenPrunedAt = 0;
  private subscription: Subscription | null = null;
  /** A retry backoff ended: waiters may be served now. */
  private readonly backoffEnded = new Subject<void>();
  private backoffTimer: NodeJS.Timeout | null = null;
  private backoffAt = Infinity;
  /** A batch that can serve a waiter was appended since the waiters were last served. */
  private waitersDirty = false;
  private unhook: (() => void) | null = null;

  constructor(
    private readonly app: Orchestrator,
    private readonly log: Logger,
    readonly config: PullConfig = DEFAULT_PULL_CONFIG,
    private readonly newId: () => string = randomUUID,
  ) {}

  /**
   * Waiters are served after a batch that can serve one: at the group commit that holds it, right before it (so
   * the attempt a completion opened is leased in the same commit), or once per turn without group commit; and
   * when a retry backoff ends.
   */
  start(): void {
    const canServe = this.app.bus.batches$.pipe(filter((batch) => this.canServeWaiter(batch)));
    if (this.app.groupCommit) {
      this.unhook = this.app.beforeCommit(() => {
        if (!this.waitersDirty) return;
        this.waitersDirty = false;
        this.pump();
      });
      this.subscription = canServe.subscribe(() => (this.waitersDirty = true));
      this.subscription.add(this.backoffEnded.pipe(coalescePerTurn()).subscribe(() => this.pump()));
    } else {
      this.subscription = merge(canServe, this.backoffEnded)
        .pipe(coalescePerTurn())
        .subscribe(() => this.pump());
    }
  }

  /** Answers every waiting Lease call with "nothing" and stops waking them. */
  stop(): void {
    this.unhook?.();
    this.unhook = null;
    this.subscription?.unsubscribe();
    this.subscription = null;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    for (const w of [...this.waiters]) w.stop();
    this.waiters.length = 0;
  }

  /** Pull agents that called in the last AGENT_WINDOW_MS or have a Work stream open (for the runners page), and whether one is waiting now. */
  agents(): Map<string, { runnerType: string; labels: Readonly<Record<string, string>>; lastSeen: number; waiting: boolean }> {
    const waiting = new Set(this.waiters.filter((w) => w.want() > 0).map((w) => w.req.runnerId));
    for (const w of this.waiters) if (w instanceof WorkSession) this.sawAgent(w.req);
    const out = new Map<string, { runnerType: string; labels: Readonly<Record<string, string>>; lastSeen: number; waiting: boolean }>();
    this.forgetQuietAgents(this.app.now());
    for (const [id, a] of this.seen) out.set(id, { ...a, waiting: waiting.has(id) });
    return out;
  }

  /** How many agents are remembered for the runners page (each seen within AGENT_WINDOW_MS, or not pruned yet). */
  agentsRemembered(): number {
    return this.seen.size;
  }

  /** Open Work streams, by runner type. */
  workStreams(): Map<string, number> {
    const out = new Map<string, number>();
    for (const w of this.waiters) if (w instanceof WorkSession) out.set(w.req.runnerType, (out.get(w.req.runnerType) ?? 0) + 1);
    return out;
  }

  limit(runnerType: string): number {
    return this.config.limits.get(runnerType) ?? this.config.defaultLimit;
  }

  /**
   * Leases the best offerable attempts now (up to req.maxAttempts, one by default), or waits (up to waitMs) for at
   * least one; empty when none came.
   */
  lease(req: LeaseRequest, cancelled: { onCancel(f: () => void): void }, caller: Caller = ANONYMOUS): Promise<LeasedAttempt[]> {
    this.sawAgent(req);
    const max = leaseBatch(req);
    const now = this.tryLeaseMany(req, caller, max);
    if (now.length > 0 || req.waitMs <= 0 || !this.subscription) return Promise.resolve(now);
    return new Promise((resolve) => {
      const answer = (leased: LeasedAttempt[]) => {
        if (!this.forget(waiter)) return;
        clearTimeout(timer);
        resolve(leased);
      };
      const waiter: Waiter = { req, caller, want: () => max, take: answer, stop: () => answer([]) };
      const timer = setTimeout(() => answer([]), Math.min(req.waitMs, MAX_TIMER_MS));
      this.waiters.push(waiter);
      cancelled.onCancel(() => answer([]));
    });
  }

  /**
   * Opens an agent's Work stream with no credit: `deliver` gets every attempt leased to it (its commit not yet
   * durable: the caller waits for that), `stopped` is called when the server stops.
   */
  openWork(req: Omit<LeaseRequest, 'waitMs' | 'maxAttempts'>, caller: Caller, deliver: (leased: LeasedAttempt[]) => void, stopped: () => void): WorkSession {
    const session = new WorkSession(this, { ...req, waitMs: 0 }, caller, deliver, stopped);
    this.sawAgent(session.req);
    this.waiters.push(session);
    return session;
  }

  /** Leases what `waiter` wants, now (a Work stream that was given credit). */
  serve(waiter: Waiter): void {
    const want = waiter.want();
    if (want <= 0) return;
    const leased = this.tryLeaseMany(waiter.req, waiter.caller, want);
    if (leased.length > 0) waiter.take(leased);
  }

  /** Removes a waiter; false when it was gone already. */
  forget(waiter: Waiter): boolean {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return false;
    this.waiters.splice(i, 1);
    return true;
  }

  sawAgent(req: LeaseRequest): void {
    const now = this.app.now();
    this.seen.set(req.runnerId, { runnerType: req.runnerType, labels: req.labels, lastSeen: now });
    // Agents come and go (an id per pod or per job): the quiet ones are forgotten now and then, not only when the
    // runners page asks, or a server nobody looks at would remember every agent it ever saw.
    if (now - this.seenPrunedAt >= AGENT_WINDOW_MS) this.forgetQuietAgents(now);
  }

  private forgetQuietAgents(now: number): void {
    this.seenPrunedAt = now;
    const since = now - AGENT_WINDOW_MS;
    for (const [id, a] of this.seen) if (a.lastSeen < since) this.seen.delete(id);
  }

  heartbeat(
    token: string,
    hb: { lines: readonly string[]; message: string; details: JsonObject },
    caller: Caller = ANONYMOUS,
  ): { expiresAt: number; cancelRequested: boolean } {
    const ref = this.find(token, caller);
    let cancelRequested = false;
    this.app.decideAndCommit(ref.workPlanId, null, (draft, ctx) => {
      const stage = draft.stage(ref.stageId);
      const interval = stage?.attempts.find((a) => a.idx === ref.idx)?.lease?.heartbeatIntervalMs ?? this.config.defaultHeartbeatIntervalMs;
      const decision = decideHeartbeat({ target: ref, heartbeat: { ...hb, expiresAt: ctx.now + 2 * interval } }, draft);
      cancelRequested = decision.cancelRequested;
      return decision.events;
    }, actorOf(caller));
    const lease = this.app.models.workplan(ref.workPlanId)?.stage(ref.stageId)?.attempts.find((a) => a.idx === ref.idx)?.lease;
    return { expiresAt: lease?.expiresAt ?? 0, cancelRequested };
  }

  /**
   * Applies the outcome; an identical repeat is acknowledged with nothing appended. With `next`, then leases the
   * runner's next attempts at once, without waiting (complete-and-lease-next): in the same turn, so the
   * completion, what the resolver opened because of it and the new leases share one group commit.
   */
  complete(token: string, completion: Omit<ExecutionCompletion, 'fingerprint'>, caller: Caller = ANONYMOUS, next: LeaseRequest | null = null): LeasedAttempt[] {
    const ref = this.find(token, caller);
    const fingerprint = completionFingerprint(completion);
    this.app.decideAndCommit(
      ref.workPlanId,
      null,
      (draft, ctx) => decideLeaseCompletion({ target: ref, completion: { ...completion, fingerprint } }, draft, ctx),
      actorOf(caller),
    );
    if (next) this.sawAgent(next);
    return next ? this.tryLeaseMany(next, caller, leaseBatch(next)) : [];
  }

  /**
   * The lease token is the capability; with auth on, a lease in flight must also be used by the token that leased
   * it (or an admin). A lease that has ended can change nothing: a late call is only told where it stands.
   */
  private find(token: string, caller: Caller): LeaseRef {
    const tokenHash = hashToken(token);
    // Leased through another replica a moment ago? Look at what the others committed before refusing.
    const inFlight = this.app.models.leases.byTokenHash(tokenHash) ?? (this.app.catchUp() ? this.app.models.leases.byTokenHash(tokenHash) : undefined);
    if (inFlight) {
      if (caller.authenticated && !caller.admin && inFlight.owner !== caller.principal) {
        throw permissionDenied('the lease was granted to another token', 'lease_token');
      }
      return inFlight;
    }
    const ended = this.endedLease(token, tokenHash);
    if (!ended) throw failedPrecondition('not a lease token this server issued', 'lease_token');
    return ended;
  }

  /** A lease no longer in flight, looked up in the workplan its token names. */
  private endedLease(token: string, tokenHash: string): LeaseRef | undefined {
    const workPlanId = workPlanNamedBy(token);
    const found = workPlanId === undefined ? undefined : this.app.models.workplan(workPlanId)?.findAttempt((a) => a.lease?.tokenHash === tokenHash);
    if (!found) return undefined;
    const { leaseId, runnerType, runnerId, expiresAt, runDeadline } = found.attempt.lease!;
    return { workPlanId: workPlanId!, stageId: found.stage.id, idx: found.attempt.idx, leaseId, runnerType, runnerId, expiresAt, runDeadline, owner: null };
  }

  /** New attempts, attempts queued again, and leases that ended (a slot under a limit freed) can serve a waiter. */
  private canServeWaiter(batch: readonly RecordedEvent[]): boolean {
    return (
      this.waiters.some((w) => w.want() > 0) &&
      batch.some(
        (r) =>
          r.event.type === 'StageAttemptCreated' ||
          r.event.type === 'StageAttemptDispatchDeclined' ||
          (r.event.type === 'StageAttemptStateChanged' && (r.event.data.to === 'COMPLETE' || r.event.data.to === 'INCOMPLETE')),
      )
    );
  }

  /** Serves waiters in arrival order; a Work stream that was served goes to the back of the line. */
  private pump(): void {
    for (const waiter of [...this.waiters]) {
      const want = waiter.want();
      if (want <= 0 || !this.waiters.includes(waiter)) continue;
      const leased = this.tryLeaseMany(waiter.req, waiter.caller, want);
      if (leased.length === 0) continue;
      if (waiter instanceof WorkSession && this.forget(waiter)) this.waiters.push(waiter);
      waiter.take(leased);
    }
    this.armBackoffTimer();
  }

  /** Attempts held back by a retry backoff wake the waiters when their backoff ends (a scheduler timer, not domain state). */
  private armBackoffTimer(): void {
    const types = new Set(this.waiters.filter((w) => w.want() > 0).map((w) => w.req.runnerType));
    if (types.size === 0) return;
    const now = this.app.now();
    let earliest = Infinity;
    for (const type of types) {
      for (const o of this.app.models.leases.offerableOf(type)) {
        const at = this.offerableAt(o);
        if (at > now && at < earliest) earliest = at;
      }
    }
    if (earliest === Infinity || earliest >= this.backoffAt) return;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    this.backoffAt = earliest;
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = null;
      this.backoffAt = Infinity;
      this.backoffEnded.next();
    }, Math.min(earliest - now + 1, MAX_TIMER_MS));
  }

  /** When an attempt may be offered: at once for a first attempt, after the retry backoff for a retry. */
  offerableAt(o: OfferableAttempt): number {
    return o.idx > 1 ? o.createdAt + (o.retryBackoffMs || this.config.defaultRetryBackoffMs) : o.createdAt;
  }

  /** Up to `max` leases, one decision each (limits and fairness are re-read after every lease). */
  private tryLeaseMany(req: LeaseRequest, caller: Caller, max: number): LeasedAttempt[] {
    const leased: LeasedAttempt[] = [];
    while (leased.length < max) {
      const one = this.tryLease(req, caller);
      if (!one) break;
      leased.push(one);
    }
    return leased;
  }

  /**
   * Picks and leases one attempt for `req`, synchronously: under the type's limit, offerable now, labels matched;
   * highest priority first, then the workplan with the fewest leases of this type in flight (fairness), then the
   * oldest attempt.
   */
  private tryLease(req: LeaseRequest, caller: Caller): LeasedAttempt | null {
    const { leases } = this.app.models;
    const limit = this.limit(req.runnerType);
    if (limit > 0 && leases.inFlight(req.runnerType) >= limit) return null;
    const now = this.app.now();
    let best: OfferableAttempt | null = null;
    let bestLoad = 0;
    const eligible = (o: OfferableAttempt) => this.offerableAt(o) <= now && Object.entries(o.labels).every(([k, v]) => req.labels[k] === v);
    for (const o of leases.headsPerWorkPlan(req.runnerType, eligible)) {
      const load = leases.inFlight(req.runnerType, o.workPlanId);
      if (
        !best ||
        o.priority > best.priority ||
        (o.priority === best.priority && (load < bestLoad || (load === bestLoad && o.position < best.position)))
      ) {
        best = o;
        bestLoad = load;
      }
    }
    if (!best) return null;
    // On a shared log, lock it and fold the other replicas' latest events first; if there were any, choose again.
    if (this.app.beginWrite()) return this.tryLease(req, caller);
    const model = this.app.models.workplan(best.workPlanId)!;
    const stage = model.stage(best.stageId)!;
    const token = newLeaseToken(best.workPlanId);
    const grant: LeaseGrant = {
      leaseId: this.newId(),
      tokenHash: hashToken(token),
      runnerId: req.runnerId,
      runnerType: req.runnerType,
      heartbeatIntervalMs: this.heartbeatInterval(stage),
      expiresAt: now + 2 * this.heartbeatInterval(stage),
      runDeadline: now + (stage.policy.runTimeoutMs || (stage.attemptTimeoutSeconds * 1000) || this.config.defaultRunTimeoutMs),
    };
    try {
      this.app.decideAndCommit(best.workPlanId, null, (draft) => decideLease({ stageId: best.stageId, idx: best.idx, grant }, draft), actorOf(caller));
    } catch (err) {
      if (err instanceof DomainError) {
        this.log.warn({ workPlanId: best.workPlanId, stageId: best.stageId, err: err.message }, 'lease refused');
        return null;
      }
      throw err;
    }
    // debug, not info: one line per stage cost ~6% of the server's CPU at full speed, and the log already holds every
    // lease (StageAttemptLeased, with the runner), for `turboci events` and `explain`.
    if (this.log.isLevelEnabled('debug')) this.log.debug({ workPlanId: best.workPlanId, stageId: best.stageId, attempt: best.idx, leaseId: grant.leaseId, runnerId: req.runnerId }, 'leased');
    return {
      leaseId: grant.leaseId,
      leaseToken: token,
      expiresAt: grant.expiresAt,
      heartbeatIntervalMs: grant.heartbeatIntervalMs,
      runDeadline: grant.runDeadline,
      workPlanId: best.workPlanId,
      stageId: best.stageId,
      idx: best.idx,
      args: stage.args,
      checks: stage.assignments.map((a) => {
        const check = model.check(a.checkId);
        return { checkId: a.checkId, kind: check?.kind ?? '', options: check?.options ?? {} };
      }),
    };
  }

  heartbeatInterval(stage: Stage): number {
    return stage.policy.heartbeatIntervalMs || this.config.defaultHeartbeatIntervalMs;
  }
}

/** How many attempts a Lease (or a lease_next) asks for: max_attempts, 1 to MAX_LEASE_BATCH. */
const leaseBatch = (req: LeaseRequest): number => Math.min(Math.max(req.maxAttempts ?? 1, 1), MAX_LEASE_BATCH);

const ANONYMOUS: Caller = { principal: ANONYMOUS_PRINCIPAL, authenticated: false, admin: false };
const actorOf = (caller: Caller): Actor => ({ principal: caller.principal });
