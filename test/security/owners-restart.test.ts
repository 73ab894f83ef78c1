// With auth on, a push runner's registration belongs to the token that made it: only that token (or an admin) may
// call back for its executions or unregister it. That owner is part of the read models, so it must come back the
// same from a start from the read-model snapshot as from a full replay of the log. The registry keeps owners of live
// registrations only; an execution in flight keeps its own, so its runner may still call back after unregistering.
// Real server, real gRPC, real SQLite file; the snapshot is written by the real CLI.
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

interface RunnerState {
  readonly runners: { owners: Map<string, string | null> };
  readonly executions: { executions: Map<string, { owner: string | null }>; loads: Map<string, number> };
}

/**
 * A log with a writer token and two runner tokens of type build (A and B), an ASYNC push runner, and a server with
 * auth on that `start()` (re)starts on it. Snapshots are written only by the test: a start reads the one there is,
 * and no background one lands mid-test.
 */
async function ownersSetup(name: string) {
  const dir = tempDir('turboci-owners-');
  const db = join(dir.path, `${name}.db`);
  const tokens = {
    writer: createToken(db, 'ci-bot', 'writer'),
    a: createToken(db, 'build-a', 'runner', '--runner-type', 'build'),
    b: createToken(db, 'build-b', 'runner', '--runner-type', 'build'),
  };
  const runner = await startTestRunner({ runAsync: async () => ({ accepted: true }) });
  const open: { close(): void }[] = [];
  let server: ServerProcess | undefined;
  const stop = async () => {
    await server?.stop();
    server = undefined;
  };
  return {
    db,
    tokens,
    runner,
    /** Starts the server; resolves with the position of the snapshot it started from (0: a full replay). */
    async start(): Promise<number> {
      server = await startServer(db, ['--auth', 'on', '--snapshot-every', '1000000000'], cliNeedsFile);
      return rebuiltFromSnapshotAt(server);
    },
    stop,
    /** Clients of the running server with this token. */
    as(token: string) {
      const c = clients(server!.address, { token });
      open.push(c);
      return c;
    },
    /** A push runner for type build, registered by A. */
    async registerA(): Promise<string> {
      const reg = await this.as(tokens.a).api.registerStageRunner({
        runnerId: 'push-a',
        runnerType: 'build',
        address: runner.address,
        supportedModes: [ExecutionMode.EXECUTION_MODE_ASYNC],
        maxConcurrent: 4,
        ttlSeconds: 3600n,
      });
      return reg.registrationId;
    },
    /** Writes an ASYNC stage of type build; resolves with the execution id its RunAsync carried. */
    async dispatch(workPlanId: string, stageId: string): Promise<string> {
      await this.as(tokens.writer).api.writeNodes({ workPlanId, stages: [{ id: stageId, runnerType: 'build', executionMode: ExecutionMode.EXECUTION_MODE_ASYNC }] });
      return (await eventually(async () => runner.asyncRuns.find((r) => r.stageId === stageId), `RunAsync of ${stageId}`)).executionId;
    },
    async stageState(workPlanId: string, stageId: string): Promise<StageState> {
      return (await this.as(tokens.writer).api.queryNodes({ workPlanId, stageIds: [stageId], includeStages: true })).stages[0]!.state;
    },
    async close() {
      for (const c of open) c.close();
      await stop();
      await runner.close();
      dir.remove();
    },
  };
}

test("a registration's owner comes back from the snapshot and from a full replay", async () => {
  const s = await ownersSetup('owners');
  try {
    await s.start();
    const registrationId = await s.registerA();
    const workPlanId = (await s.as(s.tokens.writer).api.createWorkPlan({})).workPlan!.id;
    await s.stop();
    snapshotProjections(s.db);

    /** After a restart: for a new execution and for the registration, B is refused and A accepted. */
    const ownerHolds = async (stageId: string) => {
      const a = s.as(s.tokens.a);
      const b = s.as(s.tokens.b);
      const executionId = await s.dispatch(workPlanId, stageId);
      assert.equal(await outcome(b.api.updateStageExecution({ executionId, message: 'hijack' })), 'PERMISSION_DENIED', 'another runner token is refused');
      assert.equal(await outcome(a.api.updateStageExecution({ executionId, message: 'working' })), 'OK', 'the owner may call back');
      assert.equal(await outcome(a.api.completeStageExecution({ executionId, stageState: StageState.STAGE_STATE_FINAL })), 'OK');
      assert.equal(await s.stageState(workPlanId, stageId), StageState.STAGE_STATE_FINAL);
      assert.equal(await outcome(b.api.unregisterStageRunner({ registrationId })), 'PERMISSION_DENIED');
    };

    assert.ok((await s.start()) > 0, 'this start folded the snapshot');
    await ownerHolds('after-snapshot');
    await s.stop();

    rmSync(snapshotPathFor(s.db));
    assert.equal(await s.start(), 0, 'this start replayed the whole log');
    await ownerHolds('after-replay');
    assert.equal(await outcome(s.as(s.tokens.a).api.unregisterStageRunner({ registrationId })), 'OK', 'the owner may unregister');
  } finally {
    await s.close();
  }
});

test('an execution in flight keeps its owner after its registration ended, through restarts; one that ended answers anyone', async () => {
  const s = await ownersSetup('ended');
  try {
    await s.start();
    const registrationId = await s.registerA();
    const workPlanId = (await s.as(s.tokens.writer).api.createWorkPlan({})).workPlan!.id;
    const executionId = await s.dispatch(workPlanId, 'deploy');
    // The runner goes away while its execution runs on (it may still call back until the deadline).
    await s.as(s.tokens.a).api.unregisterStageRunner({ registrationId });
    await s.stop();

    const state = snapshotProjections<RunnerState>(s.db);
    assert.equal(state.runners.owners.has(registrationId), false, 'the registry keeps owners of live registrations only');
    const owner = state.executions.executions.get(executionId)?.owner;
    assert.ok(typeof owner === 'string' && owner.length > 0, `the execution in flight keeps its owner (${String(owner)})`);

    assert.ok((await s.start()) > 0, 'this start folded the snapshot');
    assert.equal(await outcome(s.as(s.tokens.b).api.updateStageExecution({ executionId, message: 'hijack' })), 'PERMISSION_DENIED');
    assert.equal(await outcome(s.as(s.tokens.a).api.updateStageExecution({ executionId, message: 'still here' })), 'OK');
    await s.stop();

    rmSync(snapshotPathFor(s.db));
    assert.equal(await s.start(), 0, 'this start replayed the whole log');
    const b = s.as(s.tokens.b);
    assert.equal(await outcome(b.api.completeStageExecution({ executionId, stageState: StageState.STAGE_STATE_FINAL })), 'PERMISSION_DENIED');
    assert.equal(await outcome(s.as(s.tokens.a).api.completeStageExecution({ executionId, stageState: StageState.STAGE_STATE_FINAL })), 'OK');
    assert.equal(await s.stageState(workPlanId, 'deploy'), StageState.STAGE_STATE_FINAL);
    // Over now: a late call changes nothing, and is only told where the attempt stands, whoever makes it.
    assert.equal(await outcome(b.api.completeStageExecution({ executionId, stageState: StageState.STAGE_STATE_FINAL })), 'OK', 'an identical repeat is acknowledged');
    assert.equal(await outcome(b.api.updateStageExecution({ executionId, message: 'late' })), 'FAILED_PRECONDITION');
    await s.stop();

    const after = snapshotProjections<RunnerState>(s.db);
    assert.equal(after.executions.executions.size, 0);
    assert.equal(after.executions.loads.has(registrationId), false, 'nothing is left of the runner that went away');
  } finally {
    await s.close();
  }
});
