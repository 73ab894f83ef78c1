// The PostgreSQL side of SyncPg (sync-client.ts): a worker thread that owns the connections and runs the
// statements the main thread sends, while the main thread waits on a shared flag. node-postgres is asynchronous;
// the orchestrator decides, appends and folds synchronously within one turn (as it does on SQLite), so the wait
// happens here, off the main thread's code paths, and the decide path keeps no awaits and no interleavings.
import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import pg from 'pg';
import type { PgRequest, PgResponse, PgWorkerData } from './sync-protocol.js';

// int8 (positions, times) as numbers: every value we store is below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

const data = workerData as PgWorkerData;
const flag = new Int32Array(data.flag);
const port = data.port as MessagePort;
const notifyPort = data.notifyPort as MessagePort;

// Made by the first call (connect), not when the module loads: a URL node-postgres cannot parse (a port past
// 65535) throws in the constructor, and thrown here it would kill the worker while the main thread waits for an
// answer that never comes. Inside run() it is that call's failure, answered like any other.
let client: pg.Client | null = null;
let listener: pg.Client | null = null;
/** Why the connection is gone (PostgreSQL restarted, the backend was terminated, the network dropped). */
let broken: Error | null = null;
let setup: readonly string[] = [];
/** A BEGIN ran on this connection and no COMMIT or ROLLBACK yet: its transaction dies with the connection. */
let inTransaction = false;

/** Connects (again), with the same session settings. */
async function open(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: data.url, application_name: data.applicationName, connectionTimeoutMillis: 10_000 });
  c.on('error', (err) => {
    if (client === c) broken = err;
  });
  client = c;
  broken = null;
  inTransaction = false;
  try {
    await c.connect();
    for (const sql of setup) await c.query(sql);
  } catch (err) {
    broken = err as Error;
    throw err;
  }
  return c;
}

/**
 * The connection for the next statements. A lost connection is replaced, but only between transactions: inside one,
 * the lock and the reads it was decided on are gone, so the caller is told (its ROLLBACK then succeeds, nothing being
 * left to roll back) and the next transaction starts on a new connection. Without this, one dropped connection
 * failed every later call of a long-running server.
 */
async function connection(): Promise<pg.Client> {
  if (!client) throw new Error('not connected');
  if (!broken) return client;
  if (inTransaction) throw broken;
  const old = client;
  void old.end().catch(() => undefined);
  return open();
}

const verb = (sql: string) => sql.trimStart().slice(0, 8).toUpperCase();
/** Errors after which this connection cannot be used again (no SQLSTATE: the socket; 08xxx, 57Pxx: the server). */
const fatalToConnection = (err: { code?: string }) => !err.code || !/^[0-9A-Z]{5}$/.test(err.code) || /^(08|57P)/.test(err.code);

function reply(res: PgResponse): void {
  port.postMessage(res);
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
}

function failure(seq: number, err: unknown): PgResponse {
  const e = err as { message?: string; code?: string };
  return { seq, ok: false, message: e.message ?? String(err), ...(e.code ? { code: e.code } : {}) };
}

async function run(req: PgRequest): Promise<PgResponse> {
  const seq = req.seq;
  switch (req.kind) {
    case 'connect': {
      setup = req.setup;
      await open();
      return { seq, ok: true, results: [] };
    }
    case 'listen': {
      listener = new pg.Client({ connectionString: data.url, application_name: `${data.applicationName} (listen)` });
      listener.on('notification', (n) => notifyPort.postMessage(n.payload ?? ''));
      // A lost listener only delays wake-ups: the main thread also polls the log's position on a timer.
      listener.on('error', (err) => notifyPort.postMessage({ listenerError: err.message }));
      await listener.connect();
      await listener.query(`LISTEN ${req.channel}`);
      return { seq, ok: true, results: [] };
    }
    case 'query': {
      if (broken && inTransaction && req.statements.length === 1 && verb(req.statements[0]!.sql) === 'ROLLBACK') {
        inTransaction = false; // the transaction ended with its connection
        return { seq, ok: true, results: [[]] };
      }
      const c = await connection();
      const results: unknown[][] = [];
      for (const s of req.statements) {
        const v = verb(s.sql);
        try {
          results.push((await c.query(s.sql, s.params as unknown[])).rows as unknown[]);
        } catch (err) {
          if (fatalToConnection(err as { code?: string }) && client === c) broken ??= err as Error;
          throw err;
        } finally {
          if (v === 'COMMIT' || v === 'ROLLBACK') inTransaction = false;
        }
        if (v === 'BEGIN') inTransaction = true;
      }
      return { seq, ok: true, results };
    }
    case 'close':
      await listener?.end().catch(() => undefined);
      await client?.end().catch(() => undefined);
      return { seq, ok: true, results: [] };
  }
}

// One call at a time, in the order sent: a call that comes after its caller timed out (a ROLLBACK after a lock wait)
// must not interleave its statements with the one still running, nor reconnect underneath it.
let queue: Promise<void> = Promise.resolve();
port.on('message', (req: PgRequest) => {
  queue = queue.then(() => run(req).then(reply, (err: unknown) => reply(failure(req.seq, err))));
});
parentPort?.postMessage('ready');
