// The pull runner agent: N slots. By default it keeps one Work stream open (an extension): it gives the server
// credit for its free slots, attempts come in as they are leased, and each completion goes out on the stream giving
// its slot back, so the next attempt is leased into it in the same commit. Against a server without Work it uses
// the v1 calls: one long-polling Lease asks for as many attempts as slots are free, and a slot that completes gets
// its next attempt in the same CompleteLease (lease_next). Each attempt runs args.command in a fresh working
// directory, streams output lines as progress with its heartbeats, honours cancellation, and completes. It rides
// out server restarts (retries with backoff, keeps its leases) and drains on request.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { channel, type ConnectOptions } from '../client/connect.js';
import type { Logger } from '../logging.js';
import { CheckState, StageState } from '../gen/turboci/v1/common.js';
import {
  CompleteLeaseRequest,
  HeartbeatRequest,
  LeaseRequest,
  TurboCIRunnerPullClient,
  type LeasedAttempt,
} from '../gen/turboci/v1/pull.js';
import { startUnary, unary } from '../client/unary.js';
import { containedCwd, parseCommandArgs, RunningCommand, scrubbedEnv } from './command.js';
import { WorkConnection, type CompletionInput } from './work-connection.js';

export interface AgentOptions {
  readonly server: string;
  readonly runnerType: string;
  readonly runnerId: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly concurrency: number;
  readonly workdir: string;
  /** Between SIGTERM and SIGKILL of a command's process group. */
  readonly graceMs: number;
  /** Long-poll wait of each Lease call. */
  readonly waitMs: number;
  /** Give up completing (server unreachable) after this long. */
  readonly completeRetryMs: number;
  /** 'stream' (default): the Work stream, or the v1 calls when the server lacks it; 'unary': the v1 calls only. */
  readonly protocol?: 'stream' | 'unary';
  readonly log: Logger;
  /** Token and TLS settings for reaching the server. */
  readonly connect?: ConnectOptions;
  /** Variables of the agent's environment passed to commands besides the allowlist (ENV_ALLOWLIST). */
  readonly passEnv?: readonly string[];
}

const MAX_LINES_PER_HEARTBEAT = 500;
const MAX_LINE = 8 * 1024;
const RETRYABLE = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.INTERNAL, status.UNKNOWN, status.RESOURCE_EXHAUSTED, status.ABORTED]);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Agent {
  private readonly client: TurboCIRunnerPullClient;
  private draining = false;
  private readonly leaseCalls = new Set<{ cancel(): void }>();
  private readonly running = new Set<RunningCommand>();
  /** Slot numbers not running anything (for the logs); their count is how many attempts the next Lease asks for. */
  private readonly freeSlots: number[];
  private leaser: Promise<void> = Promise.resolve();
  private readonly workers = new Set<Promise<void>>();
  private wake: (() => void) | null = null;
  /** The open Work stream, if any. */
  private work: WorkConnection | null = null;

  constructor(private readonly o: AgentOptions) {
    const ch = channel(o.connect, { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 2000 });
    this.client = new TurboCIRunnerPullClient(o.server, ch.credentials, ch.options);
    this.freeSlots = Array.from({ length: o.concurrency }, (_, i) => o.concurrency - 1 - i);
  }

  start(): void {
    mkdirSync(this.o.workdir, { recursive: true });
    const protocol = this.o.protocol ?? 'stream';
    this.leaser = protocol === 'stream' ? this.workLoop() : this.leaseLoop();
    this.o.log.info({ server: this.o.server, runnerType: this.o.runnerType, runnerId: this.o.runnerId, concurrency: this.o.concurrency, protocol }, 'agent started');
  }

  /** Stops leasing, lets running commands finish and report, then resolves. */
  async drain(): Promise<void> {
    this.stopLeasing();
    while (this.workers.size > 0) await Promise.all([...this.workers]);
    this.work?.end();
    await this.leaser;
    // Attempts the server leased before it saw the drain arrive up to the stream's end: they are run too.
    while (this.workers.size > 0) await Promise.all([...this.workers]);
    this.client.close();
  }

  /** Stops every running command's process group now (a second signal). */
  abort(): void {
    this.stopLeasing();
    for (const r of this.running) r.stop('the agent was stopped');
  }

  private stopLeasing(): void {
    this.draining = true;
    for (const c of this.leaseCalls) c.cancel();
    this.work?.drain();
    this.wake?.();
  }

  /**
   * Keeps a Work stream open while not draining, reopening it with backoff when it breaks; falls back to the v1
   * calls for good when the server answers UNIMPLEMENTED (it predates Work).
   */
  private async workLoop(): Promise<void> {
    let backoff = 200;
    while (!this.draining) {
      const work = new WorkConnection(this.client, {
        runnerId: this.o.runnerId,
        runnerType: this.o.runnerType,
        labels: this.o.labels,
        credit: this.freeSlots.length,
        idleMs: Math.max(this.o.waitMs, 1000),
        onLeased: (l) => this.run(this.freeSlots.pop() ?? -1, l, 'work stream'),
      });
      this.work = work;
      const end = await work.done;
      this.work = null;
      if (end.unimplemented) {
        this.o.log.info('the server has no Work stream; using Lease and CompleteLease');
        return this.leaseLoop();
      }
      if (this.draining) break;
      if (end.code === status.OK) {
        backoff = 200;
        continue;
      }
      if (end.received > 0) backoff = 200;
      this.o.log.warn({ code: status[end.code] ?? end.code, error: end.details, retryInMs: backoff }, 'work stream ended; reopening');
      await this.pause(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  }

  /**
   * One long-polling Lease at a time, for as many attempts as there are free slots (max_attempts); each attempt
   * leased goes to a free slot. A slot that finishes asks for its next attempt in the same CompleteLease
   * (lease_next), so while there is work a stage costs one round trip; it is back here only when none was left.
   */
  private async leaseLoop(): Promise<void> {
    let backoff = 200;
    while (!this.draining) {
      if (this.freeSlots.length === 0) {
        await this.pause(Infinity);
        continue;
      }
      let leased: LeasedAttempt[];
      try {
        const call = startUnary(
          this.client.lease.bind(this.client),
          LeaseRequest.fromPartial({
            runnerId: this.o.runnerId,
            runnerType: this.o.runnerType,
            labels: { ...this.o.labels },
            waitMs: this.o.waitMs,
            maxAttempts: this.freeSlots.length,
          }),
          { timeoutMs: this.o.waitMs + 10_000 },
        );
        this.leaseCalls.add(call);
        try {
          const res = await call.response;
          leased = res.attempt ? [res.attempt, ...res.moreAttempts] : [];
        } finally {
          this.leaseCalls.delete(call);
        }
        backoff = 200;
      } catch (err) {
        if (this.draining) break;
        const e = err as ServiceError;
        this.o.log.warn({ code: status[e.code] ?? e.code, error: e.details ?? e.message, retryInMs: backoff }, 'lease failed; retrying');
        await this.pause(backoff);
        backoff = Math.min(backoff * 2, 5000);
        continue;
      }
      // Leased attempts are run even when a drain began meanwhile: they are ours now, and are completed.
      for (const l of leased) this.run(this.freeSlots.pop() ?? -1, l, leased.length > 1 ? 'lease (batch)' : 'lease');
    }
  }

  /**
   * Runs an attempt in `slot` and completes it: on the Work stream when one is open (the completion gives the slot
   * back there, and the next attempt arrives as a lease), else by CompleteLease, then the next ones it hands back.
   */
  private run(slot: number, first: LeasedAttempt, via: string): void {
    let freed = false;
    const free = (creditGiven: boolean) => {
      if (freed) return;
      freed = true;
      if (slot < 0) return;
      this.freeSlots.push(slot);
      if (!creditGiven && !this.draining) this.work?.addCredit(1);
      this.wake?.();
    };
    const worker = (async () => {
      let l: LeasedAttempt | undefined = first;
      let how = via;
      while (l) {
        const at = { slot, workPlanId: l.workPlanId, stageId: l.stageId, attempt: l.attemptIdx, leaseId: l.leaseId };
        const outcome = await this.execute(slot, l, how);
        if (!outcome) break;
        const work = this.work;
        if (work?.usable) {
          const credit = this.draining || slot < 0 ? 0 : 1;
          const answered = work.complete(l.leaseToken, outcome, credit);
          free(credit === 1);
          const answer = await answered;
          if (answer.code === status.OK) this.o.log.info({ ...at, failed: Boolean(outcome.failure) }, 'completed');
          else if (answer.code !== 'lost' && !RETRYABLE.has(answer.code)) this.o.log.warn({ ...at, code: status[answer.code] ?? answer.code, error: answer.message }, 'completion refused');
          else await this.complete(at, l.leaseToken, outcome, false);
          return;
        }
        l = await this.complete(at, l.leaseToken, outcome, this.o.protocol === 'unary' || this.work === null);
        how = 'complete (lease_next)';
      }
    })()
      .catch((err: Error) => this.o.log.error({ slot, error: err.message }, 'slot failed'))
      .finally(() => {
        this.workers.delete(worker);
        free(false);
      });
    this.workers.add(worker);
  }

  /** Waits ms (Infinity: until woken), or until woken (a slot freed, a drain). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = Number.isFinite(ms) ? setTimeout(() => done(), ms) : undefined;
      const done = () => {
        if (t) clearTimeout(t);
        if (this.wake === done) this.wake = null;
        resolve();
      };
      this.wake = done;
    });
  }

  /** Runs one leased attempt; resolves with its outcome, or undefined when the lease ended first (nothing to complete). */
  private async execute(slot: number, l: LeasedAttempt, via: string): Promise<CompletionInput | undefined> {
    const at = { slot, workPlanId: l.workPlanId, stageId: l.stageId, attempt: l.attemptIdx, leaseId: l.leaseId };
    this.o.log.info({ ...at, via }, 'leased');
    const args = (l.args ?? {}) as Record<string, unknown>;
    let parsed: ReturnType<typeof parseCommandArgs>;
    try {
      parsed = parseCommandArgs(args);
    } catch (err) {
      // A broken stage is not retried: the same args would fail the same way.
      return { stageState: StageState.STAGE_STATE_FINAL, failure: { message: (err as Error).message } };
    }
    const dir = mkdtempSync(join(this.o.workdir, `${l.stageId.replace(/[^\w.-]/g, '_').slice(0, 40)}-${l.attemptIdx}-`));
    let cwd: string;
    try {
      cwd = containedCwd(this.o.workdir, dir, parsed.cwd);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      return { stageState: StageState.STAGE_STATE_FINAL, failure: { message: (err as Error).message } };
    }
    try {
      mkdirSync(cwd, { recursive: true });
      const cmd = new RunningCommand(
        {
          file: parsed.file,
          args: parsed.argv,
          cwd,
          env: {
            ...scrubbedEnv(process.env, this.o.passEnv ?? []),
            ...parsed.env,
            TURBOCI_WORK_PLAN_ID: l.workPlanId,
            TURBOCI_STAGE_ID: l.stageId,
            TURBOCI_ATTEMPT: String(l.attemptIdx),
            TURBOCI_RUNNER_ID: this.o.runnerId,
            TURBOCI_WORKDIR: dir,
          },
          timeoutSeconds: parsed.timeoutSeconds,
        },
        this.o.graceMs,
      );
      this.running.add(cmd);
      this.o.log.info({ ...at, pid: cmd.pid, cwd }, 'started');
      const outcome = { lost: '' };
      const beats = this.heartbeats(at, l, cmd, outcome);
      const result = await cmd.done;
      this.running.delete(cmd);
      await beats.stop();
      this.o.log.info({ ...at, pid: cmd.pid, exitCode: result.exitCode, signal: result.signal, durationMs: result.durationMs, stopped: result.stopped }, 'finished');
      if (outcome.lost) {
        this.o.log.warn({ ...at, reason: outcome.lost }, 'not completing: the lease is over');
        return undefined;
      }
      const data = { exit_code: result.exitCode ?? -1, duration_ms: result.durationMs, output_tail: result.tail, runner_id: this.o.runnerId };
      if (result.exitCode === 0 && !result.stopped) {
        return {
          stageState: StageState.STAGE_STATE_FINAL,
          checkUpdates: l.assignedCheckIds.map((checkId) => ({ checkId, resultData: data, finalize: true, state: CheckState.CHECK_STATE_FINAL })),
          details: data,
        };
      } else {
        const why = result.stopped ?? (result.signal ? `command was killed by ${result.signal}` : `command exited with code ${result.exitCode}`);
        return { failure: { message: why }, details: data };
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Heartbeats every half interval with the buffered output; stops the command when the lease is over or cancelled. */
  private heartbeats(at: object, l: LeasedAttempt, cmd: RunningCommand, outcome: { lost: string }): { stop(): Promise<void> } {
    const every = Math.max(50, Math.floor(l.heartbeatIntervalMs / 2));
    let stopped = false;
    let inFlight: Promise<void> = Promise.resolve();
    // Once the server says the attempt holds all the progress it may keep, output is dropped, heartbeats go on.
    let progressFull = false;
    const beat = async (): Promise<void> => {
      const taken = cmd.take(MAX_LINES_PER_HEARTBEAT);
      const lines = progressFull ? [] : taken.map(capLine);
      try {
        const res = await unary(this.client.heartbeat.bind(this.client), HeartbeatRequest.fromPartial({ leaseToken: l.leaseToken, logLines: lines }), { timeoutMs: 10_000 });
        if (res.cancelRequested && !outcome.lost) {
          outcome.lost = 'the stage was cancelled';
          this.o.log.info({ ...at, pid: cmd.pid }, 'cancel requested; stopping the command');
          cmd.stop('cancelled');
        }
      } catch (err) {
        const e = err as ServiceError;
        if (e.code === status.FAILED_PRECONDITION) {
          if (!outcome.lost) {
            outcome.lost = e.details;
            this.o.log.warn({ ...at, pid: cmd.pid, error: e.details }, 'lease lost; stopping the command');
            cmd.stop('lease lost');
          }
        } else if (e.code === status.RESOURCE_EXHAUSTED && !progressFull) {
          progressFull = true;
          this.o.log.warn({ ...at, error: e.details }, 'the attempt holds all the output it may keep; dropping the rest');
        } else {
          // Server unreachable (restarting?): keep working, keep the lease, try again next beat.
          this.o.log.warn({ ...at, code: status[e.code] ?? e.code, error: e.details ?? e.message }, 'heartbeat failed; will retry');
        }
      }
    };
    const timer = setInterval(() => {
      if (stopped) return;
      inFlight = inFlight.then(beat);
    }, every);
    return {
      stop: async () => {
        stopped = true;
        clearInterval(timer);
        await inFlight;
        // Flush what is left of the output before completing.
        if (!outcome.lost && cmd.buffered > 0) await beat();
      },
    };
  }

  /**
   * CompleteLease, retried while the server is unreachable. With `next` and unless draining it also asks for this
   * slot's next attempt (lease_next, extension): resolves with it when one was offerable.
   */
  private async complete(at: object, leaseToken: string, req: CompletionInput, next: boolean): Promise<LeasedAttempt | undefined> {
    const until = Date.now() + this.o.completeRetryMs;
    let backoff = 200;
    for (;;) {
      const leaseNext = this.draining || !next
        ? undefined
        : { runnerId: this.o.runnerId, runnerType: this.o.runnerType, labels: { ...this.o.labels }, maxAttempts: 1 };
      try {
        const res = await unary(
          this.client.completeLease.bind(this.client),
          CompleteLeaseRequest.fromPartial({ ...req, leaseToken, leaseNext } as Parameters<typeof CompleteLeaseRequest.fromPartial>[0]),
          { timeoutMs: 10_000 },
        );
        this.o.log.info({ ...at, failed: Boolean(req.failure) }, 'completed');
        return res.nextAttempts[0];
      } catch (err) {
        const e = err as ServiceError;
        if (!RETRYABLE.has(e.code) || Date.now() > until) {
          this.o.log.warn({ ...at, code: status[e.code] ?? e.code, error: e.details ?? e.message }, 'completion refused');
          return undefined;
        }
        this.o.log.warn({ ...at, code: status[e.code] ?? e.code, retryInMs: backoff }, 'completion failed; retrying');
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }
}

/** A log line cut to MAX_LINE bytes of UTF-8 (the server's limit counts bytes), on a character boundary. */
function capLine(s: string): string {
  if (Buffer.byteLength(s) <= MAX_LINE) return s;
  let cut = Buffer.from(s).subarray(0, MAX_LINE - 3).toString();
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
  return `${cut}...`;
}
