// Runner and lease integrity over real gRPC: with auth on, a runner token for type A cannot lease type B, cannot
// act on another token's lease or execution (even with the right ids), cannot write nodes, cannot take over or
// remove another's registration; with auth on or off, a leased attempt is written only with its lease token and
// a completion touches only its stage's checks; capability ids are not shown to those who cannot use them.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { AttemptState, CheckState, ExecutionMode, StageState } from '../../src/gen/turboci/v1/common.js';
import { eventually, startTestRunner, type TestRunner } from '../support/runner.js';
import { startServer, tempDir, type ServerProcess } from '../support/server.js';
import { cliNeedsFile } from '../support/store.js';
import { clients, createToken, outcome } from './support.js';

const dir = tempDir('turboci-runner-auth-');
const db = join(dir.path, 'runners.db');
let server: ServerProcess;
let offServer: ServerProcess;
let pushRunner: TestRunner;
const s: Record<string, string> = {};

before(async () => {
  s.admin = createToken(db, 'root', 'admin');
  s.writer = createToken(db, 'ci-bot', 'writer');
  s.reader = createToken(db, 'viewer', 'reader');
  s.a = createToken(db, 'build-a', 'runner', '--runner-type', 'build');
  s.b = createToken(db, 'build-b', 'runner', '--runner-type', 'build');
  s.gpu = createToken(db, 'gpu', 'runner', '--runner-type', 'gpu');
  server = await startServer(db, ['--auth', 'on'], cliNeedsFile);
  offServer = await startServer(join(dir.path, 'off.db'));
  pushRunner = await startTestRunner({ runAsync: async () => ({ accepted: true }) });
});
after(async () => {
  await server?.stop();
  await offServer?.stop();
  await pushRunner?.close();
  dir.remove();
});

const plan = async (c: ReturnType<typeof clients>, stage: string, runnerType: string, mode = ExecutionMode.EXECUTION_MODE_SYNC) => {
  const wp = (await c.api.createWorkPlan({ metadata: {} })).workPlan!.id;
  await c.api.writeNodes({
    workPlanId: wp,
    checks: [{ id: 'mine', state: CheckState.CHECK_STATE_PLANNED }, { id: 'not-mine', state: CheckState.CHECK_STATE_PLANNED }],
    stages: [{ id: stage, runnerType, executionMode: mode, args: {}, assignments: [{ targetCheckId: 'mine', goalState: CheckState.CHECK_STATE_FINAL }] }],
  });
  return wp;
};

test('pull: type isolation, lease ownership, assigned checks only, no WriteNodes for runners or on leased attempts', async () => {
  const writer = clients(server.address, { token: s.writer! });
  const a = clients(server.address, { token: s.a! });
  const b = clients(server.address, { token: s.b! });
  const gpu = clients(server.address, { token: s.gpu! });
  const wp = await plan(writer, 'compile', 'build');

  assert.equal(await outcome(gpu.lease('build')), 'PERMISSION_DENIED', 'a gpu runner cannot lease build');
  assert.equal(await gpu.work('build'), 'PERMISSION_DENIED', 'nor open a Work stream for build');
  assert.equal(await writer.work('build'), 'PERMISSION_DENIED', 'a writer token has no runners.lease');
  const nobody = clients(server.address, {});
  assert.equal(await nobody.work('build'), 'UNAUTHENTICATED', 'no token, no stream');
  nobody.close();
  const leased = (await a.lease('build', 'agent-a')).attempt!;
  assert.equal(leased.stageId, 'compile');
  const token = leased.leaseToken;

  // Another runner token with the right lease token still cannot act on it.
  assert.equal(await outcome(b.heartbeat(token)), 'PERMISSION_DENIED');
  assert.equal(await outcome(b.completeLease(token, { stageState: StageState.STAGE_STATE_FINAL })), 'PERMISSION_DENIED');
  assert.equal(await b.workComplete('build', token, { stageState: StageState.STAGE_STATE_FINAL }), 'PERMISSION_DENIED', 'nor on a Work stream');
  // Runners cannot write nodes at all; a writer cannot finish a leased attempt behind its lease.
  assert.equal(await outcome(a.api.writeNodes({ workPlanId: wp, checks: [{ id: 'mine', state: CheckState.CHECK_STATE_FINAL }] })), 'PERMISSION_DENIED');
  await assert.rejects(
    writer.api.writeNodes({ workPlanId: wp, stages: [{ id: 'compile', currentAttempt: { processUid: 'agent-a', state: AttemptState.ATTEMPT_STATE_COMPLETE } }] }),
    /FAILED_PRECONDITION: stages\[0\]\.current_attempt: attempt 1 of stage "compile" is leased by runner "agent-a": only its lease token/,
  );
  // A completion may touch only the stage's own checks.
  await assert.rejects(
    a.completeLease(token, { stageState: StageState.STAGE_STATE_FINAL, checkUpdates: [{ checkId: 'not-mine', state: CheckState.CHECK_STATE_FINAL, finalize: true, resultData: {}, failure: undefined }] }),
    /INVALID_ARGUMENT: check_updates\[0\]\.check_id: check "not-mine" is not assigned to stage "compile"/,
  );
  // The real runner's completion is still accepted, and recorded as made by its token.
  await a.completeLease(token, { stageState: StageState.STAGE_STATE_FINAL, checkUpdates: [{ checkId: 'mine', state: CheckState.CHECK_STATE_FINAL, finalize: true, resultData: {}, failure: undefined }] });
  const after = await writer.api.queryNodes({ workPlanId: wp });
  assert.equal(after.checks.find((c) => c.id === 'mine')!.state, CheckState.CHECK_STATE_FINAL);
  assert.notEqual(after.checks.find((c) => c.id === 'not-mine')!.state, CheckState.CHECK_STATE_FINAL);
  const events = (await writer.readEvents(wp)).events;
  assert.equal(events.find((e) => e.type === 'StageAttemptStateChanged' && e.data?.completion)!.principal, 'build-a');
  for (const c of [writer, a, b, gpu]) c.close();
});

test('push: registrations and executions belong to the token that registered; ids are hidden from others', async () => {
  const admin = clients(server.address, { token: s.admin! });
  const writer = clients(server.address, { token: s.writer! });
  const reader = clients(server.address, { token: s.reader! });
  const a = clients(server.address, { token: s.a! });
  const b = clients(server.address, { token: s.b! });
  const reg = await a.api.registerStageRunner({ runnerId: 'push-a', runnerType: 'build', address: pushRunner.address, supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC] });
  // Another token cannot take over the runner_id (from any address), nor remove the registration.
  assert.equal(await outcome(b.api.registerStageRunner({ runnerId: 'push-a', runnerType: 'build', address: '127.0.0.1:1' })), 'PERMISSION_DENIED');
  assert.equal(await outcome(b.api.registerStageRunner({ runnerId: 'push-a', runnerType: 'build', address: pushRunner.address })), 'PERMISSION_DENIED');
  assert.equal(await outcome(b.api.unregisterStageRunner({ registrationId: reg.registrationId })), 'PERMISSION_DENIED');
  // Its own heartbeat refreshes the same registration.
  assert.equal((await a.api.registerStageRunner({ runnerId: 'push-a', runnerType: 'build', address: pushRunner.address, supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC] })).registrationId, reg.registrationId);
  // Registration ids are shown to the admin only.
  assert.equal((await reader.api.listStageRunners({})).runners.find((r) => r.runnerId === 'push-a')!.registrationId, '');
  assert.equal((await admin.api.listStageRunners({})).runners.find((r) => r.runnerId === 'push-a')!.registrationId, reg.registrationId);

  const wp = await plan(writer, 'deploy', 'build', ExecutionMode.EXECUTION_MODE_ASYNC);
  const run = await eventually(async () => pushRunner.asyncRuns.find((r) => r.workPlanId === wp), 'the async run');
  // Readers see that it was dispatched, not the execution id that would let them complete it.
  const seen = (await writer.api.queryNodes({ workPlanId: wp })).stages[0]!.attempts[0]!;
  assert.equal(seen.execution!.runnerId, 'push-a');
  assert.equal(seen.execution!.executionId, '');
  assert.ok(!JSON.stringify((await writer.readEvents(wp)).events, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)).includes(run.executionId), 'nor in the event log');
  // With the real execution id, another runner token is still refused; the writer cannot finish it via WriteNodes.
  assert.equal(await outcome(b.api.completeStageExecution({ executionId: run.executionId, stageState: StageState.STAGE_STATE_FINAL })), 'PERMISSION_DENIED');
  assert.equal(await outcome(b.api.updateStageExecution({ executionId: run.executionId, message: 'hijack' })), 'PERMISSION_DENIED');
  await assert.rejects(
    writer.api.writeNodes({ workPlanId: wp, stages: [{ id: 'deploy', currentAttempt: { processUid: 'push-a', state: AttemptState.ATTEMPT_STATE_RUNNING } }] }),
    /FAILED_PRECONDITION: .*was dispatched to runner "push-a": only its callbacks/,
  );
  await a.api.completeStageExecution({
    executionId: run.executionId,
    stageState: StageState.STAGE_STATE_FINAL,
    checkUpdates: [{ checkId: 'mine', state: CheckState.CHECK_STATE_FINAL, finalize: true, resultData: {}, failure: undefined }],
  });
  assert.equal((await writer.api.queryNodes({ workPlanId: wp })).stages[0]!.state, StageState.STAGE_STATE_FINAL);
  await a.api.unregisterStageRunner({ registrationId: reg.registrationId });
  for (const c of [admin, writer, reader, a, b]) c.close();
});

test('auth off: registration ids are the proof; re-registering from another address cannot hijack; ids are hidden', async () => {
  const anyone = clients(offServer.address, {});
  const reg = await anyone.api.registerStageRunner({ runnerId: 'r1', runnerType: 'echo', address: pushRunner.address });
  await assert.rejects(
    anyone.api.registerStageRunner({ runnerId: 'r1', runnerType: 'echo', address: '10.0.0.66:4444' }),
    /FAILED_PRECONDITION: runner_id: runner "r1" is already registered from another address/,
  );
  assert.equal((await anyone.api.listStageRunners({})).runners[0]!.address, pushRunner.address, 'not moved');
  assert.equal((await anyone.api.listStageRunners({})).runners[0]!.registrationId, '', 'registration ids are not listed');
  // A heartbeat from the same address refreshes; the holder of the registration id may move it.
  assert.equal((await anyone.api.registerStageRunner({ runnerId: 'r1', runnerType: 'echo', address: pushRunner.address })).registrationId, reg.registrationId);
  const moved = await anyone.api.registerStageRunner({ runnerId: 'r1', runnerType: 'echo', address: '127.0.0.1:2', registrationId: reg.registrationId });
  assert.equal(moved.registrationId, reg.registrationId);
  await anyone.api.unregisterStageRunner({ registrationId: reg.registrationId });

  // A leased attempt: WriteNodes with the agent's visible process_uid is refused, and the real completion then works.
  const wp = await plan(anyone, 'compile', 'shell');
  const leased = (await anyone.lease('shell', 'agent-1')).attempt!;
  await assert.rejects(
    anyone.api.writeNodes({ workPlanId: wp, stages: [{ id: 'compile', currentAttempt: { processUid: 'agent-1', state: AttemptState.ATTEMPT_STATE_COMPLETE } }] }),
    /FAILED_PRECONDITION/,
  );
  await assert.rejects(
    anyone.completeLease(leased.leaseToken, { stageState: StageState.STAGE_STATE_FINAL, checkUpdates: [{ checkId: 'not-mine', state: CheckState.CHECK_STATE_FINAL, finalize: true, resultData: {}, failure: undefined }] }),
    /INVALID_ARGUMENT/,
  );
  await anyone.completeLease(leased.leaseToken, { stageState: StageState.STAGE_STATE_FINAL });
  const events = (await anyone.readEvents(wp)).events;
  assert.ok(events.every((e) => e.principal === 'anonymous'), 'every event records the principal: anonymous with auth off');
  anyone.close();
});
