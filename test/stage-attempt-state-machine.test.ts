// The stage and attempt state machines, driven through a real server process and a real gRPC client
// (semantics.md, "Stage"). Every case gets a fresh workplan; illegal writes must fail and append nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AttemptState, CheckState, ExecutionMode, NodeType, PredicateType, StageState } from '../src/gen/turboci/v1/common.js';
import type { WriteNodesResponse } from '../src/gen/turboci/v1/service.js';
import type { Attempt, Stage } from '../src/gen/turboci/v1/stage.js';
import { serverPerFile, type Api } from './support/server.js';

const INVALID_ARGUMENT = 3;
const FAILED_PRECONDITION = 9;
const { STAGE_STATE_PLANNED: PLANNED, STAGE_STATE_ATTEMPTING: ATTEMPTING, STAGE_STATE_AWAITING_GROUP: AWAITING_GROUP, STAGE_STATE_FINAL: FINAL } =
  StageState;
const S = { PLANNED, ATTEMPTING, AWAITING_GROUP, FINAL };
const { ATTEMPT_STATE_PENDING: PENDING, ATTEMPT_STATE_SCHEDULED: SCHEDULED, ATTEMPT_STATE_RUNNING: RUNNING } = AttemptState;
const A = { PENDING, SCHEDULED, RUNNING, COMPLETE: AttemptState.ATTEMPT_STATE_COMPLETE, INCOMPLETE: AttemptState.ATTEMPT_STATE_INCOMPLETE };
type StageName = keyof typeof S;
type AttemptName = keyof typeof A;
const CHECK_FINAL = CheckState.CHECK_STATE_FINAL;
const { EXECUTION_MODE_SYNC: SYNC, EXECUTION_MODE_ASYNC: ASYNC } = ExecutionMode;

type Req = Parameters<Api['writeNodes']>[0];
type StageWrite = NonNullable<Req['stages']>[number];
type AttemptWrite = NonNullable<StageWrite['currentAttempt']>;

const suite = serverPerFile('stage-attempt-state-machine');

// ---- helpers

const on = (...ids: string[]) => ({
  predicate: PredicateType.PREDICATE_TYPE_AND,
  dependencies: ids.map((targetId) => ({ targetType: NodeType.NODE_TYPE_CHECK, targetId })),
});
const current = (s: Stage): Attempt => s.attempts[s.attempts.length - 1]!;
const assign = (...ids: string[]) => ids.map((targetCheckId) => ({ targetCheckId, goalState: CHECK_FINAL }));

async function newPlan(): Promise<string> {
  const { workPlan } = await suite.api.createWorkPlan({});
  return workPlan!.id;
}
const write = (workPlanId: string, req: Omit<Req, 'workPlanId'>) => suite.api.writeNodes({ ...req, workPlanId });
const stage = (workPlanId: string, ...stages: StageWrite[]) => write(workPlanId, { stages });
const attempt = (workPlanId: string, currentAttempt: AttemptWrite, id = 's') => stage(workPlanId, { id, currentAttempt });
const version = async (id: string) => (await suite.api.getWorkPlan({ id })).workPlan!.version;
const written = (res: WriteNodesResponse, id = 's') => res.stages.find((s) => s.id === id)!;

async function stored(workPlanId: string, id = 's'): Promise<Stage> {
  const res = await suite.api.queryNodes({ workPlanId, stageIds: [id], includeStages: true });
  assert.equal(res.stages.length, 1, `stage ${id} exists`);
  return res.stages[0]!;
}

/** Asserts the write fails with `code`, the message mentions each of `mentions`, and the workplan did not change. */
async function rejects(workPlanId: string, stages: StageWrite[], code: number, ...mentions: string[]): Promise<void> {
  const before = await version(workPlanId);
  await assert.rejects(stage(workPlanId, ...stages), (err: { code: number; message: string }) => {
    assert.equal(err.code, code, err.message);
    for (const m of mentions) assert.ok(err.message.includes(m), `"${err.message}" should mention "${m}"`);
    return true;
  });
  assert.equal(await version(workPlanId), before, 'a rejected write appends nothing');
}

/** Asserts the write succeeds and appends nothing. */
async function noop(workPlanId: string, w: StageWrite): Promise<Stage> {
  const before = await version(workPlanId);
  const res = await stage(workPlanId, w);
  assert.equal(res.workPlanVersion, before, 'response version unchanged');
  assert.equal(await version(workPlanId), before, 'a no-op appends nothing');
  return written(res, w.id);
}

/**
 * A workplan with check `gate` (PLANNING, never FINAL) and stage `s` in `from`:
 * PLANNED depends on `gate`; ATTEMPTING has attempt 1 PENDING; AWAITING_GROUP completed its attempt while child
 * stage `child` (which depends on `gate`) is PLANNED; FINAL was cancelled from ATTEMPTING.
 */
async function stageIn(from: StageName): Promise<string> {
  const plan = await newPlan();
  const s: StageWrite = { id: 's', ...(from === 'PLANNED' ? { dependencies: on('gate') } : {}) };
  await write(plan, { checks: [{ id: 'gate' }], stages: [s] });
  if (from === 'AWAITING_GROUP') {
    await stage(plan, { id: 'child', parentStageId: 's', dependencies: on('gate') });
    await attempt(plan, { processUid: 'u1' });
    await attempt(plan, { state: A.COMPLETE });
  }
  if (from === 'FINAL') await stage(plan, { id: 's', state: S.FINAL });
  assert.equal((await stored(plan)).state, S[from], `setup: s is ${from}`);
  return plan;
}

/** A workplan with check `t` and stage `s` (max_attempts as given) whose attempt is in `from`, claimed by u1 if it ran. */
const ATTEMPT_SETUP: Record<AttemptName, AttemptWrite[]> = {
  PENDING: [],
  SCHEDULED: [{ state: A.SCHEDULED }],
  RUNNING: [{ processUid: 'u1' }],
  COMPLETE: [{ processUid: 'u1' }, { state: A.COMPLETE }],
  INCOMPLETE: [{ state: A.INCOMPLETE }],
};
async function attemptIn(from: AttemptName, maxAttempts = 1, extra: StageWrite = {}): Promise<string> {
  const plan = await newPlan();
  await write(plan, { checks: [{ id: 't' }], stages: [{ ...extra, id: 's', maxAttempts }] });
  for (const w of ATTEMPT_SETUP[from]) await attempt(plan, w);
  const s = await stored(plan);
  assert.equal(s.attempts.length, 1);
  assert.equal(current(s).state, A[from], `setup: attempt is ${from}`);
  return plan;
}

// ---- stage transitions a client can ask for

const STAGE_NAMES = Object.keys(S) as StageName[];
for (const from of STAGE_NAMES) {
  for (const to of STAGE_NAMES) {
    const cancels = to === 'FINAL' && (from === 'PLANNED' || from === 'ATTEMPTING');
    const outcome = from === to ? 'no-op' : cancels ? 'FINAL (cancellation)' : 'FAILED_PRECONDITION';
    test(`stage ${from} -> ${to}: ${outcome}`, async () => {
      const plan = await stageIn(from);
      if (from === to) {
        assert.equal((await noop(plan, { id: 's', state: S[to] })).state, S[from]);
      } else if (cancels) {
        const before = await version(plan);
        const res = await stage(plan, { id: 's', state: S.FINAL });
        assert.equal(written(res).state, S.FINAL);
        assert.deepEqual(written(res).attempts.map((a) => a.state), from === 'PLANNED' ? [] : [A.INCOMPLETE]);
        assert.ok(res.workPlanVersion > before);
        assert.equal(await version(plan), res.workPlanVersion);
        assert.equal((await stored(plan)).state, S.FINAL);
      } else {
        await rejects(plan, [{ id: 's', state: S[to] }], FAILED_PRECONDITION, 'stages[0].state');
        assert.equal((await stored(plan)).state, S[from]);
      }
    });
  }
}

test('stage created without dependencies is ATTEMPTING with attempt 1 PENDING, SYNC and 3 max attempts', async () => {
  const plan = await newPlan();
  const s = written(await stage(plan, { id: 's' }));
  assert.equal(s.state, S.ATTEMPTING);
  assert.deepEqual(s.attempts.map((a) => [a.idx, a.state]), [[1, A.PENDING]]);
  assert.equal(s.executionMode, SYNC);
  assert.equal(s.maxAttempts, 3);
});

// ---- attempt transitions: every from-state × every requested state (max_attempts 1, so nothing retries)

const NEXT: Record<AttemptName, AttemptName[]> = {
  PENDING: ['SCHEDULED', 'RUNNING', 'INCOMPLETE'],
  SCHEDULED: ['RUNNING', 'INCOMPLETE'],
  RUNNING: ['COMPLETE', 'INCOMPLETE'],
  COMPLETE: [],
  INCOMPLETE: [],
};
const ATTEMPT_NAMES = Object.keys(A) as AttemptName[];
for (const from of ATTEMPT_NAMES) {
  for (const to of ATTEMPT_NAMES) {
    const outcome = from === to ? 'no-op' : NEXT[from].includes(to) ? to : 'FAILED_PRECONDITION';
    test(`attempt ${from} -> ${to}: ${outcome}`, async () => {
      const plan = await attemptIn(from);
      const w: AttemptWrite = { state: A[to], ...(to === 'RUNNING' ? { processUid: 'u1' } : {}) };
      if (outcome === 'no-op') {
        assert.equal(current(await noop(plan, { id: 's', currentAttempt: w })).state, A[from]);
      } else if (outcome === 'FAILED_PRECONDITION') {
        await rejects(plan, [{ id: 's', currentAttempt: w }], FAILED_PRECONDITION);
        assert.equal(current(await stored(plan)).state, A[from]);
      } else {
        const s = written(await attempt(plan, w));
        assert.equal(s.attempts.length, 1);
        assert.equal(s.attempts[0]!.state, A[to]);
        // COMPLETE finishes the stage; INCOMPLETE with no attempts left fails it.
        const stageAfter = to === 'COMPLETE' || to === 'INCOMPLETE' ? S.FINAL : S.ATTEMPTING;
        assert.equal(s.state, stageAfter);
        assert.equal((await stored(plan)).attempts[0]!.state, A[to]);
      }
    });
  }
}

// ---- claiming with process_uid

for (const from of ['PENDING', 'SCHEDULED'] as const) {
  for (const [label, w] of [
    ['process_uid alone', { processUid: 'u1' }],
    ['process_uid with state RUNNING', { processUid: 'u1', state: A.RUNNING }],
  ] as [string, AttemptWrite][]) {
    test(`claim: ${label} on a ${from} attempt makes it RUNNING`, async () => {
      const plan = await attemptIn(from);
      const a = current(written(await attempt(plan, w)));
      assert.deepEqual([a.state, a.processUid], [A.RUNNING, 'u1']);
      const again = current(await noop(plan, { id: 's', currentAttempt: { processUid: 'u1' } }));
      assert.deepEqual([again.state, again.processUid], [A.RUNNING, 'u1'], 'the claimer resending its uid is a no-op');
    });
  }
  test(`claim: state RUNNING without process_uid on a ${from} attempt is INVALID_ARGUMENT`, async () => {
    const plan = await attemptIn(from);
    await rejects(plan, [{ id: 's', currentAttempt: { state: A.RUNNING } }], INVALID_ARGUMENT, 'process_uid');
    assert.equal(current(await stored(plan)).state, A[from]);
  });
}

const OTHER_UID: [string, AttemptWrite][] = [
  ['alone', { processUid: 'u2' }],
  ['with state COMPLETE', { processUid: 'u2', state: A.COMPLETE }],
  ['with state INCOMPLETE', { processUid: 'u2', state: A.INCOMPLETE }],
  ['with details', { processUid: 'u2', details: { x: 1 } }],
  ['with progress', { processUid: 'u2', progress: { message: 'hi' } }],
];
for (const [label, w] of OTHER_UID) {
  test(`claim: another process_uid ${label} on a claimed attempt is FAILED_PRECONDITION`, async () => {
    const plan = await attemptIn('RUNNING');
    await rejects(plan, [{ id: 's', currentAttempt: w }], FAILED_PRECONDITION, 'process_uid');
    const a = current(await stored(plan));
    assert.deepEqual([a.state, a.processUid, a.details, a.progress.length], [A.RUNNING, 'u1', {}, 0]);
  });
}

// ---- AttemptWrite without an attempt

const NO_ATTEMPT_WRITES: [string, AttemptWrite][] = [
  ['state SCHEDULED', { state: A.SCHEDULED }],
  ['a claim', { processUid: 'u1' }],
  ['details', { details: { a: 1 } }],
  ['progress', { progress: { message: 'hi' } }],
  ['a failure', { failure: { message: 'boom' } }],
];
for (const [label, w] of NO_ATTEMPT_WRITES) {
  test(`AttemptWrite (${label}) on a PLANNED stage with no attempt: FAILED_PRECONDITION`, async () => {
    const plan = await stageIn('PLANNED');
    await rejects(plan, [{ id: 's', currentAttempt: w }], FAILED_PRECONDITION, 'current_attempt');
    assert.equal((await stored(plan)).attempts.length, 0);
  });
}

// ---- failure, details, progress

for (const from of ['PENDING', 'SCHEDULED', 'RUNNING'] as const) {
  test(`a failure without state makes a ${from} attempt INCOMPLETE (and it is retried)`, async () => {
    const plan = await attemptIn(from, 3);
    const s = written(await attempt(plan, { failure: { message: 'boom' } }));
    const first = s.attempts[0]!;
    assert.equal(first.state, A.INCOMPLETE);
    assert.equal(first.failure?.message, 'boom');
    assert.deepEqual(s.attempts.map((a) => [a.idx, a.state]), [[1, A.INCOMPLETE], [2, A.PENDING]]);
  });
}

test('attempt details merge key by key; resending them is a no-op', async () => {
  const plan = await attemptIn('RUNNING');
  await attempt(plan, { details: { a: 1, b: 1 } });
  const a = current(written(await attempt(plan, { details: { b: 2, c: 'x' } })));
  assert.deepEqual(a.details, { a: 1, b: 2, c: 'x' });
  assert.equal(a.state, A.RUNNING);
  await noop(plan, { id: 's', currentAttempt: { details: { a: 1 } } });
  assert.deepEqual(current(await stored(plan)).details, { a: 1, b: 2, c: 'x' });
});

test('attempt progress appends entries and keeps the client timestamp', async () => {
  const plan = await attemptIn('RUNNING');
  const at = new Date('2020-01-02T03:04:05.678Z');
  await attempt(plan, { progress: { message: 'one', timestamp: at, details: { pct: 10 } } });
  await attempt(plan, { progress: { message: 'two' } });
  const a = current(await stored(plan));
  assert.equal(a.state, A.RUNNING);
  assert.deepEqual(a.progress.map((p) => p.message), ['one', 'two']);
  assert.equal(a.progress[0]!.timestamp?.toISOString(), at.toISOString());
  assert.deepEqual(a.progress[0]!.details, { pct: 10 });
  assert.ok(a.progress[1]!.timestamp instanceof Date, 'an entry without a timestamp still gets one');
});

// ---- compat: current_attempt COMPLETE and state FINAL in one write

for (const [label, w] of [
  ['without process_uid', { state: A.COMPLETE }],
  ['with the claimer’s process_uid', { state: A.COMPLETE, processUid: 'u1' }],
] as [string, AttemptWrite][]) {
  test(`compat: current_attempt COMPLETE + state FINAL ${label} finishes the stage`, async () => {
    const plan = await attemptIn('RUNNING');
    const s = written(await stage(plan, { id: 's', currentAttempt: w, state: S.FINAL }));
    assert.deepEqual([s.state, s.attempts.length, s.attempts[0]!.state], [S.FINAL, 1, A.COMPLETE]);
    assert.equal(s.failure, undefined, 'a completed stage is not a cancelled one');
  });
}

test('compat: current_attempt COMPLETE + state FINAL on a stage with an unfinished child leaves it AWAITING_GROUP', async () => {
  const plan = await newPlan();
  await write(plan, { checks: [{ id: 'gate' }], stages: [{ id: 's' }, { id: 'child', parentStageId: 's', dependencies: on('gate') }] });
  await attempt(plan, { processUid: 'u1' });
  const s = written(await stage(plan, { id: 's', currentAttempt: { state: A.COMPLETE }, state: S.FINAL }));
  assert.deepEqual([s.state, s.attempts[0]!.state], [S.AWAITING_GROUP, A.COMPLETE]);
  const res = await stage(plan, { id: 'child', state: S.FINAL });
  assert.equal(written(res, 'child').state, S.FINAL);
  assert.equal((await stored(plan)).state, S.FINAL, 'the last child going FINAL finishes the parent');
});

// ---- frozen stage fields: change only while PLANNED; identical values are a no-op

const FROZEN_BASE: StageWrite = { args: { a: 1 }, assignments: assign('a1'), executionMode: SYNC, runnerType: 'rt', maxAttempts: 2 };
const FROZEN: { field: string; change: StageWrite; same: (from: StageName) => StageWrite; changed: (s: Stage) => void }[] = [
  { field: 'args', change: { args: { b: 2 } }, same: () => ({ args: { a: 1 } }), changed: (s) => assert.deepEqual(s.args, { a: 1, b: 2 }) },
  { field: 'assignments', change: { assignments: assign('a2') }, same: () => ({ assignments: assign('a1') }),
    changed: (s) => assert.deepEqual(s.assignments, assign('a2')) },
  {
    field: 'dependencies',
    change: { dependencies: on('gate', 'done') },
    same: (from) => ({ dependencies: from === 'PLANNED' ? on('gate') : on('done') }),
    changed: (s) => assert.deepEqual(s.dependencies?.dependencies.map((d) => d.targetId), ['gate', 'done']),
  },
  { field: 'execution_mode', change: { executionMode: ASYNC }, same: () => ({ executionMode: SYNC }),
    changed: (s) => assert.equal(s.executionMode, ASYNC) },
  { field: 'runner_type', change: { runnerType: 'rt2' }, same: () => ({ runnerType: 'rt' }), changed: (s) => assert.equal(s.runnerType, 'rt2') },
  { field: 'max_attempts', change: { maxAttempts: 5 }, same: () => ({ maxAttempts: 2 }), changed: (s) => assert.equal(s.maxAttempts, 5) },
];
/** Like stageIn, with FROZEN_BASE fields, assigned checks a1/a2, and (unless PLANNED) a dependency on `done`. */
async function frozenStageIn(from: 'PLANNED' | 'ATTEMPTING' | 'FINAL'): Promise<string> {
  const plan = await newPlan();
  await write(plan, { checks: [{ id: 'a1' }, { id: 'a2' }, { id: 'gate' }, { id: 'done', state: CHECK_FINAL }] });
  await stage(plan, { ...FROZEN_BASE, id: 's', dependencies: on(from === 'PLANNED' ? 'gate' : 'done') });
  if (from === 'FINAL') await stage(plan, { id: 's', state: S.FINAL });
  assert.equal((await stored(plan)).state, S[from], `setup: s is ${from}`);
  return plan;
}
for (const f of FROZEN) {
  for (const from of ['PLANNED', 'ATTEMPTING', 'FINAL'] as const) {
    test(`stage ${f.field} while ${from}: ${from === 'PLANNED' ? 'changes' : 'FAILED_PRECONDITION'}`, async () => {
      const plan = await frozenStageIn(from);
      const w = { ...f.change, id: 's' };
      if (from !== 'PLANNED') {
        await rejects(plan, [w], FAILED_PRECONDITION, f.field);
        return;
      }
      const s = written(await stage(plan, w));
      f.changed(s);
      f.changed(await stored(plan));
      assert.equal(s.state, S.PLANNED);
    });
    test(`stage ${f.field} resent unchanged while ${from}: no-op`, async () => {
      const plan = await frozenStageIn(from);
      assert.equal((await noop(plan, { ...f.same(from), id: 's' })).state, S[from]);
    });
  }
}

// ---- cancellation

for (const from of ['PENDING', 'SCHEDULED', 'RUNNING'] as const) {
  test(`cancellation: a stage set FINAL with a ${from} attempt makes it INCOMPLETE and finishes assigned checks`, async () => {
    const plan = await attemptIn(from, 3, { assignments: assign('t') });
    const res = await stage(plan, { id: 's', state: S.FINAL });
    const s = written(res);
    assert.equal(s.state, S.FINAL);
    assert.deepEqual(s.attempts.map((a) => [a.idx, a.state]), [[1, A.INCOMPLETE]], 'no retry after cancellation');
    assert.ok(s.attempts[0]!.failure?.message, 'the cancelled attempt says why');
    assert.ok(s.failure?.message, 'the cancelled stage says why');
    const check = res.checks.find((c) => c.id === 't');
    assert.equal(check?.state, CHECK_FINAL, 'the assigned check is finished in the same write');
    assert.deepEqual(check!.results.map((r) => [r.ownerType, r.ownerId, Boolean(r.failure)]), [['stage', 's', true]]);
  });
}
