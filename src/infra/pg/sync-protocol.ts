// Messages between SyncPg (main thread) and its worker (pg-worker.ts).
import type { MessagePort } from 'node:worker_threads';

export interface PgStatement {
  readonly sql: string;
  readonly params?: readonly unknown[];
}

export type PgCall =
  | { readonly kind: 'connect'; readonly setup: readonly string[] }
  | { readonly kind: 'listen'; readonly channel: string }
  | { readonly kind: 'query'; readonly statements: readonly PgStatement[] }
  | { readonly kind: 'close' };

/** A call and its number: an answer that comes after its caller gave up is told apart from the next one's. */
export type PgRequest = PgCall & { readonly seq: number };

export type PgResponse =
  | { readonly seq: number; readonly ok: true; readonly results: unknown[][] }
  | { readonly seq: number; readonly ok: false; readonly message: string; readonly code?: string };

export interface PgWorkerData {
  readonly url: string;
  readonly applicationName: string;
  /** An Int32 the worker increments (and notifies) after posting each answer. */
  readonly flag: SharedArrayBuffer;
  readonly port: MessagePort;
  /** NOTIFY payloads, delivered asynchronously (the wake-up for tailing the log). */
  readonly notifyPort: MessagePort;
}
