// Stage attempts through a real server process and a real gRPC client: claiming, progress, retries, exhaustion,
// assigned checks, child-stage groups (AWAITING_GROUP), cancellation, and dependents of a finished stage.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { AttemptState, CheckState, NodeType, PredicateType, StageState } from '../src/gen/turboci/v1/common.js';
import type { Check } from '../src/gen/turboci/v1/check.js';
import type { Stage } from '../src/gen/turboci/v1/stage.js';
import type { WriteNodesResponse } from '../src/gen/turboci/v1/service.js';
import { serverPerFile, type Api } from './support/server.js';

const suite = serverPerFile('attempts');

// ---- helpers

type Write = Omit<Parameters<Api['writeNodes']>[0], 'workPlanId'>;
type AttemptWrite = NonNullable<NonNullable<Write['stages']>[number]['currentAttempt']>;
const { ATTEMPT_STATE_PENDING: PENDING, ATTEMPT_STATE_RUNNING: RUNNING, ATTEMPT_STATE_COMPLETE: COMPLETE, ATTEMPT_STATE_INCOMPLETE: INCOMPLETE } =
  AttemptState;
const { STAGE_STATE_PLANNED: PLANNED, STAGE_STATE_ATTEMPTING: ATTEMPTING, STAGE_STATE_AWAITING_GROUP: AWAITING_GROUP, STAGE_STATE_FINAL: FINAL } =
  StageState;
const onStage = (id: string) => ({ predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_STAGE, targetId: id }] });

async function plan(): Promise<string> {
  const { workPlan } = await suite.api.createWorkPlan({});
  return workPlan!.id;
}
const write = (workPlanId: string, w: Write) => suite.api.writeNodes({ workPlanId, ...w });
const attempt = (wp: string, id: string, currentAttempt: AttemptWrite) => write(wp, { stages: [{ id, currentAttempt }] });
const claim = (wp: string, id: string, uid = 'runner-1') => attempt(wp, id, { processUid: uid });
const version = async (wp: string) => (await suite.api.getWorkPlan({ id: wp })).workPlan!.version;
const stageIn = (r: WriteNodesResponse, id: string) => r.stages.find((x) => x.id === id);
const checkIn = (r: WriteNodesResponse, id: string) => r.checks.find((x) => x.id === id);

async function stage(wp: string, id: string): Promise<Stage> {
  const r = await suite.api.queryNodes({ workPlanId: wp, stageIds: [id], includeStages: true });
  assert.equal(r.stages.length, 1, `stage ${id} should exist`);
  return r.stages[0]!;
}
async function check(wp: string, id: string): Promise<Check> {
  const r = await suite.api.queryNodes({ workPlanId: wp, checkIds: [id], includeChecks: true });
  assert.equal(r.checks.length, 1, `check ${id} should exist`);
  return r.checks[0]!;
}
const states = (st: Stage) => st.attempts.map((a) => [a.idx, a.state]);

/** Claims the current attempt and completes it (two writes); returns the completing write. */
async function complete(wp: string, id: string): Promise<WriteNodesResponse> {
  await claim(wp, id, `proc-${id}`);
  return attempt(wp, id, { state: COMPLETE });
}
/** Makes the current attempt INCOMPLETE with a failure; returns the write. */
const fail = (wp: string, id: string, message = 'flaked') => attempt(wp, id, { state: INCOMPLETE, failure: { message } });

async function assertRejected(wp: string, w: Write, codes: status[], needle?: string): Promise<void> {
  const before = await version(wp);
  await assert.rejects(write(wp, w), (err: ServiceError) => {
    assert.ok(codes.includes(err.code), `expected ${codes.map((c) => status[c])}, got ${status[err.code]}: ${err.message}`);
    if (needle) assert.ok(err.message.includes(needle), `message "${err.message}" should contain "${needle}"`);
    return true;
  });
  assert.equal(await version(wp), before, 'nothing may be appended');
}

// ---- claiming and progress

describe('claim and progress', () => {
  test('a new stage without dependencies starts with attempt 1 PENDING; process_uid alone claims it', async () => {
    const wp = await plan();
    const w0 = await write(wp, { stages: [{ id: 'st' }] });
    assert.equal(stageIn(w0, 'st')!.state, ATTEMPTING);
    assert.deepEqual(states(stageIn(w0, 'st')!), [[1, PENDING]]);
    const w1 = await claim(wp, 'st', 'proc-A');
    const a = stageIn(w1, 'st')!.attempts[0]!;
    assert.equal(a.state, RUNNING);
    assert.equal(a.processUid, 'proc-A');
  });

  test('claiming with state RUNNING works too; re-sending the own uid is a no-op; another uid is FAILED_PRECONDITION', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'st' }] });
    const w1 = await attempt(wp, 'st', { state: RUNNING, processUid: 'proc-A' });
    assert.equal(stageIn(w1, 'st')!.attempts[0]!.processUid, 'proc-A');
    const v = await version(wp);
    await claim(wp, 'st', 'proc-A');
    assert.equal(await version(wp), v, 're-claiming by the claimer appends nothing');
    await assertRejected(wp, { stages: [{ id: 'st', currentAttempt: { processUid: 'proc-B' } }] }, [status.FAILED_PRECONDITION], 'process_uid');
    await assertRejected(wp, { stages: [{ id: 'st', currentAttempt: { processUid: 'proc-B', state: COMPLETE } }] }, [status.FAILED_PRECONDITION]);
    assert.equal((await stage(wp, 'st')).attempts[0]!.processUid, 'proc-A');
  });

  test('an attempt cannot become RUNNING without a process_uid, nor COMPLETE before it is RUNNING', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'st' }] });
    // Which code the missing uid gets is not pinned by the spec (malformed vs illegal); that it is refused is.
    await assertRejected(wp, { stages: [{ id: 'st', currentAttempt: { state: RUNNING } }] }, [status.INVALID_ARGUMENT, status.FAILED_PRECONDITION]);
    await assertRejected(wp, { stages: [{ id: 'st', currentAttempt: { state: COMPLETE } }] }, [status.FAILED_PRECONDITION]);
    assert.deepEqual(states(await stage(wp, 'st')), [[1, PENDING]]);
  });

  test('an AttemptWrite on a stage with no attempt is FAILED_PRECONDITION', async () => {
    const wp = await plan();
    await write(wp, { checks: [{ id: 'gate' }], stages: [{ id: 'st', dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'gate' }] } }] });
    await assertRejected(wp, { stages: [{ id: 'st', currentAttempt: { processUid: 'p' } }] }, [status.FAILED_PRECONDITION]);
  });

  test('progress appends entries in order, keeping the client timestamp; details merge key by key', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'st' }] });
    await claim(wp, 'st');
    const at = new Date('2024-05-01T12:00:00.000Z');
    await attempt(wp, 'st', { progress: { message: 'compiling', timestamp: at, details: { pct: 10 } }, details: { host: 'h1', lane: 'a' } });
    const r = await attempt(wp, 'st', { progress: { message: 'linking' }, details: { lane: 'b' } });
    const a = stageIn(r, 'st')!.attempts[0]!;
    assert.deepEqual(a.progress.map((p) => p.message), ['compiling', 'linking']);
    assert.equal(a.progress[0]!.timestamp!.toISOString(), at.toISOString());
    assert.deepEqual(a.progress[0]!.details, { pct: 10 });
    assert.ok(a.progress[1]!.timestamp, 'the server stamps an entry without a timestamp');
    assert.deepEqual(a.details, { host: 'h1', lane: 'b' });
    assert.equal(a.state, RUNNING, 'progress does not change the state');
  });
});

// ---- retries, exhaustion, completion

describe('retries and completion', () => {
  test('INCOMPLETE → attempt idx+1 PENDING; the failed attempt keeps its failure', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'st' }] });
    await claim(wp, 'st');
    const r = await fail(wp, 'st', 'disk full');
    const st = stageIn(r, 'st')!;
    assert.equal(st.state, ATTEMPTING);
    assert.deepEqual(states(st), [[1, INCOMPLETE], [2, PENDING]]);
    assert.equal(st.attempts[0]!.failure!.message, 'disk full');
    assert.equal(st.attempts[1]!.processUid, '', 'the new attempt is unclaimed');
    assert.equal(st.failure, undefined);
  });

  test('a failure without a state makes a PENDING attempt INCOMPLETE and retries', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'st' }] });
    const r = await attempt(wp, 'st', { failure: { message: 'no runner' } });
    assert.deepEqual(states(stageIn(r, 'st')!), [[1, INCOMPLETE], [2, PENDING]]);
  });

  const exhaust: { name: string; maxAttempts?: number; expect: number }[] = [
    { name: 'default max_attempts (3)', expect: 3 },
    { name: 'max_attempts 1', maxAttempts: 1, expect: 1 },
    { name: 'max_attempts 5', maxAttempts: 5, expect: 5 },
  ];
  for (const k of exhaust) {
    test(`exhaustion with ${k.name}: stage FINAL with failure after ${k.expect} INCOMPLETE attempts`, async () => {
      const wp = await plan();
      const w0 = await write(wp, { stages: [{ id: 'st', ...(k.maxAttempts ? { maxAttempts: k.maxAttempts } : {}) }] });
      assert.equal(stageIn(w0, 'st')!.maxAttempts, k.expect);
      let r: WriteNodesResponse | undefined;
      for (let i = 1; i <= k.expect; i++) {
        await claim(wp, 'st', `p${i}`);
        r = await fail(wp, 'st', `fail ${i}`);
        const st = stageIn(r, 'st')!;
        if (i < k.expect) {
          assert.equal(st.state, ATTEMPTING, `still attempting after ${i}`);
          assert.equal(st.attempts.length, i + 1);
          assert.equal(st.attempts[i]!.state, PENDING);
        }
      }
      const st = stageIn(r!, 'st')!;
      assert.equal(st.state, FINAL);
      assert.equal(st.attempts.length, k.expect, 'no attempt beyond the maximum');
      assert.ok(st.attempts.every((a) => a.state === INCOMPLETE));
      assert.ok(st.failure?.message, 'Stage.failure is set');
      assert.deepEqual(await stage(wp, 'st'), st);
    });
  }

  test('a COMPLETE attempt makes the stage FINAL without a failure', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'st' }] });
    const r = await complete(wp, 'st');
    const st = stageIn(r, 'st')!;
    assert.equal(st.state, FINAL);
    assert.deepEqual(states(st), [[1, COMPLETE]]);
    assert.equal(st.failure, undefined);
  });

  test('compat: state FINAL sent with current_attempt COMPLETE is accepted and finishes the stage', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'st' }] });
    await claim(wp, 'st');
    const r = await write(wp, { stages: [{ id: 'st', currentAttempt: { state: COMPLETE }, state: FINAL }] });
    assert.equal(stageIn(r, 'st')!.state, FINAL);
    assert.deepEqual(states(stageIn(r, 'st')!), [[1, COMPLETE]]);
    assert.equal(stageIn(r, 'st')!.failure, undefined, 'completion is not a cancellation');
  });
});

// ---- assigned checks

describe('assigned checks', () => {
  // However the stage goes FINAL, every assigned check not yet FINAL gets a failure result owned by the stage.
  const routes: { name: string; maxAttempts?: number; finish: (wp: string) => Promise<WriteNodesResponse> }[] = [
    { name: 'attempts exhausted', maxAttempts: 1, finish: (wp) => fail(wp, 'owner') },
    { name: 'cancelled by a client', finish: (wp) => write(wp, { stages: [{ id: 'owner', state: FINAL }] }) },
    { name: 'completed without finalizing them', finish: (wp) => complete(wp, 'owner') },
  ];
  for (const k of routes) {
    test(`stage FINAL (${k.name}): unfinished assigned checks get a stage-owned failure and go FINAL`, async () => {
      const wp = await plan();
      const assign = (id: string) => ({ targetCheckId: id, goalState: CheckState.CHECK_STATE_FINAL });
      await write(wp, {
        checks: [{ id: 'waiting', state: CheckState.CHECK_STATE_PLANNED }, { id: 'planning' }, { id: 'done' }, { id: 'unassigned' }],
        stages: [{ id: 'owner', ...(k.maxAttempts ? { maxAttempts: k.maxAttempts } : {}), assignments: ['waiting', 'planning', 'done'].map(assign) }],
      });
      await write(wp, { checks: [{ id: 'done', result: { ownerType: 'stage', ownerId: 'owner', data: { ok: true }, finalize: true }, state: CheckState.CHECK_STATE_FINAL }] });
      const r = await k.finish(wp);
      assert.equal(stageIn(r, 'owner')!.state, FINAL);
      for (const id of ['waiting', 'planning']) {
        const ck = checkIn(r, id);
        assert.ok(ck, `check ${id} is in the response`);
        assert.equal(ck.state, CheckState.CHECK_STATE_FINAL);
        const last = ck.results.at(-1)!;
        assert.equal(last.ownerType, 'stage');
        assert.equal(last.ownerId, 'owner');
        assert.ok(last.failure?.message, 'the result carries a failure');
        assert.ok(last.finalizedAt, 'the result is finalized');
        assert.deepEqual(await check(wp, id), ck);
      }
      assert.equal(checkIn(r, 'done'), undefined, 'a FINAL check is left alone');
      const done = await check(wp, 'done');
      assert.equal(done.results.length, 1);
      assert.equal(done.results[0]!.failure, undefined);
      assert.equal((await check(wp, 'unassigned')).state, CheckState.CHECK_STATE_PLANNING);
    });
  }
});

// ---- child stages

describe('AWAITING_GROUP', () => {
  test('a completed parent waits for its children and goes FINAL in the write that finalizes the last one', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'parent' }, { id: 'kid1', parentStageId: 'parent' }, { id: 'kid2', parentStageId: 'parent' }, { id: 'next', dependencies: onStage('parent') }] });
    assert.equal((await stage(wp, 'kid1')).parentStageId, 'parent');
    const r0 = await complete(wp, 'parent');
    assert.equal(stageIn(r0, 'parent')!.state, AWAITING_GROUP);
    assert.deepEqual(states(stageIn(r0, 'parent')!), [[1, COMPLETE]]);
    assert.equal(stageIn(r0, 'next'), undefined, 'AWAITING_GROUP is not FINAL: dependents wait');

    const r1 = await complete(wp, 'kid2');
    assert.equal(stageIn(r1, 'kid2')!.state, FINAL);
    assert.equal(stageIn(r1, 'parent'), undefined);
    assert.equal((await stage(wp, 'parent')).state, AWAITING_GROUP);

    const r2 = await complete(wp, 'kid1');
    assert.equal(stageIn(r2, 'kid1')!.state, FINAL);
    assert.equal(stageIn(r2, 'parent')?.state, FINAL, 'the parent goes FINAL in the same write');
    assert.equal(stageIn(r2, 'next')?.state, ATTEMPTING, "and the parent's dependents start in it too");
  });

  test('compat: FINAL with COMPLETE while children run leaves the parent AWAITING_GROUP; children that fail still release it', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'parent' }, { id: 'kid', parentStageId: 'parent', maxAttempts: 1 }] });
    await claim(wp, 'parent');
    const r0 = await write(wp, { stages: [{ id: 'parent', currentAttempt: { state: COMPLETE }, state: FINAL }] });
    assert.equal(stageIn(r0, 'parent')!.state, AWAITING_GROUP);
    const r1 = await fail(wp, 'kid');
    assert.equal(stageIn(r1, 'kid')!.state, FINAL);
    assert.equal(stageIn(r1, 'parent')?.state, FINAL);
  });

  test('a parent whose children are already FINAL goes straight to FINAL', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'parent' }, { id: 'kid', parentStageId: 'parent' }] });
    await complete(wp, 'kid');
    const r = await complete(wp, 'parent');
    assert.equal(stageIn(r, 'parent')!.state, FINAL);
  });

  test('parent_stage_id naming an unknown stage is INVALID_ARGUMENT and appends nothing', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'real' }] });
    await assertRejected(wp, { stages: [{ id: 'kid', parentStageId: 'ghost' }] }, [status.INVALID_ARGUMENT], 'stages[0].parent_stage_id');
    await assertRejected(wp, { stages: [{ id: 'a' }, { id: 'b', parentStageId: 'nope' }] }, [status.INVALID_ARGUMENT], 'stages[1].parent_stage_id');
    const r = await suite.api.queryNodes({ workPlanId: wp });
    assert.deepEqual(r.stages.map((s) => s.id), ['real']);
  });
});

// ---- cancellation and dependents

describe('cancellation', () => {
  const from: { name: string; prepare: (wp: string) => Promise<unknown>; attempts: [number, AttemptState][] }[] = [
    { name: 'a RUNNING attempt', prepare: (wp) => claim(wp, 'st'), attempts: [[1, INCOMPLETE]] },
    { name: 'a PENDING attempt', prepare: async () => undefined, attempts: [[1, INCOMPLETE]] },
    { name: 'a retried attempt', prepare: (wp) => fail(wp, 'st'), attempts: [[1, INCOMPLETE], [2, INCOMPLETE]] },
  ];
  for (const k of from) {
    test(`cancelling a stage with ${k.name}: attempt INCOMPLETE, no retry, stage FINAL with failure`, async () => {
      const wp = await plan();
      await write(wp, { stages: [{ id: 'st' }] });
      await k.prepare(wp);
      const r = await write(wp, { stages: [{ id: 'st', state: FINAL }] });
      const st = stageIn(r, 'st')!;
      assert.equal(st.state, FINAL);
      assert.deepEqual(states(st), k.attempts);
      assert.ok(st.attempts.at(-1)!.failure, 'the cancelled attempt says why');
      assert.ok(st.failure?.message, 'Stage.failure is set');
      assert.deepEqual(await stage(wp, 'st'), st, 'no retry appears afterwards');
      // A late claim cannot revive it (the spec leaves open whether it is refused or ignored; nothing may change).
      const v = await version(wp);
      await claim(wp, 'st', 'late').catch((e: ServiceError) => assert.equal(e.code, status.FAILED_PRECONDITION));
      assert.equal(await version(wp), v);
      assert.deepEqual(await stage(wp, 'st'), st);
    });
  }

  test('cancelling a PLANNED stage finishes it with no attempt', async () => {
    const wp = await plan();
    await write(wp, { stages: [{ id: 'blocker' }, { id: 'st', dependencies: onStage('blocker') }] });
    const r = await write(wp, { stages: [{ id: 'st', state: FINAL }] });
    assert.equal(stageIn(r, 'st')!.state, FINAL);
    assert.equal(stageIn(r, 'st')!.attempts.length, 0);
    const r2 = await complete(wp, 'blocker');
    assert.equal(stageIn(r2, 'st'), undefined, 'a FINAL stage is never started');
  });

  const finishes: { name: string; finish: (wp: string) => Promise<WriteNodesResponse> }[] = [
    { name: 'completes', finish: (wp) => complete(wp, 'up') },
    { name: 'exhausts its attempts', finish: (wp) => fail(wp, 'up') },
    { name: 'is cancelled', finish: (wp) => write(wp, { stages: [{ id: 'up', state: FINAL }] }) },
  ];
  for (const k of finishes) {
    test(`dependents of a stage start in the write in which it ${k.name}`, async () => {
      const wp = await plan();
      await write(wp, { stages: [{ id: 'up', maxAttempts: 1 }, { id: 'down', dependencies: onStage('up') }] });
      assert.equal((await stage(wp, 'down')).state, PLANNED);
      const r = await k.finish(wp);
      assert.equal(stageIn(r, 'up')!.state, FINAL);
      const down = stageIn(r, 'down');
      assert.equal(down?.state, ATTEMPTING);
      assert.deepEqual(states(down!), [[1, PENDING]]);
    });
  }
});
