// Push dispatch to registered StageRunner servers: real orchestrator process, real runner gRPC servers.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import {
  AttemptState,
  CheckState,
  ExecutionMode,
  NodeType,
  PredicateType,
  StageState,
} from '../../src/gen/turboci/v1/common.js';
import type { Stage } from '../../src/gen/turboci/v1/stage.js';
import { connect, startServer, tempDir, type ServerProcess } from '../support/server.js';
import { eventually, sleep, startTestRunner, type TestRunner } from '../support/runner.js';

let dir: ReturnType<typeof tempDir>;
let server: ServerProcess;
let conn: ReturnType<typeof connect>;
const runners: TestRunner[] = [];

before(async () => {
  dir = tempDir();
  server = await startServer(`${dir.path}/push.db`, ['--log-level', 'debug']); // the 'dispatch' line of a completed run is debug
  conn = connect(server.address);
});
after(async () => {
  conn.close();
  await server.stop();
  for (const r of runners) r.kill();
  dir.remove();
});

const runner = async (behaviour: Parameters<typeof startTestRunner>[0]) => {
  const r = await startTestRunner(behaviour);
  runners.push(r);
  return r;
};
const register = (runnerId: string, runnerType: string, address: string, more: object = {}) =>
  conn.api.registerStageRunner({ runnerId, runnerType, address, ...more });
const stageOf = async (workPlanId: string, id: string): Promise<Stage> =>
  (await conn.api.queryNodes({ workPlanId, stageIds: [id], includeStages: true })).stages[0]!;
const untilStage = (workPlanId: string, id: string, pred: (s: Stage) => boolean, what: string) =>
  eventually(async () => {
    const s = await stageOf(workPlanId, id);
    return pred(s) ? s : undefined;
  }, what);
const isFinal = (s: Stage) => s.state === StageState.STAGE_STATE_FINAL;

async function rejects(p: Promise<unknown>, code: status, message: RegExp) {
  await assert.rejects(p, (err: ServiceError) => {
    assert.equal(err.code, code, `${status[err.code]}: ${err.details}`);
    assert.match(err.details, message);
    return true;
  });
}

test('sync: Run answers, checks get results and go FINAL, the stage finishes and its dependents start', async () => {
  const r = await runner({
    run: async (req) => ({
      stageState: StageState.STAGE_STATE_FINAL,
      checkUpdates: req.assignedCheckIds.map((checkId) => ({
        checkId,
        state: CheckState.CHECK_STATE_FINAL,
        resultData: { built: true, option: req.checkOptions[0]?.options?.target ?? null },
        finalize: true,
        failure: undefined,
      })),
    }),
  });
  await register('sync-1', 'sync-build', r.address);
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({
    workPlanId,
    checks: [{ id: 'build', kind: 'build', options: { target: 'linux' }, state: CheckState.CHECK_STATE_PLANNED }],
    stages: [
      { id: 'compile', runnerType: 'sync-build', args: { cmd: 'make' }, assignments: [{ targetCheckId: 'build' }] },
      { id: 'next', dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_STAGE, targetId: 'compile' }] } },
    ],
  });
  const compile = await untilStage(workPlanId, 'compile', isFinal, 'compile FINAL');
  assert.equal(compile.attempts.length, 1);
  assert.equal(compile.attempts[0]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
  assert.equal(compile.attempts[0]!.processUid, 'sync-1');
  assert.equal(compile.attempts[0]!.execution!.runnerId, 'sync-1');
  const { checks } = await conn.api.queryNodes({ workPlanId, checkIds: ['build'], includeChecks: true });
  assert.equal(checks[0]!.state, CheckState.CHECK_STATE_FINAL);
  assert.deepEqual(checks[0]!.results[0]!.data, { built: true, option: 'linux' });
  assert.equal(checks[0]!.results[0]!.ownerId, 'compile');
  assert.equal((await stageOf(workPlanId, 'next')).state, StageState.STAGE_STATE_ATTEMPTING);
  assert.equal(r.runs.length, 1);
  assert.equal(r.runs[0]!.stageId, 'compile');
  assert.deepEqual(r.runs[0]!.args, { cmd: 'make' });
  assert.ok(r.runs[0]!.deadline instanceof Date && r.runs[0]!.deadline.getTime() > Date.now());
  const line = await server.waitForLog((l) => l.msg === 'dispatch' && l.stageId === 'compile');
  assert.equal(line.outcome, 'completed');
  assert.equal(line.runnerId, 'sync-1');
});

test('async: RunAsync accepted, progress via UpdateStageExecution, CompleteStageExecution applies; a repeat is idempotent', async () => {
  const r = await runner({ runAsync: async () => ({ accepted: true }) });
  await register('async-1', 'async-test', r.address, { supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC] });
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({
    workPlanId,
    checks: [{ id: 't', state: CheckState.CHECK_STATE_PLANNED }],
    stages: [{ id: 'test', runnerType: 'async-test', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC, assignments: [{ targetCheckId: 't' }] }],
  });
  await eventually(async () => (r.asyncRuns.length ? true : undefined), 'RunAsync call');
  const call = r.asyncRuns[0]!;
  assert.equal(call.callbackAddress, server.address);
  assert.deepEqual(call.assignedCheckIds, ['t']);
  await conn.api.updateStageExecution({ executionId: call.executionId, message: 'half way', progressPercent: 50 });
  const running = await stageOf(workPlanId, 'test');
  assert.equal(running.attempts[0]!.state, AttemptState.ATTEMPT_STATE_RUNNING);
  assert.equal(running.attempts[0]!.progress[0]!.message, 'half way');
  assert.equal(running.attempts[0]!.progress[0]!.details!.progress_percent, 50);

  const completion = {
    executionId: call.executionId,
    stageState: StageState.STAGE_STATE_FINAL,
    checkUpdates: [{ checkId: 't', resultData: { passed: 12 }, finalize: true, state: CheckState.CHECK_STATE_FINAL }],
  };
  assert.deepEqual(await conn.api.completeStageExecution(completion), { acknowledged: true });
  const v = (await conn.api.getWorkPlan({ id: workPlanId })).workPlan!.version;
  assert.deepEqual(await conn.api.completeStageExecution(completion), { acknowledged: true });
  assert.equal((await conn.api.getWorkPlan({ id: workPlanId })).workPlan!.version, v, 'the repeat appended nothing');
  await rejects(
    conn.api.completeStageExecution({ ...completion, checkUpdates: [] }),
    status.FAILED_PRECONDITION,
    /execution_id: execution .* is over/,
  );
  await rejects(conn.api.updateStageExecution({ executionId: call.executionId, message: 'late' }), status.FAILED_PRECONDITION, /is over/);
  assert.ok(isFinal(await stageOf(workPlanId, 'test')));
});

test('load balancing: 2 runners with max_concurrent 1 and 6 stages: never 2 in flight on one runner, all done', async () => {
  const slow = () => ({ run: async () => (await sleep(150), { stageState: StageState.STAGE_STATE_FINAL }) });
  const a = await runner(slow());
  const b = await runner(slow());
  await register('lb-a', 'lb', a.address, { maxConcurrent: 1 });
  await register('lb-b', 'lb', b.address, { maxConcurrent: 1 });
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({ workPlanId, stages: Array.from({ length: 6 }, (_, i) => ({ id: `s${i}`, runnerType: 'lb' })) });
  for (let i = 0; i < 6; i++) await untilStage(workPlanId, `s${i}`, isFinal, `s${i} FINAL`);
  assert.equal(a.maxInFlight(), 1);
  assert.equal(b.maxInFlight(), 1);
  assert.equal(a.runs.length + b.runs.length, 6);
  assert.ok(a.runs.length > 0 && b.runs.length > 0, 'both runners were used');
  const listed = await conn.api.listStageRunners({ runnerType: 'lb' });
  assert.deepEqual(listed.runners.map((x) => [x.runnerId, x.currentLoad]).sort(), [['lb-a', 0], ['lb-b', 0]]);
});

test('no runner at first: the attempt waits PENDING, and is dispatched as soon as one registers', async () => {
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'w', runnerType: 'late-type' }] });
  await sleep(300);
  assert.equal((await stageOf(workPlanId, 'w')).attempts[0]!.state, AttemptState.ATTEMPT_STATE_PENDING);
  const r = await runner({ run: async () => ({ stageState: StageState.STAGE_STATE_FINAL }) });
  await register('late-1', 'late-type', r.address);
  await untilStage(workPlanId, 'w', isFinal, 'w FINAL');
  assert.equal(r.runs.length, 1);
});

test('a runner killed mid-Run: the attempt is INCOMPLETE saying so, retried on the other runner, and finishes', async () => {
  let killMe: TestRunner | null = null;
  const doomed = await runner({
    run: async () => {
      setTimeout(() => killMe!.kill(), 50);
      await sleep(5_000);
      return { stageState: StageState.STAGE_STATE_FINAL };
    },
  });
  killMe = doomed;
  await register('kill-a', 'killable', doomed.address);
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'k', runnerType: 'killable' }] });
  await eventually(async () => (doomed.runs.length ? true : undefined), 'first Run');
  const healthy = await runner({ run: async () => ({ stageState: StageState.STAGE_STATE_FINAL }) });
  await register('kill-b', 'killable', healthy.address);
  const k = await untilStage(workPlanId, 'k', isFinal, 'k FINAL');
  assert.equal(k.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
  assert.match(k.attempts[0]!.failure!.message, /runner kill-a at 127\.0\.0\.1:\d+: /);
  assert.equal(k.attempts.at(-1)!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
  assert.equal(k.attempts.at(-1)!.execution!.runnerId, 'kill-b');
});

test('registrations: a heartbeat keeps the registration; one not refreshed expires and is not dispatched to', async () => {
  const r = await runner({ run: async () => ({ stageState: StageState.STAGE_STATE_FINAL }) });
  const first = await register('ttl-1', 'ttl-type', r.address, { ttlSeconds: 1 });
  const again = await register('ttl-1', 'ttl-type', r.address, { ttlSeconds: 1 });
  assert.equal(again.registrationId, first.registrationId);
  assert.ok(again.expiresAt!.getTime() >= first.expiresAt!.getTime());
  await eventually(async () => ((await conn.api.listStageRunners({ runnerType: 'ttl-type' })).runners.length === 0 ? true : undefined), 'expiry');
  await server.waitForLog((l) => l.msg === 'registration expired' && l.runnerId === 'ttl-1');
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'x', runnerType: 'ttl-type' }] });
  await sleep(300);
  assert.equal(r.runs.length, 0);
  assert.equal((await stageOf(workPlanId, 'x')).attempts[0]!.state, AttemptState.ATTEMPT_STATE_PENDING);
  const fresh = await register('ttl-1', 'ttl-type', r.address);
  assert.notEqual(fresh.registrationId, first.registrationId, 'an expired runner registers anew');
  await untilStage(workPlanId, 'x', isFinal, 'x FINAL after re-registering');
});

test('cancel while dispatched: later callbacks are FAILED_PRECONDITION and nothing is called twice', async () => {
  const r = await runner({ runAsync: async () => ({ accepted: true }) });
  await register('cancel-1', 'cancel-type', r.address, { supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC] });
  const workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'c', runnerType: 'cancel-type', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC }] });
  await eventually(async () => (r.asyncRuns.length ? true : undefined), 'RunAsync');
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'c', state: StageState.STAGE_STATE_FINAL }] });
  const executionId = r.asyncRuns[0]!.executionId;
  await rejects(conn.api.completeStageExecution({ executionId, stageState: StageState.STAGE_STATE_FINAL }), status.FAILED_PRECONDITION, /cancelled/);
  await rejects(conn.api.updateStageExecution({ executionId, message: 'still here' }), status.FAILED_PRECONDITION, /cancelled/);
  await sleep(200);
  assert.equal(r.asyncRuns.length, 1);
  const listed = await conn.api.listStageRunners({ runnerType: 'cancel-type' });
  assert.equal(listed.runners[0]!.currentLoad, 0);
});

test('bad input: unknown execution NOT_FOUND; missing runner_type INVALID_ARGUMENT; unknown registration NOT_FOUND', async () => {
  await rejects(conn.api.completeStageExecution({ executionId: 'no-such-execution' }), status.NOT_FOUND, /execution_id: no execution/);
  await rejects(conn.api.updateStageExecution({ executionId: 'no-such-execution' }), status.NOT_FOUND, /no execution/);
  await rejects(conn.api.registerStageRunner({ runnerId: 'r', address: '127.0.0.1:1' }), status.INVALID_ARGUMENT, /^runner_type: runner_type is required/);
  await rejects(conn.api.registerStageRunner({ runnerId: 'r', runnerType: 't' }), status.INVALID_ARGUMENT, /^address: /);
  await rejects(
    conn.api.registerStageRunner({ runnerId: 'r', runnerType: 't', address: 'a:1', supportedModes: [9 as ExecutionMode] }),
    status.INVALID_ARGUMENT,
    /supported_modes\[0\]: unknown execution mode 9/,
  );
  await rejects(conn.api.unregisterStageRunner({ registrationId: 'nope' }), status.NOT_FOUND, /registration_id/);
});
