// Dependency resolution through a real server process and a real gRPC client: predicates, thresholds, chains,
// fan-in/fan-out, same-request targets, validation (dangling targets, cycles) and read-your-writes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { AttemptState, CheckState, NodeType, PredicateType, StageState } from '../src/gen/turboci/v1/common.js';
import type { Check } from '../src/gen/turboci/v1/check.js';
import type { Stage } from '../src/gen/turboci/v1/stage.js';
import type { WriteNodesResponse } from '../src/gen/turboci/v1/service.js';
import { serverPerFile, type Api } from './support/server.js';

const suite = serverPerFile('dependencies');

// ---- helpers

type Write = Parameters<Api['writeNodes']>[0];
type Edge = { targetType: NodeType; targetId: string };
const c = (id: string): Edge => ({ targetType: NodeType.NODE_TYPE_CHECK, targetId: id });
const s = (id: string): Edge => ({ targetType: NodeType.NODE_TYPE_STAGE, targetId: id });
const and = (...dependencies: Edge[]) => ({ predicate: PredicateType.PREDICATE_TYPE_AND, dependencies });
const or = (...dependencies: Edge[]) => ({ predicate: PredicateType.PREDICATE_TYPE_OR, dependencies });
const atLeast = (threshold: number, predicate: PredicateType, ...dependencies: Edge[]) => ({ predicate, threshold, dependencies });
type Group = { predicate?: PredicateType; threshold?: number; dependencies: Edge[] };
const range = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

const FINAL_CHECK = CheckState.CHECK_STATE_FINAL;
const PLANNED_STAGE = StageState.STAGE_STATE_PLANNED;
const ATTEMPTING = StageState.STAGE_STATE_ATTEMPTING;

async function plan(): Promise<string> {
  const { workPlan } = await suite.api.createWorkPlan({});
  return workPlan!.id;
}
const write = (workPlanId: string, w: Omit<Write, 'workPlanId'>) => suite.api.writeNodes({ workPlanId, ...w });
const finalize = (wp: string, ...ids: string[]) => write(wp, { checks: ids.map((id) => ({ id, state: FINAL_CHECK })) });
const version = async (wp: string) => (await suite.api.getWorkPlan({ id: wp })).workPlan!.version;

async function nodes(wp: string): Promise<{ checks: Map<string, Check>; stages: Map<string, Stage> }> {
  const r = await suite.api.queryNodes({ workPlanId: wp });
  return { checks: new Map(r.checks.map((x) => [x.id, x])), stages: new Map(r.stages.map((x) => [x.id, x])) };
}
const stageIn = (r: WriteNodesResponse, id: string) => r.stages.find((x) => x.id === id);
const checkIn = (r: WriteNodesResponse, id: string) => r.checks.find((x) => x.id === id);

/** A stage that the resolver started: ATTEMPTING with exactly attempt 1 PENDING. */
function assertStarted(stage: Stage | undefined, id: string): void {
  assert.ok(stage, `stage ${id} is missing`);
  assert.equal(stage.state, ATTEMPTING, `stage ${id} should be ATTEMPTING`);
  assert.equal(stage.attempts.length, 1, `stage ${id} should have one attempt`);
  assert.equal(stage.attempts[0]!.idx, 1);
  assert.equal(stage.attempts[0]!.state, AttemptState.ATTEMPT_STATE_PENDING);
}
async function stageState(wp: string, id: string): Promise<StageState | undefined> {
  return (await nodes(wp)).stages.get(id)?.state;
}

/** Claims and completes the current attempt of a stage, which makes it FINAL; returns the completing write. */
async function completeStage(wp: string, id: string): Promise<WriteNodesResponse> {
  await write(wp, { stages: [{ id, currentAttempt: { processUid: `proc-${id}` } }] });
  return write(wp, { stages: [{ id, currentAttempt: { state: AttemptState.ATTEMPT_STATE_COMPLETE } }] });
}

/** The write is rejected with `code`, its message contains every string in `needles`, and nothing was appended. */
async function assertRejected(wp: string, w: Omit<Write, 'workPlanId'>, code: status, needles: string[]): Promise<void> {
  const before = await version(wp);
  const known = await nodes(wp);
  await assert.rejects(write(wp, w), (err: ServiceError) => {
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.message}`);
    for (const n of needles) assert.ok(err.message.includes(n), `message "${err.message}" should contain "${n}"`);
    return true;
  });
  assert.equal(await version(wp), before, 'the workplan version must not change');
  const after = await nodes(wp);
  for (const w2 of w.checks ?? []) if (!known.checks.has(w2.id!)) assert.ok(!after.checks.has(w2.id!), `check ${w2.id} must not exist`);
  for (const w2 of w.stages ?? []) if (!known.stages.has(w2.id!)) assert.ok(!after.stages.has(w2.id!), `stage ${w2.id} must not exist`);
  assert.deepEqual(after, known, 'no node may change');
}

// ---- predicates and thresholds

describe('predicates', () => {
  // Each case: a stage depending on checks a, b, c with `group`; checks are finalized in `order`; `startsAfter` is
  // how many finalized checks it takes to start the stage.
  const cases: { name: string; group: Group; order: string[]; startsAfter: number }[] = [
    { name: 'AND waits for every edge', group: and(c('a'), c('b'), c('c')), order: ['c', 'a', 'b'], startsAfter: 3 },
    { name: 'OR needs one edge', group: or(c('a'), c('b'), c('c')), order: ['b', 'a', 'c'], startsAfter: 1 },
    { name: 'threshold 2 of 3 (predicate AND ignored)', group: atLeast(2, PredicateType.PREDICATE_TYPE_AND, c('a'), c('b'), c('c')), order: ['c', 'a', 'b'], startsAfter: 2 },
    { name: 'threshold 2 of 3 (predicate OR ignored)', group: atLeast(2, PredicateType.PREDICATE_TYPE_OR, c('a'), c('b'), c('c')), order: ['a', 'b', 'c'], startsAfter: 2 },
    { name: 'threshold equal to the edge count', group: atLeast(3, PredicateType.PREDICATE_TYPE_OR, c('a'), c('b'), c('c')), order: ['b', 'c', 'a'], startsAfter: 3 },
    { name: 'threshold 1 without a predicate', group: { threshold: 1, dependencies: [c('a'), c('b'), c('c')] }, order: ['c', 'b', 'a'], startsAfter: 1 },
  ];
  for (const k of cases) {
    test(k.name, async () => {
      const wp = await plan();
      const w0 = await write(wp, { checks: ['a', 'b', 'c'].map((id) => ({ id })), stages: [{ id: 'st', dependencies: k.group }] });
      assert.equal(stageIn(w0, 'st')!.state, PLANNED_STAGE);
      assert.equal(stageIn(w0, 'st')!.attempts.length, 0);
      for (let i = 0; i < k.order.length; i++) {
        const r = await finalize(wp, k.order[i]!);
        if (i + 1 < k.startsAfter) {
          assert.equal(stageIn(r, 'st'), undefined, `after ${i + 1} the resolver must not touch the stage`);
          assert.equal(await stageState(wp, 'st'), PLANNED_STAGE);
        } else if (i + 1 === k.startsAfter) {
          assertStarted(stageIn(r, 'st'), 'st');
        } else {
          assert.equal(stageIn(r, 'st'), undefined, 'an already started stage is not started again');
          assertStarted((await nodes(wp)).stages.get('st'), 'st');
        }
      }
    });
  }

  test('a threshold above the number of edges is INVALID_ARGUMENT and appends nothing', async () => {
    const wp = await plan();
    await write(wp, { checks: [{ id: 'a' }, { id: 'b' }] });
    await assertRejected(
      wp,
      { checks: [{ id: 'new' }], stages: [{ id: 'st', dependencies: atLeast(3, PredicateType.PREDICATE_TYPE_AND, c('a'), c('b')) }] },
      status.INVALID_ARGUMENT,
      ['stages[0].dependencies.threshold'],
    );
  });

  const empties: { name: string; group: Group | undefined }[] = [
    { name: 'absent', group: undefined },
    { name: 'empty AND', group: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [] } },
    { name: 'empty OR', group: { predicate: PredicateType.PREDICATE_TYPE_OR, dependencies: [] } },
    { name: 'empty without predicate', group: { dependencies: [] } },
  ];
  for (const k of empties) {
    test(`an ${k.name} group is satisfied at once (stage and check)`, async () => {
      const wp = await plan();
      const r = await write(wp, {
        checks: [{ id: 'ck', state: CheckState.CHECK_STATE_PLANNED, dependencies: k.group }],
        stages: [{ id: 'st', dependencies: k.group }],
      });
      assert.equal(checkIn(r, 'ck')!.state, CheckState.CHECK_STATE_WAITING);
      assertStarted(stageIn(r, 'st'), 'st');
    });
  }
});

// ---- shapes: chains, fan-in, fan-out

describe('shapes', () => {
  test('a chain a → b → c advances one link per FINAL', async () => {
    const wp = await plan();
    const w0 = await write(wp, { stages: [{ id: 'a' }, { id: 'b', dependencies: and(s('a')) }, { id: 'c', dependencies: and(s('b')) }] });
    assertStarted(stageIn(w0, 'a'), 'a');
    assert.equal(stageIn(w0, 'b')!.state, PLANNED_STAGE);
    assert.equal(stageIn(w0, 'c')!.state, PLANNED_STAGE);

    const w1 = await completeStage(wp, 'a');
    assert.equal(stageIn(w1, 'a')!.state, StageState.STAGE_STATE_FINAL);
    assertStarted(stageIn(w1, 'b'), 'b');
    assert.equal(stageIn(w1, 'c'), undefined, 'c must not move before b is FINAL');
    assert.equal(await stageState(wp, 'c'), PLANNED_STAGE);

    const w2 = await completeStage(wp, 'b');
    assertStarted(stageIn(w2, 'c'), 'c');
  });

  test('a chain of checks: each PLANNED link goes WAITING when the previous one is FINAL', async () => {
    const wp = await plan();
    const P = CheckState.CHECK_STATE_PLANNED;
    const w0 = await write(wp, {
      checks: [{ id: 'x', state: P }, { id: 'y', state: P, dependencies: and(c('x')) }, { id: 'z', state: P, dependencies: and(c('y')) }],
    });
    assert.deepEqual(w0.checks.map((k) => k.state), [CheckState.CHECK_STATE_WAITING, P, P]);
    const w1 = await finalize(wp, 'x');
    assert.equal(checkIn(w1, 'y')!.state, CheckState.CHECK_STATE_WAITING);
    assert.equal(checkIn(w1, 'z'), undefined);
    const w2 = await finalize(wp, 'y');
    assert.equal(checkIn(w2, 'z')!.state, CheckState.CHECK_STATE_WAITING);
  });

  test('fan-in: a stage on 50 checks starts only when the last one is FINAL', async () => {
    const wp = await plan();
    const ids = range(50, 'in-');
    await write(wp, { checks: ids.map((id) => ({ id })), stages: [{ id: 'sink', dependencies: and(...ids.map(c)) }] });
    // Finalize in a scrambled order, one write each; the last one is 'in-17'.
    const order = [...ids.filter((id) => id !== 'in-17').reverse(), 'in-17'];
    for (const id of order.slice(0, -1)) {
      const r = await finalize(wp, id);
      assert.equal(stageIn(r, 'sink'), undefined, `sink must not move when ${id} goes FINAL`);
    }
    assert.equal(await stageState(wp, 'sink'), PLANNED_STAGE);
    const last = await finalize(wp, 'in-17');
    assertStarted(stageIn(last, 'sink'), 'sink');
  });

  test('fan-out: 50 stages on one check all start in the write that finalizes it', async () => {
    const wp = await plan();
    const ids = range(50, 'out-');
    const w0 = await write(wp, { checks: [{ id: 'root' }], stages: ids.map((id) => ({ id, dependencies: and(c('root')) })) });
    assert.ok(w0.stages.every((x) => x.state === PLANNED_STAGE));
    const r = await finalize(wp, 'root');
    assert.deepEqual(r.stages.map((x) => x.id).sort(), [...ids].sort());
    for (const id of ids) assertStarted(stageIn(r, id), id);
    const now = await nodes(wp);
    for (const id of ids) assertStarted(now.stages.get(id), id);
  });
});

// ---- targets in the same request; dangling targets; cycles

describe('validation', () => {
  test('targets created in the same request: checks first, then stages, forward references allowed', async () => {
    const wp = await plan();
    const r = await write(wp, {
      checks: [
        { id: 'k1', state: CheckState.CHECK_STATE_PLANNED },
        { id: 'k2', state: CheckState.CHECK_STATE_PLANNED, dependencies: and(s('late'), c('k1')) },
      ],
      stages: [
        { id: 'early', dependencies: and(s('late'), c('k2')) },
        { id: 'late', dependencies: or(c('k1')) },
      ],
    });
    assert.equal(checkIn(r, 'k1')!.state, CheckState.CHECK_STATE_WAITING);
    assert.equal(checkIn(r, 'k2')!.state, CheckState.CHECK_STATE_PLANNED);
    assert.equal(stageIn(r, 'early')!.state, PLANNED_STAGE);
    assert.equal(stageIn(r, 'late')!.state, PLANNED_STAGE);
    assert.deepEqual(stageIn(r, 'early')!.dependencies!.dependencies, [s('late'), c('k2')]);

    const r2 = await finalize(wp, 'k1');
    assertStarted(stageIn(r2, 'late'), 'late');
    assert.equal(stageIn(r2, 'early'), undefined);
  });

  const dangling: { name: string; setup?: Omit<Write, 'workPlanId'>; w: Omit<Write, 'workPlanId'>; field: string }[] = [
    { name: 'stage on a missing check', w: { stages: [{ id: 'st', dependencies: and(c('ghost')) }] }, field: 'stages[0].dependencies.dependencies[0].target_id' },
    {
      name: 'second edge of the second stage',
      setup: { checks: [{ id: 'real' }] },
      w: { checks: [{ id: 'new' }], stages: [{ id: 's0' }, { id: 's1', dependencies: or(c('real'), s('ghost')) }] },
      field: 'stages[1].dependencies.dependencies[1].target_id',
    },
    { name: 'check on a missing stage', w: { checks: [{ id: 'k', dependencies: and(s('ghost')) }] }, field: 'checks[0].dependencies.dependencies[0].target_id' },
    {
      name: 'edge of the wrong kind (a check id named as a stage)',
      setup: { checks: [{ id: 'only-a-check' }] },
      w: { stages: [{ id: 'st', dependencies: and(s('only-a-check')) }] },
      field: 'stages[0].dependencies.dependencies[0].target_id',
    },
    {
      name: 'amending an existing node to a missing target',
      setup: { checks: [{ id: 'k' }], stages: [{ id: 'st', dependencies: and(c('k')) }] },
      w: { stages: [{ id: 'st', dependencies: and(c('k'), c('ghost')) }] },
      field: 'stages[0].dependencies.dependencies[1].target_id',
    },
  ];
  for (const k of dangling) {
    test(`dangling target: ${k.name} → INVALID_ARGUMENT naming ${k.field}, nothing appended`, async () => {
      const wp = await plan();
      if (k.setup) await write(wp, k.setup);
      await assertRejected(wp, k.w, status.INVALID_ARGUMENT, [k.field]);
    });
  }

  const cycles: { name: string; setup?: Omit<Write, 'workPlanId'>; w: Omit<Write, 'workPlanId'> }[] = [
    { name: 'a stage on itself', w: { stages: [{ id: 'me', dependencies: and(s('me')) }] } },
    { name: 'a check on itself', w: { checks: [{ id: 'me', dependencies: or(c('me')) }] } },
    { name: 'two new stages', w: { stages: [{ id: 'p', dependencies: and(s('q')) }, { id: 'q', dependencies: and(s('p')) }] } },
    { name: 'a new check and a new stage', w: { checks: [{ id: 'k', dependencies: and(s('st')) }], stages: [{ id: 'st', dependencies: and(c('k')) }] } },
    {
      name: 'through existing checks amended while PLANNING',
      setup: { checks: [{ id: 'a' }, { id: 'b', dependencies: and(c('a')) }, { id: 'c', dependencies: and(c('b')) }] },
      w: { checks: [{ id: 'a', dependencies: and(c('c')) }] },
    },
    {
      name: 'through an existing PLANNED stage amended to depend on its dependent',
      setup: { checks: [{ id: 'gate' }], stages: [{ id: 'up', dependencies: and(c('gate')) }, { id: 'down', dependencies: and(s('up')) }] },
      w: { stages: [{ id: 'up', dependencies: and(c('gate'), s('down')) }] },
    },
    {
      name: 'a new node closing a loop over an existing PLANNING check',
      setup: { checks: [{ id: 'old' }] },
      w: { checks: [{ id: 'old', dependencies: and(s('fresh')) }], stages: [{ id: 'fresh', dependencies: and(c('old')) }] },
    },
    {
      name: 'an edge inside a threshold group',
      w: { stages: [{ id: 'x' }, { id: 'y', dependencies: atLeast(1, PredicateType.PREDICATE_TYPE_OR, s('x'), s('y')) }] },
    },
  ];
  for (const k of cycles) {
    test(`cycle: ${k.name} → INVALID_ARGUMENT mentioning the cycle, nothing appended`, async () => {
      const wp = await plan();
      if (k.setup) await write(wp, k.setup);
      await assertRejected(wp, k.w, status.INVALID_ARGUMENT, ['cycle']);
    });
  }
});

// ---- when and why things advance

describe('resolution', () => {
  test('a later write that amends a PLANNED stage onto FINAL targets starts it in that write', async () => {
    const wp = await plan();
    await write(wp, { checks: [{ id: 'open' }, { id: 'done', state: FINAL_CHECK }], stages: [{ id: 'st', dependencies: and(c('open')) }] });
    assert.equal(await stageState(wp, 'st'), PLANNED_STAGE);
    const r = await write(wp, { stages: [{ id: 'st', dependencies: and(c('done')) }] });
    assertStarted(stageIn(r, 'st'), 'st');
  });

  test('a dependency target moving to PLANNED does not start the dependent; its FINAL in a later write does', async () => {
    const wp = await plan();
    await write(wp, { checks: [{ id: 'k' }], stages: [{ id: 'st', dependencies: and(c('k')) }] });
    const r1 = await write(wp, { checks: [{ id: 'k', state: CheckState.CHECK_STATE_PLANNED }] });
    assert.equal(stageIn(r1, 'st'), undefined, 'PLANNED is not FINAL: the stage waits');
    const r2 = await finalize(wp, 'k');
    assertStarted(stageIn(r2, 'st'), 'st');
  });

  test("a check's dependencies: PLANNED goes WAITING only when they are satisfied", async () => {
    const wp = await plan();
    const P = CheckState.CHECK_STATE_PLANNED;
    const w0 = await write(wp, { checks: [{ id: 'dep' }, { id: 'k', dependencies: and(c('dep')) }] });
    assert.equal(checkIn(w0, 'k')!.state, CheckState.CHECK_STATE_PLANNING);
    const w1 = await write(wp, { checks: [{ id: 'k', state: P }] });
    assert.equal(checkIn(w1, 'k')!.state, P, 'unsatisfied: stays PLANNED');
    await assert.rejects(write(wp, { checks: [{ id: 'k', state: CheckState.CHECK_STATE_WAITING }] }), (e: ServiceError) => e.code === status.FAILED_PRECONDITION);
    const w2 = await finalize(wp, 'dep');
    assert.equal(checkIn(w2, 'k')!.state, CheckState.CHECK_STATE_WAITING);
  });

  test('a PLANNING check with satisfied dependencies waits for PLANNED, then goes WAITING in the same write', async () => {
    const wp = await plan();
    await write(wp, { checks: [{ id: 'dep', state: FINAL_CHECK }, { id: 'k', dependencies: and(c('dep')) }] });
    assert.equal((await nodes(wp)).checks.get('k')!.state, CheckState.CHECK_STATE_PLANNING);
    const r = await write(wp, { checks: [{ id: 'k', state: CheckState.CHECK_STATE_PLANNED }] });
    assert.equal(checkIn(r, 'k')!.state, CheckState.CHECK_STATE_WAITING);
  });

  test('an edge is satisfied whatever the outcome: a failed check and a cancelled stage both count', async () => {
    const wp = await plan();
    await write(wp, {
      checks: [{ id: 'bad' }],
      stages: [{ id: 'gate', dependencies: and(c('bad')) }, { id: 'victim' }, { id: 'after', dependencies: and(c('bad'), s('victim')) }],
    });
    const r1 = await write(wp, {
      checks: [{ id: 'bad', result: { ownerType: 'test', ownerId: 't', failure: { message: 'boom' }, finalize: true }, state: FINAL_CHECK }],
    });
    assert.ok(checkIn(r1, 'bad')!.results[0]!.failure, 'the check carries its failure');
    assertStarted(stageIn(r1, 'gate'), 'gate');
    assert.equal(stageIn(r1, 'after'), undefined);
    const r2 = await write(wp, { stages: [{ id: 'victim', state: StageState.STAGE_STATE_FINAL }] });
    assert.ok(stageIn(r2, 'victim')!.failure, 'the cancelled stage records why it ended');
    assertStarted(stageIn(r2, 'after'), 'after');
  });

  test('read-your-writes: the response holds the written nodes and every dependent the resolver advanced', async () => {
    const wp = await plan();
    await write(wp, {
      checks: [{ id: 'k' }, { id: 'watcher', state: CheckState.CHECK_STATE_PLANNED, dependencies: and(c('k')) }, { id: 'bystander' }],
      stages: [{ id: 'st', dependencies: or(c('k'), c('bystander')) }, { id: 'idle', dependencies: and(c('bystander')) }],
    });
    const r = await finalize(wp, 'k');
    assert.equal(r.checks[0]!.id, 'k', 'the written node comes first');
    assert.deepEqual(r.checks.map((x) => x.id).sort(), ['k', 'watcher']);
    assert.deepEqual(r.stages.map((x) => x.id), ['st']);
    assert.equal(checkIn(r, 'k')!.state, FINAL_CHECK);
    assert.equal(checkIn(r, 'watcher')!.state, CheckState.CHECK_STATE_WAITING);
    assertStarted(stageIn(r, 'st'), 'st');
    // The response is exactly what a later read sees, at the version it reports.
    assert.equal(r.workPlanVersion, await version(wp));
    const now = await nodes(wp);
    assert.deepEqual(stageIn(r, 'st'), now.stages.get('st'));
    assert.deepEqual(checkIn(r, 'watcher'), now.checks.get('watcher'));
  });
});
