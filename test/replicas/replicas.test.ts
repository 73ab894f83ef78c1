// Replicas: several real `turboci serve` processes on one real PostgreSQL database (always PostgreSQL, whatever
// TURBOCI_TEST_STORE says). Clients write to random replicas, with and without expected_version; a watcher on its
// own connection resumes on another replica when the one it watched through is SIGKILLed mid-load; push runners and
// pull agents are spread over the replicas. Everything is checked against the log read back from the database.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { ReadModels } from '../../projections/read-models.js';
import type { RecordedEvent } from '../../src/domain/events.js';
import { AttemptState, CheckState, StageState } from '../../src/gen/turboci/v1/common.js';
import { WatchWorkPlanRequest, type TurboCIOrchestratorClient, type WorkPlanEvent } from '../../src/gen/turboci/v1/service.js';
import { chainHash } from '../../src/infra/hash-chain.js';
import { PostgresEventStore } from '../../src/infra/pg/postgres-event-store.js';
import { connectPull, startAgent, type AgentProcess } from '../pull/support.js';
import { eventually, startTestRunner, type TestRunner } from '../support/runner.js';
import { connect, startServer, tempDir, type ServerProcess } from '../support/server.js';
import { createDatabase, dropDatabase, readAllEvents } from '../support/store.js';

const dir = tempDir('turboci-replicas-');
const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  dir.remove();
});

/** A fresh database and `n` replicas serving it, stopped and dropped after the file. */
async function replicas(n: number, args: string[]): Promise<{ url: string; servers: ServerProcess[] }> {
  const url = await createDatabase();
  cleanups.push(() => dropDatabase(url));
  const servers: ServerProcess[] = [];
  // One at a time: the first creates the schema (the others would wait on its migration lock anyway).
  for (let i = 0; i < n; i++) servers.push(await startServer(url, args));
  cleanups.push(() => Promise.all(servers.map((s) => s.stop('SIGKILL'))));
  return { url, servers };
}

const code = (err: unknown) => (err as ServiceError).code;
const isTransport = (err: unknown) => [status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED, status.INTERNAL, status.UNKNOWN].includes(code(err));
const attemptKey = (streamId: string, stageId: string, idx: number) => `${streamId}/${stageId}#${idx}`;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

/** Versions gap-free and unique per stream, positions gap-free and unique over the log. */
function assertGapFree(log: readonly RecordedEvent[]): void {
  log.forEach((e, i) => assert.equal(e.position, i + 1, `position ${i + 1} is ${e.position}`));
  const heads = new Map<string, number>();
  for (const e of log) {
    const expected = (heads.get(e.streamId) ?? 0) + 1;
    assert.equal(e.version, expected, `${e.streamId}: version ${e.version} follows ${expected - 1}`);
    heads.set(e.streamId, e.version);
  }
}

/** Every attempt opened was dispatched (push) or leased (pull) exactly once. */
function assertHandedOutOnce(log: readonly RecordedEvent[]): { attempts: number; handedOut: Map<string, number> } {
  const created = new Set<string>();
  const handedOut = new Map<string, number>();
  for (const { streamId, event: e } of log) {
    if (e.type === 'StageAttemptCreated') created.add(attemptKey(streamId, e.data.stageId, e.data.idx));
    if (e.type === 'StageAttemptDispatched' || e.type === 'StageAttemptLeased') {
      const k = attemptKey(streamId, e.data.stageId, e.data.idx);
      handedOut.set(k, (handedOut.get(k) ?? 0) + 1);
    }
  }
  for (const k of created) assert.equal(handedOut.get(k) ?? 0, 1, `attempt ${k} was handed out ${handedOut.get(k) ?? 0} times`);
  // Every replica arms the reaper's timers: the first to fire decides, the others find nothing left to do.
  const expired = log.filter((e) => e.event.type === 'StageAttemptLeaseExpired').map((e) => e.event.type === 'StageAttemptLeaseExpired' && attemptKey(e.streamId, e.event.data.stageId, e.event.data.idx));
  assert.equal(new Set(expired).size, expired.length, `an attempt expired twice: ${expired}`);
  for (const k of handedOut.keys()) assert.ok(created.has(k), `${k} was handed out but never opened`);
  return { attempts: created.size, handedOut };
}

/** What `turboci verify` checks on a file, done on the database: each stream's hash chain, and a full replay. */
function assertVerifies(url: string): void {
  const store = new PostgresEventStore(url, { readonly: true });
  try {
    const previous = new Map<string, Buffer | null>();
    for (const row of store.rawRows()) {
      const hash = chainHash(previous.get(row.stream_id) ?? null, row);
      assert.ok(row.hash && Buffer.from(row.hash).equals(hash), `hash chain broken at position ${row.position}`);
      previous.set(row.stream_id, hash);
    }
    ReadModels.replay(store.readAll());
  } finally {
    store.close();
  }
}

/** A watcher that resumes by version on whichever replica is alive; every node change it got, in order. */
function resumingWatcher(workPlanId: string, addresses: () => string[], first: string) {
  const versions: number[] = [];
  const resumes: { address: string; afterVersion: number }[] = [];
  const refusals: string[] = [];
  let stopped = false;
  let current: ReturnType<TurboCIOrchestratorClient['watchWorkPlan']> | null = null;
  let conn: ReturnType<typeof connect> | null = null;
  const open = (address: string) => {
    conn?.close();
    conn = connect(address); // its own connection: the watcher shares nothing with the writers
    const afterVersion = versions.at(-1) ?? 0;
    resumes.push({ address, afterVersion });
    const call = conn.client.watchWorkPlan(WatchWorkPlanRequest.fromPartial({ workPlanId, afterVersion }));
    current = call;
    call.on('data', (e: WorkPlanEvent) => {
      if (e.checkEvent || e.stageEvent) versions.push(Number(e.version));
    });
    call.on('error', (err: ServiceError) => {
      if (stopped) return;
      // A replica that is gone: go on from the last version on another one. Anything else is a finding.
      if (err.code !== status.UNAVAILABLE && err.code !== status.CANCELLED) refusals.push(`${status[err.code]}: ${err.details}`);
      setTimeout(() => open(pick(addresses())), 50);
    });
  };
  open(first);
  return {
    versions,
    resumes,
    refusals,
    close() {
      stopped = true;
      current?.cancel();
      conn?.close();
    },
  };
}

test('3 replicas under load, one SIGKILLed and restarted: acknowledged writes, versions, hand-outs exactly once, the watcher, verify', async (t) => {
  const args = ['--heartbeat-interval', '1000', '--attempt-timeout', '5'];
  const { url, servers } = await replicas(3, args);
  const victim = servers[2]!;
  /** The replicas taking calls: the victim leaves it when it is killed, its successor joins it when started. */
  const pool = [...servers];
  const live = () => [...pool];
  /** A call to a random live replica, sent again to another one while the one it hit is going away. */
  const onAny = async <T>(call: (api: ReturnType<typeof connect>['api']) => Promise<T>): Promise<T> => {
    for (let tries = 0; ; tries++) {
      try {
        return await call(connOf(pick(live())).api);
      } catch (err) {
        if (!isTransport(err) || tries > 20) throw err;
      }
    }
  };
  const conns = new Map(servers.map((s) => [s, connect(s.address)]));
  cleanups.push(() => [...conns.values()].forEach((c) => c.close()));
  const connOf = (s: ServerProcess) => conns.get(s)!;

  // Push runners, registered through different replicas: any replica may dispatch to them.
  const runners: TestRunner[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await startTestRunner({
      run: async (req) => ({
        stageState: StageState.STAGE_STATE_FINAL,
        checkUpdates: req.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: { by: `push-${i}` }, finalize: true, failure: undefined })),
      }),
    });
    runners.push(r);
    cleanups.push(() => r.kill());
    await connOf(servers[i]!).api.registerStageRunner({ runnerId: `push-${i}`, runnerType: 'push', address: r.address });
  }
  // Pull agents, one per replica (the victim's keeps calling its dead replica: its leases must be taken over).
  const agents: AgentProcess[] = servers.map((s, i) =>
    startAgent(s.address, ['--type', 'shell', '--concurrency', '2', '--id', `agent-${i}`, '--workdir', `${dir.path}/work-${i}`, '--log-level', 'warn']),
  );
  cleanups.push(() => Promise.all(agents.map((a) => a.stop('SIGKILL'))));

  const workPlans: string[] = [];
  for (let i = 0; i < 3; i++) workPlans.push((await onAny((api) => api.createWorkPlan({ metadata: { replicas: String(i) } }))).workPlan!.id);
  const watched = workPlans[0]!;
  const watcher = resumingWatcher(watched, () => live().map((s) => s.address), victim.address);
  cleanups.push(() => watcher.close());

  interface Acked { workPlanId: string; requestId: string; expectedVersion?: number; version: number }
  interface Aborted { workPlanId: string; requestId: string; expectedVersion: number; actual: number }
  const acked: Acked[] = [];
  const aborted: Aborted[] = [];
  const WRITERS = 4;
  const WRITES = 25;
  const KILL_AFTER = 30;
  const RESTART_AFTER = 55;
  let killed: Promise<unknown> | null = null;
  let restarted: Promise<unknown> | null = null;

  const writer = async (w: number) => {
    for (let i = 0; i < WRITES; i++) {
      const workPlanId = pick(workPlans);
      const requestId = `w${w}-${i}`;
      const runnerType = i % 3 === 0 ? 'push' : 'shell';
      const withVersion = i % 2 === 0;
      // The version as one replica sees it (it may lag the log: then the write is ABORTED, which is checked below).
      const expectedVersion = withVersion ? Number((await onAny((api) => api.getWorkPlan({ id: workPlanId }))).workPlan!.version) : undefined;
      const request = {
        workPlanId,
        requestId,
        ...(expectedVersion !== undefined ? { expectedVersion: BigInt(expectedVersion) } : {}),
        checks: [{ id: `c-${requestId}`, state: CheckState.CHECK_STATE_PLANNED }],
        stages: [{ id: `s-${requestId}`, runnerType, args: { command: runnerType === 'shell' ? 'sleep 0.2; echo ok' : 'echo ok' }, assignments: [{ targetCheckId: `c-${requestId}` }] }],
      };
      // A write whose replica died is sent again, same request id, to another one: it is applied once.
      for (let tries = 0; ; tries++) {
        try {
          const res = await connOf(pick(live())).api.writeNodes(request);
          acked.push({ workPlanId, requestId, ...(expectedVersion !== undefined ? { expectedVersion } : {}), version: Number(res.workPlanVersion) });
          break;
        } catch (err) {
          if (code(err) === status.ABORTED && expectedVersion !== undefined) {
            const m = /at version (\d+), not (\d+)/.exec((err as ServiceError).details);
            assert.ok(m, `ABORTED without the versions: ${(err as ServiceError).details}`);
            aborted.push({ workPlanId, requestId, expectedVersion, actual: Number(m[1]) });
            break;
          }
          if (!isTransport(err) || tries > 20) throw err;
        }
      }
      if (acked.length >= KILL_AFTER && !killed) {
        pool.splice(pool.indexOf(victim), 1);
        killed = victim.stop('SIGKILL');
      }
      // A new process on the same database joins while the others serve, with the victim's work still in flight.
      if (acked.length >= RESTART_AFTER && killed && !restarted) {
        restarted = startServer(url, args).then((s) => {
          cleanups.push(() => s.stop('SIGKILL'));
          conns.set(s, connect(s.address));
          pool.push(s);
        });
      }
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
  assert.ok(killed && restarted, 'the victim was killed and a successor started mid-load');
  await killed;
  await restarted;

  // Everything runs to the end: the victim's leases and sync runs are taken over.
  const survivor = connOf(servers[0]!);
  for (const workPlanId of workPlans) {
    await eventually(
      async () => {
        const { stages } = await survivor.api.queryNodes({ workPlanId, includeStages: true });
        return stages.every((s) => s.state === StageState.STAGE_STATE_FINAL) ? true : undefined;
      },
      `every stage of ${workPlanId} FINAL`,
      180_000,
    );
  }
  const finalVersion = Number((await survivor.api.getWorkPlan({ id: watched })).workPlan!.version);
  // Every replica serves the same state, the state a replay of the log gives.
  const replayed = ReadModels.replay(readAllEvents(url));
  const nodes = (m: ReturnType<typeof replayed.workplan>) => [...m!.stages.values()].map((x) => [x.id, x.version, x.attempts.length]);
  for (const s of live()) {
    for (const workPlanId of workPlans) {
      await eventually(
        async () => {
          const { stages, workPlanVersion } = await connOf(s).api.queryNodes({ workPlanId, includeStages: true });
          return Number(workPlanVersion) === replayed.workplan(workPlanId)!.meta.version ? stages : undefined;
        },
        'every replica at the log\'s version',
        60_000,
      ).then((stages) => assert.deepEqual(stages.map((x) => [x.id, Number(x.version), x.attempts.length]), nodes(replayed.workplan(workPlanId))));
    }
  }
  await eventually(async () => ((watcher.versions.at(-1) ?? 0) >= finalVersion ? true : undefined), `the watcher at version ${finalVersion}`, 60_000);
  watcher.close();
  for (const s of live()) await s.stop();
  await Promise.all(agents.map((a) => a.stop('SIGKILL')));

  const log = readAllEvents(url);
  assertGapFree(log);
  // Every acknowledged write is in the log, once, where its answer said; expected_version writes right after it.
  for (const a of acked) {
    const mine = log.filter((e) => e.streamId === a.workPlanId && e.causation.requestId === a.requestId);
    assert.ok(mine.length > 0, `acknowledged write ${a.requestId} is not in the log`);
    assert.ok(mine.at(-1)!.version <= a.version, `${a.requestId}: answered version ${a.version}, logged up to ${mine.at(-1)!.version}`);
    if (a.expectedVersion !== undefined) assert.equal(mine[0]!.version, a.expectedVersion + 1, `${a.requestId} was written right after version ${a.expectedVersion}`);
    assert.equal(log.filter((e) => e.event.type === 'CheckCreated' && e.event.data.checkId === `c-${a.requestId}`).length, 1, `${a.requestId} applied once`);
  }
  // ABORTED only when the expected version really no longer held: someone else had written after it.
  for (const a of aborted) {
    assert.ok(a.actual > a.expectedVersion, `${a.requestId}: ABORTED at ${a.actual} for expected ${a.expectedVersion}`);
    assert.equal(log.filter((e) => e.causation.requestId === a.requestId).length, 0, `the ABORTED ${a.requestId} appended nothing`);
    const next = log.find((e) => e.streamId === a.workPlanId && e.version === a.expectedVersion + 1);
    assert.ok(next && next.causation.requestId !== a.requestId, `${a.requestId}: version ${a.expectedVersion + 1} exists, written by another request`);
  }
  assert.equal(acked.length + aborted.length, WRITERS * WRITES, 'every write was answered');
  const { attempts, handedOut } = assertHandedOutOnce(log);
  assert.ok(attempts >= acked.length, `${attempts} attempts for ${acked.length} acknowledged stages`);
  assert.ok([...log].some((e) => e.event.type === 'StageAttemptDispatched') && [...log].some((e) => e.event.type === 'StageAttemptLeased'), 'both push and pull ran');
  assert.equal(handedOut.size, attempts);
  // The watcher saw every version of its workplan after the creation exactly once, in order, across the kill.
  const expected = Array.from({ length: finalVersion - 1 }, (_, i) => i + 2);
  assert.deepEqual(watcher.refusals, [], 'no resume was refused');
  assert.deepEqual(watcher.versions, expected);
  assert.ok(watcher.resumes.length >= 2 && watcher.resumes[1]!.address !== victim.address, `the watcher resumed on another replica: ${JSON.stringify(watcher.resumes)}`);
  assertVerifies(url);
  const expired = log.filter((e) => e.event.type === 'StageAttemptLeaseExpired').length;
  t.diagnostic(`${acked.length} writes acknowledged, ${aborted.length} ABORTED, ${attempts} attempts, ${expired} leases expired, ${log.length} events; watcher resumes ${JSON.stringify(watcher.resumes.map((r) => r.afterVersion))}`);
});

test('a lease handed out by a killed replica expires and is leased again through another one', async () => {
  const { url, servers } = await replicas(2, ['--heartbeat-interval', '500']);
  const [a, b] = servers as [ServerProcess, ServerProcess];
  const api = connect(b.address);
  cleanups.push(() => api.close());
  const workPlanId = (await api.api.createWorkPlan({})).workPlan!.id;
  await api.api.writeNodes({ workPlanId, checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }], stages: [{ id: 's', runnerType: 'takeover', args: { command: 'true' }, assignments: [{ targetCheckId: 'c' }] }] });

  const pullA = connectPull(a.address);
  const first = (await pullA.lease({ runnerId: 'on-a', runnerType: 'takeover', waitMs: 30_000 })).attempt!;
  assert.equal(first.attemptIdx, 1);
  await a.stop('SIGKILL');
  pullA.close();

  // B expires the lease once its heartbeats are missed, the resolver opens attempt 2, and B hands it out.
  const pullB = connectPull(b.address);
  cleanups.push(() => pullB.close());
  let second;
  for (;;) {
    second = (await pullB.lease({ runnerId: 'on-b', runnerType: 'takeover', waitMs: 30_000 })).attempt;
    if (second) break;
  }
  assert.equal(second.stageId, 's');
  assert.equal(second.attemptIdx, 2);
  // The dead lease's token is no good any more; the new one completes the stage.
  await assert.rejects(pullB.completeLease({ leaseId: first.leaseId, leaseToken: first.leaseToken, stageState: StageState.STAGE_STATE_FINAL }));
  await pullB.completeLease({ leaseId: second.leaseId, leaseToken: second.leaseToken, stageState: StageState.STAGE_STATE_FINAL, checkUpdates: [{ checkId: 'c', state: CheckState.CHECK_STATE_FINAL, finalize: true }] });
  const stage = (await api.api.queryNodes({ workPlanId, includeStages: true })).stages[0]!;
  assert.equal(stage.state, StageState.STAGE_STATE_FINAL);
  assert.deepEqual(stage.attempts.map((x) => x.state), [AttemptState.ATTEMPT_STATE_INCOMPLETE, AttemptState.ATTEMPT_STATE_COMPLETE]);
  await b.stop();

  const log = readAllEvents(url).filter((e) => e.streamId === workPlanId);
  assertGapFree(readAllEvents(url));
  assertHandedOutOnce(log);
  const expiries = log.filter((e) => e.event.type === 'StageAttemptLeaseExpired');
  assert.deepEqual(expiries.map((e) => e.event.type === 'StageAttemptLeaseExpired' && [e.event.data.idx, e.event.data.reason]), [[1, 'HEARTBEATS_MISSED']], 'expired once');
  assertVerifies(url);
});

test('a sync run whose replica died with its answer is retried through another replica; a replica starting meanwhile fails nobody', async () => {
  // A alone dispatches attempt 1; B starts while A waits for the runner's answer; then A dies with it.
  const { url, servers } = await replicas(1, []);
  const a = servers[0]!;
  const apiA = connect(a.address);
  cleanups.push(() => apiA.close());
  // Attempt 1 never answers; later attempts answer at once.
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  cleanups.push(() => release());
  const runner = await startTestRunner({
    run: async (req) => {
      if (req.attemptIdx === 1) await held;
      return { stageState: StageState.STAGE_STATE_FINAL, checkUpdates: req.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: {}, finalize: true, failure: undefined })) };
    },
  });
  cleanups.push(() => runner.kill());
  await apiA.api.registerStageRunner({ runnerId: 'sync', runnerType: 'sync-takeover', address: runner.address });
  const workPlanId = (await apiA.api.createWorkPlan({})).workPlan!.id;
  await apiA.api.writeNodes({
    workPlanId,
    checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }],
    stages: [{ id: 's', runnerType: 'sync-takeover', attemptTimeoutSeconds: 3, args: {}, assignments: [{ targetCheckId: 'c' }] }],
  });
  await eventually(async () => (runner.runs.length > 0 ? true : undefined), 'the first Run');
  const b = await startServer(url, []);
  cleanups.push(() => b.stop('SIGKILL'));
  const apiB = connect(b.address);
  cleanups.push(() => apiB.close());
  const running = (await apiB.api.queryNodes({ workPlanId, includeStages: true })).stages[0]!;
  assert.equal(running.attempts.length, 1);
  assert.notEqual(running.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE, 'B did not fail A\'s run when it started');
  await a.stop('SIGKILL');
  const stage = await eventually(
    async () => {
      const s = (await apiB.api.queryNodes({ workPlanId, includeStages: true })).stages[0]!;
      return s.state === StageState.STAGE_STATE_FINAL ? s : undefined;
    },
    'the stage FINAL through attempt 2',
    60_000,
  );
  assert.deepEqual(stage.attempts.map((x) => x.state), [AttemptState.ATTEMPT_STATE_INCOMPLETE, AttemptState.ATTEMPT_STATE_COMPLETE]);
  // Its 3 s deadline or the orphan check (every 5 s: A no longer holds a connection), whichever comes first.
  assert.match(JSON.stringify(stage.attempts[0]), /deadline exceeded|the replica that ran it synchronously \(.+\) is gone/, 'attempt 1 failed');
  assert.equal(runner.runs.length, 2);
  release();
  await b.stop();
  const log = readAllEvents(url);
  assertGapFree(log);
  assertHandedOutOnce(log.filter((e) => e.streamId === workPlanId));
  assertVerifies(url);
});

test('clients, agents and runners may switch replicas between calls: what one replica acknowledged, the next one knows', async () => {
  const { url, servers } = await replicas(2, ['--heartbeat-interval', '60000']);
  const [a, b] = servers.map((s) => connect(s.address)) as [ReturnType<typeof connect>, ReturnType<typeof connect>];
  const [pullA, pullB] = servers.map((s) => connectPull(s.address));
  cleanups.push(() => [a, b, pullA!, pullB!].forEach((c) => c.close()));
  // Each step is acknowledged by one replica and followed at once by a call to the other one, many times over: a
  // replica that answered from what it had folded so far would refuse some of them (NOT_FOUND, an unknown lease).
  for (let i = 0; i < 40; i++) {
    const [first, second] = i % 2 === 0 ? [a, b] : [b, a];
    const [leaseOn, heartbeatOn] = i % 2 === 0 ? [pullA!, pullB!] : [pullB!, pullA!];
    const workPlanId = (await first.api.createWorkPlan({})).workPlan!.id;
    assert.equal((await second.api.getWorkPlan({ id: workPlanId })).workPlan!.id, workPlanId);
    const written = await second.api.writeNodes({ workPlanId, stages: [{ id: 's', runnerType: `switch-${i}`, args: {} }] });
    // A watch resumed on the other replica from the version the first one answered.
    const watch = first.client.watchWorkPlan(WatchWorkPlanRequest.fromPartial({ workPlanId, afterVersion: written.workPlanVersion }));
    const watched = new Promise<void>((resolve, reject) => {
      watch.on('data', () => undefined);
      watch.on('error', (err: ServiceError) => (err.code === status.CANCELLED ? resolve() : reject(err)));
    });
    const leased = (await leaseOn.lease({ runnerId: `agent-${i}`, runnerType: `switch-${i}`, waitMs: 10_000 })).attempt!;
    assert.ok(leased, 'leased');
    await heartbeatOn.heartbeat({ leaseToken: leased.leaseToken });
    await leaseOn.completeLease({ leaseId: leased.leaseId, leaseToken: leased.leaseToken, stageState: StageState.STAGE_STATE_FINAL });
    watch.cancel();
    await watched;
  }
  for (const s of servers) await s.stop();
  assertGapFree(readAllEvents(url));
  assertVerifies(url);
});

test('timers run on every replica and act once: a runner registration\'s TTL, an approval deadline, a pickup timeout', async () => {
  const { url, servers } = await replicas(3, []);
  const conns = servers.map((s) => connect(s.address));
  cleanups.push(() => conns.forEach((c) => c.close()));
  const [a, b, c] = conns as [ReturnType<typeof connect>, ReturnType<typeof connect>, ReturnType<typeof connect>];
  // Each is set up through a different replica; all three arm the timer, from their own fold of the log.
  await a.api.registerStageRunner({ runnerId: 'short-lived', runnerType: 'ttl', address: '127.0.0.1:9', ttlSeconds: 1n });
  const workPlanId = (await b.api.createWorkPlan({})).workPlan!.id;
  await c.api.writeNodes({
    workPlanId,
    checks: [{ id: 'gate', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { approvalsRequired: 1, deadline: new Date(Date.now() + 1000) } }],
    stages: [{ id: 'unwanted', runnerType: 'nobody', maxAttempts: 1, args: {}, executionPolicy: { pickupTimeoutMs: 1000 } }],
  });
  await eventually(async () => (readAllEvents(url).some((e) => e.event.type === 'RunnerExpired') ? true : undefined), 'the registration expired', 30_000);
  assert.deepEqual((await b.api.listStageRunners({ runnerType: 'ttl' })).runners, []);
  await eventually(
    async () => {
      const { checks, stages } = await b.api.queryNodes({ workPlanId });
      return checks[0]!.state === CheckState.CHECK_STATE_FINAL && stages[0]!.state === StageState.STAGE_STATE_FINAL ? true : undefined;
    },
    'the gate timed out and the stage gave up',
    30_000,
  );
  // Whatever each replica's timer saw, nothing fires twice; let any late timer have its turn on the log first.
  for (const s of servers) await s.stop();
  const log = readAllEvents(url);
  assertGapFree(log);
  const count = (type: string) => log.filter((e) => e.event.type === type).length;
  assert.equal(count('RunnerExpired'), 1, 'the registration expired once');
  assert.equal(count('CheckApprovalTimedOut'), 1, 'the gate timed out once');
  assert.equal(count('StageAttemptLeaseExpired'), 1, 'the attempt expired once');
  assertVerifies(url);
});
