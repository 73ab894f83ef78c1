// The pull runner agent: N slots each lease an attempt of its type (long poll), run args.command in a fresh working
// directory, stream output lines as progress with its heartbeats, honour cancellation, and complete. It rides out
// server restarts (retries with backoff, keeps its leases) and drains on request.
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
  readonly log: Logger;
  /** Token and TLS settings for reaching the server. */
  readonly connect?: ConnectOptions;
  /** Variables of the agent's environment passed to commands besides the allowlist (ENV_ALLOWLIST). */
  readonly passEnv?: readonly string[];
}

const MAX_LINES_PER_HEARTBEAT = 500;
const MAX_LINE = 8 * 1024;
const RETRYABLE = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.INTERNAL, status.UNKNOWN, status.RESOURCE_EXHAUSTED, status.ABORTED]);

/** What CompleteLease carries, before defaults are filled in. */
interface CompletionInput {
  readonly stageState?: StageState;
  readonly checkUpdates?: { checkId: string; resultData: Record<string, unknown>; finalize: boolean; state: CheckState }[];
  readonly failure?: { message: string };
  readonly details?: Record<string, unknown>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Agent {
  private readonly client: TurboCIRunnerPullClient;
  private draining = false;
  private readonly leaseCalls = new Set<{ cancel(): void }>();
  private readonly running = new Set<RunningCommand>();
  private slots: Promise<void>[] = [];
  private wake: (() => void) | null = null;

  constructor(private readonly o: AgentOptions) {
    const ch = channel(o.connect, { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 2000 });
    this.client = new TurboCIRunnerPullClient(o.server, ch.credentials, ch.options);
  }

  start(): void {
    mkdirSync(this.o.workdir, { recursive: true });
    this.slots = Array.from({ length: this.o.concurrency }, (_, i) => this.slot(i));
    this.o.log.info({ server: this.o.server, runnerType: this.o.runnerType, runnerId: this.o.runnerId, concurrency: this.o.concurrency }, 'agent started');
  }

  /** Stops leasing, lets running commands finish and report, then resolves. */
  async drain(): Promise<void> {
    this.draining = true;
    for (const c of this.leaseCalls) c.cancel();
    this.wake?.();
    await Promise.all(this.slots);
    this.client.close();
  }

  /** Stops every running command's process group now (a second signal). */
  abort(): void {
    this.draining = true;
    for (const c of this.leaseCalls) c.cancel();
    for (const r of this.running) r.stop('the agent was stopped');
  }

  private async slot(slot: number): Promise<void> {
    let backoff = 200;
    while (!this.draining) {
      let leased: LeasedAttempt | undefined;
      try {
        const call = startUnary(
          this.client.lease.bind(this.client),
          LeaseRequest.fromPartial({ runnerId: this.o.runnerId, runnerType: this.o.runnerType, labels: { ...this.o.labels }, waitMs: this.o.waitMs }),
          { timeoutMs: this.o.waitMs + 10_000 },
        );
        this.leaseCalls.add(call);
        try {
          leased = (await call.response).attempt;
        } finally {
          this.leaseCalls.delete(call);
        }
        backoff = 200;
      } catch (err) {
        if (this.draining) break;
        const e = err as ServiceError;
        this.o.log.warn({ slot, code: status[e.code] ?? e.code, error: e.details ?? e.message, retryInMs: backoff }, 'lease failed; retrying');
        await this.pause(backoff);
        backoff = Math.min(backoff * 2, 5000);
        continue;
      }
      if (leased) await this.execute(slot, leased);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async execute(slot: number, l: LeasedAttempt): Promise<void> {
    const at = { slot, workPlanId: l.workPlanId, stageId: l.stageId, attempt: l.attemptIdx, leaseId: l.leaseId };
    this.o.log.info(at, 'leased');
    const args = (l.args ?? {}) as Record<string, unknown>;
    let parsed: ReturnType<typeof parseCommandArgs>;
    try {
      parsed = parseCommandArgs(args);
    } catch (err) {
      // A broken stage is not retried: the same args would fail the same way.
      await this.complete(at, l.leaseToken, { stageState: StageState.STAGE_STATE_FINAL, failure: { message: (err as Error).message } });
      return;
    }
    const dir = mkdtempSync(join(this.o.workdir, `${l.stageId.replace(/[^\w.-]/g, '_').slice(0, 40)}-${l.attemptIdx}-`));
    let cwd: string;
    try {
      cwd = containedCwd(this.o.workdir, dir, parsed.cwd);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      await this.complete(at, l.leaseToken, { stageState: StageState.STAGE_STATE_FINAL, failure: { message: (err as Error).message } });
      return;
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
        return;
      }
      const data = { exit_code: result.exitCode ?? -1, duration_ms: result.durationMs, output_tail: result.tail, runner_id: this.o.runnerId };
      if (result.exitCode === 0 && !result.stopped) {
        await this.complete(at, l.leaseToken, {
          stageState: StageState.STAGE_STATE_FINAL,
          checkUpdates: l.assignedCheckIds.map((checkId) => ({ checkId, resultData: data, finalize: true, state: CheckState.CHECK_STATE_FINAL })),
          details: data,
        });
      } else {
        const why = result.stopped ?? (result.signal ? `command was killed by ${result.signal}` : `command exited with code ${result.exitCode}`);
        await this.complete(at, l.leaseToken, { failure: { message: why }, details: data });
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

  private async complete(at: object, leaseToken: string, req: CompletionInput): Promise<void> {
    const until = Date.now() + this.o.completeRetryMs;
    let backoff = 200;
    for (;;) {
      try {
        await unary(this.client.completeLease.bind(this.client), CompleteLeaseRequest.fromPartial({ ...req, leaseToken } as Parameters<typeof CompleteLeaseRequest.fromPartial>[0]), { timeoutMs: 10_000 });
        this.o.log.info({ ...at, failed: Boolean(req.failure) }, 'completed');
        return;
      } catch (err) {
        const e = err as ServiceError;
        if (!RETRYABLE.has(e.code) || Date.now() > until) {
          this.o.log.warn({ ...at, code: status[e.code] ?? e.code, error: e.details ?? e.message }, 'completion refused');
          return;
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
