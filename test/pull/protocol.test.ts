// The pull protocol over real gRPC against the real server process: leasing, heartbeats, completion, the reaper's
// expiries, scheduling (priority, per-type limits, fairness) and bad input.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { AttemptState, CheckState, NodeType, PredicateType, StageState } from '../../src/gen/turboci/v1/common.js';
import { connect, startServer, tempDir, type Api, type ServerProcess } from '../support/server.js';
import { eventually } from '../support/runner.js';
import { connectPull, readLog, type PullApi } from './support.js';

const code = async (p: Promise<unknown>): Promise<{ code: status; details: string }> => {
  try {
    await p;
  } catch (err) {
    const e = err as ServiceError;
    return { code: e.code, details: e.details };
  }
  assert.fail('expected the call to fail');
};

describe('pull protocol', () => {
  const dir = tempDir();
  let server: ServerProcess;
  let api: Api;
  let pull: PullApi;
  let closeApi: () => void;

  before(async () => {
    server = await startServer(`${dir.path}/pull.db`, ['--runner-limit', 'limited=2', '--heartbeat-interval', '2000']);
    const conn = connect(server.address);
    api = conn.api;
    closeApi = conn.close;
    pull = connectPull(server.address);
  });
  after(async () => {
    pull.close();
    closeApi();
    await server.stop();
    dir.remove();
  });

  const stage = (workPlanId: string, id: string) =>
    api.queryNodes({ workPlanId, stageIds: [id], includeStages: true }).then((r) => r.stages[0]!);

  test('lease → RUNNING with the runner as process uid; heartbeat appends lines; completion is one atomic, idempotent write', async () => {
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({
      workPlanId,
      checks: [{ id: 'build', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [{ id: 'compile', runnerType: 'basic', args: { command: 'make' }, assignments: [{ targetCheckId: 'build' }] }],
    });
    const { attempt: leased } = await pull.lease({ runnerId: 'r-1', runnerType: 'basic', waitMs: 0 });
    assert.ok(leased, 'an attempt was leased');
    assert.equal(leased.stageId, 'compile');
    assert.equal(leased.workPlanId, workPlanId);
    assert.equal(leased.attemptIdx, 1);
    assert.deepEqual(leased.args, { command: 'make' });
    assert.deepEqual(leased.assignedCheckIds, ['build']);
    assert.equal(leased.heartbeatIntervalMs, 2000);
    assert.ok(leased.leaseToken.length >= 32);
    let s = await stage(workPlanId, 'compile');
    assert.equal(s.attempts[0]!.state, AttemptState.ATTEMPT_STATE_RUNNING);
    assert.equal(s.attempts[0]!.processUid, 'r-1');
    assert.equal(s.attempts[0]!.lease!.leaseId, leased.leaseId);

    // Nobody else gets it.
    assert.equal((await pull.lease({ runnerId: 'r-2', runnerType: 'basic', waitMs: 0 })).attempt, undefined);

    // The token is stored only hashed.
    const log = readLog(server.dbPath);
    const leasedEvent = log.find((e) => e.event.type === 'StageAttemptLeased')!;
    assert.ok(!JSON.stringify(log.map((e) => e.event)).includes(leased.leaseToken), 'the token is not in the log');
    assert.notEqual((leasedEvent.event.data as { tokenHash: string }).tokenHash, leased.leaseToken);

    const hb = await pull.heartbeat({ leaseToken: leased.leaseToken, logLines: ['line one', 'line two'] });
    assert.equal(hb.cancelRequested, false);
    assert.ok(hb.expiresAt!.getTime() >= leased.expiresAt!.getTime());
    s = await stage(workPlanId, 'compile');
    assert.deepEqual(s.attempts[0]!.progress.at(-1)!.details, { lines: ['line one', 'line two'] });

    const completion = {
      leaseToken: leased.leaseToken,
      stageState: StageState.STAGE_STATE_FINAL,
      checkUpdates: [{ checkId: 'build', resultData: { exit_code: 0 }, finalize: true, state: CheckState.CHECK_STATE_FINAL }],
    };
    assert.deepEqual(await pull.completeLease(completion), { acknowledged: true, nextAttempts: [] });
    const version = (await api.getWorkPlan({ id: workPlanId })).workPlan!.version;
    assert.deepEqual(await pull.completeLease(completion), { acknowledged: true, nextAttempts: [] }, 'an identical repeat is acknowledged');
    assert.equal((await api.getWorkPlan({ id: workPlanId })).workPlan!.version, version, 'and appends nothing');
    const done = await api.queryNodes({ workPlanId });
    assert.equal(done.stages[0]!.state, StageState.STAGE_STATE_FINAL);
    assert.equal(done.stages[0]!.attempts[0]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
    assert.equal(done.checks[0]!.state, CheckState.CHECK_STATE_FINAL);
    assert.deepEqual(done.checks[0]!.results[0]!.data, { exit_code: 0 });

    // A different outcome after the completion, and heartbeats after it, are refused.
    const other = await code(pull.completeLease({ leaseToken: leased.leaseToken, failure: { message: 'late' } }));
    assert.equal(other.code, status.FAILED_PRECONDITION);
    assert.equal((await code(pull.heartbeat({ leaseToken: leased.leaseToken }))).code, status.FAILED_PRECONDITION);
    assert.equal((await api.getWorkPlan({ id: workPlanId })).workPlan!.version, version);
  });

  test('priority first, then the workplan with fewest leases in flight, then the oldest; per-type limit; waiters woken', async () => {
    const big = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({ workPlanId: big, stages: Array.from({ length: 6 }, (_, i) => ({ id: `b${i}`, runnerType: 'limited' })) });
    const small = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({
      workPlanId: small,
      stages: [
        { id: 'low', runnerType: 'limited' },
        { id: 'urgent', runnerType: 'limited', priority: 10 },
      ],
    });
    const take = async () => (await pull.lease({ runnerId: 'r', runnerType: 'limited', waitMs: 0 })).attempt;
    const first = (await take())!;
    assert.equal(first.stageId, 'urgent', 'the highest priority goes first, though it is the newest');
    const second = (await take())!;
    assert.equal(second.workPlanId, big, 'then the oldest attempt of the workplan with the fewest leases in flight');
    assert.equal(second.stageId, 'b0');
    assert.equal(await take(), undefined, 'limited=2: no third lease while two are in flight');

    // A waiter is served as soon as a slot frees.
    const waiting = pull.lease({ runnerId: 'r', runnerType: 'limited', waitMs: 20_000 });
    await new Promise((r) => setTimeout(r, 200));
    await pull.completeLease({ leaseToken: first.leaseToken, stageState: StageState.STAGE_STATE_FINAL });
    const third = (await waiting).attempt!;
    assert.ok(third, 'the waiting Lease got an attempt when a slot freed');
    assert.equal(third.workPlanId, small, 'fairness: small has none in flight, big has one');
    assert.equal(third.stageId, 'low');

    // Fairness: with big holding one lease and small none left, big continues; small is never starved by big's backlog.
    await pull.completeLease({ leaseToken: second.leaseToken, stageState: StageState.STAGE_STATE_FINAL });
    const fourth = (await take())!;
    assert.equal(fourth.workPlanId, big);
    assert.equal(fourth.stageId, 'b1');
    for (const l of [third, fourth]) await pull.completeLease({ leaseToken: l.leaseToken, stageState: StageState.STAGE_STATE_FINAL });
  });

  test('extensions: Lease takes up to max_attempts; CompleteLease with lease_next hands back the next attempt, also one the completion opened', async () => {
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({
      workPlanId,
      stages: [
        { id: 'f0', runnerType: 'batch' },
        { id: 'f1', runnerType: 'batch' },
        { id: 'f2', runnerType: 'batch' },
        { id: 'then', runnerType: 'batch', dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_STAGE, targetId: 'f0' }] } },
      ],
    });
    const res = await pull.lease({ runnerId: 'b', runnerType: 'batch', waitMs: 0, maxAttempts: 5 });
    const all = [res.attempt!, ...res.moreAttempts];
    assert.deepEqual(all.map((a) => a.stageId), ['f0', 'f1', 'f2'], 'every offerable attempt, oldest first, up to max_attempts');
    assert.equal(new Set(all.map((a) => a.leaseToken)).size, 3, 'each its own lease');
    for (const a of all) assert.equal((await stage(workPlanId, a.stageId)).attempts[0]!.state, AttemptState.ATTEMPT_STATE_RUNNING);

    // Completing f0 opens `then`: the same answer leases it.
    const done = await pull.completeLease({
      leaseToken: res.attempt!.leaseToken,
      stageState: StageState.STAGE_STATE_FINAL,
      leaseNext: { runnerId: 'b', runnerType: 'batch', maxAttempts: 1 },
    });
    assert.equal(done.acknowledged, true);
    assert.deepEqual(done.nextAttempts.map((a) => a.stageId), ['then']);
    assert.equal((await stage(workPlanId, 'f0')).state, StageState.STAGE_STATE_FINAL);
    const leasedEvents = readLog(server.dbPath).filter((e) => e.streamId === workPlanId && e.event.type === 'StageAttemptLeased');
    assert.equal(leasedEvents.length, 4, 'every lease handed out is in the log');

    // Nothing left: lease_next answers empty at once (it never waits); a refused completion leases nothing.
    const last = await pull.completeLease({ leaseToken: done.nextAttempts[0]!.leaseToken, stageState: StageState.STAGE_STATE_FINAL, leaseNext: { runnerId: 'b', runnerType: 'batch', waitMs: 60_000 } });
    assert.deepEqual(last.nextAttempts, []);
    const refused = await code(pull.completeLease({ leaseToken: 'forged', leaseNext: { runnerId: 'b', runnerType: 'batch' } }));
    assert.equal(refused.code, status.FAILED_PRECONDITION);
    for (const a of res.moreAttempts) await pull.completeLease({ leaseToken: a.leaseToken, stageState: StageState.STAGE_STATE_FINAL });

    const tooMany = await code(pull.lease({ runnerId: 'b', runnerType: 'batch', waitMs: 0, maxAttempts: 65 }));
    assert.equal(tooMany.code, status.INVALID_ARGUMENT);
    assert.match(tooMany.details, /^max_attempts: must be at most 64/);
    const badNext = await code(pull.completeLease({ leaseToken: 'x', leaseNext: { runnerId: '', runnerType: 'batch' } }));
    assert.equal(badNext.code, status.INVALID_ARGUMENT);
    assert.match(badNext.details, /^lease_next\.runner_id/);
  });

  test('a long poll is woken by a new attempt (no polling) and answers empty when its wait runs out', async () => {
    const empty = await pull.lease({ runnerId: 'r', runnerType: 'nobody-writes-this', waitMs: 300 });
    assert.equal(empty.attempt, undefined);
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    const waiting = pull.lease({ runnerId: 'r', runnerType: 'late', waitMs: 30_000 });
    await new Promise((r) => setTimeout(r, 200));
    await api.writeNodes({ workPlanId, stages: [{ id: 'arrives', runnerType: 'late' }] });
    const got = (await waiting).attempt!;
    assert.equal(got.stageId, 'arrives');
    await pull.completeLease({ leaseToken: got.leaseToken, stageState: StageState.STAGE_STATE_FINAL });
  });

  test('missed heartbeats, run timeout and pickup timeout make the attempt INCOMPLETE with the reason; retry after backoff', async () => {
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({
      workPlanId,
      stages: [
        { id: 'silent', runnerType: 'reap', maxAttempts: 2, executionPolicy: { heartbeatIntervalMs: 300, retryBackoffMs: 800 } },
        { id: 'slow', runnerType: 'reap-slow', maxAttempts: 1, executionPolicy: { heartbeatIntervalMs: 300, runTimeoutMs: 900 } },
        { id: 'unwanted', runnerType: 'nobody', maxAttempts: 1, executionPolicy: { pickupTimeoutMs: 300 } },
      ],
    });
    const silent = (await pull.lease({ runnerId: 'quiet', runnerType: 'reap', waitMs: 0 })).attempt!;
    const slow = (await pull.lease({ runnerId: 'busy', runnerType: 'reap-slow', waitMs: 0 })).attempt!;
    // Keep 'slow' alive with heartbeats: it still hits its run timeout.
    const beating = (async () => {
      for (;;) {
        try {
          const hb = await pull.heartbeat({ leaseToken: slow.leaseToken });
          if (hb.cancelRequested) return;
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const s1 = await eventually(async () => {
      const s = await stage(workPlanId, 'silent');
      return s.attempts.length === 2 ? s : undefined;
    }, 'silent retried');
    assert.equal(s1.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
    assert.match(s1.attempts[0]!.failure!.message, /missed 2 heartbeats/);
    // The retry is not offered before its backoff.
    const retried = (await pull.lease({ runnerId: 'next', runnerType: 'reap', waitMs: 10_000 })).attempt!;
    assert.equal(retried.attemptIdx, 2);
    const log = readLog(server.dbPath).filter((e) => e.streamId === workPlanId);
    const created2 = log.find((e) => e.event.type === 'StageAttemptCreated' && e.event.data.stageId === 'silent' && e.event.data.idx === 2)!;
    const leased2 = log.find((e) => e.event.type === 'StageAttemptLeased' && e.event.data.stageId === 'silent' && e.event.data.idx === 2)!;
    assert.ok(leased2.recordedAt >= created2.recordedAt + 800, 'leased only after the 800 ms backoff');
    await pull.completeLease({ leaseToken: retried.leaseToken, stageState: StageState.STAGE_STATE_FINAL });

    // The old token is refused: expired, nothing applied.
    const before = (await api.getWorkPlan({ id: workPlanId })).workPlan!.version;
    const expired = await code(pull.completeLease({ leaseToken: silent.leaseToken, stageState: StageState.STAGE_STATE_FINAL }));
    assert.equal(expired.code, status.FAILED_PRECONDITION);
    assert.match(expired.details, /expired/);
    assert.equal((await code(pull.heartbeat({ leaseToken: silent.leaseToken }))).code, status.FAILED_PRECONDITION);
    assert.equal((await api.getWorkPlan({ id: workPlanId })).workPlan!.version, before, 'nothing was applied');

    const s2 = await eventually(async () => {
      const s = await stage(workPlanId, 'slow');
      return s.state === StageState.STAGE_STATE_FINAL ? s : undefined;
    }, 'slow timed out');
    await beating;
    assert.match(s2.attempts[0]!.failure!.message, /run timeout/);
    assert.match(s2.failure!.message, /no attempts left/);

    const s3 = await eventually(async () => {
      const s = await stage(workPlanId, 'unwanted');
      return s.state === StageState.STAGE_STATE_FINAL ? s : undefined;
    }, 'unwanted expired');
    assert.match(s3.attempts[0]!.failure!.message, /pickup timeout/);

    const reasons = readLog(server.dbPath)
      .filter((e) => e.streamId === workPlanId && e.event.type === 'StageAttemptLeaseExpired')
      .map((e) => `${(e.event.data as { stageId: string }).stageId}:${(e.event.data as { reason: string }).reason}`)
      .sort();
    assert.deepEqual(reasons, ['silent:HEARTBEATS_MISSED', 'slow:RUN_TIMEOUT', 'unwanted:PICKUP_TIMEOUT']);
  });

  test('bad input: forged token FAILED_PRECONDITION; invalid policy values and lease requests INVALID_ARGUMENT', async () => {
    const forged = await code(pull.heartbeat({ leaseToken: 'x'.repeat(43) }));
    assert.equal(forged.code, status.FAILED_PRECONDITION);
    assert.match(forged.details, /not a lease token this server issued/);
    assert.equal((await code(pull.completeLease({ leaseToken: 'forged' }))).code, status.FAILED_PRECONDITION);
    assert.equal((await code(pull.heartbeat({ leaseToken: '' }))).code, status.INVALID_ARGUMENT);

    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    const bad = async (policy: object) => code(api.writeNodes({ workPlanId, stages: [{ id: 's', runnerType: 't', executionPolicy: policy }] }));
    let e = await bad({ heartbeatIntervalMs: -5 });
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /stages\[0\]\.execution_policy\.heartbeat_interval_ms/);
    e = await bad({ runTimeoutMs: 50 });
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /run_timeout_ms: must be 0 .* or at least 100 ms/);
    e = await bad({ retryBackoffMs: 8 * 24 * 3600 * 1000 });
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /retry_backoff_ms/);
    e = await code(api.writeNodes({ workPlanId, stages: [{ id: 's', priority: 2_000_000 }] }));
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /stages\[0\]\.priority/);
    assert.equal((await api.getWorkPlan({ id: workPlanId })).workPlan!.version, 1n, 'nothing was written');

    e = await code(pull.lease({ runnerId: 'r', runnerType: 't', waitMs: 600_000 }));
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /wait_ms/);
    e = await code(pull.lease({ runnerId: '', runnerType: 't' }));
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /runner_id/);

    // A valid policy is kept and shown; it is frozen once the stage runs.
    const w = await api.writeNodes({
      workPlanId,
      stages: [{ id: 'p', runnerType: 'policy', priority: 3, executionPolicy: { heartbeatIntervalMs: 500, runTimeoutMs: 60_000 } }],
    });
    assert.equal(w.stages[0]!.priority, 3);
    assert.deepEqual(w.stages[0]!.executionPolicy, { pickupTimeoutMs: 0, runTimeoutMs: 60_000, heartbeatIntervalMs: 500, retryBackoffMs: 0 });
    e = await code(api.writeNodes({ workPlanId, stages: [{ id: 'p', executionPolicy: { retryBackoffMs: 10 } }] }));
    assert.equal(e.code, status.FAILED_PRECONDITION);
    assert.match(e.details, /execution_policy of stage "p" may change only while it is PLANNED/);
  });
});
