// With auth on, a push runner's registration belongs to the token that made it: only that token (or an admin) may
// call back for its executions, see its registration id or unregister it. That owner is part of the read models, so
// it must come back the same from a start from the read-model snapshot as from a full replay of the log. Real
// server, real gRPC, real SQLite file; the snapshot is written by the real CLI. The registry keeps owners of live
// registrations only; an execution in flight keeps its own, so its runner may still call back after unregistering.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ExecutionMode, StageState } from '../../src/gen/turboci/v1/common.js';
import { snapshotPathFor } from '../../src/infra/snapshot-file.js';
import { snapshotProjections } from '../support/late-calls.js';
import { eventually, startTestRunner } from '../support/runner.js';
import { rebuiltFromSnapshotAt, startServer, tempDir, type ServerProcess } from '../support/server.js';
import { cliNeedsFile } from '../support/store.js';
import { clients, createToken, outcome } from './support.js';

test("a registration's owner comes back from the snapshot and from a full replay", async () => {
  const dir = tempDir('turboci-owners-');
  const db = join(dir.path, 'owners.db');
  const writerToken = createToken(db, 'ci-bot', 'writer');
  const aToken = createToken(db, 'build-a', 'runner', '--runner-type', 'build');
  const bToken = createToken(db, 'build-b', 'runner', '--runner-type', 'build');
  const runner = await startTestRunner({ runAsync: async () => ({ accepted: true }) });
  // Snapshots only when the test writes one: the start reads it, no background one lands mid-test.
  const serve = () => startServer(db, ['--auth', 'on', '--snapshot-every', '1000000000'], cliNeedsFile);
  const open: { close(): void }[] = [];
  const as = (address: string, token: string) => {
    const c = clients(address, { token });
    open.push(c);
    return c;
  };
  let server: ServerProcess | undefined;
  try {
    server = await serve();
    const registrationId = (
      await as(server.address, aToken).api.registerStageRunner({
        runnerId: 'push-a',
        runnerType: 'build',
        address: runner.address,
        supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC],
        maxConcurrent: 4,
        ttlSeconds: 3600n,
      })
    ).registrationId;
    const workPlanId = (await as(server.address, writerToken).api.createWorkPlan({})).workPlan!.id;
    await server.stop();
    server = undefined;
    snapshotProjections(db);

    /** After a restart: for a new execution and for the registration, B is refused and A accepted. */
    const ownerHolds = async (address: string, stageId: string) => {
      const a = as(address, aToken);
      const b = as(address, bToken);
      const writer = as(address, writerToken);
      await writer.api.writeNodes({ workPlanId, stages: [{ id: stageId, runnerType: 'build', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC }] });
      const run = await eventually(async () => runner.asyncRuns.find((r) => r.stageId === stageId), `RunAsync of ${stageId}`);
      assert.equal(await outcome(b.api.updateStageExecution({ executionId: run.executionId, message: 'hijack' })), 'PERMISSION_DENIED', 'another runner token is refused');
      assert.equal(await outcome(a.api.updateStageExecution({ executionId: run.executionId, message: 'working' })), 'OK', 'the owner may call back');
      assert.equal(await outcome(a.api.completeStageExecution({ executionId: run.executionId, stageState: StageState.STAGE_STATE_FINAL })), 'OK');
      const stage = (await writer.api.queryNodes({ workPlanId, stageIds: [stageId], includeStages: true })).stages[0]!;
      assert.equal(stage.state, StageState.STAGE_STATE_FINAL);
      assert.equal(await outcome(b.api.unregisterStageRunner({ registrationId })), 'PERMISSION_DENIED');
    };

    server = await serve();
    assert.ok((await rebuiltFromSnapshotAt(server)) > 0, 'this start folded the snapshot');
    await ownerHolds(server.address, 'after-snapshot');
    await server.stop();
    server = undefined;

    rmSync(snapshotPathFor(db));
    server = await serve();
    assert.equal(await rebuiltFromSnapshotAt(server), 0, 'this start replayed the whole log');
    await ownerHolds(server.address, 'after-replay');
    assert.equal(await outcome(as(server.address, aToken).api.unregisterStageRunner({ registrationId })), 'OK', 'the owner may unregister');
  } finally {
    for (const c of open) c.close();
    await server?.stop();
    await runner.close();
    dir.remove();
  }
});

interface RunnerState {
  readonly runners: { owners: Map<string, string | null> };
  readonly executions: { executions: Map<string, { owner: string | null }>; loads: Map<string, number> };
}

test('an execution in flight keeps its owner after its registration ended, through restarts; one that ended answers anyone', async () => {
  const dir = tempDir('turboci-owners-');
  const db = join(dir.path, 'ended.db');
  const writerToken = createToken(db, 'ci-bot', 'writer');
  const aToken = createToken(db, 'build-a', 'runner', '--runner-type', 'build');
  const bToken = createToken(db, 'build-b', 'runner', '--runner-type', 'build');
  const runner = await startTestRunner({ runAsync: async () => ({ accepted: true }) });
  const serve = () => startServer(db, ['--auth', 'on', '--snapshot-every', '1000000000'], cliNeedsFile);
  const open: { close(): void }[] = [];
  const as = (address: string, token: string) => {
    const c = clients(address, { token });
    open.push(c);
    return c;
  };
  let server: ServerProcess | undefined;
  try {
    server = await serve();
    const a = as(server.address, aToken);
    const { registrationId } = await a.api.registerStageRunner({
      runnerId: 'push-a',
      runnerType: 'build',
      address: runner.address,
      supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC],
      ttlSeconds: 3600n,
    });
    const writer = as(server.address, writerToken);
    const workPlanId = (await writer.api.createWorkPlan({})).workPlan!.id;
    await writer.api.writeNodes({ workPlanId, stages: [{ id: 'deploy', runnerType: 'build', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC }] });
    const { executionId } = await eventually(async () => runner.asyncRuns.find((r) => r.stageId === 'deploy'), 'RunAsync of deploy');
    // The runner goes away while its execution runs on (it may still call back until the deadline).
    await a.api.unregisterStageRunner({ registrationId });
    await server.stop();
    server = undefined;

    const state = snapshotProjections<RunnerState>(db);
    assert.equal(state.runners.owners.has(registrationId), false, 'the registry keeps owners of live registrations only');
    const owner = state.executions.executions.get(executionId)?.owner;
    assert.ok(typeof owner === 'string' && owner.length > 0, `the execution in flight keeps its owner (${String(owner)})`);

    server = await serve();
    assert.ok((await rebuiltFromSnapshotAt(server)) > 0, 'this start folded the snapshot');
    assert.equal(await outcome(as(server.address, bToken).api.updateStageExecution({ executionId, message: 'hijack' })), 'PERMISSION_DENIED');
    assert.equal(await outcome(as(server.address, aToken).api.updateStageExecution({ executionId, message: 'still here' })), 'OK');
    await server.stop();
    server = undefined;

    rmSync(snapshotPathFor(db));
    server = await serve();
    assert.equal(await rebuiltFromSnapshotAt(server), 0, 'this start replayed the whole log');
    const b = as(server.address, bToken);
    assert.equal(await outcome(b.api.completeStageExecution({ executionId, stageState: StageState.STAGE_STATE_FINAL })), 'PERMISSION_DENIED');
    assert.equal(await outcome(as(server.address, aToken).api.completeStageExecution({ executionId, stageState: StageState.STAGE_STATE_FINAL })), 'OK');
    const stage = (await as(server.address, writerToken).api.queryNodes({ workPlanId, stageIds: ['deploy'], includeStages: true })).stages[0]!;
    assert.equal(stage.state, StageState.STAGE_STATE_FINAL);
    // Over now: a late call changes nothing, and is only told where the attempt stands, whoever makes it.
    assert.equal(await outcome(b.api.completeStageExecution({ executionId, stageState: StageState.STAGE_STATE_FINAL })), 'OK', 'an identical repeat is acknowledged');
    assert.equal(await outcome(b.api.updateStageExecution({ executionId, message: 'late' })), 'FAILED_PRECONDITION');
    await server.stop();
    server = undefined;
    const after = snapshotProjections<RunnerState>(db);
    assert.equal(after.executions.executions.size, 0);
    assert.equal(after.executions.loads.has(registrationId), false, 'nothing is left of the runner that went away');
  } finally {
    for (const c of open) c.close();
    await server?.stop();
    await runner.close();
    dir.remove();
  }
});
