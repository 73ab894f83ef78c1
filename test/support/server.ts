// Starts the real server binary as a child process on a real SQLite file (or, with TURBOCI_TEST_STORE=postgres, a
// fresh PostgreSQL database: see store.ts) and connects a real gRPC client to it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { dropTestDatabases, logFor, testStore, type TestStore } from './store.js';
import { credentials } from '@grpc/grpc-js';
import { unary, type UnaryMethod } from '../../src/client/unary.js';
import { channel, type ConnectOptions } from '../../src/client/connect.js';
import {
  ApproveRequest,
  CompleteStageExecutionRequest,
  ListStageRunnersRequest,
  QueryNodesRequest,
  RegisterStageRunnerRequest,
  TurboCIOrchestratorClient,
  UnregisterStageRunnerRequest,
  UpdateStageExecutionRequest,
  WriteNodesRequest,
  type ApproveResponse,
  type CompleteStageExecutionResponse,
  type ListStageRunnersResponse,
  type RegisterStageRunnerResponse,
  type QueryNodesResponse,
  type WriteNodesResponse,
} from '../../src/gen/turboci/v1/service.js';
import {
  CreateWorkPlanRequest,
  GetWorkPlanRequest,
  type CreateWorkPlanResponse,
  type GetWorkPlanResponse,
} from '../../src/gen/turboci/v1/workplan.js';

/** Fills defaults in a partial request, as a ts-proto client must before encoding. */

export const BIN = fileURLToPath(new URL('../../../bin/turboci.js', import.meta.url));

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly address: string;
  /** The HTTP port's host:port (web UI, JSON API, /metrics). */
  readonly httpAddress: string;
  /** What the server was started with: the SQLite file, or the PostgreSQL URL that stands for it. */
  readonly dbPath: string;
  /** Every JSON log line the server printed so far. */
  readonly logs: Record<string, unknown>[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the first log line matching, waiting for it to arrive through the pipe (at most timeoutMs). */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

export function tempDir(prefix = 'turboci-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** How long stop() waits for the server to exit: longer than its own shutdown grace period (10 s). */
const STOP_TIMEOUT_MS = 30_000;
/** How long a start may take before it counts as hung: the benchmarks' largest logs replay in ~20 s here. */
const START_TIMEOUT_MS = 180_000;

/** Extra node flags for the server process, e.g. `TURBOCI_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` to profile it under a benchmark. */
const SERVER_NODE_ARGS = (process.env.TURBOCI_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);

/** Servers still running, stopped before their databases are dropped (PostgreSQL runs). */
const running = new Set<ServerProcess>();
if (testStore() === 'postgres') {
  after(async () => {
    // Servers a test left running would lose their database under them: stop them first.
    await Promise.all([...running].map((s) => s.stop()));
    await dropTestDatabases();
  });
}

/**
 * `keepLogs: false` (benchmarks): log lines after "listening" are drained from the pipe but not parsed or kept, so
 * the benchmark process, which also hosts the runners, does not pay for parsing every line the server writes.
 * `store: 'sqlite'` serves the SQLite file even in a PostgreSQL run (see cliNeedsFile in store.ts).
 */
export async function startServer(
  dbPath: string,
  extraArgs: string[] = [],
  opts: { keepLogs?: boolean; store?: TestStore } = {},
): Promise<ServerProcess> {
  dbPath = await logFor(dbPath, opts.store);
  const keepLogs = opts.keepLogs ?? true;
  let listening = false;
  const child = spawn(process.execPath, [...SERVER_NODE_ARGS, BIN, 'serve', '--port', '0', '--http-port', '0', '--db', dbPath, '--log-level', 'info', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  /** What a server that hung said last, for the error that reports it. */
  const lastWords = () => `Its last log lines:\n${logs.slice(-5).map((l) => JSON.stringify(l)).join('\n')}\n${stderr.slice(-2000)}`;
  let httpAddress = '';
  const address = await new Promise<string>((resolve, reject) => {
    // Neither listening nor exited: killed, and the test fails with what the server said (a hang tells nothing).
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server did not listen within ${START_TIMEOUT_MS} ms; killed. ${lastWords()}`));
    }, START_TIMEOUT_MS);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (listening && !keepLogs) return;
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 'listening') {
          clearTimeout(timer);
          httpAddress = String(entry.httpAddress);
          listening = true;
          resolve(String(entry.address));
        }
      } catch {
        // not a log line
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening: ${stderr}`));
    });
  });
  const waitForLog = async (match: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = logs.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching log line within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const server: ServerProcess = {
    child,
    address,
    httpAddress,
    dbPath,
    logs,
    waitForLog,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      // A server that outlives its grace period after a signal is a bug to report, not a test run that hangs
      // until CI's own limit: it is killed, and the test fails with what the server said last.
      let stuck = false;
      const timer = setTimeout(() => {
        stuck = true;
        child.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      if (stuck) throw new Error(`the server did not exit within ${STOP_TIMEOUT_MS} ms of ${signal}; killed. ${lastWords()}`);
      return code;
    },
  };
  running.add(server);
  void exited.then(() => running.delete(server));
  return server;
}

type DeepPartial<T> = T extends Date | Function | bigint
  ? T
  : T extends readonly (infer U)[]
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;
/** A promise-returning view of the generated client's unary methods, taking partial requests. */
export interface Api {
  createWorkPlan(req: DeepPartial<CreateWorkPlanRequest>): Promise<CreateWorkPlanResponse>;
  getWorkPlan(req: DeepPartial<GetWorkPlanRequest>): Promise<GetWorkPlanResponse>;
  writeNodes(req: DeepPartial<WriteNodesRequest>): Promise<WriteNodesResponse>;
  queryNodes(req: DeepPartial<QueryNodesRequest>): Promise<QueryNodesResponse>;
  registerStageRunner(req: DeepPartial<RegisterStageRunnerRequest>): Promise<RegisterStageRunnerResponse>;
  unregisterStageRunner(req: DeepPartial<UnregisterStageRunnerRequest>): Promise<object>;
  listStageRunners(req: DeepPartial<ListStageRunnersRequest>): Promise<ListStageRunnersResponse>;
  updateStageExecution(req: DeepPartial<UpdateStageExecutionRequest>): Promise<object>;
  completeStageExecution(req: DeepPartial<CompleteStageExecutionRequest>): Promise<CompleteStageExecutionResponse>;
  approve(req: DeepPartial<ApproveRequest>): Promise<ApproveResponse>;
}

/**
 * Where a server's read models came from at its start: the position of the snapshot it folded, or 0 for a replay of
 * the whole log (its "read models rebuilt from the log" line).
 */
export async function rebuiltFromSnapshotAt(server: ServerProcess): Promise<number> {
  const line = await server.waitForLog((l) => l.msg === 'read models rebuilt from the log');
  return Number(line.fromSnapshotPosition);
}

export function connect(address: string, options?: ConnectOptions): { api: Api; client: TurboCIOrchestratorClient; close(): void } {
  const ch = channel(options);
  const client = options ? new TurboCIOrchestratorClient(address, ch.credentials, ch.options) : new TurboCIOrchestratorClient(address, credentials.createInsecure());
  const call =
    <Req, Res>(method: UnaryMethod<Req, Res>, fromPartial: (r: DeepPartial<Req>) => Req) =>
    (req: DeepPartial<Req>): Promise<Res> =>
      unary(method.bind(client), fromPartial(req), { timeoutMs: 30_000 });
  const api: Api = {
    createWorkPlan: call(client.createWorkPlan, (r) => CreateWorkPlanRequest.fromPartial(r)),
    getWorkPlan: call(client.getWorkPlan, (r) => GetWorkPlanRequest.fromPartial(r)),
    writeNodes: call(client.writeNodes, (r) => WriteNodesRequest.fromPartial(r)),
    queryNodes: call(client.queryNodes, (r) => QueryNodesRequest.fromPartial(r)),
    registerStageRunner: call(client.registerStageRunner, (r) => RegisterStageRunnerRequest.fromPartial(r)),
    unregisterStageRunner: call(client.unregisterStageRunner, (r) => UnregisterStageRunnerRequest.fromPartial(r)),
    listStageRunners: call(client.listStageRunners, (r) => ListStageRunnersRequest.fromPartial(r)),
    updateStageExecution: call(client.updateStageExecution, (r) => UpdateStageExecutionRequest.fromPartial(r)),
    completeStageExecution: call(client.completeStageExecution, (r) => CompleteStageExecutionRequest.fromPartial(r)),
    approve: call(client.approve, (r) => ApproveRequest.fromPartial(r)),
  };
  return { api, client, close: () => client.close() };
}

/** One server process and client for a whole test file: started before its tests, stopped after them. */
export interface FileServer {
  readonly server: ServerProcess;
  readonly api: Api;
  readonly client: TurboCIOrchestratorClient;
}

/** Registers node:test before/after hooks for the calling file; read the fields inside tests (they are set by then). */
export function serverPerFile(name: string, extraArgs: string[] = []): FileServer {
  let dir: ReturnType<typeof tempDir> | undefined;
  let server: ServerProcess | undefined;
  let conn: ReturnType<typeof connect> | undefined;
  before(async () => {
    dir = tempDir();
    server = await startServer(join(dir.path, `${name}.db`), extraArgs);
    conn = connect(server.address);
  });
  after(async () => {
    conn?.close();
    await server?.stop();
    dir?.remove();
  });
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('the file server is read before its before() hook ran');
    return v;
  };
  return {
    get server() {
      return started(server);
    },
    get api() {
      return started(conn).api;
    },
    get client() {
      return started(conn).client;
    },
  };
}
