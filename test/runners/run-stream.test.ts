// StageRunner.RunStream: SYNC runs go to a runner over one long-lived stream per address, with unary Run kept for
// runners without it. Real orchestrator process, real runner gRPC servers.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AttemptState, CheckState, NodeType, PredicateType, StageState } from '../../src/gen/turboci/v1/common.js';
import type { Stage } from '../../src/gen/turboci/v1/stage.js';
import type { RunRequest, RunResponse } from '../../src/gen/turboci/v1/stagerunner.js';
import { connect, startServer, tempDir, type ServerProcess } from '../support/server.js';
import { eventually, sleep, startTestRunner, type RunnerBehaviour, type TestRunner } from '../support/runner.js';
import { stablePort } from '../support/ports.js';

let dir: ReturnType<typeof tempDir>;
let server: ServerProcess;
let conn: ReturnType<typeof connect>;
const runners: TestRunner[] = [];

before(async () => {
  dir = tempDir();
  server = await startServer(`${dir.path}/run-stream.db`, ['--log-level', 'debug']); // the 'dispatch' line of a completed run is debug
  conn = connect(server.address);
});
after(async () => {
  conn.close();
  await server.stop();
  for (const r of runners) r.kill();
  dir.remove();
});

const runner = async (behaviour: RunnerBehaviour, port?: number) => {
  const r = await startTestRunner(behaviour, undefined, port === undefined ? {} : { port });
  runners.push(r);
  return r;
};
const register = (runnerId: string, runnerType: string, address: string, maxConcurrent = 1) =>
  conn.api.registerStageRunner({ runnerId, runnerType, address, maxConcurrent });
const stagesOf = async (workPlanId: string): Promise<Stage[]> => (await conn.api.queryNodes({ workPlanId, includeStages: true })).stages;
const allFinal = (workPlanId: string, what: string) =>
  eventually(async () => {
    const stages = await stagesOf(workPlanId);
    return stages.every((s) => s.state === StageState.STAGE_STATE_FINAL) ? stages : undefined;
  }, what);
const done = async (): Promise<Partial<RunResponse>> => ({ stageState: StageState.STAGE_STATE_FINAL });
/** A run that never answers by itself (and keeps no timer alive). */
const never = () => new Promise<never>(() => {});
/** A promise and the function that resolves it. */
const gate = () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
};
/** `n` independent stages of `runnerType`, then `sink` depending on all of them. */
const fanIn = (n: number, runnerType: string, more: object = {}) => {
  const leaves = Array.from({ length: n }, (_, i) => ({ id: `s${i}`, runnerType, ...more }));
  const sink = {
    id: 'sink',
    runnerType,
    ...more,
    dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: leaves.map((s) => ({ targetType: NodeType.NODE_TYPE_STAGE, targetId: s.id })) },
  };
  return [...leaves, sink];
};
const newWorkPlan = async () => (await conn.api.createWorkPlan({})).workPlan!.id;

test('a fan-in goes over one RunStream: every attempt on it, several in flight at once, the workplan completes', async () => {
  const r = await runner({ run: () => sleep(10).then(done) });
  await register('fan-1', 'fan', r.address, 8);
  const workPlanId = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId, stages: fanIn(30, 'fan') });
  const stages = await allFinal(workPlanId, 'every stage FINAL');
  assert.equal(stages.length, 31);
  for (const s of stages) {
    assert.equal(s.attempts.length, 1, `${s.id}: one attempt`);
    assert.equal(s.attempts[0]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
  }
  assert.equal(r.runs.length, 31);
  assert.equal(r.unaryRuns(), 0, 'no unary Run');
  assert.equal(r.streamsOpened(), 1, 'one stream for all of them');
  assert.ok(r.maxInFlight() > 1, `several runs in flight on the stream (at most ${r.maxInFlight()})`);
  assert.ok(r.maxInFlight() <= 8, 'never more than max_concurrent');
  assert.equal(r.runs.at(-1)!.stageId, 'sink');
});

test('a v1 runner (no RunStream) gets unary Run, the runs that found out included, each stage on its first attempt', async () => {
  const r = await runner({ run: done, runStream: false });
  await register('v1-1', 'v1', r.address, 4);
  const workPlanId = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId, stages: fanIn(6, 'v1') });
  const stages = await allFinal(workPlanId, 'every stage FINAL');
  for (const s of stages) assert.deepEqual(s.attempts.map((a) => a.state), [AttemptState.ATTEMPT_STATE_COMPLETE], `${s.id}: one attempt, complete`);
  assert.equal(r.runs.length, 7);
  assert.equal(r.unaryRuns(), 7, 'every run by unary Run');
  assert.equal(r.streamsOpened(), 0);
  // Remembered for the address: a later workplan goes straight to Run.
  const again = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId: again, stages: [{ id: 'one', runnerType: 'v1' }] });
  await allFinal(again, 'the later stage FINAL');
  assert.equal(r.unaryRuns(), 8);
});

test('answers out of order are matched by execution id: each result lands on its own stage and check', async () => {
  const release = gate();
  const r = await runner({
    run: async (req: RunRequest) => {
      await release.opened;
      // s0 answers last, s2 first.
      await sleep({ s0: 300, s1: 150, s2: 0 }[req.stageId] ?? 0);
      return {
        stageState: StageState.STAGE_STATE_FINAL,
        checkUpdates: req.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: { stage: req.stageId, executionId: req.executionId }, finalize: true, failure: undefined })),
      };
    },
  });
  await register('order-1', 'order', r.address, 3);
  const workPlanId = await newWorkPlan();
  const ids = ['s0', 's1', 's2'];
  await conn.api.writeNodes({
    workPlanId,
    checks: ids.map((id) => ({ id: `c-${id}`, state: CheckState.CHECK_STATE_PLANNED })),
    stages: ids.map((id) => ({ id, runnerType: 'order', assignments: [{ targetCheckId: `c-${id}` }] })),
  });
  await eventually(async () => (r.runs.length === 3 ? true : undefined), 'three runs on the stream');
  release.open();
  const stages = await allFinal(workPlanId, 'the three stages FINAL');
  const { checks } = await conn.api.queryNodes({ workPlanId, includeChecks: true });
  for (const id of ids) {
    const stage = stages.find((s) => s.id === id)!;
    const check = checks.find((c) => c.id === `c-${id}`)!;
    assert.equal(stage.attempts.length, 1);
    assert.equal(check.state, CheckState.CHECK_STATE_FINAL);
    assert.deepEqual(check.results[0]!.data, { stage: id, executionId: r.runs.find((run) => run.stageId === id)!.executionId });
  }
  assert.equal(r.streamsOpened(), 1);
  assert.equal(r.maxInFlight(), 3);
  // Applied in the order they came: s2, s1, s0.
  const applied = server.logs.filter((l) => l.msg === 'dispatch' && l.workPlanId === workPlanId).map((l) => [l.stageId, l.outcome]);
  assert.deepEqual(applied, [['s2', 'completed'], ['s1', 'completed'], ['s0', 'completed']]);
});

test('a run failing on the stream fails its attempt with the words a failed Run has', async () => {
  const failures: string[] = [];
  for (const runStream of [true, false]) {
    let calls = 0;
    const r = await runner({
      runStream,
      run: async () => {
        if (++calls === 1) throw new Error('boom');
        return { stageState: StageState.STAGE_STATE_FINAL };
      },
    });
    await register(`err-${runStream}`, `err-${runStream}`, r.address);
    const workPlanId = await newWorkPlan();
    await conn.api.writeNodes({ workPlanId, stages: [{ id: 'e', runnerType: `err-${runStream}`, maxAttempts: 2 }] });
    const [e] = await allFinal(workPlanId, 'e FINAL');
    assert.deepEqual(e!.attempts.map((a) => a.state), [AttemptState.ATTEMPT_STATE_INCOMPLETE, AttemptState.ATTEMPT_STATE_COMPLETE]);
    assert.equal(r.unaryRuns(), runStream ? 0 : 2);
    failures.push(e!.attempts[0]!.failure!.message.replace(/^runner \S+ at \S+: /, ''));
  }
  assert.deepEqual(failures, ['INTERNAL: Error: boom', 'INTERNAL: Error: boom'], 'on the stream as by Run');
});

test('a deadline on the stream fails that run alone; its late answer is dropped and the stream carries the retry', async () => {
  let calls = 0;
  const r = await runner({
    run: async () => {
      // The first run answers after its 1 s deadline, the retry at once.
      if (++calls === 1) await sleep(1_500);
      return { stageState: StageState.STAGE_STATE_FINAL };
    },
  });
  await register('late-1', 'late', r.address, 2);
  const workPlanId = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'slow', runnerType: 'late', attemptTimeoutSeconds: 1, maxAttempts: 2 }] });
  const [slow] = await allFinal(workPlanId, 'slow FINAL');
  assert.equal(slow!.attempts.length, 2);
  assert.equal(slow!.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
  assert.match(slow!.attempts[0]!.failure!.message, /deadline exceeded/);
  assert.equal(slow!.attempts[1]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
  await sleep(700); // the first run's late answer comes on the stream meanwhile
  assert.equal(r.runs.length, 2);
  assert.equal(r.streamsOpened(), 1, 'the stream stayed');
  assert.equal(r.openStreams(), 1);
  assert.equal(slow!.attempts[1]!.execution!.runnerId, 'late-1');
  assert.equal((await stagesOf(workPlanId))[0]!.attempts.length, 2, 'the late answer changed nothing');
});

test('a stream broken under its runs fails every run on it (unreachable); the retries go on a new stream', async () => {
  let calls = 0;
  const r = await runner({
    run: async () => {
      // The first three never answer on their own: the stream breaks under them.
      if (++calls <= 3) await never();
      return { stageState: StageState.STAGE_STATE_FINAL };
    },
  });
  await register('broken-1', 'broken', r.address, 3);
  const workPlanId = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId, stages: ['a', 'b', 'c'].map((id) => ({ id, runnerType: 'broken', maxAttempts: 2 })) });
  await eventually(async () => (r.runs.length === 3 ? true : undefined), 'three runs in flight');
  r.breakStreams();
  const stages = await allFinal(workPlanId, 'the three stages FINAL');
  for (const s of stages) {
    assert.equal(s.attempts.length, 2, `${s.id}: retried once`);
    assert.equal(s.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
    assert.match(s.attempts[0]!.failure!.message, /^runner broken-1 at 127\.0\.0\.1:\d+: unreachable: the test broke the stream$/);
    assert.equal(s.attempts[1]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
  }
  assert.equal(r.streamsOpened(), 2, 'the retries opened a new stream');
  assert.equal(r.unaryRuns(), 0);
});

test('a runner killed mid-stream: its runs fail and are retried elsewhere; restarted at its address it gets a new stream', async () => {
  // Below the ephemeral range: the port stays free while the runner is down (see support/ports.ts).
  const port = await stablePort();
  const doomed = await runner({ run: never }, port);
  await register('killed-a', 'killed', doomed.address, 3);
  const workPlanId = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId, stages: ['a', 'b', 'c'].map((id) => ({ id, runnerType: 'killed', maxAttempts: 10 })) });
  await eventually(async () => (doomed.runs.length === 3 ? true : undefined), 'three runs in flight on the doomed runner');
  const healthy = await runner({ run: done });
  const b = await register('killed-b', 'killed', healthy.address, 3);
  doomed.kill();
  const stages = await allFinal(workPlanId, 'the three stages FINAL');
  for (const s of stages) {
    assert.equal(s.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
    // What a unary Run gets when its runner is killed under it (the connection is reset: the call is cancelled).
    assert.match(s.attempts[0]!.failure!.message, /^runner killed-a at 127\.0\.0\.1:\d+: (CANCELLED: Call cancelled|unreachable: .+)$/);
    assert.equal(s.attempts.at(-1)!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
    assert.equal(s.attempts.at(-1)!.execution!.runnerId, 'killed-b');
  }
  // The same runner back at the same address, its registration still live: new runs open a new stream to it.
  await conn.api.unregisterStageRunner({ registrationId: b.registrationId });
  const restarted = await runner({ run: done }, port);
  // The channel to that address may still be backing off from the failed connects (grpc-js fails calls at once
  // meanwhile, unary or stream alike): single-attempt workplans until one gets through.
  const reached = await eventually(async () => {
    const next = await newWorkPlan();
    await conn.api.writeNodes({ workPlanId: next, stages: [{ id: 'after', runnerType: 'killed', maxAttempts: 1 }] });
    const [s] = await allFinal(next, 'after FINAL');
    return s!.attempts[0]!.state === AttemptState.ATTEMPT_STATE_COMPLETE ? s : (await sleep(200), undefined);
  }, 'a run on the restarted runner', 20_000);
  assert.equal(reached.attempts[0]!.execution!.runnerId, 'killed-a');
  assert.equal(restarted.runs.length, 1);
  assert.equal(restarted.streamsOpened(), 1, 'a new stream');
  assert.equal(restarted.unaryRuns(), 0);
});

test('unregistered with a run in flight: the stream is half-closed, the run still answers, then the runner ends it', async () => {
  const release = gate();
  const r = await runner({ run: () => release.opened.then(done) });
  const { registrationId } = await register('half-1', 'half', r.address, 2);
  const workPlanId = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'h', runnerType: 'half' }] });
  await eventually(async () => (r.runs.length === 1 ? true : undefined), 'the run in flight');
  await conn.api.unregisterStageRunner({ registrationId });
  await sleep(200);
  assert.equal(r.openStreams(), 1, 'open while its run is in flight');
  release.open();
  const [h] = await allFinal(workPlanId, 'h FINAL');
  assert.equal(h!.attempts.length, 1);
  assert.equal(h!.attempts[0]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
  await eventually(async () => (r.openStreams() === 0 ? true : undefined), 'the stream ended');
});

test('unregistering a runner ends its stream; a runner closing ends its streams itself', async () => {
  const r = await runner({ run: done });
  const { registrationId } = await register('bye-1', 'bye', r.address, 2);
  const workPlanId = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId, stages: [{ id: 'x', runnerType: 'bye' }] });
  await allFinal(workPlanId, 'x FINAL');
  assert.equal(r.openStreams(), 1);
  await conn.api.unregisterStageRunner({ registrationId });
  await eventually(async () => (r.openStreams() === 0 ? true : undefined), 'the stream ended');

  const s = await runner({ run: done });
  await register('bye-2', 'bye2', s.address, 2);
  const other = await newWorkPlan();
  await conn.api.writeNodes({ workPlanId: other, stages: [{ id: 'y', runnerType: 'bye2' }] });
  await allFinal(other, 'y FINAL');
  assert.equal(s.openStreams(), 1);
  // Still registered, its stream open: close() ends the stream (nothing in flight) and shuts down, not waiting forever.
  await Promise.race([s.close(), sleep(5_000).then(() => assert.fail('close() waited on the open stream'))]);
  assert.equal(s.openStreams(), 0);
});
