// A real StageRunner gRPC server inside the test process, recording what it is asked and how many calls overlap.
import { Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  StageRunnerService,
  type PingRequest,
  type PingResponse,
  type RunAsyncRequest,
  type RunAsyncResponse,
  type RunRequest,
  type RunResponse,
} from '../../src/gen/turboci/v1/stagerunner.js';

export interface TestRunner {
  readonly address: string;
  readonly runs: RunRequest[];
  readonly asyncRuns: RunAsyncRequest[];
  /** Most calls that were in progress at the same time. */
  readonly maxInFlight: () => number;
  /** Stops at once, failing calls in progress (a killed runner). */
  kill(): void;
  close(): Promise<void>;
}

export interface RunnerBehaviour {
  run?: (req: RunRequest) => Promise<Partial<RunResponse>>;
  runAsync?: (req: RunAsyncRequest) => Promise<Partial<RunAsyncResponse>>;
}

export async function startTestRunner(behaviour: RunnerBehaviour, credentials: ServerCredentials = ServerCredentials.createInsecure()): Promise<TestRunner> {
  const server = new Server();
  const runs: RunRequest[] = [];
  const asyncRuns: RunAsyncRequest[] = [];
  let inFlight = 0;
  let max = 0;
  const track = async <T>(work: () => Promise<T>, callback: sendUnaryData<T>) => {
    inFlight++;
    max = Math.max(max, inFlight);
    try {
      callback(null, await work());
    } catch (err) {
      callback({ code: status.INTERNAL, details: String(err) });
    } finally {
      inFlight--;
    }
  };
  server.addService(StageRunnerService, {
    run: (call: ServerUnaryCall<RunRequest, RunResponse>, callback: sendUnaryData<RunResponse>) => {
      runs.push(call.request);
      void track(async () => ({ stageState: 0, checkUpdates: [], failure: undefined, details: undefined, ...(await behaviour.run!(call.request)) }), callback);
    },
    runAsync: (call: ServerUnaryCall<RunAsyncRequest, RunAsyncResponse>, callback: sendUnaryData<RunAsyncResponse>) => {
      asyncRuns.push(call.request);
      void track(async () => ({ accepted: true, estimatedCompletion: undefined, runnerExecutionId: '', ...(await behaviour.runAsync!(call.request)) }), callback);
    },
    ping: (_call: ServerUnaryCall<PingRequest, PingResponse>, callback: sendUnaryData<PingResponse>) =>
      callback(null, { runnerType: '', supportedModes: [], availableCapacity: 0 }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    runs,
    asyncRuns,
    maxInFlight: () => max,
    kill: () => server.forceShutdown(),
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** Polls until `probe` returns a value (not undefined), at most timeoutMs. */
export async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
