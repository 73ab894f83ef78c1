// Leases that ended, over real gRPC against the real server on a real SQLite file: the server indexes only the leases
// in flight, and answers a late call (a repeated completion, a heartbeat after the end) through the workplan the
// token names. The answers must be the same live, after a restart from a snapshot and after a full replay, and a
// snapshot must not carry the leases that ended.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { hashToken } from '../../src/app/pull-service.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { snapshotPathFor } from '../../src/infra/snapshot-file.js';
import { StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, rebuiltFromSnapshotAt, startServer, tempDir, type Api, type ServerProcess } from '../support/server.js';
import { answerOf, snapshotProjections, type Answer } from '../support/late-calls.js';
import { cliNeedsFile } from '../support/store.js';
import { eventually } from '../support/runner.js';
import { connectPull, type PullApi } from './support.js';

async function serve(dbPath: string): Promise<{ server: ServerProcess; api: Api; pull: PullApi; close(): Promise<void> }> {
  // No background snapshot (the test decides when one is written), but a start reads the one there is.
  const server = await startServer(dbPath, ['--snapshot-every', '1000000000', '--heartbeat-interval', '60000'], cliNeedsFile);
  const conn = connect(server.address);
  const pull = connectPull(server.address);
  return {
    server,
    api: conn.api,
    pull,
    close: async () => {
      pull.close();
      conn.close();
      await server.stop();
    },
  };
}

interface LeaseState {
  readonly byToken: Map<string, { leaseId: string }>;
  readonly active: Map<string, unknown>;
}

const snapshotLeases = (dbPath: string): LeaseState => snapshotProjections<{ leases: LeaseState }>(dbPath).leases;

describe('leases that ended', () => {
  test('late calls get the same answers live, from a snapshot and after a full replay; a snapshot keeps only leases in flight', async () => {
    const dir = tempDir();
    const dbPath = `${dir.path}/late.db`;
    try {
      let s = await serve(dbPath);
      const workPlanId = (await s.api.createWorkPlan({})).workPlan!.id;
      await s.api.writeNodes({ workPlanId, stages: ['a', 'b', 'c', 'held'].map((id) => ({ id, runnerType: 'late' })) });
      const { attempt, moreAttempts } = await s.pull.lease({ runnerId: 'r-late', runnerType: 'late', waitMs: 5000, maxAttempts: 4 });
      const leased = [attempt!, ...moreAttempts];
      assert.equal(leased.length, 4);
      const byStage = new Map(leased.map((l) => [l.stageId, l.leaseToken]));
      // The token names its workplan after its secret.
      const [secret, named] = byStage.get('a')!.split('.');
      assert.ok(secret!.length >= 43);
      assert.equal(Buffer.from(named!, 'base64url').toString('utf8'), workPlanId);

      for (const id of ['a', 'b', 'c']) await s.pull.completeLease({ leaseToken: byStage.get(id)!, stageState: StageState.STAGE_STATE_FINAL });

      const lateCalls = async (pull: PullApi): Promise<Answer[]> => [
        await answerOf(pull.completeLease({ leaseToken: byStage.get('a')!, stageState: StageState.STAGE_STATE_FINAL })),
        await answerOf(pull.completeLease({ leaseToken: byStage.get('b')!, stageState: StageState.STAGE_STATE_FINAL, failure: { message: 'changed my mind' } })),
        await answerOf(pull.heartbeat({ leaseToken: byStage.get('c')! })),
        // The right workplan, a secret the server never issued.
        await answerOf(pull.heartbeat({ leaseToken: `${'x'.repeat(43)}.${named}` })),
      ];
      const version = async (api: Api) => (await api.getWorkPlan({ id: workPlanId })).workPlan!.version;

      const before = await version(s.api);
      const live = await lateCalls(s.pull);
      assert.deepEqual(live[0], ['OK', ''], 'an identical repeat of a completion is acknowledged');
      assert.equal(live[1]![0], 'FAILED_PRECONDITION');
      assert.match(live[1]![1], /already completed with a different outcome/);
      assert.equal(live[2]![0], 'FAILED_PRECONDITION');
      assert.deepEqual(live[3], ['FAILED_PRECONDITION', 'lease_token: not a lease token this server issued']);
      assert.equal(await version(s.api), before, 'no late call appended anything');
      await s.close();

      // The snapshot holds the one lease in flight, not the three that ended.
      const leases = snapshotLeases(dbPath);
      assert.equal(leases.active.size, 1);
      assert.deepEqual([...leases.byToken.keys()], [hashToken(byStage.get('held')!)]);

      s = await serve(dbPath);
      assert.ok((await rebuiltFromSnapshotAt(s.server)) > 0, 'this start folded the snapshot');
      assert.deepEqual(await lateCalls(s.pull), live, 'the same answers after a start from the snapshot');
      assert.equal(await version(s.api), before);
      await s.close();

      rmSync(snapshotPathFor(dbPath));
      s = await serve(dbPath);
      assert.equal(await rebuiltFromSnapshotAt(s.server), 0, 'this start replayed the whole log');
      assert.deepEqual(await lateCalls(s.pull), live, 'the same answers after a full replay');
      // The lease still in flight was kept through both restarts: it completes, and its repeat is acknowledged.
      await s.pull.completeLease({ leaseToken: byStage.get('held')!, stageState: StageState.STAGE_STATE_FINAL });
      assert.deepEqual(await answerOf(s.pull.completeLease({ leaseToken: byStage.get('held')!, stageState: StageState.STAGE_STATE_FINAL })), ['OK', '']);
      const held = (await s.api.queryNodes({ workPlanId, stageIds: ['held'], includeStages: true })).stages[0]!;
      assert.equal(held.state, StageState.STAGE_STATE_FINAL);
      await s.close();
      assert.equal(snapshotLeases(dbPath).byToken.size, 0, 'nothing in flight, nothing indexed');
    } finally {
      dir.remove();
    }
  });

  test('a token from before tokens named their workplan: its lease in flight completes; once it ended, it is forgotten', async () => {
    const dir = tempDir();
    const dbPath = `${dir.path}/legacy.db`;
    try {
      let s = await serve(dbPath);
      const workPlanId = (await s.api.createWorkPlan({})).workPlan!.id;
      await s.api.writeNodes({ workPlanId, stages: [{ id: 'old', runnerType: 'nobody-leases-this' }] });
      await eventually(async () => ((await s.api.queryNodes({ workPlanId, stageIds: ['old'], includeStages: true })).stages[0]!.attempts.length === 1 ? true : undefined), 'attempt opened');
      await s.close();

      // What an older server recorded when it leased the attempt with a token of 43 base64url characters and no dot.
      const legacyToken = 'L'.repeat(43);
      const store = new SqliteEventStore(dbPath);
      try {
        const tail = [...store.readStream(workPlanId)].at(-1)!;
        const now = Date.now();
        store.append(
          workPlanId,
          tail.version,
          [
            {
              event: {
                type: 'StageAttemptLeased',
                data: {
                  stageId: 'old',
                  idx: 1,
                  leaseId: 'legacy-lease',
                  tokenHash: hashToken(legacyToken),
                  runnerId: 'old-agent',
                  runnerType: 'nobody-leases-this',
                  heartbeatIntervalMs: 60_000,
                  expiresAt: now + 120_000,
                  runDeadline: now + 600_000,
                },
              },
              causedByVersion: null,
            },
          ],
          { recordedAt: now, requestId: null },
        );
      } finally {
        store.close();
      }

      s = await serve(dbPath);
      assert.deepEqual(await answerOf(s.pull.completeLease({ leaseToken: legacyToken, stageState: StageState.STAGE_STATE_FINAL })), ['OK', '']);
      const old = (await s.api.queryNodes({ workPlanId, stageIds: ['old'], includeStages: true })).stages[0]!;
      assert.equal(old.state, StageState.STAGE_STATE_FINAL);
      // Its token names no workplan, so once its lease ended nothing leads back to it.
      assert.deepEqual(await answerOf(s.pull.completeLease({ leaseToken: legacyToken, stageState: StageState.STAGE_STATE_FINAL })), [
        'FAILED_PRECONDITION',
        'lease_token: not a lease token this server issued',
      ]);
      await s.close();
    } finally {
      dir.remove();
    }
  });
});
