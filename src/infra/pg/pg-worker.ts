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
let broken: Error | null = null;

function connection(): pg.Client {
  if (!client) throw new Error('not connected');
  return client;
}

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
  if (broken) return failure(seq, broken);
  switch (req.kind) {
    case 'connect': {
      const c = new pg.Client({ connectionString: data.url, application_name: data.applicationName, connectionTimeoutMillis: 10_000 });
      c.on('error', (err) => (broken = err));
      client = c;
      await c.connect();
      for (const sql of req.setup) await c.query(sql);
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
      const results: unknown[][] = [];
      for (const s of req.statements) results.push((await connection().query(s.sql, s.params as unknown[])).rows as unknown[]);
      return { seq, ok: true, results };
    }
    case 'close':
      await listener?.end().catch(() => undefined);
      await client?.end().catch(() => undefined);
      return { seq, ok: true, results: [] };
  }
}

port.on('message', (req: PgRequest) => {
  run(req).then(reply, (err: unknown) => reply(failure(req.seq, err)));
});
parentPort?.postMessage('ready');
