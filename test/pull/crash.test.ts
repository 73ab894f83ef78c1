// Kill -9 the server while pull executors use the faster paths (extensions): Lease with max_attempts (several
// attempts per call) and CompleteLease with lease_next (the next attempt in the completion's answer); and the Work
// stream (leases against credit, completions giving it back). After each kill, the log holds every lease a client
// was handed (nothing runs that the log does not show as leased) and every completion the server acknowledged; no
// attempt is ever leased twice; and a restarted server rebuilds the same state as an independent replay of the
// file. Rounds alternate between a kill at a random moment and a kill the instant the client holds its N-th answer
// (a server that answered before committing fails this; checked by delaying the commit and answering without
// waiting for it; for the Work stream, by writing its messages without waiting for durable(): acknowledged
// completions went missing in 3 runs of 3).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ReadModels } from '../../projections/read-models.js';
import { CheckState, NodeType, PredicateType, StageState } from '../../src/gen/turboci/v1/common.js';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { CompleteLeaseRequest, TurboCIRunnerPullClient, type LeasedAttempt, type WorkResponse } from '../../src/gen/turboci/v1/pull.js';
import { openLog } from '../support/store.js';
import { STAGE_STATE } from '../../src/transport/to-proto.js';
import { connect, startServer, tempDir } from '../support/server.js';
import { connectPull, readLog, type PullApi } from './support.js';

const dir = tempDir('turboci-pull-crash-');
after(() => dir.remove());

const TYPE = 'crashy';

/** What the clients saw: every lease handed to them (by how), every completion acknowledged. */
interface Seen {
  readonly handed: Map<string, 'lease' | 'more' | 'next' | 'stream'>;
  readonly acked: Set<string>;
}

type Executor = (address: string, runnerId: string, slots: number, seen: Seen, stopped: () => boolean, answered: () => void) => Promise<void>;

/** A Work stream with credit for `slots`: each leased attempt completed on it at once, giving its credit back. */
const streamExecutor: Executor = async (address, runnerId, slots, seen, stopped, answered) => {
  const client = new TurboCIRunnerPullClient(address, credentials.createInsecure());
  await new Promise<void>((resolve) => {
    const call = client.work(new Metadata());
    const leaseOf = new Map<bigint, string>();
    let seq = 0n;
    call.on('data', (m: WorkResponse) => {
      if (m.leased) {
        seen.handed.set(m.leased.leaseId, 'stream');
        answered();
        if (stopped()) return;
        leaseOf.set(++seq, m.leased.leaseId);
        const completion = CompleteLeaseRequest.fromPartial({
          leaseToken: m.leased.leaseToken,
          stageState: StageState.STAGE_STATE_FINAL,
          checkUpdates: m.leased.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: { by: runnerId }, finalize: true })),
        });
        call.write({ complete: { seq, completion, credit: 1 } });
      } else if (m.completed) {
        if (m.completed.code === status.OK) seen.acked.add(leaseOf.get(m.completed.seq)!);
        answered();
      }
    });
    call.on('error', () => {}); // the server died under it
    call.on('status', () => {
      clearInterval(poll);
      resolve();
    });
    const poll = setInterval(() => stopped() && call.cancel(), 20);
    call.write({ open: { runnerId, runnerType: TYPE, labels: {}, credit: slots } });
  });
  client.close();
};

/** A pull executor with `slots` slots: Lease(max_attempts = free slots), then each slot chains CompleteLease(lease_next). */
const unaryExecutor: Executor = async (address, runnerId, slots, seen, stopped, answered) => {
  const pull = connectPull(address);
  try {
    await unaryLoops(pull, runnerId, slots, seen, stopped, answered);
  } finally {
    pull.close();
  }
};

async function unaryLoops(pull: PullApi, runnerId: string, slots: number, seen: Seen, stopped: () => boolean, answered: () => void): Promise<void> {
  const work = async (first: LeasedAttempt) => {
    for (let a: LeasedAttempt | undefined = first; a && !stopped(); ) {
      const res = await pull.completeLease({
        leaseToken: a.leaseToken,
        stageState: StageState.STAGE_STATE_FINAL,
        checkUpdates: a.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: { by: runnerId }, finalize: true })),
        leaseNext: { runnerId, runnerType: TYPE, maxAttempts: 1 },
      });
      seen.acked.add(a.leaseId);
      a = res.nextAttempts[0];
      if (a) seen.handed.set(a.leaseId, 'next');
      answered();
    }
  };
  try {
    while (!stopped()) {
      const res = await pull.lease({ runnerId, runnerType: TYPE, waitMs: 500, maxAttempts: slots });
      if (res.attempt) seen.handed.set(res.attempt.leaseId, 'lease');
      for (const m of res.moreAttempts) seen.handed.set(m.leaseId, 'more');
      answered();
      await Promise.all([res.attempt, ...res.moreAttempts].filter((a): a is LeasedAttempt => a !== undefined).map(work));
    }
  } catch {
    // the server died under a call: that call may or may not have been applied
  }
}

/** A workplan with a chain of `n` stages (each needs the one before) and `n` independent ones, each finalizing a check. */
async function writeShape(api: ReturnType<typeof connect>['api'], workPlanId: string, round: number, n: number): Promise<void> {
  const stage = (id: string, dependsOn?: string) => ({
    id,
    runnerType: TYPE,
    assignments: [{ targetCheckId: `c-${id}` }],
    ...(dependsOn
      ? { dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_STAGE, targetId: dependsOn }] } }
      : {}),
  });
  const ids = [...Array.from({ length: n }, (_, i) => `r${round}-chain-${i}`), ...Array.from({ length: n }, (_, i) => `r${round}-fan-${i}`)];
  await api.writeNodes({
    workPlanId,
    checks: ids.map((id) => ({ id: `c-${id}`, state: CheckState.CHECK_STATE_PLANNED })),
    stages: ids.map((id, i) => stage(id, id.includes('-chain-') && i > 0 ? ids[i - 1] : undefined)),
  });
}

test('SIGKILL while executors lease in batches and complete-and-lease-next: nothing handed out or acknowledged is missing from the log', async () => {
  const how = await crashRounds(`${dir.path}/pull-crash.db`, unaryExecutor);
  assert.ok(how.includes('more'), 'no Lease answered with more than one attempt: the batched path was not exercised');
  assert.ok(how.includes('next'), 'no CompleteLease handed back a next attempt: complete-and-lease-next was not exercised');
});

test('SIGKILL while executors work over Work streams: nothing handed out or acknowledged is missing from the log', async () => {
  const how = await crashRounds(`${dir.path}/work-crash.db`, streamExecutor);
  assert.ok(how.includes('stream'), 'no attempt came over a Work stream');
});

/** Rounds of kill -9 under `executor`; checks the log against what the clients saw, then a replay; returns how leases came. */
async function crashRounds(dbPath: string, executor: Executor): Promise<string[]> {
  const seen: Seen = { handed: new Map(), acked: new Set() };
  let workPlanId = '';
  const rounds = 5;
  for (let round = 0; round < rounds; round++) {
    const server = await startServer(dbPath, ['--heartbeat-interval', '60000']);
    const conn = connect(server.address);
    if (!workPlanId) workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;
    await writeShape(conn.api, workPlanId, round, 300);
    let stop = false;
    // Odd rounds: killed at a random moment. Even rounds: killed synchronously the moment the client holds its
    // N-th answer, before anything else runs in this process, so an answer sent ahead of its commit is caught.
    const killAfter = round % 2 === 0 ? 3 + Math.floor(Math.random() * 12) : Infinity;
    // Progress, not time, decides when a round has done enough: on a loaded machine (or on PostgreSQL) a fixed
    // delay could end a round before a single completion. Odd rounds count acknowledged completions (at least 11
    // each, so the two of them pass the check below whatever the machine's speed), not answers: the first 12
    // answers are the leases that fill the executors' slots.
    const enoughAcks = 11 + Math.floor(Math.random() * 30);
    const ackedBefore = seen.acked.size;
    let progressed!: () => void;
    const progress = new Promise<void>((resolve) => (progressed = resolve));
    let answers = 0;
    const answered = () => {
      if (++answers === killAfter) server.child.kill('SIGKILL');
      if (round % 2 === 0 ? answers === killAfter : seen.acked.size - ackedBefore >= enoughAcks) progressed();
    };
    // Made before the executors start: an early kill must not fail the test's own setup.
    const noisePlan = (await conn.api.createWorkPlan({})).workPlan!.id;
    const executors = [0, 1, 2, 3].map((e) => executor(server.address, `x-${round}-${e}`, 3, seen, () => stop, answered));
    // Large writes to another workplan make long turns of the server's event loop, so a kill often lands between
    // an answer being ready and the commit that must come before it: an answer sent before its commit is durable
    // would show up as a lease or completion missing from the log.
    const noise = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          await conn.api.writeNodes({ workPlanId: noisePlan, checks: Array.from({ length: 400 }, (_, j) => ({ id: `n${i}-${j}`, state: CheckState.CHECK_STATE_PLANNED })) });
        } catch {
          return;
        }
      }
    })();
    // Odd rounds: once the clients have had `enough` answers, a random moment later. (The cap only keeps a broken
    // server from hanging the test; the assertions below say whether the round did enough.)
    let cap: NodeJS.Timeout | undefined;
    await Promise.race([progress, new Promise((r) => (cap = setTimeout(r, 60_000)))]);
    clearTimeout(cap);
    await new Promise((r) => setTimeout(r, Math.random() * 300));
    await server.stop('SIGKILL'); // a no-op if an answer killed it already
    stop = true;
    await Promise.all([...executors, noise]);
    conn.close();
  }

  const log = readLog(dbPath);
  const leased = new Map<string, string>(); // lease id → attempt
  const attemptsLeased = new Map<string, number>();
  const completed = new Set<string>();
  for (const rec of log) {
    const e = rec.event;
    if (e.type === 'StageAttemptLeased') {
      const attempt = `${rec.streamId}/${e.data.stageId}#${e.data.idx}`;
      leased.set(e.data.leaseId, attempt);
      attemptsLeased.set(attempt, (attemptsLeased.get(attempt) ?? 0) + 1);
    }
    if (e.type === 'StageAttemptStateChanged' && e.data.completion?.via === 'lease') completed.add(e.data.completion.id);
  }
  const notLogged = [...seen.handed.keys()].filter((id) => !leased.has(id));
  assert.deepEqual(notLogged, [], 'leases handed to a client that the log does not show');
  const lostAcks = [...seen.acked].filter((id) => !completed.has(id));
  assert.deepEqual(lostAcks, [], 'acknowledged completions the log does not hold');
  assert.deepEqual([...attemptsLeased].filter(([, n]) => n > 1), [], 'an attempt leased twice');
  assert.ok(seen.acked.size > rounds * 4, `only ${seen.acked.size} completions were acknowledged; the test did not exercise much`);

  // A last restart: the server's state equals an independent replay of the file, stage by stage.
  const server = await startServer(dbPath);
  const conn = connect(server.address);
  try {
    const live = await conn.api.queryNodes({ workPlanId, includeStages: true });
    const replayed = ReadModels.replay(openLog(dbPath).readAll()).workplan(workPlanId)!;
    assert.deepEqual(
      live.stages.map((s) => [s.id, s.state, Number(s.version), s.attempts.length]),
      [...replayed.stages.values()].map((s) => [s.id, STAGE_STATE[s.state], s.version, s.attempts.length]),
    );
  } finally {
    conn.close();
    await server.stop();
  }
  return [...seen.handed.values()];
}
