// The check state machine, driven through a real server process and a real gRPC client (semantics.md, "Check").
// Every case gets a fresh workplan; illegal writes must fail with the right code and append nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Check } from '../src/gen/turboci/v1/check.js';
import { CheckState, NodeType, PredicateType } from '../src/gen/turboci/v1/common.js';
import type { WriteNodesResponse } from '../src/gen/turboci/v1/service.js';
import { serverPerFile, type Api } from './support/server.js';

const INVALID_ARGUMENT = 3;
const FAILED_PRECONDITION = 9;
const { CHECK_STATE_PLANNING: PLANNING, CHECK_STATE_PLANNED: PLANNED, CHECK_STATE_WAITING: WAITING, CHECK_STATE_FINAL: FINAL } =
  CheckState;
const STATES = [PLANNING, PLANNED, WAITING, FINAL];
const CLIENT_TRANSITIONS = new Set([`${PLANNING}>${PLANNED}`, `${PLANNING}>${FINAL}`, `${PLANNED}>${FINAL}`, `${WAITING}>${FINAL}`]);
const name = (s: CheckState) => CheckState[s]!.replace('CHECK_STATE_', '');

type Req = Parameters<Api['writeNodes']>[0];
type CheckWrite = NonNullable<Req['checks']>[number];

const suite = serverPerFile('check-state-machine');

// ---- helpers

const on = (...ids: string[]) => ({
  predicate: PredicateType.PREDICATE_TYPE_AND,
  dependencies: ids.map((targetId) => ({ targetType: NodeType.NODE_TYPE_CHECK, targetId })),
});
const targets = (c: Check) => c.dependencies?.dependencies.map((d) => d.targetId) ?? [];

async function newPlan(): Promise<string> {
  const { workPlan } = await suite.api.createWorkPlan({});
  return workPlan!.id;
}
const write = (workPlanId: string, ...checks: CheckWrite[]) => suite.api.writeNodes({ workPlanId, checks });
const version = async (id: string) => (await suite.api.getWorkPlan({ id })).workPlan!.version;
const written = (res: WriteNodesResponse, id = 'c') => res.checks.find((c) => c.id === id)!;

async function stored(workPlanId: string, id = 'c'): Promise<Check> {
  const res = await suite.api.queryNodes({ workPlanId, checkIds: [id], includeChecks: true });
  assert.equal(res.checks.length, 1, `check ${id} exists`);
  return res.checks[0]!;
}

/** Asserts the write fails with `code`, the message mentions each of `mentions`, and the workplan did not change. */
async function rejects(workPlanId: string, checks: CheckWrite[], code: number, ...mentions: string[]): Promise<void> {
  const before = await version(workPlanId);
  await assert.rejects(suite.api.writeNodes({ workPlanId, checks }), (err: { code: number; message: string }) => {
    assert.equal(err.code, code, err.message);
    for (const m of mentions) assert.ok(err.message.includes(m), `"${err.message}" should mention "${m}"`);
    return true;
  });
  assert.equal(await version(workPlanId), before, 'a rejected write appends nothing');
}

/** Asserts the write succeeds and appends nothing. */
async function noop(workPlanId: string, check: CheckWrite): Promise<Check> {
  const before = await version(workPlanId);
  const beforeNode = await stored(workPlanId, check.id!);
  const res = await write(workPlanId, check);
  assert.equal(res.workPlanVersion, before, 'response version unchanged');
  assert.equal(await version(workPlanId), before, 'a no-op appends nothing');
  assert.equal(written(res, check.id!).version, beforeNode.version, 'node version unchanged');
  return written(res, check.id!);
}

/**
 * A workplan holding helper checks (`dep`, `dep2` PLANNING; `done` FINAL) and check `c` (kind "k", options {a:1})
 * in `from`. PLANNING/PLANNED/FINAL `c` depends on `dep` (unsatisfied, so PLANNED stays PLANNED); WAITING `c`
 * depends on `done`.
 */
async function planWith(from: CheckState): Promise<string> {
  const plan = await newPlan();
  const base = { id: 'c', kind: 'k', options: { a: 1 } };
  const c: CheckWrite =
    from === WAITING ? { ...base, dependencies: on('done'), state: PLANNED } : { ...base, dependencies: on('dep'), state: from };
  const res = await write(plan, { id: 'dep' }, { id: 'dep2' }, { id: 'done', state: FINAL }, c);
  assert.equal(written(res).state, from, `setup: c is ${name(from)}`);
  return plan;
}
const depsOf = (from: CheckState) => on(from === WAITING ? 'done' : 'dep');

// ---- client transitions: every from-state × every requested state

for (const from of STATES) {
  for (const to of STATES) {
    const outcome =
      from === FINAL ? 'FAILED_PRECONDITION' : from === to ? 'no-op' : CLIENT_TRANSITIONS.has(`${from}>${to}`) ? name(to) : 'FAILED_PRECONDITION';
    test(`check ${name(from)} -> ${name(to)}: ${outcome}`, async () => {
      const plan = await planWith(from);
      if (outcome === 'FAILED_PRECONDITION') {
        await rejects(plan, [{ id: 'c', state: to }], FAILED_PRECONDITION);
        assert.equal((await stored(plan)).state, from);
      } else if (outcome === 'no-op') {
        assert.equal((await noop(plan, { id: 'c', state: to })).state, from);
      } else {
        const before = await version(plan);
        const res = await write(plan, { id: 'c', state: to });
        assert.equal(written(res).state, to);
        assert.equal(res.workPlanVersion, before + 1n, 'one state change, one event');
        assert.equal(await version(plan), res.workPlanVersion);
        assert.equal((await stored(plan)).state, to);
      }
    });
  }
}

// ---- creation

const CREATION: { write: CheckWrite; expect: CheckState | 'FAILED_PRECONDITION'; label: string }[] = [
  { label: 'no state -> PLANNING', write: { id: 'c', dependencies: on('dep') }, expect: PLANNING },
  { label: 'PLANNED with an unsatisfied dependency -> PLANNED', write: { id: 'c', dependencies: on('dep'), state: PLANNED }, expect: PLANNED },
  { label: 'FINAL -> FINAL', write: { id: 'c', state: FINAL }, expect: FINAL },
  { label: 'WAITING -> FAILED_PRECONDITION', write: { id: 'c', state: WAITING }, expect: 'FAILED_PRECONDITION' },
];
for (const c of CREATION) {
  test(`check created ${c.label}`, async () => {
    const plan = await newPlan();
    await write(plan, { id: 'dep' });
    if (c.expect === 'FAILED_PRECONDITION') {
      await rejects(plan, [c.write], FAILED_PRECONDITION, 'checks[0].state');
      const res = await suite.api.queryNodes({ workPlanId: plan, checkIds: ['c'], includeChecks: true });
      assert.equal(res.checks.length, 0, 'the check was not created');
      return;
    }
    const res = await write(plan, c.write);
    assert.equal(written(res).state, c.expect);
    assert.equal((await stored(plan)).state, c.expect);
  });
}

// ---- PLANNED -> WAITING is the resolver's

test('resolver: a check created PLANNED without dependencies is WAITING in the same response', async () => {
  const plan = await newPlan();
  const res = await write(plan, { id: 'c', state: PLANNED });
  assert.equal(written(res).state, WAITING);
  assert.equal((await stored(plan)).state, WAITING);
});

test('resolver: a PLANNED check goes WAITING in the write that makes its dependency FINAL', async () => {
  const plan = await newPlan();
  await write(plan, { id: 'dep' }, { id: 'c', dependencies: on('dep'), state: PLANNED });
  assert.equal((await stored(plan)).state, PLANNED);
  const res = await write(plan, { id: 'dep', state: FINAL });
  assert.equal(written(res, 'dep').state, FINAL);
  assert.equal(written(res).state, WAITING, 'the response includes the check the resolver moved');
  assert.equal((await stored(plan)).state, WAITING);
});

test('resolver: a PLANNING check moved to PLANNED with a satisfied dependency lands WAITING', async () => {
  const plan = await newPlan();
  await write(plan, { id: 'done', state: FINAL }, { id: 'c', dependencies: on('done') });
  const res = await write(plan, { id: 'c', state: PLANNED });
  assert.equal(written(res).state, WAITING);
});

// ---- frozen fields: kind, options, dependencies change only while PLANNING

const FIELDS: { field: string; change: CheckWrite; same: (from: CheckState) => CheckWrite; changed: (c: Check) => void }[] = [
  { field: 'kind', change: { kind: 'k2' } as CheckWrite, same: () => ({ kind: 'k' }) as CheckWrite, changed: (c) => assert.equal(c.kind, 'k2') },
  {
    field: 'options',
    change: { options: { b: 2 } } as CheckWrite,
    same: () => ({ options: { a: 1 } }) as CheckWrite,
    changed: (c) => assert.deepEqual(c.options, { a: 1, b: 2 }),
  },
  {
    field: 'dependencies',
    change: { dependencies: on('dep2') } as CheckWrite,
    same: (from) => ({ dependencies: depsOf(from) }) as CheckWrite,
    changed: (c) => assert.deepEqual(targets(c), ['dep2']),
  },
];
for (const f of FIELDS) {
  for (const from of [PLANNING, PLANNED, WAITING]) {
    const outcome = from === PLANNING ? 'changes' : 'FAILED_PRECONDITION';
    test(`check ${f.field} while ${name(from)}: ${outcome}`, async () => {
      const plan = await planWith(from);
      const w = { ...f.change, id: 'c' };
      if (from !== PLANNING) {
        await rejects(plan, [w], FAILED_PRECONDITION);
        return;
      }
      const res = await write(plan, w);
      f.changed(written(res));
      f.changed(await stored(plan));
      assert.equal(written(res).state, PLANNING);
    });
    test(`check ${f.field} resent unchanged while ${name(from)}: no-op`, async () => {
      const plan = await planWith(from);
      const c = await noop(plan, { ...f.same(from), id: 'c' });
      assert.equal(c.state, from);
    });
  }
}

// ---- results

for (const from of [PLANNING, PLANNED, WAITING]) {
  test(`check results are appended while ${name(from)}; finalize stamps finalized_at`, async () => {
    const plan = await planWith(from);
    const r1 = written(await write(plan, { id: 'c', result: { ownerType: 'stage', ownerId: 's1', data: { ok: true } } }));
    assert.equal(r1.state, from, 'adding a result does not move the check');
    assert.equal(r1.results.length, 1);
    assert.equal(r1.results[0]!.finalizedAt, undefined, 'not finalized without finalize');
    const r2 = written(
      await write(plan, { id: 'c', result: { ownerType: 'stage', ownerId: 's2', data: { n: 2 }, finalize: true, failure: { message: 'boom' } } }),
    );
    assert.equal(r2.state, from);
    const [a, b] = (await stored(plan)).results;
    assert.deepEqual([a!.ownerType, a!.ownerId, a!.data, a!.failure], ['stage', 's1', { ok: true }, undefined]);
    assert.deepEqual([b!.ownerType, b!.ownerId, b!.data, b!.failure?.message], ['stage', 's2', { n: 2 }, 'boom']);
    assert.ok(b!.finalizedAt instanceof Date, 'finalize stamps finalized_at');
    assert.ok(a!.createdAt instanceof Date && b!.createdAt instanceof Date);
    assert.notEqual(a!.id, b!.id, 'results have distinct ids');
  });
}

test('check result with finalize and state FINAL in one write', async () => {
  const plan = await planWith(PLANNED);
  const c = written(await write(plan, { id: 'c', result: { ownerType: 'stage', ownerId: 's', finalize: true }, state: FINAL }));
  assert.equal(c.state, FINAL);
  assert.equal(c.results.length, 1);
  assert.ok(c.results[0]!.finalizedAt instanceof Date);
});

const FINAL_WRITES: [string, Omit<CheckWrite, 'id'>][] = [
  ['a bare write naming it', {}],
  ['state FINAL again', { state: FINAL }],
  ['a result', { result: { ownerType: 'stage', ownerId: 's', data: { late: true } } }],
  ['a finalizing result', { result: { ownerType: 'stage', ownerId: 's', finalize: true } }],
  ['its own kind', { kind: 'k' }],
  ['its own options', { options: { a: 1 } }],
  ['its own dependencies', { dependencies: on('dep') }],
  ['a new kind', { kind: 'other' }],
];
for (const [label, w] of FINAL_WRITES) {
  test(`check FINAL rejects ${label}: FAILED_PRECONDITION`, async () => {
    const plan = await planWith(FINAL);
    await rejects(plan, [{ ...w, id: 'c' }], FAILED_PRECONDITION);
    const c = await stored(plan);
    assert.equal(c.results.length, 0);
    assert.equal(c.kind, 'k');
  });
}

// ---- merging and versions

test('check options merge key by key', async () => {
  const plan = await newPlan();
  await write(plan, { id: 'c', options: { a: 1, b: 2 } });
  const c = written(await write(plan, { id: 'c', options: { b: 3, c: 'x' } }));
  assert.deepEqual(c.options, { a: 1, b: 3, c: 'x' });
  assert.deepEqual((await stored(plan)).options, { a: 1, b: 3, c: 'x' });
});

test('check version counts changes to the node, including the resolver’s', async () => {
  const plan = await newPlan();
  const steps: [CheckWrite, number, number][] = [
    // write, expected node version, expected workplan version
    [{ id: 'c', kind: 'k' }, 1, 2],
    [{ id: 'c', kind: 'k2' }, 2, 3],
    [{ id: 'c', kind: 'k2' }, 2, 3], // identical: no change
    [{ id: 'c', result: { ownerType: 'x', ownerId: 'y' } }, 3, 4],
    [{ id: 'c', state: PLANNED }, 5, 6], // PLANNED, then WAITING by the resolver
    [{ id: 'c', state: FINAL }, 6, 7],
  ];
  for (const [w, node, wp] of steps) {
    const res = await write(plan, w);
    assert.equal(written(res).version, BigInt(node), JSON.stringify(w));
    assert.equal(res.workPlanVersion, BigInt(wp));
    assert.equal(await version(plan), BigInt(wp));
    assert.equal((await stored(plan)).version, BigInt(node));
  }
});

// ---- INVALID_ARGUMENT: the message names the field; a valid write before it in the request is not applied

const INVALID: [string, CheckWrite, ...string[]][] = [
  ['empty id', { id: '' }, 'checks[1].id'],
  ['id with a space', { id: 'a b' }, 'checks[1].id'],
  ['257-character id', { id: 'x'.repeat(257) }, 'checks[1].id'],
  ['unknown state 99', { id: 'c', state: 99 as CheckState }, 'checks[1].state'],
  ['unknown state 25', { id: 'c', state: 25 as CheckState }, 'checks[1].state'],
  [
    'unknown dependency target_type',
    { id: 'c', dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: 7 as NodeType, targetId: 'dep' }] } },
    'checks[1].dependencies.dependencies[0].target_type',
  ],
  [
    'unknown predicate',
    { id: 'c', dependencies: { predicate: 9 as PredicateType, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'dep' }] } },
    'checks[1].dependencies.predicate',
  ],
  ['dependency on an unknown check', { id: 'c', dependencies: on('nope') }, 'checks[1].dependencies.dependencies[0].target_id', 'nope'],
  [
    'dependency on an unknown stage',
    {
      id: 'c',
      dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_STAGE, targetId: 'ghost' }] },
    },
    'checks[1].dependencies.dependencies[0].target_id',
    'ghost',
  ],
];
for (const [label, bad, ...mentions] of INVALID) {
  test(`check write with ${label}: INVALID_ARGUMENT naming the field`, async () => {
    const plan = await newPlan();
    await write(plan, { id: 'dep' });
    await rejects(plan, [{ id: 'ok' }, bad], INVALID_ARGUMENT, ...mentions);
    const res = await suite.api.queryNodes({ workPlanId: plan, includeChecks: true });
    assert.deepEqual(res.checks.map((c) => c.id), ['dep'], 'nothing in the request was applied');
  });
}

test('check ids of 256 printable characters are accepted', async () => {
  const plan = await newPlan();
  const id = 'é'.repeat(128) + 'x'.repeat(128);
  const res = await write(plan, { id });
  assert.equal(written(res, id).state, PLANNING);
});

test('check update with an unknown state number on an existing check: INVALID_ARGUMENT', async () => {
  const plan = await planWith(PLANNED);
  await rejects(plan, [{ id: 'c', state: 35 as CheckState }], INVALID_ARGUMENT, 'checks[0].state');
  assert.equal((await stored(plan)).state, PLANNED);
});
