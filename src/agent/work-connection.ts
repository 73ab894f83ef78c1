// One Work stream of a pull agent (TurboCIRunnerPull.Work, an extension): leases come in as the server grants them
// against the credit the agent gave, completions go out with their credit and are answered by `seq`. The agent owns
// slots and retries; this owns the stream: opening it, matching answers to completions, and telling the agent
// which completions lost their answer when the stream broke (they are retried by CompleteLease: an identical
// repeat is acknowledged).
import { Metadata, status, type ClientDuplexStream } from '@grpc/grpc-js';
import type { CheckState, StageState } from '../gen/turboci/v1/common.js';
import { CompleteLeaseRequest, type LeasedAttempt, type TurboCIRunnerPullClient, type WorkRequest, type WorkResponse } from '../gen/turboci/v1/pull.js';

/** What a completion carries (CompleteLease's fields but the token), before defaults are filled in. */
export interface CompletionInput {
  readonly stageState?: StageState;
  readonly checkUpdates?: { checkId: string; resultData: Record<string, unknown>; finalize: boolean; state: CheckState }[];
  readonly failure?: { message: string };
  readonly details?: Record<string, unknown>;
}

/** How a completion sent on the stream ended. */
export type StreamedCompletion = { readonly code: status; readonly message: string } | { readonly code: 'lost' };

/** How the stream ended: the server has no Work (a v1 server), or anything else (the agent reconnects). */
export type WorkStreamEnd = { readonly unimplemented: true } | { readonly unimplemented: false; readonly code: status; readonly details: string; readonly received: number };

export interface WorkConnectionOptions {
  readonly runnerId: string;
  readonly runnerType: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Attempts the agent can take when the stream opens. */
  readonly credit: number;
  /** With nothing sent or received for this long and no answer awaited, the stream is closed and reopened (a long poll's refresh). */
  readonly idleMs: number;
  readonly onLeased: (attempt: LeasedAttempt) => void;
}

export class WorkConnection {
  private readonly call: ClientDuplexStream<WorkRequest, WorkResponse>;
  private seq = 0n;
  private readonly unanswered = new Map<bigint, (result: StreamedCompletion) => void>();
  private ended = false;
  private halfClosed = false;
  private lastActivity = Date.now();
  private readonly idleTimer: NodeJS.Timeout;
  private received = 0;
  /** Resolves when the stream is over. */
  readonly done: Promise<WorkStreamEnd>;

  constructor(client: TurboCIRunnerPullClient, private readonly o: WorkConnectionOptions) {
    this.call = client.work(new Metadata());
    this.done = new Promise((resolve) => {
      // 'error' comes before 'status' for a non-OK end; 'status' is the one place the stream is over.
      this.call.on('error', () => {});
      this.call.on('status', (s: { code: status; details: string }) => {
        this.ended = true;
        clearInterval(this.idleTimer);
        for (const answer of this.unanswered.values()) answer({ code: 'lost' });
        this.unanswered.clear();
        resolve(s.code === status.UNIMPLEMENTED && this.received === 0 ? { unimplemented: true } : { unimplemented: false, code: s.code, details: s.details, received: this.received });
      });
    });
    this.call.on('data', (m: WorkResponse) => {
      this.received++;
      this.lastActivity = Date.now();
      if (m.leased) this.o.onLeased(m.leased);
      else if (m.completed) {
        const answer = this.unanswered.get(m.completed.seq);
        this.unanswered.delete(m.completed.seq);
        answer?.({ code: m.completed.code as status, message: m.completed.message });
      }
    });
    this.idleTimer = setInterval(() => {
      if (!this.halfClosed && this.unanswered.size === 0 && Date.now() - this.lastActivity >= o.idleMs) this.end();
    }, Math.max(50, Math.floor(o.idleMs / 4)));
    this.send({ open: { runnerId: o.runnerId, runnerType: o.runnerType, labels: { ...o.labels }, credit: o.credit } });
  }

  /** True while completions and credit can be sent on it. */
  get usable(): boolean {
    return !this.ended && !this.halfClosed;
  }

  /** Sends a completion with the credit it gives back; resolves with the server's answer, or 'lost' if the stream broke first. */
  complete(leaseToken: string, completion: CompletionInput, credit: number): Promise<StreamedCompletion> {
    if (!this.usable) return Promise.resolve({ code: 'lost' });
    const seq = ++this.seq;
    const answered = new Promise<StreamedCompletion>((resolve) => this.unanswered.set(seq, resolve));
    this.send({ complete: { seq, completion: CompleteLeaseRequest.fromPartial({ ...completion, leaseToken } as Parameters<typeof CompleteLeaseRequest.fromPartial>[0]), credit } });
    return answered;
  }

  addCredit(n: number): void {
    if (this.usable && n > 0) this.send({ addCredit: n });
  }

  /** Nothing more is leased on this stream. */
  drain(): void {
    if (this.usable) this.send({ drain: true });
  }

  /** Half-closes: the server answers what it has, sends the leases already granted, and ends the stream with OK. */
  end(): void {
    if (this.halfClosed || this.ended) return;
    this.halfClosed = true;
    this.call.end();
  }

  /** Ends it at once (the agent is closing). */
  cancel(): void {
    this.call.cancel();
  }

  private send(m: Partial<WorkRequest>): void {
    this.lastActivity = Date.now();
    this.call.write(m as WorkRequest);
  }
}
