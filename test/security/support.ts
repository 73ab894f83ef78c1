// Tokens made with the real CLI, and clients that carry them, for the security tests.
import { spawnSync } from 'node:child_process';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { channel, type ConnectOptions } from '../../src/client/connect.js';
import { unary, type UnaryMethod } from '../../src/client/unary.js';
import { ReadEventsRequest, GetWorkPlanAtRequest, TurboCIEventLogClient } from '../../src/gen/turboci/v1/eventlog.js';
import { CompleteLeaseRequest, HeartbeatRequest, LeaseRequest, TurboCIRunnerPullClient, type LeasedAttempt, type WorkRequest, type WorkResponse } from '../../src/gen/turboci/v1/pull.js';
import { BIN, connect } from '../support/server.js';

/** `turboci token create`; returns the secret it printed. */
export function createToken(db: string, name: string, role: string, ...extra: string[]): string {
  const out = spawnSync(process.execPath, [BIN, 'token', 'create', '--db', db, '--name', name, '--role', role, ...extra], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`token create ${name} failed: ${out.stderr}`);
  return out.stdout.trim();
}

export function turboci(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
}

/** Every client of one server with one identity. */
export function clients(address: string, options: ConnectOptions) {
  const orchestrator = connect(address, options);
  const ch = channel(options);
  const log = new TurboCIEventLogClient(address, ch.credentials, ch.options);
  const pull = new TurboCIRunnerPullClient(address, ch.credentials, ch.options);
  const call = <Req, Res>(method: UnaryMethod<Req, Res>, req: Req) => unary(method, req, { timeoutMs: 20_000 });
  return {
    api: orchestrator.api,
    orchestrator: orchestrator.client,
    readEvents: (workPlanId: string) => call(log.readEvents.bind(log), ReadEventsRequest.fromPartial({ workPlanId })),
    getWorkPlanAt: (workPlanId: string) => call(log.getWorkPlanAt.bind(log), GetWorkPlanAtRequest.fromPartial({ workPlanId, version: 1 })),
    lease: (runnerType: string, runnerId = 'r') => call(pull.lease.bind(pull), LeaseRequest.fromPartial({ runnerId, runnerType, waitMs: 0 })),
    heartbeat: (leaseToken: string) => call(pull.heartbeat.bind(pull), HeartbeatRequest.fromPartial({ leaseToken })),
    completeLease: (leaseToken: string, req: Partial<CompleteLeaseRequest> = {}) =>
      call(pull.completeLease.bind(pull), CompleteLeaseRequest.fromPartial({ ...req, leaseToken })),
    /** Opens a Work stream with credit 1: resolves with the first attempt leased, or the status name the stream ended with. */
    work: (runnerType: string, runnerId = 'r') => workStream<LeasedAttempt>(pull, [{ open: { runnerId, runnerType, labels: {}, credit: 1 } }], (m) => m.leased),
    /** Completes a lease on a Work stream: resolves with the status name of its answer, or of the stream's end. */
    workComplete: (runnerType: string, leaseToken: string, req: Partial<CompleteLeaseRequest> = {}) =>
      workStream<string>(
        pull,
        [
          { open: { runnerId: 'r', runnerType, labels: {}, credit: 0 } },
          { complete: { seq: 1n, completion: CompleteLeaseRequest.fromPartial({ ...req, leaseToken }), credit: 0 } },
        ],
        (m) => (m.completed ? status[m.completed.code] : undefined),
      ),
    /** Opens a watch; resolves 'OK' on the first event, or the status name of the error. */
    watch: (workPlanId: string) =>
      new Promise<string>((resolve) => {
        const stream = orchestrator.client.watchWorkPlan({ workPlanId, includeChecks: false, includeStages: false, checkStateFilter: [], stageStateFilter: [], checkIdFilter: [], stageIdFilter: [], maxBatchDelayMs: 0 }, new Metadata());
        stream.once('data', () => {
          resolve('OK');
          stream.cancel();
        });
        stream.once('error', (err: ServiceError) => resolve(status[err.code]!));
      }),
    close() {
      orchestrator.close();
      log.close();
      pull.close();
    },
  };
}

/** Sends `messages` on a new Work stream; resolves with the first answer `pick` takes, or the status name the stream ended with. */
function workStream<T>(pull: TurboCIRunnerPullClient, messages: Partial<WorkRequest>[], pick: (m: WorkResponse) => T | undefined): Promise<T | string> {
  return new Promise((resolve) => {
    const stream = pull.work(new Metadata());
    stream.on('data', (m: WorkResponse) => {
      const got = pick(m);
      if (got === undefined) return;
      resolve(got);
      stream.cancel();
    });
    stream.on('error', (err: ServiceError) => resolve(status[err.code]!));
    for (const m of messages) stream.write(m as WorkRequest);
  });
}

/** The status name a call ended with: OK, or its error code's name. */
export async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    const code = (err as ServiceError).code;
    return code === undefined ? `thrown: ${(err as Error).message}` : status[code]!;
  }
}
