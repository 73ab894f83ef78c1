// WriteNodes as a whole request: atomicity, idempotent retries, optimistic concurrency, concurrent writers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { CheckState, NodeType, PredicateType, StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, serverPerFile } from '../support/server.js';

const suite = serverPerFile('writes');

const newWorkPlan = async () => (await suite.api.createWorkPlan({})).workPlan!.id;
const version = async (id: string) => Number((await suite.api.getWorkPlan({ id })).workPlan!.version);
const onCheck = (...ids: string[]) => ({
  predicate: PredicateType.PREDICATE_TYPE_AND,
  dependencies: ids.map((targetId) => ({ targetType: NodeType.NODE_TYPE_CHECK, targetId })),
});

async function rejects(p: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: ServiceError) => {
    assert.equal(err.code, code, `${status[err.code]}: ${err.details}`);
    assert.match(err.details, message);
    assert.doesNotMatch(err.details, /\n\s+at /, 'no stack trace reaches the client');
    return true;
  });
}

test('a request with one bad node appends nothing at all', async () => {
  const id = await newWorkPlan();
  const before = await version(id);
  await rejects(
    suite.api.writeNodes({
      workPlanId: id,
      checks: [{ id: 'ok-1' }, { id: 'ok-2', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [{ id: 's1' }, { id: 's2', dependencies: onCheck('missing') }],
    }),
    status.INVALID_ARGUMENT,
    /stages\[1\]\.dependencies\.dependencies\[0\]\.target_id.*no check "missing"/,
  );
  assert.equal(await version(id), before);
  const all = await suite.api.queryNodes({ workPlanId: id });
  assert.deepEqual([all.checks.length, all.stages.length], [0, 0]);
});

test('a retry with the same request_id returns the first answer and appends nothing', async () => {
  const id = await newWorkPlan();
  const req = { workPlanId: id, requestId: 'req-1', checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }], stages: [{ id: 's' }] };
  const first = await suite.api.writeNodes(req);
  const v = await version(id);
  // Something else changes the nodes after the first answer.
  await suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', state: CheckState.CHECK_STATE_FINAL }] });
  const retry = await suite.api.writeNodes(req);
  assert.deepEqual(retry, first);
  assert.equal(retry.checks[0]!.state, CheckState.CHECK_STATE_WAITING);
  assert.equal(await version(id), v + 1, 'only the other write appended');
});

test('expected_version: a stale version is ABORTED and appends nothing; the current one succeeds', async () => {
  const id = await newWorkPlan();
  const v = await version(id);
  await rejects(
    suite.api.writeNodes({ workPlanId: id, expectedVersion: BigInt(v + 3), checks: [{ id: 'c' }] }),
    status.ABORTED,
    /expected_version: workplan is at version 1, not 4/,
  );
  assert.equal(await version(id), v);
  const ok = await suite.api.writeNodes({ workPlanId: id, expectedVersion: BigInt(v), checks: [{ id: 'c' }] });
  assert.equal(ok.workPlanVersion, BigInt(v + 1));
});

test('unknown workplan is NOT_FOUND; malformed requests are INVALID_ARGUMENT naming the field', async () => {
  await rejects(suite.api.getWorkPlan({ id: 'nope' }), status.NOT_FOUND, /work_plan_id: no workplan "nope"/);
  await rejects(suite.api.writeNodes({ workPlanId: 'nope', checks: [{ id: 'c' }] }), status.NOT_FOUND, /no workplan/);
  await rejects(suite.api.queryNodes({ workPlanId: 'nope' }), status.NOT_FOUND, /no workplan/);
  const id = await newWorkPlan();
  await rejects(suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'has space' }] }), status.INVALID_ARGUMENT, /^checks\[0\]\.id: /);
  await rejects(
    suite.api.writeNodes({ workPlanId: id, stages: [{ id: 's', state: 77 as StageState }] }),
    status.INVALID_ARGUMENT,
    /stages\[0\]\.state: unknown stage state 77/,
  );
  await rejects(
    suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', dependencies: { dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'x' }] } }] }),
    status.INVALID_ARGUMENT,
    /checks\[0\]\.dependencies\.predicate: AND or OR is required/,
  );
});

test('concurrent writers on one workplan: every acknowledged write is there, versions gap-free', async () => {
  const id = await newWorkPlan();
  const writers = 8;
  const perWriter = 25;
  const clients = Array.from({ length: writers }, () => connect(suite.server.address));
  const acked = await Promise.all(
    clients.map(async (c, w) => {
      const versions: number[] = [];
      for (let i = 0; i < perWriter; i++) {
        const res = await c.api.writeNodes({
          workPlanId: id,
          checks: [{ id: `w${w}-c${i}`, state: CheckState.CHECK_STATE_PLANNED, dependencies: i > 0 ? onCheck(`w${w}-c${i - 1}`) : undefined }],
        });
        versions.push(Number(res.workPlanVersion));
      }
      return versions;
    }),
  );
  clients.forEach((c) => c.close());
  const all = acked.flat().sort((a, b) => a - b);
  assert.equal(new Set(all).size, all.length, 'no two writes got the same version');
  const nodes = await suite.api.queryNodes({ workPlanId: id, includeChecks: true });
  assert.equal(nodes.checks.length, writers * perWriter);
  assert.equal(Number(nodes.workPlanVersion), await version(id));
});

test('QueryNodes: filters combine with AND, creation order, paging', async () => {
  const id = await newWorkPlan();
  await suite.api.writeNodes({
    workPlanId: id,
    checks: Array.from({ length: 7 }, (_, i) => ({ id: `c${i}`, state: i % 2 ? CheckState.CHECK_STATE_PLANNED : undefined })),
    stages: [{ id: 's0' }, { id: 's1', dependencies: onCheck('c0') }],
  });
  const waiting = await suite.api.queryNodes({ workPlanId: id, checkStates: [CheckState.CHECK_STATE_WAITING], includeChecks: true });
  assert.deepEqual(waiting.checks.map((c) => c.id), ['c1', 'c3', 'c5']);
  assert.equal(waiting.stages.length, 0);
  const picked = await suite.api.queryNodes({ workPlanId: id, checkIds: ['c5', 'c1', 'c2'], checkStates: [CheckState.CHECK_STATE_WAITING] });
  assert.deepEqual(picked.checks.map((c) => c.id), ['c1', 'c5']);
  const planned = await suite.api.queryNodes({ workPlanId: id, stageStates: [StageState.STAGE_STATE_PLANNED], includeStages: true });
  assert.deepEqual(planned.stages.map((s) => s.id), ['s1']);

  const seen: string[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await suite.api.queryNodes({ workPlanId: id, pageSize: 3, pageToken });
    assert.ok(page.checks.length + page.stages.length <= 3);
    seen.push(...page.checks.map((c) => `c:${c.id}`), ...page.stages.map((s) => `s:${s.id}`));
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken && pages < 10);
  assert.deepEqual(seen, ['c:c0', 'c:c1', 'c:c2', 'c:c3', 'c:c4', 'c:c5', 'c:c6', 's:s0', 's:s1']);
  await rejects(suite.api.queryNodes({ workPlanId: id, pageToken: 'garbage' }), status.INVALID_ARGUMENT, /page_token/);
});

test('metadata given at creation is kept and returned; the server logs one line per RPC', async () => {
  const { workPlan } = await suite.api.createWorkPlan({ metadata: { repo: 'turboci', change: '42' } });
  const got = await suite.api.getWorkPlan({ id: workPlan!.id });
  assert.deepEqual(got.workPlan!.metadata, { repo: 'turboci', change: '42' });
  assert.equal(got.workPlan!.version, 1n);
  const line = await suite.server.waitForLog((l) => l.msg === 'rpc' && l.method === 'GetWorkPlan' && l.workPlanId === workPlan!.id);
  assert.equal(line.code, 'OK');
  assert.equal(typeof line.durationMs, 'number');
  assert.equal(typeof line.requestId, 'string');
});

test('omit_nodes: the answer is the version alone; the write is whole, and its retry may ask for the nodes', async () => {
  const id = await newWorkPlan();
  const req = { workPlanId: id, requestId: 'omit-1', checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }], stages: [{ id: 's' }] };
  const short = await suite.api.writeNodes({ ...req, omitNodes: true });
  assert.deepEqual([short.checks.length, short.stages.length, short.nodesOmitted], [0, 0, true]);
  assert.equal(short.workPlanVersion, BigInt(await version(id)));
  const all = await suite.api.queryNodes({ workPlanId: id });
  assert.deepEqual([all.checks.map((c) => c.state), all.stages.length], [[CheckState.CHECK_STATE_WAITING], 1]);
  // The same request_id without omit_nodes gets the first answer's nodes; with it, the first answer's version.
  const full = await suite.api.writeNodes(req);
  assert.deepEqual([full.checks.map((c) => c.id), full.stages.map((s) => s.id), full.nodesOmitted], [['c'], ['s'], false]);
  assert.equal(full.workPlanVersion, short.workPlanVersion);
  await suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'other' }] });
  assert.deepEqual(await suite.api.writeNodes({ ...req, omitNodes: true }), short);
});

test('a write whose nodes would pass 4 MiB is answered without them (nodes_omitted): it committed, and says so', async () => {
  const id = await newWorkPlan();
  // 20 stages of ~230 KiB of args each: a 4.6 MiB answer, more than a default client (this one) accepts.
  const blob = 'x'.repeat(230 * 1024);
  const stages = Array.from({ length: 20 }, (_, i) => ({ id: `big-${i}`, args: { blob } }));
  const answer = await suite.api.writeNodes({ workPlanId: id, stages });
  assert.deepEqual([answer.stages.length, answer.nodesOmitted], [0, true]);
  assert.equal(answer.workPlanVersion, BigInt(await version(id)));
  const found: string[] = [];
  let pageToken = '';
  do {
    const page = await suite.api.queryNodes({ workPlanId: id, includeStages: true, pageToken });
    for (const s of page.stages) {
      assert.equal(s.args?.blob, blob, `${s.id} holds its args`);
      found.push(s.id);
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  assert.deepEqual(found.sort(), stages.map((s) => s.id).sort());
  // A write of a few nodes still carries them.
  const small = await suite.api.writeNodes({ workPlanId: id, stages: [{ id: 'small' }] });
  assert.deepEqual([small.stages.map((s) => s.id), small.nodesOmitted], [['small'], false]);
});
