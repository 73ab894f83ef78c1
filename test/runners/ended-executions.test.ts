// Executions that ended, over real gRPC against the real server on a real SQLite file: the server indexes only the
// executions in flight, and answers a late callback through the workplan the execution id names. The answers must
// be the same live, after a restart from a snapshot and after a full replay, and a snapshot must not carry the
// executions that ended.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { snapshotPathFor } from '../../src/infra/snapshot-file.js';
import { ExecutionMode, StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, rebuiltFromSnapshotAt, startServer, tempDir, type Api } from '../support/server.js';
import { answerOf, snapshotProjections, type Answer } from '../support/late-calls.js';
import { cliNeedsFile } from '../support/store.js';
import { eventually, startTestRunner } from '../support/runner.js';

interface ExecutionState {
  readonly executions: Map<string, unknown>;
  readonly inFlightIds: Set<string>;
  readonly loads: Map<string, number>;
}

const snapshotExecutions = (dbPath: string): ExecutionState => snapshotProjections<{ executions: ExecutionState }>(dbPath).executions;

test('late callbacks get the same answers live, from a snapshot and after a full replay; a snapshot keeps only executions in flight', async () => {
  const dir = tempDir();
  const dbPath = `${dir.path}/late.db`;
  const runner = await startTestRunner({ runAsync: async () => ({ accepted: true }) });
  const serve = async () => {
    // No background snapshot (the test decides when one is written), but a start reads the one there is.
    const server = await startServer(dbPath, ['--snapshot-every', '1000000000'], cliNeedsFile);
    const conn = connect(server.address);
    return { api: conn.api, rebuiltFrom: () => rebuiltFromSnapshotAt(server), close: async () => (conn.close(), await server.stop()) };
  };
  try {
    let s = await serve();
    // A registration outlives the restarts (its TTL), so the executions stay where they were dispatched.
    await s.api.registerStageRunner({ runnerId: 'late-1', runnerType: 'late', address: runner.address, supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC], maxConcurrent: 4 });
    const workPlanId = (await s.api.createWorkPlan({})).workPlan!.id;
    await s.api.writeNodes({ workPlanId, stages: ['a', 'b', 'held'].map((id) => ({ id, runnerType: 'late', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC })) });
    await eventually(async () => (runner.asyncRuns.length === 3 ? true : undefined), 'three RunAsync calls');
    const byStage = new Map(runner.asyncRuns.map((r) => [r.stageId, r.executionId]));
    // The id names its workplan after its unique part.
    assert.equal(Buffer.from(byStage.get('a')!.split('.').at(-1)!, 'base64url').toString('utf8'), workPlanId);

    for (const id of ['a', 'b']) await s.api.completeStageExecution({ executionId: byStage.get(id)!, stageState: StageState.STAGE_STATE_FINAL });

    const lateCalls = async (api: Api): Promise<Answer[]> => [
      await answerOf(api.completeStageExecution({ executionId: byStage.get('a')!, stageState: StageState.STAGE_STATE_FINAL })),
      await answerOf(api.completeStageExecution({ executionId: byStage.get('b')!, stageState: StageState.STAGE_STATE_FINAL, failure: { message: 'changed my mind' } })),
      await answerOf(api.updateStageExecution({ executionId: byStage.get('a')!, message: 'late' })),
      await answerOf(api.completeStageExecution({ executionId: `no-such-execution.${byStage.get('a')!.split('.').at(-1)!}` })),
    ];
    const version = async (api: Api) => (await api.getWorkPlan({ id: workPlanId })).workPlan!.version;
    const before = await version(s.api);
    const live = await lateCalls(s.api);
    assert.deepEqual(live[0], ['OK', ''], 'an identical repeat is acknowledged');
    assert.equal(live[1]![0], 'FAILED_PRECONDITION');
    assert.match(live[1]![1], /is over/);
    assert.equal(live[2]![0], 'FAILED_PRECONDITION');
    assert.equal(live[3]![0], 'NOT_FOUND');
    assert.equal(await version(s.api), before, 'no late call appended anything');
    await s.close();

    const snap = snapshotExecutions(dbPath);
    assert.deepEqual([...snap.executions.keys()], [byStage.get('held')!], 'only the execution in flight is in the snapshot');
    assert.deepEqual([...snap.inFlightIds], [byStage.get('held')!]);

    s = await serve();
    assert.ok((await s.rebuiltFrom()) > 0, 'this start folded the snapshot');
    assert.deepEqual(await lateCalls(s.api), live, 'the same answers after a start from the snapshot');
    await s.close();

    rmSync(snapshotPathFor(dbPath));
    s = await serve();
    assert.equal(await s.rebuiltFrom(), 0, 'this start replayed the whole log');
    assert.deepEqual(await lateCalls(s.api), live, 'the same answers after a full replay');
    assert.equal(await version(s.api), before);
    // The execution still in flight was kept through both restarts: its callback applies.
    await s.api.completeStageExecution({ executionId: byStage.get('held')!, stageState: StageState.STAGE_STATE_FINAL });
    const held = (await s.api.queryNodes({ workPlanId, stageIds: ['held'], includeStages: true })).stages[0]!;
    assert.equal(held.state, StageState.STAGE_STATE_FINAL);
    await s.close();
    const last = snapshotExecutions(dbPath);
    assert.equal(last.executions.size, 0, 'nothing in flight, nothing indexed');
    assert.equal(last.loads.size, 0, 'nor a load entry for a runner with nothing in flight');
  } finally {
    runner.kill();
    dir.remove();
  }
});
