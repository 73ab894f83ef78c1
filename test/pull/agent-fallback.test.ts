// `turboci runner` against a server that predates the Work stream (a v1 TurboCIRunnerPull: Lease, Heartbeat and
// CompleteLease only, so Work answers UNIMPLEMENTED): the agent says so once, falls back to the unary calls, and
// runs and completes the attempt it is handed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { StageState } from '../../src/gen/turboci/v1/common.js';
import {
  TurboCIRunnerPullService,
  type CompleteLeaseRequest,
  type CompleteLeaseResponse,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type LeaseRequest,
  type LeaseResponse,
} from '../../src/gen/turboci/v1/pull.js';
import { tempDir } from '../support/server.js';
import { startAgent } from './support.js';

test('against a server without Work the agent falls back to Lease/CompleteLease and completes its attempt', async () => {
  const dir = tempDir('turboci-agent-fallback-');
  const leases: LeaseRequest[] = [];
  const completions: CompleteLeaseRequest[] = [];
  let handed = false;
  const server = new Server();
  // No `work` handler: grpc-js answers it UNIMPLEMENTED, as a server built from the v1 protos would.
  server.addService(TurboCIRunnerPullService, {
    lease: (call: ServerUnaryCall<LeaseRequest, LeaseResponse>, callback: sendUnaryData<LeaseResponse>) => {
      leases.push(call.request);
      const attempt = handed
        ? undefined
        : {
            leaseId: 'lease-1',
            leaseToken: 'token-1',
            expiresAt: new Date(Date.now() + 60_000),
            heartbeatIntervalMs: 10_000,
            runDeadline: new Date(Date.now() + 600_000),
            workPlanId: 'wp-1',
            stageId: 'compile',
            attemptIdx: 1,
            args: { command: 'echo compiled' },
            assignedCheckIds: ['build'],
            checkOptions: [],
          };
      handed = true;
      // An idle long poll answers "nothing" after a while, as the real server does.
      setTimeout(() => callback(null, { attempt, moreAttempts: [] }), attempt ? 0 : 200);
    },
    heartbeat: (_call: ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>, callback: sendUnaryData<HeartbeatResponse>) =>
      callback(null, { expiresAt: new Date(Date.now() + 60_000), cancelRequested: false }),
    completeLease: (call: ServerUnaryCall<CompleteLeaseRequest, CompleteLeaseResponse>, callback: sendUnaryData<CompleteLeaseResponse>) => {
      completions.push(call.request);
      callback(null, { acknowledged: true, nextAttempts: [] });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const agent = startAgent(`127.0.0.1:${port}`, ['--type', 'shell', '--workdir', `${dir.path}/work`]);
  try {
    await agent.waitForLog((l) => l.msg === 'the server has no Work stream; using Lease and CompleteLease');
    await agent.waitForLog((l) => l.msg === 'completed');
    assert.equal(completions.length, 1);
    const done = completions[0]!;
    assert.equal(done.leaseToken, 'token-1');
    assert.equal(done.stageState, StageState.STAGE_STATE_FINAL);
    assert.equal(done.checkUpdates[0]!.checkId, 'build');
    assert.equal(done.checkUpdates[0]!.resultData!.exit_code, 0);
    assert.match(String(done.checkUpdates[0]!.resultData!.output_tail), /compiled/);
    assert.ok(leases.length >= 1 && leases[0]!.runnerType === 'shell');
    assert.equal(agent.logs.filter((l) => l.msg === 'the server has no Work stream; using Lease and CompleteLease').length, 1, 'it found out once');
    assert.equal(await agent.stop('SIGTERM'), 0);
  } finally {
    await agent.stop('SIGKILL');
    server.forceShutdown();
    dir.remove();
  }
});
