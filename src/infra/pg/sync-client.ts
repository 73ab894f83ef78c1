// A synchronous PostgreSQL client: each call posts its statements to a worker thread (pg-worker.ts) that runs them
// on one connection with node-postgres, and waits on a shared flag for the answer (Atomics.wait, as a blocking
// SQLite call waits for its fsync). The event store interface is synchronous: a decision, its append and its
// fold happen in one turn, with nothing interleaved. Keeping it so on PostgreSQL costs one thread hand-off per
// round trip (tens of microseconds), and the orchestrator's group commit makes that two round trips per turn.
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { PgCall, PgResponse, PgStatement, PgWorkerData } from './sync-protocol.js';

/** A PostgreSQL error (code is the SQLSTATE when the server sent one), or the connection's. */
export class PgError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'PgError';
  }
}

export interface SyncPgOptions {
  readonly applicationName?: string;
  /** How long one call may take before it fails (a hung server, a lock never released). */
  readonly timeoutMs?: number;
  /** How long connecting may take (an unreachable host). */
  readonly connectTimeoutMs?: number;
  /** Statements run once the connection is up (SET ...). */
  readonly setup?: readonly string[];
}

export class SyncPg {
  private readonly worker: Worker;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private readonly port: MessagePort;
  private readonly notifyPort: MessagePort;
  private readonly timeoutMs: number;
  private closed = false;
  private listening = false;
  private seq = 0;
  private died: Error | null = null;

  constructor(url: string, options: SyncPgOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 60_000;
    const calls = new MessageChannel();
    const notifications = new MessageChannel();
    const data: PgWorkerData = {
      url,
      applicationName: options.applicationName ?? 'turboci',
      flag: this.flag.buffer as SharedArrayBuffer,
      port: calls.port2,
      notifyPort: notifications.port2,
    };
    this.worker = new Worker(new URL('./pg-worker.js', import.meta.url), { workerData: data, transferList: [calls.port2, notifications.port2] });
    // The worker must not keep a process alive that is otherwise done (a CLI command that forgot close()).
    this.worker.unref();
    // A worker that dies anyway fails the calls still waiting (by their timeout) and every later one, as a PgError;
    // unheard, its 'error' event would end the process with a stack trace.
    this.worker.on('error', (err) => {
      this.died = err;
    });
    this.port = calls.port1;
    this.notifyPort = notifications.port1;
    this.notifyPort.unref();
    try {
      this.call({ kind: 'connect', setup: options.setup ?? [] }, options.connectTimeoutMs ?? 10_000);
    } catch (err) {
      this.closed = true;
      void this.worker.terminate();
      throw err;
    }
  }

  /** Runs the statements in order on the one connection; the rows of each. Throws PgError at the first failure. */
  query(statements: readonly PgStatement[]): unknown[][] {
    return this.call({ kind: 'query', statements });
  }

  /** The rows of one statement. */
  rows<T>(sql: string, params: readonly unknown[] = []): T[] {
    return this.query([{ sql, params }])[0] as T[];
  }

  /** Calls `listener` with each NOTIFY payload on `channel` (asynchronously, on this thread's event loop). */
  listen(channel: string, listener: (payload: string) => void, onError: (message: string) => void): () => void {
    if (!this.listening) {
      this.call({ kind: 'listen', channel });
      this.listening = true;
    }
    const handler = (m: string | { listenerError: string }) => (typeof m === 'string' ? listener(m) : onError(m.listenerError));
    this.notifyPort.on('message', handler);
    this.notifyPort.unref();
    return () => this.notifyPort.off('message', handler);
  }

  close(): void {
    if (this.closed) return;
    try {
      this.call({ kind: 'close' }, 5_000);
    } catch {
      // closing anyway
    }
    this.closed = true;
    this.notifyPort.close();
    this.port.close();
    void this.worker.terminate();
  }

  private call(call: PgCall, timeoutMs = this.timeoutMs): unknown[][] {
    if (this.closed) throw new PgError('the PostgreSQL connection is closed');
    if (this.died) throw new PgError(`the PostgreSQL client thread died: ${this.died.message}`);
    const seq = ++this.seq;
    // The worker posts its answer, then bumps the counter: a changed counter means an answer is waiting.
    let seen = Atomics.load(this.flag, 0);
    this.port.postMessage({ ...call, seq });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      const woke = Atomics.wait(this.flag, 0, seen, Math.max(0, left));
      seen = Atomics.load(this.flag, 0);
      let msg = receiveMessageOnPort(this.port);
      while (msg && (msg.message as PgResponse).seq !== seq) msg = receiveMessageOnPort(this.port);
      if (msg) {
        const res = msg.message as PgResponse;
        if (!res.ok) throw new PgError(res.message, res.code);
        return res.results;
      }
      if (woke === 'timed-out' || left <= 0) throw new PgError(`no answer from PostgreSQL within ${Math.round(timeoutMs / 1000)} s`);
    }
  }
}
