// The push dispatcher: driven by the event stream (no polling), it sends queued attempts to the least-loaded live
// runner of their type, applies what comes back, and enforces deadlines and registration expiry with timers that
// are rebuilt from the read models on start.
import { merge, of, tap, type Subscription } from 'rxjs';
import type { ExecutionRef, QueuedAttempt } from '../../projections/executions.js';
import { DomainError } from '../domain/errors.js';
import type { RecordedEvent } from '../domain/events.js';
import type { ExecutionCompletion } from '../domain/decide-completion.js';
import type { JsonObject, RunnerRegistration } from '../domain/model.js';
import type { Logger } from '../logging.js';
import type { Orchestrator } from './orchestrator.js';
import type { RunnerService } from './runner-service.js';
import { coalescePerTurn } from './next-turn.js';

/** What a runner is sent (Run / RunAsync). */
export interface RunnerCall {
  readonly executionId: string;
  readonly workPlanId: string;
  readonly stageId: string;
  readonly attemptIdx: number;
  readonly assignedCheckIds: string[];
  readonly args: JsonObject;
  readonly checkOptions: { checkId: string; kind: string; options: JsonObject }[];
  readonly deadline: number;
  readonly callbackAddress: string;
}

/**
 * The runner could not be reached at all (connection refused or reset, its stream gone): a call that failed this
 * way says nothing about the stage, only that the runner is down.
 */
export class RunnerUnreachable extends Error {}

/** Outbound calls to runners; rejects with an Error whose message says what went wrong (RunnerUnreachable when it could not be reached). */
export interface RunnerTransport {
  run(address: string, call: RunnerCall): Promise<Omit<ExecutionCompletion, 'fingerprint'>>;
  runAsync(address: string, call: RunnerCall): Promise<{ accepted: boolean }>;
  /** Resolves when the runner at `address` answers anything (it is up); rejects when it cannot be reached. */
  ping(address: string): Promise<void>;
  /** Closes the channels to every address not in `addresses` (no live registration uses them any more). */
  retainOnly(addresses: ReadonlySet<string>): void;
  close(): void;
}

export interface DispatcherConfig {
  /** Sent to async runners as callback_address. */
  readonly callbackAddress: string;
  /** Deadline of an attempt whose stage sets none. */
  readonly defaultAttemptTimeoutMs: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** On a shared log, how often to look for synchronous runs whose replica is gone. */
const ORPHAN_CHECK_MS = 5_000;
/** A runner found unreachable is held back this long at first, twice as long after each failed probe, up to the max. */
const FIRST_HOLD_BACK_MS = 1_000;
const MAX_HOLD_BACK_MS = 30_000;

export class Dispatcher {
  private readonly deadlineTimers = new Map<string, NodeJS.Timeout>();
  private readonly expiryTimers = new Map<string, NodeJS.Timeout>();
  private subscription: Subscription | null = null;
  private unhook: (() => void) | null = null;
  private orphanTimer: NodeJS.Timeout | null = null;
  /**
   * Registrations whose runner could not be reached: nothing is dispatched to them until a Ping answers. Without
   * this, the attempt retried after an unreachable dispatch went straight back to the same dead runner, and a stage
   * burned all its attempts within milliseconds. Scheduler state, not domain state: a restart forgets it.
   */
  private readonly heldBack = new Map<string, { delayMs: number; timer: NodeJS.Timeout }>();

  constructor(
    private readonly app: Orchestrator,
    private readonly runners: RunnerService,
    private readonly transport: RunnerTransport,
    private readonly log: Logger,
    private readonly config: DispatcherConfig,
  ) {}

  /** Picks up where the log left off: in-flight executions, registrations, the queue. */
  start(): void {
    const { executions, runners } = this.app.models;
    const live = this.app.liveServers();
    for (const ex of [...executions.inFlight()]) {
      // On a shared log a synchronous run in flight may be another replica's, still waiting for its answer: failing
      // it would kill live work whenever a replica starts. Only the runs of processes gone from the log are failed
      // (and later ones by failOrphans); the rest are armed with their deadlines, as every replica does.
      if (ex.mode === 'SYNC' && live === undefined) {
        this.fail(ex, 'the server restarted while the runner was executing it synchronously; its answer was lost');
      } else if (ex.mode === 'SYNC' && live !== undefined && this.orphaned(ex, live)) {
        this.fail(ex, `the replica that ran it synchronously (${ex.dispatchedBy}) is gone; its answer was lost`);
      } else {
        this.armDeadline(ex);
      }
    }
    if (live !== undefined) {
      this.orphanTimer = setInterval(() => this.failOrphans(), ORPHAN_CHECK_MS);
      this.orphanTimer.unref();
    }
    for (const reg of runners.registrations()) this.armExpiry(reg);
    // Timers follow every batch. The queue is pumped once now, then at every group commit, right before it: a
    // runner's answer, the attempt the resolver opened because of it and that attempt's dispatch are one commit,
    // and the next Run goes out the moment it is on disk. Without group commit, once per turn.
    const observed = this.app.bus.batches$.pipe(tap((batch) => this.observe(batch)));
    if (this.app.groupCommit) {
      this.unhook = this.app.beforeCommit(() => this.pump());
      this.subscription = observed.subscribe();
      this.subscription.add(of(null).pipe(coalescePerTurn()).subscribe(() => this.pump()));
    } else {
      this.subscription = merge(of(null), observed)
        .pipe(coalescePerTurn())
        .subscribe(() => this.pump());
    }
  }

  stop(): void {
    if (this.orphanTimer) clearInterval(this.orphanTimer);
    this.orphanTimer = null;
    this.unhook?.();
    this.unhook = null;
    this.subscription?.unsubscribe();
    this.subscription = null;
    for (const t of [...this.deadlineTimers.values(), ...this.expiryTimers.values()]) clearTimeout(t);
    for (const h of this.heldBack.values()) clearTimeout(h.timer);
    this.deadlineTimers.clear();
    this.expiryTimers.clear();
    this.heldBack.clear();
    this.transport.close();
  }

  /**
   * A synchronous run another replica made, whose answer can never arrive: that process is no longer connected to
   * the log. (Runs from logs that predate dispatchedBy wait for their deadline.)
   */
  private orphaned(ex: ExecutionRef, live: ReadonlySet<string>): boolean {
    return ex.dispatchedBy !== undefined && ex.dispatchedBy !== this.app.serverId && !live.has(ex.dispatchedBy);
  }

  /** Fails the synchronous runs of replicas that are gone, so their attempts are retried (here or elsewhere). */
  private failOrphans(): void {
    const others = [...this.app.models.executions.inFlight()].filter((ex) => ex.mode === 'SYNC' && ex.dispatchedBy !== undefined && ex.dispatchedBy !== this.app.serverId);
    if (others.length === 0) return;
    let live: ReadonlySet<string> | undefined;
    try {
      live = this.app.liveServers();
    } catch (err) {
      this.log.warn({ err }, 'cannot list the replicas connected to the log');
      return;
    }
    if (!live) return;
    for (const ex of others) {
      if (!this.orphaned(ex, live)) continue;
      const outcome = this.fail(ex, `the replica that ran it synchronously (${ex.dispatchedBy}) is gone; its answer was lost`);
      this.log.info({ executionId: ex.executionId, workPlanId: ex.workPlanId, stageId: ex.stageId, dispatchedBy: ex.dispatchedBy, outcome }, 'orphaned run');
    }
  }

  private observe(batch: readonly RecordedEvent[]): void {
    for (const rec of batch) {
      const e = rec.event;
      switch (e.type) {
        case 'RunnerRegistered':
        case 'RunnerRefreshed':
          this.armExpiry(this.app.models.runners.registration(e.data.registrationId)!);
          break;
        case 'RunnerUnregistered':
        case 'RunnerExpired':
          this.disarm(this.expiryTimers, e.data.registrationId);
          this.releaseUnused();
          break;
        case 'StageAttemptDispatched': {
          // Not in flight any more when a later event of the same batch ended it (another replica's commits fold as one).
          const ref = this.app.models.executions.execution(e.data.executionId);
          if (ref) this.armDeadline(ref);
          break;
        }
        case 'StageAttemptDispatchDeclined':
          this.disarm(this.deadlineTimers, e.data.executionId);
          break;
        case 'StageAttemptStateChanged': {
          if (e.data.to !== 'COMPLETE' && e.data.to !== 'INCOMPLETE') break;
          const attempt = this.app.models.workplan(rec.streamId)?.stage(e.data.stageId)?.attempts.find((a) => a.idx === e.data.idx);
          if (attempt?.execution) this.disarm(this.deadlineTimers, attempt.execution.executionId);
          break;
        }
        default:
          break;
      }
    }
  }

  /**
   * Oldest queued attempt first, to the least-loaded live runner of its type with a free slot and its mode. The
   * queues are walked live, not copied: a dispatch removes the attempt it dispatched (already visited), and the
   * walk stops at the first attempt no runner has a slot for.
   */
  private pump(): void {
    const { executions, runners } = this.app.models;
    const now = this.app.now();
    for (const type of executions.queuedTypes()) {
      const live = [...runners.registrations()].filter((r) => r.runnerType === type && r.expiresAt > now && !this.heldBack.has(r.registrationId));
      if (live.length === 0) continue;
      for (const queued of executions.queue(type)) {
        const free = live.filter((r) => executions.load(r.registrationId) < r.maxConcurrent);
        if (free.length === 0) break;
        const able = free.filter((r) => r.supportedModes.includes(queued.mode));
        if (able.length === 0) continue;
        // Least loaded first; on a tie, not the runner that ran this stage's previous attempt (it may be gone), then oldest.
        const previous = this.app.models.workplan(queued.workPlanId)?.stage(queued.stageId)?.attempts.at(-2)?.execution?.registrationId;
        able.sort(
          (a, b) =>
            executions.load(a.registrationId) - executions.load(b.registrationId) ||
            Number(a.registrationId === previous) - Number(b.registrationId === previous) ||
            a.registeredAt - b.registeredAt,
        );
        // On a shared log, lock it and fold the other replicas' latest events first; if there were any, start over.
        if (this.app.beginWrite()) return this.pump();
        this.dispatch(queued, able[0]!, now);
      }
    }
  }

  private dispatch(queued: QueuedAttempt, runner: RunnerRegistration, now: number): void {
    const model = this.app.models.workplan(queued.workPlanId)!;
    const stage = model.stage(queued.stageId)!;
    const deadline = now + (stage.attemptTimeoutSeconds * 1000 || this.config.defaultAttemptTimeoutMs);
    let ref: ExecutionRef;
    try {
      ref = this.runners.dispatch(queued, runner, deadline);
    } catch (err) {
      this.log.warn({ workPlanId: queued.workPlanId, stageId: queued.stageId, err }, 'dispatch refused');
      return;
    }
    const call: RunnerCall = {
      executionId: ref.executionId,
      workPlanId: ref.workPlanId,
      stageId: ref.stageId,
      attemptIdx: ref.idx,
      assignedCheckIds: stage.assignments.map((a) => a.checkId),
      args: stage.args,
      checkOptions: stage.assignments.map((a) => {
        const check = model.check(a.checkId);
        return { checkId: a.checkId, kind: check?.kind ?? '', options: check?.options ?? {} };
      }),
      deadline,
      callbackAddress: this.config.callbackAddress,
    };
    const started = Date.now();
    // A run that went as expected is a debug line: one info line per stage cost ~6% of the server's CPU at full
    // speed, and the log holds it (the attempt's change records the completion). Anything else (failed, refused,
    // unreachable...) is info.
    const done = (outcome: string) => {
      const level = outcome === 'completed' || outcome === 'accepted' ? 'debug' : 'info';
      if (!this.log.isLevelEnabled(level)) return;
      this.log[level](
        { executionId: ref.executionId, workPlanId: ref.workPlanId, stageId: ref.stageId, attempt: ref.idx, runnerId: runner.runnerId, mode: ref.mode, outcome, durationMs: Date.now() - started },
        'dispatch',
      );
    };
    // The runner hears of the execution only once its dispatch is on disk: a crash cannot leave it running work
    // the restarted server never handed out.
    const durable = this.app.durable();
    if (ref.mode === 'SYNC') {
      durable.then(() => this.transport.run(runner.address, call)).then(
        (completion) => {
          const outcome = this.apply(() => this.runners.complete(ref.executionId, completion), completion.failure ? 'failed' : 'completed', true);
          // An answer the domain refuses (a check not assigned to the stage, say) fails the attempt rather than leave it hanging.
          done(outcome.startsWith('refused: ') ? this.fail(ref, `runner ${runner.runnerId} answered with ${outcome}`) : outcome);
        },
        (err: Error) => done(this.failed(ref, runner, err)),
      );
    } else {
      durable.then(() => this.transport.runAsync(runner.address, call)).then(
        (answer) => done(answer.accepted ? 'accepted' : this.apply(() => this.runners.declined(ref.executionId), 'declined, queued again')),
        (err: Error) => done(this.failed(ref, runner, err)),
      );
    }
  }

  /** Applies a runner's answer; one that comes too late (cancelled, timed out) is discarded and says why. */
  private apply(write: () => void, outcome: string, invalidIsRefused = false): string {
    try {
      write();
      return outcome;
    } catch (err) {
      if (err instanceof DomainError && invalidIsRefused && err.kind === 'INVALID_ARGUMENT') return `refused: ${err.message}`;
      if (err instanceof DomainError) return `discarded: ${err.message}`;
      this.log.error({ err }, 'applying a runner answer failed');
      return 'error';
    }
  }

  /** A dispatch that failed: the attempt is INCOMPLETE, and a runner that could not be reached is held back. */
  private failed(ref: ExecutionRef, runner: RunnerRegistration, err: Error): string {
    if (err instanceof RunnerUnreachable) this.holdBack(runner);
    return this.fail(ref, `runner ${runner.runnerId} at ${runner.address}: ${err.message}`);
  }

  /** Nothing goes to `runner` until a Ping answers; the first probe comes after FIRST_HOLD_BACK_MS. */
  private holdBack(runner: RunnerRegistration, delayMs = FIRST_HOLD_BACK_MS): void {
    // Several runs failing together (a broken stream) are one finding, not a reason to back off longer.
    if (this.heldBack.has(runner.registrationId) && delayMs === FIRST_HOLD_BACK_MS) return;
    const timer = setTimeout(() => this.probe(runner, delayMs), delayMs);
    timer.unref();
    this.heldBack.set(runner.registrationId, { delayMs, timer });
    this.log.warn({ registrationId: runner.registrationId, runnerId: runner.runnerId, address: runner.address, retryInMs: delayMs }, 'runner unreachable; holding it back');
  }

  /** Pings a held-back runner: reachable again, it gets work at once; still down (or gone), it waits twice as long. */
  private probe(runner: RunnerRegistration, delayMs: number): void {
    if (!this.subscription) return;
    const current = this.app.models.runners.registration(runner.registrationId);
    if (!current) {
      this.heldBack.delete(runner.registrationId);
      return;
    }
    this.transport.ping(current.address).then(
      () => {
        if (!this.heldBack.delete(runner.registrationId) || !this.subscription) return;
        this.log.info({ registrationId: runner.registrationId, runnerId: runner.runnerId, address: runner.address }, 'runner reachable again');
        this.pump();
      },
      () => {
        if (!this.heldBack.has(runner.registrationId) || !this.subscription) return;
        this.holdBack(runner, Math.min(delayMs * 2, MAX_HOLD_BACK_MS));
      },
    );
  }

  private fail(ref: ExecutionRef, message: string): string {
    return this.apply(() => void this.runners.fail(ref.executionId, message), `incomplete: ${message}`);
  }

  private armDeadline(ref: ExecutionRef): void {
    this.disarm(this.deadlineTimers, ref.executionId);
    const timer = setTimeout(() => {
      this.deadlineTimers.delete(ref.executionId);
      const outcome = this.fail(ref, `deadline exceeded: the runner did not complete it by ${new Date(ref.deadline).toISOString()}`);
      this.log.info({ executionId: ref.executionId, workPlanId: ref.workPlanId, stageId: ref.stageId, outcome }, 'deadline');
    }, Math.min(Math.max(ref.deadline - this.app.now(), 0), MAX_TIMER_MS));
    this.deadlineTimers.set(ref.executionId, timer);
  }

  private armExpiry(reg: RunnerRegistration): void {
    this.disarm(this.expiryTimers, reg.registrationId);
    const timer = setTimeout(() => {
      this.expiryTimers.delete(reg.registrationId);
      try {
        if (this.runners.expire(reg.registrationId)) this.log.info({ registrationId: reg.registrationId, runnerId: reg.runnerId }, 'registration expired');
      } catch (err) {
        this.log.error({ err }, 'expiring a registration failed');
      }
    }, Math.min(Math.max(reg.expiresAt - this.app.now() + 1, 0), MAX_TIMER_MS));
    this.expiryTimers.set(reg.registrationId, timer);
  }

  private disarm(timers: Map<string, NodeJS.Timeout>, key: string): void {
    const t = timers.get(key);
    if (t) clearTimeout(t);
    timers.delete(key);
  }

  private releaseUnused(): void {
    this.transport.retainOnly(new Set([...this.app.models.runners.registrations()].map((r) => r.address)));
  }
}
