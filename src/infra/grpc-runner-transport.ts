// Outbound calls to StageRunner servers over gRPC, one cached channel per runner address.
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { RunnerCall, RunnerTransport } from '../app/dispatcher.js';
import type { ExecutionCompletion } from '../domain/decide-completion.js';
import { StageRunnerClient, type RunRequest } from '../gen/turboci/v1/stagerunner.js';
import { completionProblem, toCompletion } from '../transport/runner-mapping.js';

/** A runner registered as `tls://host:port` is dialed over TLS (verified against tlsCa, or the system roots). */
export const TLS_SCHEME = 'tls://';

export class GrpcRunnerTransport implements RunnerTransport {
  private readonly clients = new Map<string, StageRunnerClient>();

  constructor(private readonly options: { readonly tlsCa?: Buffer } = {}) {}

  run(address: string, call: RunnerCall): Promise<Omit<ExecutionCompletion, 'fingerprint'>> {
    return new Promise((resolve, reject) =>
      this.client(address).run(toRequest(call), new Metadata(), { deadline: new Date(call.deadline) }, (err, res) => {
        if (err) return reject(describe(err));
        // Bounded like a CompleteStageExecution: an answer that cannot be stored faithfully fails the attempt.
        const problem = completionProblem(res);
        return problem ? reject(new Error(`its answer was refused: ${problem}`)) : resolve(toCompletion(res));
      }),
    );
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

  retainOnly(addresses: ReadonlySet<string>): void {
    for (const [address, client] of this.clients) {
      if (addresses.has(address)) continue;
      client.close();
      this.clients.delete(address);
    }
  }

  close(): void {
    this.retainOnly(new Set());
  }

  private client(address: string): StageRunnerClient {
    let client = this.clients.get(address);
    if (!client) {
      const tls = address.startsWith(TLS_SCHEME);
      const target = tls ? address.slice(TLS_SCHEME.length) : address;
      const creds = tls ? credentials.createSsl(this.options.tlsCa ?? null) : credentials.createInsecure();
      this.clients.set(address, (client = new StageRunnerClient(target, creds)));
    }
    return client;
  }
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

function describe(err: ServiceError): Error {
  const what =
    err.code === status.UNAVAILABLE
      ? 'unreachable'
      : err.code === status.DEADLINE_EXCEEDED
        ? 'deadline exceeded'
        : status[err.code] ?? `code ${err.code}`;
  return new Error(`${what}: ${err.details || err.message}`);
}
