// TurboCIRunnerPull.Work (extension) over real gRPC against the real server process: leases against credit as a
// long poll, completions answered by seq and refilling their slot in the same commit, refusals answered on the
// stream, leases that outlive their stream, drain, and the protocol errors that end a stream.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata, status, type ClientDuplexStream } from '@grpc/grpc-js';
import { AttemptState, CheckState, StageState } from '../../src/gen/turboci/v1/common.js';
import { CompleteLeaseRequest, TurboCIRunnerPullClient, type LeasedAttempt, type WorkRequest, type WorkResponse } from '../../src/gen/turboci/v1/pull.js';
import { connect, startServer, tempDir, type Api, type ServerProcess } from '../support/server.js';
import { eventually } from '../support/runner.js';
import { connectPull, readLog, type PullApi } from './support.js';

/** A Work stream seen from the agent's side: every message received, in order, and how the stream ended. */
interface Stream {
  readonly got: WorkResponse[];
  readonly ended: Promise<{ code: status; details: string }>;
  send(m: Partial<WorkRequest>): void;
  /** Waits until `n` messages have arrived in all (or fails after 10 s). */
  received(n: number): Promise<WorkResponse[]>;
  leases(): LeasedAttempt[];
  end(): void;
  cancel(): void;
}

function openStream(client: TurboCIRunnerPullClient): Stream {
  const call: ClientDuplexStream<WorkRequest, WorkResponse> = client.work(new Metadata());
  const got: WorkResponse[] = [];
  call.on('data', (m: WorkResponse) => got.push(m));
  call.on('error', () => {});
  const ended = new Promise<{ code: status; details: string }>((resolve) => call.on('status', (s: { code: status; details: string }) => resolve({ code: s.code, details: s.details })));
  return {
    got,
    ended,
    send: (m) => call.write(m as WorkRequest),
    received: (n) => eventually(async () => (got.length >= n ? got.slice(0, n) : undefined), `${n} messages on the stream`, 10_000),
    leases: () => got.flatMap((m) => (m.leased ? [m.leased] : [])),
    end: () => call.end(),
    cancel: () => call.cancel(),
  };
}

const success = (l: LeasedAttempt) =>
  CompleteLeaseRequest.fromPartial({
    leaseToken: l.leaseToken,
    stageState: StageState.STAGE_STATE_FINAL,
    checkUpdates: l.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: { ok: true }, finalize: true })),
  });

const open = (runnerId: string, runnerType: string, credit: number): Partial<WorkRequest> => ({ open: { runnerId, runnerType, labels: {}, credit } });

describe('Work stream', () => {
  const dir = tempDir();
  let server: ServerProcess;
  let api: Api;
  let closeApi: () => void;
  let client: TurboCIRunnerPullClient;
  let pull: PullApi;

  before(async () => {
    server = await startServer(`${dir.path}/work.db`, ['--heartbeat-interval', '5000']);
    ({ api, close: closeApi } = connect(server.address));
    client = new TurboCIRunnerPullClient(server.address, credentials.createInsecure());
    pull = connectPull(server.address);
  });
  after(async () => {
    client.close();
    pull.close();
    closeApi();
    await server.stop();
    dir.remove();
  });

  const writeStages = async (runnerType: string, ids: string[]) => {
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({
      workPlanId,
      checks: ids.map((id) => ({ id: `c-${id}`, state: CheckState.CHECK_STATE_PLANNED })),
      stages: ids.map((id) => ({ id, runnerType, assignments: [{ targetCheckId: `c-${id}` }] })),
    });
    return workPlanId;
  };

  test('an open stream is a long poll: attempts written later are leased to it, never more than its credit; each completion is answered by seq and its slot refilled in the same commit', async () => {
    const s = openStream(client);
    s.send(open('w-1', 'basic', 2));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(s.got.length, 0, 'nothing to lease yet');
    const metrics = await (await fetch(`http://${server.httpAddress}/metrics`)).text();
    assert.match(metrics, /^turboci_work_streams\{runner_type="basic"\} 1$/m, 'the open stream is counted');
    const workPlanId = await writeStages('basic', ['a', 'b', 'c', 'd']);
    const [first, second] = await s.received(2);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(s.got.length, 2, 'credit 2: two leases, no more');
    assert.ok(first!.leased && second!.leased);
    assert.deepEqual(new Set([first!.leased.stageId, second!.leased.stageId]).size, 2);
    assert.equal(first!.leased.workPlanId, workPlanId);
    const stage = (await api.queryNodes({ workPlanId, stageIds: [first!.leased.stageId], includeStages: true })).stages[0]!;
    assert.equal(stage.attempts[0]!.state, AttemptState.ATTEMPT_STATE_RUNNING);
    assert.equal(stage.attempts[0]!.processUid, 'w-1');

    s.send({ complete: { seq: 7n, completion: success(first!.leased), credit: 1 } });
    const [, , answer, next] = await s.received(4);
    assert.deepEqual(answer!.completed, { seq: 7n, code: status.OK, message: '' });
    assert.ok(next!.leased, 'the freed slot was refilled');
    const log = readLog(server.dbPath).filter((r) => r.streamId === workPlanId);
    const done = log.find((r) => r.event.type === 'StageAttemptStateChanged' && r.event.data.completion?.id === first!.leased!.leaseId)!;
    const refilled = log.find((r) => r.event.type === 'StageAttemptLeased' && r.event.data.leaseId === next!.leased!.leaseId)!;
    assert.ok(done && refilled && refilled.version > done.version, 'the slot was refilled after the completion was recorded');

    // An identical repeat is acknowledged; add_credit leases the last attempt.
    s.send({ complete: { seq: 8n, completion: success(first!.leased), credit: 0 } });
    s.send({ addCredit: 1 });
    const [, , , , repeat, last] = await s.received(6);
    assert.deepEqual(repeat!.completed, { seq: 8n, code: status.OK, message: '' });
    assert.ok(last!.leased);
    assert.deepEqual(new Set(s.leases().map((l) => l.stageId)), new Set(['a', 'b', 'c', 'd']));
    for (const [i, l] of s.leases().slice(1).entries()) s.send({ complete: { seq: BigInt(100 + i), completion: success(l), credit: 0 } });
    await s.received(9);
    assert.deepEqual(s.got.slice(6).map((m) => m.completed?.code), [status.OK, status.OK, status.OK]);
    const stages = (await api.queryNodes({ workPlanId, includeStages: true })).stages;
    assert.deepEqual(stages.map((x) => x.state), stages.map(() => StageState.STAGE_STATE_FINAL));
    s.end();
    assert.equal((await s.ended).code, status.OK, 'a half-close ends the stream with OK');
  });

  test('a refused completion is answered on the stream with its status and still gives its credit back; the stream stays open', async () => {
    const s = openStream(client);
    s.send(open('w-2', 'refusals', 1));
    const workPlanId = await writeStages('refusals', ['x', 'y']);
    const [first] = await s.received(1);
    s.send({ complete: { seq: 1n, completion: { ...success(first!.leased!), leaseToken: 'not-a-token' }, credit: 1 } });
    const [, refused, refill] = await s.received(3);
    assert.equal(refused!.completed!.code, status.FAILED_PRECONDITION);
    assert.match(refused!.completed!.message, /lease_token/);
    assert.ok(refill!.leased, 'the credit came back: the other stage was leased');
    // lease_next has no place on a stream: INVALID_ARGUMENT naming the field.
    s.send({ complete: { seq: 2n, completion: { ...success(first!.leased!), leaseNext: { runnerId: 'w-2', runnerType: 'refusals', labels: {}, waitMs: 0, maxAttempts: 1 } }, credit: 0 } });
    const [, , , badNext] = await s.received(4);
    assert.equal(badNext!.completed!.code, status.INVALID_ARGUMENT);
    assert.match(badNext!.completed!.message, /complete\.completion\.lease_next/);
    // A check update with a value over its limit: refused, nothing applied.
    const huge = CompleteLeaseRequest.fromPartial({ leaseToken: first!.leased!.leaseToken, stageState: StageState.STAGE_STATE_FINAL, details: { blob: 'x'.repeat(2 * 1024 * 1024) } });
    s.send({ complete: { seq: 3n, completion: huge, credit: 0 } });
    const [, , , , tooBig] = await s.received(5);
    assert.equal(tooBig!.completed!.code, status.INVALID_ARGUMENT);
    assert.match(tooBig!.completed!.message, /details/);
    const x = (await api.queryNodes({ workPlanId, stageIds: [first!.leased!.stageId], includeStages: true })).stages[0]!;
    assert.equal(x.attempts[0]!.state, AttemptState.ATTEMPT_STATE_RUNNING, 'none of the refused completions was applied');
    s.cancel();
  });

  test('leases outlive their stream: after a cancel they are completed by CompleteLease or on a new stream; drain stops leasing', async () => {
    const s = openStream(client);
    s.send(open('w-3', 'outlive', 2));
    const workPlanId = await writeStages('outlive', ['p', 'q', 'r']);
    const [a, b] = await s.received(2);
    s.cancel();
    assert.equal((await s.ended).code, status.CANCELLED);
    assert.equal((await pull.completeLease(success(a!.leased!) as unknown as Record<string, unknown>)).acknowledged, true);

    const t = openStream(client);
    t.send(open('w-3', 'outlive', 0));
    t.send({ drain: true });
    t.send({ complete: { seq: 1n, completion: success(b!.leased!), credit: 1 } });
    const [answer] = await t.received(1);
    assert.deepEqual(answer!.completed, { seq: 1n, code: status.OK, message: '' });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(t.got.length, 1, 'draining: the credit given back leased nothing (r is still offerable)');
    t.end();
    assert.equal((await t.ended).code, status.OK);
    const states = (await api.queryNodes({ workPlanId, includeStages: true })).stages.map((x) => [x.id, x.state]);
    assert.deepEqual(states, [
      ['p', StageState.STAGE_STATE_FINAL],
      ['q', StageState.STAGE_STATE_FINAL],
      ['r', StageState.STAGE_STATE_ATTEMPTING],
    ]);
    const u = openStream(client);
    u.send(open('w-4', 'outlive', 1));
    const [r] = await u.received(1);
    assert.equal(r!.leased!.stageId, 'r');
    u.cancel();
  });

  test('protocol errors end the stream with INVALID_ARGUMENT naming the field', async () => {
    const cases: [Partial<WorkRequest>[], RegExp][] = [
      [[{ addCredit: 1 }], /open: the first message must be open/],
      [[open('w-5', 'basic', 1001)], /open\.credit: must be at most 1000/],
      [[open('', 'basic', 1)], /open\.runner_id: runner_id is required/],
      [[open('w-5', 'no spaces', 1)], /open\.runner_type/],
      [[open('w-5', 'nothing', 0), { addCredit: 0 }], /add_credit: must be at least 1/],
      [[open('w-5', 'nothing', 0), open('w-5', 'nothing', 0)], /open: only the first message may be open/],
      [[open('w-5', 'nothing', 0), {}], /kind: one of open, complete, add_credit or drain must be set/],
    ];
    for (const [messages, expected] of cases) {
      const s = openStream(client);
      for (const m of messages) s.send(m);
      const end = await s.ended;
      assert.equal(end.code, status.INVALID_ARGUMENT, `${JSON.stringify(messages, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}: ${end.details}`);
      assert.match(end.details, expected);
    }
  });
});
