// Issue 17 over real gRPC against a real server process: nested dependency groups, transactions against what the
// writer read, approval gates (Approve RPC and the `turboci approve` CLI).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import {
  ApprovalDecision,
  AttemptState,
  CheckState,
  NodeType,
  PredicateType,
  StageState,
  type DependencyGroup,
} from '../../src/gen/turboci/v1/common.js';
import { WatchWorkPlanRequest, type WorkPlanEvent } from '../../src/gen/turboci/v1/service.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { createToken, outcome } from '../security/support.js';
import { BIN, connect, serverPerFile, startServer, tempDir } from '../support/server.js';
import { cliNeedsFile } from '../support/store.js';

const suite = serverPerFile('graph');

const newWorkPlan = async () => (await suite.api.createWorkPlan({})).workPlan!.id;
const AND = PredicateType.PREDICATE_TYPE_AND;
const OR = PredicateType.PREDICATE_TYPE_OR;
const group = (predicate: PredicateType, checks: string[], groups: Partial<DependencyGroup>[] = [], threshold = 0): Partial<DependencyGroup> => ({
  predicate,
  threshold,
  dependencies: checks.map((targetId) => ({ targetType: NodeType.NODE_TYPE_CHECK, targetId })),
  groups: groups as DependencyGroup[],
});
const planned = (...ids: string[]) => ids.map((id) => ({ id, state: CheckState.CHECK_STATE_PLANNED }));
const final = (...ids: string[]) => ids.map((id) => ({ id, state: CheckState.CHECK_STATE_FINAL }));

async function rejects(p: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: ServiceError) => {
    assert.equal(err.code, code, `${status[err.code]}: ${err.details}`);
    assert.match(err.details, message);
    assert.doesNotMatch(err.details, /\n\s+at /, 'no stack trace reaches the client');
    return true;
  });
}

const stageOf = async (workPlanId: string, id: string) => (await suite.api.queryNodes({ workPlanId, stageIds: [id], includeStages: true })).stages[0]!;
const checkOf = async (workPlanId: string, id: string) => (await suite.api.queryNodes({ workPlanId, checkIds: [id], includeChecks: true })).checks[0]!;

// ---- nested dependency groups

test('(linux AND linux-tests) OR (mac AND mac-tests): the stage starts when one whole sub-group is FINAL', async () => {
  const workPlanId = await newWorkPlan();
  const deps = group(OR, [], [group(AND, ['linux', 'linux-tests']), group(AND, ['mac', 'mac-tests'])]);
  const w = await suite.api.writeNodes({ workPlanId, checks: planned('linux', 'linux-tests', 'mac', 'mac-tests'), stages: [{ id: 'deploy', dependencies: deps }] });
  assert.deepEqual(w.stages[0]!.dependencies!.groups.map((g) => g.dependencies.map((d) => d.targetId)), [['linux', 'linux-tests'], ['mac', 'mac-tests']]);
  await suite.api.writeNodes({ workPlanId, checks: final('linux', 'mac') });
  assert.equal((await stageOf(workPlanId, 'deploy')).state, StageState.STAGE_STATE_PLANNED);
  const done = await suite.api.writeNodes({ workPlanId, checks: final('mac-tests') });
  const deploy = done.stages.find((s) => s.id === 'deploy')!;
  assert.equal(deploy.state, StageState.STAGE_STATE_ATTEMPTING, 'started in the write that completed the mac group');
  assert.equal(deploy.attempts[0]!.state, AttemptState.ATTEMPT_STATE_PENDING);

  // explain names the member that completed the group.
  const text = explain(workPlanId, 'stage:deploy');
  assert.match(text, /stage deploy went ATTEMPTING at v\d+ because check mac-tests went FINAL at v\d+/);
  assert.match(text, /\n  group 2 of 2 satisfied by check mac-tests\n/);
});

/** `turboci explain --server` against the test server. */
function explain(workPlanId: string, node: string): string {
  const r = spawnSync(process.execPath, [BIN, 'explain', '--server', suite.server.address, '-w', workPlanId, node], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('nesting deeper than 16 is INVALID_ARGUMENT naming the path; so is a threshold above the member count', async () => {
  const workPlanId = await newWorkPlan();
  let deep: Partial<DependencyGroup> = group(AND, []);
  for (let i = 0; i < 16; i++) deep = group(AND, [], [deep]);
  await rejects(
    suite.api.writeNodes({ workPlanId, stages: [{ id: 'ok' }, { id: 's', dependencies: deep }] }),
    status.INVALID_ARGUMENT,
    new RegExp(`^stages\\[1\\]\\.dependencies${'\\.groups\\[0\\]'.repeat(16)}: dependency groups nest at most 16 deep`),
  );
  let sixteen: Partial<DependencyGroup> = group(AND, []);
  for (let i = 0; i < 15; i++) sixteen = group(AND, [], [sixteen]);
  await suite.api.writeNodes({ workPlanId, stages: [{ id: 'deep-ok', dependencies: sixteen }] });
  await rejects(
    suite.api.writeNodes({ workPlanId, checks: planned('a'), stages: [{ id: 't', dependencies: group(OR, [], [group(AND, ['a'], [group(AND, [])], 3)]) }] }),
    status.INVALID_ARGUMENT,
    /^stages\[0\]\.dependencies\.groups\[0\]\.threshold: 3 exceeds the 2 members/,
  );
});

test('a cycle through nested groups is INVALID_ARGUMENT', async () => {
  const workPlanId = await newWorkPlan();
  await rejects(
    suite.api.writeNodes({
      workPlanId,
      checks: [
        { id: 'a', dependencies: group(OR, [], [group(AND, ['b'])]) },
        { id: 'b', dependencies: group(AND, [], [group(OR, [], [group(AND, ['a'])])]) },
      ],
    }),
    status.INVALID_ARGUMENT,
    /dependency cycle: check:(a|b) -> check:(a|b) -> check:(a|b)/,
  );
});

// ---- transactions against what the writer read

const read = async (workPlanId: string) => Number((await suite.api.getWorkPlan({ id: workPlanId })).workPlan!.version);
const bump = (id: string, n: number) => ({ id, options: { n } });

test('nodes carry the stream version of their last change', async () => {
  const workPlanId = await newWorkPlan();
  const w = await suite.api.writeNodes({ workPlanId, checks: [{ id: 'a' }, { id: 'b' }] });
  assert.deepEqual(w.checks.map((c) => Number(c.changedAtVersion)), [2, 3]);
  const w2 = await suite.api.writeNodes({ workPlanId, checks: [bump('a', 1)] });
  assert.equal(Number(w2.checks[0]!.changedAtVersion), 4);
  assert.equal(Number((await checkOf(workPlanId, 'b')).changedAtVersion), 3);
});

test('two writers racing on disjoint nodes both succeed', async () => {
  const workPlanId = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId, checks: [{ id: 'a' }, { id: 'b' }] });
  const v = await read(workPlanId);
  const [ra, rb] = await Promise.allSettled([
    suite.api.writeNodes({ workPlanId, checks: [bump('a', 1)], readVersion: BigInt(v), readNodes: [{ nodeType: NodeType.NODE_TYPE_CHECK, nodeId: 'a' }] }),
    suite.api.writeNodes({ workPlanId, checks: [bump('b', 1)], readVersion: BigInt(v), readNodes: [{ nodeType: NodeType.NODE_TYPE_CHECK, nodeId: 'b' }] }),
  ]);
  assert.equal(ra.status, 'fulfilled');
  assert.equal(rb.status, 'fulfilled');
  assert.equal(await read(workPlanId), v + 2);
});

test('two writers racing on a shared read node: exactly one succeeds, the other is ABORTED naming the node', async () => {
  const workPlanId = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId, checks: [{ id: 'shared' }, { id: 'x' }, { id: 'y' }] });
  const v = await read(workPlanId);
  const reads = [{ nodeType: NodeType.NODE_TYPE_CHECK, nodeId: 'shared' }];
  const results = await Promise.allSettled([
    suite.api.writeNodes({ workPlanId, checks: [bump('shared', 1), bump('x', 1)], readVersion: BigInt(v), readNodes: reads }),
    suite.api.writeNodes({ workPlanId, checks: [bump('shared', 2), bump('y', 1)], readVersion: BigInt(v), readNodes: reads }),
  ]);
  const ok = results.filter((r) => r.status === 'fulfilled');
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(ok.length, 1);
  assert.equal(failed.length, 1);
  const err = failed[0]!.reason as ServiceError;
  assert.equal(err.code, status.ABORTED);
  assert.match(err.details, new RegExp(`^read_nodes\\[0\\]: check "shared" changed at version ${v + 1}, after read_version ${v}`));
  assert.equal(await read(workPlanId), v + 2, 'only the winner appended');
});

test('read_nodes without read_version, or a read_version ahead of the workplan, is INVALID_ARGUMENT', async () => {
  const workPlanId = await newWorkPlan();
  await rejects(
    suite.api.writeNodes({ workPlanId, checks: [{ id: 'a' }], readNodes: [{ nodeType: NodeType.NODE_TYPE_CHECK, nodeId: 'a' }] }),
    status.INVALID_ARGUMENT,
    /^read_version: required when read_nodes is set/,
  );
  await rejects(suite.api.writeNodes({ workPlanId, checks: [{ id: 'a' }], readVersion: 99n }), status.INVALID_ARGUMENT, /^read_version: 99 is beyond/);
});

// ---- approval gates

const APPROVE = ApprovalDecision.APPROVAL_DECISION_APPROVE;

test('release gate: deploy waits on an approval and on a nested group of two platforms', async () => {
  const workPlanId = await newWorkPlan();
  const platforms = group(AND, [], [group(AND, ['build-linux', 'test-linux']), group(AND, ['build-mac', 'test-mac'])]);
  await suite.api.writeNodes({
    workPlanId,
    checks: [...planned('build-linux', 'test-linux', 'build-mac', 'test-mac'), { id: 'release', state: CheckState.CHECK_STATE_PLANNED, approvalGate: {} }],
    stages: [{ id: 'deploy', dependencies: group(AND, ['release'], [platforms]) }],
  });
  const gate = await checkOf(workPlanId, 'release');
  assert.equal(gate.state, CheckState.CHECK_STATE_WAITING);
  assert.equal(gate.approvalGate!.approvalsRequired, 1, 'the default');
  await suite.api.writeNodes({ workPlanId, checks: final('build-linux', 'test-linux', 'build-mac', 'test-mac') });
  assert.equal((await stageOf(workPlanId, 'deploy')).state, StageState.STAGE_STATE_PLANNED, 'platforms done, the gate still pending');

  await rejects(
    suite.api.writeNodes({ workPlanId, checks: final('release') }),
    status.FAILED_PRECONDITION,
    /^checks\[0\]\.state: check "release" is an approval gate: only Approve/,
  );
  const res = await suite.api.approve({ workPlanId, checkId: 'release', decision: APPROVE, comment: 'ship it' });
  assert.equal(res.check!.state, CheckState.CHECK_STATE_FINAL);
  assert.deepEqual(
    res.check!.approvals.map((a) => [a.principal, a.decision, a.comment]),
    [['anonymous', APPROVE, 'ship it']],
    'recorded as anonymous until authentication lands',
  );
  assert.equal(res.check!.results.at(-1)!.failure, undefined);
  assert.equal((await stageOf(workPlanId, 'deploy')).state, StageState.STAGE_STATE_ATTEMPTING);
  const why = explain(workPlanId, 'check:release');
  assert.match(why, /anonymous approved check release \("ship it"\) at v\d+/);
  assert.match(why, /check release went FINAL at v\d+ because anonymous approved check release/);
  assert.match(explain(workPlanId, 'stage:deploy'), /dependencies satisfied by check release/);
});

test('Watch shows who approved: the approval is a change of the gate, with the principal and the comment', async () => {
  const workPlanId = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId, checks: [{ id: 'g', state: CheckState.CHECK_STATE_PLANNED, approvalGate: {} }] });
  const from = await read(workPlanId);
  const call = suite.client.watchWorkPlan(WatchWorkPlanRequest.fromPartial({ workPlanId, afterVersion: from, includeChecks: true }));
  const seen: WorkPlanEvent[] = [];
  const ended = new Promise<void>((resolve) => {
    call.on('data', (e: WorkPlanEvent) => {
      seen.push(e);
      if (e.completedEvent) call.cancel();
    });
    call.on('error', () => resolve());
    call.on('end', () => resolve());
  });
  await suite.api.approve({ workPlanId, checkId: 'g', decision: APPROVE, comment: 'lgtm' });
  await ended;
  const first = seen[0]!.checkEvent!;
  assert.equal(Number(seen[0]!.version), from + 1);
  assert.equal(first.newState, CheckState.CHECK_STATE_WAITING, 'the approval itself, before the gate goes FINAL');
  assert.deepEqual(first.check!.approvals.map((a) => [a.principal, a.comment]), [['anonymous', 'lgtm']]);
  assert.equal(seen.filter((e) => e.checkEvent?.newState === CheckState.CHECK_STATE_FINAL).length, 1);
});

test('without authentication every caller is the same principal: a second approval does not count twice', async () => {
  const workPlanId = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId, checks: [{ id: 'g', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { approvalsRequired: 2 } }] });
  const v = await read(workPlanId);
  await suite.api.approve({ workPlanId, checkId: 'g', decision: APPROVE });
  const again = await suite.api.approve({ workPlanId, checkId: 'g', decision: APPROVE });
  assert.equal(again.check!.state, CheckState.CHECK_STATE_WAITING);
  assert.equal(Number(again.workPlanVersion), v + 1, 'the repeat appended nothing');
});

test('Approve with a request_id: a retry answers again and appends nothing, even after the gate went FINAL', async () => {
  const workPlanId = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId, checks: [{ id: 'g', state: CheckState.CHECK_STATE_PLANNED, approvalGate: {} }] });
  const first = await suite.api.approve({ workPlanId, checkId: 'g', decision: ApprovalDecision.APPROVAL_DECISION_REJECT, comment: 'no', requestId: 'r-1' });
  const retry = await suite.api.approve({ workPlanId, checkId: 'g', decision: ApprovalDecision.APPROVAL_DECISION_REJECT, comment: 'no', requestId: 'r-1' });
  assert.equal(retry.workPlanVersion, first.workPlanVersion);
  assert.deepEqual(retry.check, first.check);
});

test('with authentication on, only approver tokens of the realm approve; distinct principals count; events record who', async () => {
  const dir = tempDir('turboci-approve-auth-');
  const db = `${dir.path}/auth.db`;
  const writer = createToken(db, 'release-bot', 'writer');
  const alice = createToken(db, 'alice', 'approver');
  const bob = createToken(db, 'bob', 'approver');
  const outsider = createToken(db, 'carol', 'approver', '--realm', 'other');
  const reader = createToken(db, 'watcher', 'reader');
  const server = await startServer(db, ['--auth', 'on'], cliNeedsFile);
  const as = (token: string) => connect(server.address, { token });
  const [w, a, b, o, r] = [writer, alice, bob, outsider, reader].map(as);
  try {
    const workPlanId = (await w!.api.createWorkPlan({})).workPlan!.id;
    await w!.api.writeNodes({ workPlanId, checks: [{ id: 'gate', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { approvalsRequired: 2 } }] });
    const approve = (c: typeof w) => outcome(c!.api.approve({ workPlanId, checkId: 'gate', decision: 1, comment: 'ok' }));
    assert.equal(await approve(r), 'PERMISSION_DENIED', 'a reader may not approve');
    assert.equal(await approve(o), 'PERMISSION_DENIED', 'an approver of another realm may not approve');
    assert.equal(await approve(w), 'PERMISSION_DENIED', 'a writer may not approve');
    assert.equal(await approve(a), 'OK');
    assert.equal(await approve(a), 'OK', 'the same principal again is acknowledged');
    const gate = (await w!.api.queryNodes({ workPlanId, checkIds: ['gate'], includeChecks: true })).checks[0]!;
    assert.equal(gate.state, CheckState.CHECK_STATE_WAITING, 'one principal twice is one approval of two');
    assert.equal(await approve(b), 'OK');
    const done = (await w!.api.queryNodes({ workPlanId, checkIds: ['gate'], includeChecks: true })).checks[0]!;
    assert.equal(done.state, CheckState.CHECK_STATE_FINAL);
    assert.deepEqual(done.approvals.map((x) => x.principal), ['alice', 'bob']);
    const store = new SqliteEventStore(db, { readonly: true });
    const given = [...store.readStream(workPlanId)].filter((e) => e.event.type === 'CheckApprovalGiven');
    store.close();
    assert.deepEqual(given.map((e) => e.causation.principal), ['alice', 'bob'], 'each approval event records its principal');
  } finally {
    for (const c of [w, a, b, o, r]) c!.close();
    await server.stop();
    dir.remove();
  }
});

test('turboci approve --reject: the gate goes FINAL with a failure naming the principal and the comment', async () => {
  const workPlanId = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId, checks: [{ id: 'g', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { approvalsRequired: 2 } }] });
  const cli = spawn(process.execPath, [BIN, 'approve', '--server', suite.server.address, '-w', workPlanId, '--check', 'g', '--reject', '--comment', 'CVE-2026-1 open'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  cli.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  const code = await new Promise((resolve) => cli.once('exit', resolve));
  assert.equal(code, 0, stdout);
  assert.match(stdout, /check g: FINAL \(0 of 2 approvals\)/);
  assert.match(stdout, /failed: rejected by anonymous: CVE-2026-1 open/);
  const g = await checkOf(workPlanId, 'g');
  assert.equal(g.results.at(-1)!.failure!.message, 'rejected by anonymous: CVE-2026-1 open');
  await rejects(suite.api.approve({ workPlanId, checkId: 'g', decision: APPROVE }), status.FAILED_PRECONDITION, /^check_id: approval gate "g" is FINAL/);
});

test('Approve errors: unknown workplan NOT_FOUND, not a gate or not WAITING FAILED_PRECONDITION, no decision INVALID_ARGUMENT', async () => {
  const workPlanId = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId, checks: [{ id: 'plain' }, { id: 'g', approvalGate: {} }] });
  await rejects(suite.api.approve({ workPlanId: 'nope', checkId: 'g', decision: APPROVE }), status.NOT_FOUND, /no workplan/);
  await rejects(suite.api.approve({ workPlanId, checkId: 'plain', decision: APPROVE }), status.FAILED_PRECONDITION, /not an approval gate/);
  await rejects(suite.api.approve({ workPlanId, checkId: 'g', decision: APPROVE }), status.FAILED_PRECONDITION, /PLANNING: it takes approvals once it is WAITING/);
  await rejects(suite.api.approve({ workPlanId, checkId: 'g' }), status.INVALID_ARGUMENT, /^decision: APPROVE or REJECT is required/);
  await rejects(
    suite.api.writeNodes({ workPlanId, stages: [{ id: 's', assignments: [{ targetCheckId: 'g' }] }] }),
    status.FAILED_PRECONDITION,
    /^stages\[0\]\.assignments\[0\]\.target_check_id: check "g" is an approval gate/,
  );
});

test('at its deadline a pending gate goes FINAL with "approval timed out"', async () => {
  const workPlanId = await newWorkPlan();
  const deadline = new Date(Date.now() + 300);
  await suite.api.writeNodes({
    workPlanId,
    checks: [{ id: 'g', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { approvalsRequired: 1, deadline } }],
    stages: [{ id: 'after', dependencies: group(AND, ['g']) }],
  });
  const g = await untilFinal(workPlanId, 'g');
  assert.match(g.results.at(-1)!.failure!.message, /^approval timed out/);
  assert.equal((await stageOf(workPlanId, 'after')).state, StageState.STAGE_STATE_ATTEMPTING, 'the stage depending on it went on');
});

/** Waits (without asserting how long it takes) until the check is FINAL. */
async function untilFinal(workPlanId: string, id: string) {
  for (;;) {
    const c = await checkOf(workPlanId, id);
    if (c.state === CheckState.CHECK_STATE_FINAL) return c;
    await new Promise((r) => setTimeout(r, 50));
  }
}
