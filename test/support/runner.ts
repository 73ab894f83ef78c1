// A real StageRunner gRPC server inside the test process, recording what it is asked and how many calls overlap.
// It implements RunStream (the orchestrator's default way to send Run) unless told to be a v1 runner without it.
import { Server, ServerCredentials, status, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall } from '@grpc/grpc-js';
import { serveRunStream } from '../../src/client/run-stream.js';
import {
  StageRunnerService,
  type PingRequest,
  type PingResponse,
  type RunAsyncRequest,
  type RunAsyncResponse,
  type RunRequest,
  type RunResponse,
  type RunStreamResult,
} from '../../src/gen/turboci/v1/stagerunner.js';

export interface TestRunner {
  readonly address: string;
  /** Every run asked for, by Run or on a RunStream, in the order they arrived. */
  readonly runs: RunRequest[];
  readonly asyncRuns: RunAsyncRequest[];
  /** Most calls that were in progress at the same time (runs on a stream count one each). */
  readonly maxInFlight: () => number;
  /** Runs asked for by unary Run (the rest of `runs` came on a RunStream). */
  readonly unaryRuns: () => number;
  /** RunStream calls opened so far. */
  readonly streamsOpened: () => number;
  /** RunStream calls open now (not yet ended by either side). */
  readonly openStreams: () => number;
  /** Ends every open RunStream at once with UNAVAILABLE (a stream broken under its runs; the server stays up). */
  breakStreams(): void;
  /** Stops at once, failing calls in progress (a killed runner). */
  kill(): void;
  /** Graceful: streams end once their runs are answered (later requests are refused), then the server shuts down. */
  close(): Promise<void>;
}

export interface RunnerBehaviour {
  run?: (req: RunRequest) => Promise<Partial<RunResponse>>;
  runAsync?: (req: RunAsyncRequest) => Promise<Partial<RunAsyncResponse>>;
  /** false: RunStream is not implemented (answered UNIMPLEMENTED, as by a runner written before it existed). */
  runStream?: boolean;
}

/** `port`: listen on this one (a runner restarted at the address it had), rather than any free one. */
export async function startTestRunner(
  behaviour: RunnerBehaviour,
  credentials: ServerCredentials = ServerCredentials.createInsecure(),
  options: { port?: number } = {},
): Promise<TestRunner> {
  const server = new Server();
  const runs: RunRequest[] = [];
  const asyncRuns: RunAsyncRequest[] = [];
  let inFlight = 0;
  let max = 0;
  let unary = 0;
  let streams = 0;
  const open = new Set<ServerDuplexStream<RunRequest, RunStreamResult>>();
  /** Runs `work`, counting it in flight; a failure is INTERNAL with the error as its details. */
  const tracked = async <T>(work: () => Promise<T>): Promise<T> => {
    inFlight++;
    max = Math.max(max, inFlight);
    try {
      return await work();
    } catch (err) {
      throw { code: status.INTERNAL, details: String(err) };
    } finally {
      inFlight--;
    }
  };
  const track = <T>(work: () => Promise<T>, callback: sendUnaryData<T>) =>
    tracked(work).then((res) => callback(null, res), (err: { code: status; details: string }) => callback(err));
  const runOne = (req: RunRequest): Promise<RunResponse> => {
    runs.push(req);
    return tracked(async () => ({ stageState: 0, checkUpdates: [], failure: undefined, details: undefined, ...(await behaviour.run!(req)) }));
  };
  const runStream = serveRunStream(runOne);
  server.addService(StageRunnerService, {
    run: (call: ServerUnaryCall<RunRequest, RunResponse>, callback: sendUnaryData<RunResponse>) => {
      unary++;
      runOne(call.request).then((res) => callback(null, res), (err: { code: status; details: string }) => callback(err));
    },
    ...(behaviour.runStream === false
      ? {}
      : {
          runStream: (call: ServerDuplexStream<RunRequest, RunStreamResult>) => {
            streams++;
            open.add(call);
            const gone = () => open.delete(call);
            call.on('finish', gone);
            call.on('cancelled', gone);
            call.on('error', gone);
            runStream.handler(call);
          },
        }),
    runAsync: (call: ServerUnaryCall<RunAsyncRequest, RunAsyncResponse>, callback: sendUnaryData<RunAsyncResponse>) => {
      asyncRuns.push(call.request);
      void track(async () => ({ accepted: true, estimatedCompletion: undefined, runnerExecutionId: '', ...(await behaviour.runAsync!(call.request)) }), callback);
    },
    ping: (_call: ServerUnaryCall<PingRequest, PingResponse>, callback: sendUnaryData<PingResponse>) =>
      callback(null, { runnerType: '', supportedModes: [], availableCapacity: 0 }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    runs,
    asyncRuns,
    maxInFlight: () => max,
    unaryRuns: () => unary,
    streamsOpened: () => streams,
    openStreams: () => open.size,
    breakStreams: () => {
      for (const call of open) call.emit('error', { code: status.UNAVAILABLE, details: 'the test broke the stream' });
    },
    kill: () => server.forceShutdown(),
    close: () => {
      runStream.drain();
      return new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
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
