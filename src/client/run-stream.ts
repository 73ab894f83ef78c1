// The runner's side of StageRunner.RunStream: every RunRequest on a stream is run with the same function that
// answers Run, and its result (or its error) is written back as soon as that run is over, in whatever order the runs
// finish. examples/runner.ts and the test runners use it.
import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import type { RunRequest, RunResponse, RunStreamResult } from '../gen/turboci/v1/stagerunner.js';

export interface RunStreamServer {
  /** The `runStream` implementation to give `Server.addService(StageRunnerService, ...)`. */
  readonly handler: (call: ServerDuplexStream<RunRequest, RunStreamResult>) => void;
  /**
   * Before `Server.tryShutdown` (which waits for every call to end): requests from now on are answered UNAVAILABLE
   * ("the runner is shutting down", so the orchestrator retries them elsewhere, as when a Run is refused), and each
   * stream ends with OK once the runs it already took are answered.
   */
  drain(): void;
}

/**
 * `run` rejecting fails that run alone: with the error's gRPC `code` and `details` when it has them (a ServiceError,
 * or `{code, details}` as a unary callback takes), otherwise UNKNOWN and its message.
 */
export function serveRunStream(run: (req: RunRequest) => Promise<RunResponse>): RunStreamServer {
  const enders = new Set<() => void>();
  let draining = false;
  const handler = (call: ServerDuplexStream<RunRequest, RunStreamResult>) => {
    let running = 0;
    let halfClosed = false;
    let over = false;
    const finish = () => {
      if (over) return;
      over = true;
      enders.delete(endIfIdle);
      if (!call.writableEnded) call.end();
    };
    // The stream ends once no more requests can come (the orchestrator half-closed it, or the runner is draining)
    // and every run taken on it is answered.
    const endIfIdle = () => {
      if ((halfClosed || draining) && running === 0) finish();
    };
    const send = (result: RunStreamResult) => {
      try {
        if (!over && !call.cancelled) call.write(result);
      } catch {
        // the call is gone: the orchestrator fails the runs it had sent on it
      }
    };
    enders.add(endIfIdle);
    call.on('data', (req: RunRequest) => {
      if (draining) return send({ executionId: req.executionId, error: { code: status.UNAVAILABLE, message: 'the runner is shutting down' } });
      running++;
      const answer = (result: RunStreamResult) => {
        running--;
        send(result);
        endIfIdle();
      };
      void new Promise<RunResponse>((resolve) => resolve(run(req))).then(
        (response) => answer({ executionId: req.executionId, response }),
        (err: unknown) => answer({ executionId: req.executionId, error: errorOf(err) }),
      );
    });
    call.on('end', () => {
      halfClosed = true;
      endIfIdle();
    });
    // Cancelled by the orchestrator, or the connection is gone: runs in progress finish, their results go nowhere.
    call.on('cancelled', () => {
      over = true;
      enders.delete(endIfIdle);
    });
    // grpc-js ends the call itself on an error (with its status).
    call.on('error', () => {
      over = true;
      enders.delete(endIfIdle);
    });
  };
  return {
    handler,
    drain: () => {
      draining = true;
      for (const endIfIdle of [...enders]) endIfIdle();
    },
  };
}

function errorOf(err: unknown): { code: number; message: string } {
  const e = err as { code?: unknown; details?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'number' && e.code !== status.OK ? e.code : status.UNKNOWN;
  const message = typeof e?.details === 'string' ? e.details : typeof e?.message === 'string' ? e.message : String(err);
  return { code, message };
}
