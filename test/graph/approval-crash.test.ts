// A pending approval with a deadline survives a crash: the server is SIGKILLed, the deadline passes while it is
// down, and the restarted server (its timers rebuilt from the read models) times the gate out; a gate whose
// deadline is still ahead at the restart times out after it. Real server processes on one real SQLite file.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { CheckState, NodeType, PredicateType, StageState } from '../../src/gen/turboci/v1/common.js';
import { openLog } from '../support/store.js';
import { connect, startServer, tempDir } from '../support/server.js';

const dir = tempDir('turboci-approval-crash-');
after(() => dir.remove());

const sleepUntil = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

test('an approval deadline survives SIGKILL: it fires after the restart, also when it passed while the server was down', async () => {
  const dbPath = `${dir.path}/crash.db`;
  const first = await startServer(dbPath);
  const c1 = connect(first.address);
  const workPlanId = (await c1.api.createWorkPlan({})).workPlan!.id;
  const passedWhileDown = Date.now() + 1000;
  await c1.api.writeNodes({
    workPlanId,
    checks: [
      { id: 'early', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { approvalsRequired: 2, deadline: new Date(passedWhileDown) } },
      // Far enough ahead to be pending when the second server starts, whatever the machine's load.
      { id: 'late', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { approvalsRequired: 1, deadline: new Date(Date.now() + 60_000) } },
    ],
    stages: [{ id: 'deploy', dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'early' }] } }],
  });
  await c1.api.approve({ workPlanId, checkId: 'early', decision: 1, comment: 'one of two' });
  c1.close();
  await first.stop('SIGKILL');

  await sleepUntil(passedWhileDown + 50); // the deadline passes while no server runs
  const second = await startServer(dbPath);
  const c2 = connect(second.address);
  try {
    const early = await untilFinal(c2.api, workPlanId, 'early');
    assert.equal(early.results.at(-1)!.failure!.message, 'approval timed out (1 of 2 approvals)');
    assert.deepEqual(early.approvals.map((a) => a.comment), ['one of two'], 'the approval given before the crash is kept');
    const deploy = (await c2.api.queryNodes({ workPlanId, stageIds: ['deploy'], includeStages: true })).stages[0]!;
    assert.equal(deploy.state, StageState.STAGE_STATE_ATTEMPTING);
    const late = (await c2.api.queryNodes({ workPlanId, checkIds: ['late'], includeChecks: true })).checks[0]!;
    assert.equal(late.state, CheckState.CHECK_STATE_WAITING, 'still pending: its deadline is ahead');
    // The pending gate still takes approvals after the crash (the second test times one out after a restart).
    const ok = await c2.api.approve({ workPlanId, checkId: 'late', decision: 1 });
    assert.equal(ok.check!.state, CheckState.CHECK_STATE_FINAL);
  } finally {
    c2.close();
    await second.stop();
  }
  const store = openLog(dbPath);
  const timeouts = [...store.readStream(workPlanId)].filter((e) => e.event.type === 'CheckApprovalTimedOut');
  store.close();
  assert.deepEqual(timeouts.map((e) => e.event.data), [{ checkId: 'early', deadline: passedWhileDown }], 'timed out exactly once');
});

test('a deadline still ahead when the server restarts fires from the rebuilt timer', async () => {
  const dbPath = `${dir.path}/ahead.db`;
  const first = await startServer(dbPath);
  const c1 = connect(first.address);
  const workPlanId = (await c1.api.createWorkPlan({})).workPlan!.id;
  await c1.api.writeNodes({ workPlanId, checks: [{ id: 'g', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { deadline: new Date(Date.now() + 1500) } }] });
  c1.close();
  await first.stop('SIGKILL');
  const second = await startServer(dbPath); // typically before the deadline; either way the gate must time out
  const c2 = connect(second.address);
  try {
    const g = await untilFinal(c2.api, workPlanId, 'g');
    assert.equal(g.results.at(-1)!.failure!.message, 'approval timed out (0 of 1 approvals)');
  } finally {
    c2.close();
    await second.stop();
  }
});

async function untilFinal(api: ReturnType<typeof connect>['api'], workPlanId: string, id: string) {
  for (;;) {
    const c = (await api.queryNodes({ workPlanId, checkIds: [id], includeChecks: true })).checks[0]!;
    if (c.state === CheckState.CHECK_STATE_FINAL) return c;
    await new Promise((r) => setTimeout(r, 50));
  }
}
