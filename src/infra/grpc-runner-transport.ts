// Outbound calls to StageRunner servers over gRPC, one cached channel per runner address. SYNC runs go over one
// long-lived RunStream per address (a message on an open HTTP/2 stream costs microseconds, a unary call about a
// millisecond); a runner that does not implement it (UNIMPLEMENTED) gets unary Run calls instead.
import { credentials, Metadata, status, type ClientDuplexStream } from '@grpc/grpc-js';
import { RunnerUnreachable, type RunnerCall, type RunnerTransport } from '../app/dispatcher.js';
import type { ExecutionCompletion } from '../domain/decide-completion.js';
import { StageRunnerClient, type RunRequest, type RunResponse, type RunStreamResult } from '../gen/turboci/v1/stagerunner.js';
import { completionProblem, toCompletion } from '../transport/runner-mapping.js';

/** A runner registered as `tls://host:port` is dialed over TLS (verified against tlsCa, or the system roots). */
export const TLS_SCHEME = 'tls://';

type Completion = Omit<ExecutionCompletion, 'fingerprint'>;

const MAX_TIMER_MS = 2 ** 31 - 1;

/** A run sent on a stream, waiting for its result. */
interface Waiting {
  readonly request: RunRequest;
  readonly resolve: (completion: Completion) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** One RunStream to one runner address and the runs waiting on it, by execution id. */
interface Link {
  readonly call: ClientDuplexStream<RunRequest, RunStreamResult>;
  readonly waiting: Map<string, Waiting>;
  /** A result came on it: the runner implements RunStream (a later UNIMPLEMENTED is not a v1 runner). */
  answered: boolean;
  /** No longer used for new runs (its address was dropped): cancelled once nothing waits on it. */
  closing: boolean;
}

/** A runner held back as unreachable is probed with Ping; no answer within this long counts as still down. */
const PING_TIMEOUT_MS = 5_000;

export class GrpcRunnerTransport implements RunnerTransport {
  private readonly clients = new Map<string, StageRunnerClient>();
  private readonly links = new Map<string, Link>();
  /** Addresses whose runner answered RunStream UNIMPLEMENTED: they get unary Run. */
  private readonly unaryOnly = new Set<string>();

  constructor(private readonly options: { readonly tlsCa?: Buffer } = {}) {}

  run(address: string, call: RunnerCall): Promise<Completion> {
    const request = toRequest(call);
    if (this.unaryOnly.has(address)) return this.runUnary(address, request, call.deadline);
    return new Promise((resolve, reject) => {
      const left = call.deadline - Date.now();
      if (left <= 0) return reject(new Error(`deadline exceeded: its deadline ${new Date(call.deadline).toISOString()} had passed when it was sent`));
      const link = this.link(address);
      const id = request.executionId;
      if (link.waiting.has(id)) return reject(new Error(`INTERNAL: execution ${id} is already running on this runner's RunStream`));
      // The stream stays: only this run fails (its result, should it come, is dropped).
      const timer = setTimeout(() => {
        link.waiting.delete(id);
        reject(new Error(`deadline exceeded: no answer on RunStream by ${new Date(call.deadline).toISOString()}`));
        this.cancelIfDone(link);
      }, Math.min(left, MAX_TIMER_MS));
      link.waiting.set(id, { request, resolve, reject, timer });
      link.call.write(request);
    });
  }

  runAsync(address: string, call: RunnerCall): Promise<{ accepted: boolean }> {
    return new Promise((resolve, reject) =>
      this.client(address).runAsync(
        { ...toRequest(call), callbackAddress: call.callbackAddress },
        new Metadata(),
        { deadline: new Date(Math.min(call.deadline, Date.now() + 30_000)) },
        (err, res) => (err ? reject(describe(err)) : resolve({ accepted: res.accepted })),
      ),
    );
  }

  ping(address: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.client(address).ping({}, new Metadata(), { deadline: new Date(Date.now() + PING_TIMEOUT_MS) }, (err) =>
        // Any answer, UNIMPLEMENTED included (a runner without Ping), says it is up.
        err && (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED) ? reject(describe(err)) : resolve(),
      ),
    );
  }

  retainOnly(addresses: ReadonlySet<string>): void {
    for (const [address, link] of this.links) {
      if (addresses.has(address)) continue;
      this.links.delete(address);
      // No new runs on it; the runs it carries still get their results (the runner ends it once they are answered).
      link.closing = true;
      if (link.waiting.size === 0) link.call.cancel();
      else link.call.end();
    }
    for (const address of this.unaryOnly) if (!addresses.has(address)) this.unaryOnly.delete(address);
    for (const [address, client] of this.clients) {
      if (addresses.has(address)) continue;
      client.close();
      this.clients.delete(address);
    }
  }

  close(): void {
    this.retainOnly(new Set());
  }

  private runUnary(address: string, request: RunRequest, deadline: number): Promise<Completion> {
    return new Promise((resolve, reject) =>
      this.client(address).run(request, new Metadata(), { deadline: new Date(deadline) }, (err, res) => {
        if (err) return reject(describe(err));
        return settle(res, resolve, reject);
      }),
    );
  }

  /** The open RunStream to `address`, opened now if there is none. */
  private link(address: string): Link {
    const open = this.links.get(address);
    if (open) return open;
    const link: Link = { call: this.client(address).runStream(new Metadata()), waiting: new Map(), answered: false, closing: false };
    this.links.set(address, link);
    link.call.on('data', (result: RunStreamResult) => {
      link.answered = true;
      const waiting = link.waiting.get(result.executionId);
      if (!waiting) return; // its deadline passed: the run has failed already
      link.waiting.delete(result.executionId);
      clearTimeout(waiting.timer);
      if (result.error) waiting.reject(describe({ code: result.error.code, details: result.error.message }));
      else if (result.response) settle(result.response, waiting.resolve, waiting.reject);
      else waiting.reject(new Error('its answer was refused: a RunStreamResult with neither response nor error'));
      this.cancelIfDone(link);
    });
    link.call.on('error', () => {}); // the status says it all
    link.call.on('status', (s: { code: status; details: string }) => {
      if (this.links.get(address) === link) this.links.delete(address);
      const v1 = s.code === status.UNIMPLEMENTED && !link.answered;
      if (v1) this.unaryOnly.add(address);
      // Results the stream delivered before its status are handled first (a message can be emitted a tick late).
      setImmediate(() => {
        const left = [...link.waiting.values()];
        link.waiting.clear();
        for (const w of left) {
          clearTimeout(w.timer);
          // A v1 runner never saw them: they go again, as Run calls, with the same deadline.
          if (v1) this.runUnary(address, w.request, w.request.deadline!.getTime()).then(w.resolve, w.reject);
          else w.reject(s.code === status.OK ? new RunnerUnreachable('unreachable: the runner ended its RunStream without answering') : describe(s));
        }
      });
    });
    return link;
  }

  /** A link being closed is cancelled once the last run on it is settled. */
  private cancelIfDone(link: Link): void {
    if (link.closing && link.waiting.size === 0) link.call.cancel();
  }

  private client(address: string): StageRunnerClient {
    let client = this.clients.get(address);
    if (!client) {
      const tls = address.startsWith(TLS_SCHEME);
      const target = tls ? address.slice(TLS_SCHEME.length) : address;
      const creds = tls ? credentials.createSsl(this.options.tlsCa ?? null) : credentials.createInsecure();
      // A runner held back as unreachable is probed at most 30 s apart; the channel must not wait longer than that
      // to reconnect (grpc-js backs off up to 120 s by default), or the probe would fail while the runner is back.
      this.clients.set(address, (client = new StageRunnerClient(target, creds, { 'grpc.max_reconnect_backoff_ms': 30_000 })));
    }
    return client;
  }
}

/** Bounded like a CompleteStageExecution: an answer that cannot be stored faithfully fails the attempt. */
function settle(res: RunResponse, resolve: (c: Completion) => void, reject: (err: Error) => void): void {
  const problem = completionProblem(res);
  if (problem) reject(new Error(`its answer was refused: ${problem}`));
  else resolve(toCompletion(res));
}

function toRequest(call: RunnerCall): RunRequest {
  return {
    executionId: call.executionId,
    workPlanId: call.workPlanId,
    stageId: call.stageId,
    attemptIdx: call.attemptIdx,
    assignedCheckIds: call.assignedCheckIds,
    args: call.args,
    checkOptions: call.checkOptions,
    deadline: new Date(call.deadline),
  };
}

/** A failed call (or a run that failed on a stream) as the attempt's failure says it. */
/**
 * A failed call in words. UNAVAILABLE is RunnerUnreachable: the runner is down, or says it cannot take runs (a
 * draining runner answers a run on its stream so); either way it is held back until it answers a Ping.
 */
function describe(err: { code: number; details?: string; message?: string }): Error {
  const what =
    err.code === status.UNAVAILABLE
      ? 'unreachable'
      : err.code === status.DEADLINE_EXCEEDED
        ? 'deadline exceeded'
        : status[err.code] ?? `code ${err.code}`;
  const message = `${what}: ${err.details || err.message}`;
  return err.code === status.UNAVAILABLE ? new RunnerUnreachable(message) : new Error(message);
}
