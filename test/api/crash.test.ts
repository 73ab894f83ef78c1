// Kill -9 the server at random moments while it serves writes: after each restart every acknowledged write is
// there, every event a watcher was sent is in the log (group commit lets nothing out before it is on disk), and
// the read models it rebuilt agree with an independent replay of the log file.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ReadModels } from '../../projections/read-models.js';
import { CheckState, NodeType, PredicateType } from '../../src/gen/turboci/v1/common.js';
import { WatchWorkPlanRequest, type TurboCIOrchestratorClient, type WorkPlanEvent } from '../../src/gen/turboci/v1/service.js';
import { openLog } from '../support/store.js';
import { CHECK_STATE, STAGE_STATE } from '../../src/transport/to-proto.js';
import { connect, startServer, tempDir } from '../support/server.js';

const dir = tempDir('turboci-crash-');
after(() => dir.remove());

/** What identifies a streamed change: its version, node and new state. */
const changeKey = (e: WorkPlanEvent) =>
  e.checkEvent ? `${e.version} check ${e.checkEvent.checkId} ${e.checkEvent.newState}` : e.stageEvent ? `${e.version} stage ${e.stageEvent.stageId} ${e.stageEvent.newState}` : null;

/** Collects every change a watcher receives (from `afterVersion` on) until the stream ends or `untilVersion` is reached. */
function watch(client: TurboCIOrchestratorClient, workPlanId: string, afterVersion: number, into: Set<string>, untilVersion = Infinity): Promise<void> {
  const call = client.watchWorkPlan(WatchWorkPlanRequest.fromPartial({ workPlanId, afterVersion }));
  return new Promise((resolve) => {
    call.on('data', (e: WorkPlanEvent) => {
      const key = changeKey(e);
      if (key) into.add(key);
      if (e.version >= untilVersion) call.cancel();
    });
    call.on('error', () => resolve()); // killed server, or our cancel
    call.on('end', () => resolve());
  });
}

test('SIGKILL at random moments loses no acknowledged write, and takes back no event a watcher saw', async () => {
  const dbPath = `${dir.path}/crash.db`;
  const acked = new Map<string, CheckState>(); // check id → state acknowledged by the server
  const watched = new Set<string>(); // every change a watcher was sent, over all rounds
  let workPlanId = '';
  const rounds = 6;
  for (let round = 0; round < rounds; round++) {
    const server = await startServer(dbPath);
    const conn = connect(server.address);
    if (!workPlanId) workPlanId = (await conn.api.createWorkPlan({})).workPlan!.id;

    // Every acknowledged write from earlier rounds survived the kill.
    const { checks } = await conn.api.queryNodes({ workPlanId, includeChecks: true });
    const found = new Map(checks.map((c) => [c.id, c.state]));
    for (const [id, state] of acked) {
      assert.ok(found.has(id), `round ${round}: acknowledged check ${id} is missing`);
      assert.ok(found.get(id)! >= state, `round ${round}: check ${id} went back from ${state} to ${found.get(id)}`);
    }

    // A watcher follows from the current version; four writers in flight; the server is killed at a random moment.
    const from = Number((await conn.api.getWorkPlan({ id: workPlanId })).workPlan!.version);
    const watching = watch(conn.client, workPlanId, from, watched);
    let stop = false;
    let ackedThisRound = 0;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const id = `r${round}-w${w}-${i}`;
        const prev = i > 0 ? `r${round}-w${w}-${i - 1}` : undefined;
        try {
          const res = await conn.api.writeNodes({
            workPlanId,
            checks: [
              { id, state: CheckState.CHECK_STATE_PLANNED },
              ...(prev ? [{ id: prev, state: CheckState.CHECK_STATE_FINAL }] : []),
            ],
            stages: [
              {
                id: `s-${id}`,
                dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: id }] },
              },
            ],
          });
          for (const c of res.checks) acked.set(c.id, c.state);
          ackedThisRound++;
        } catch {
          return; // the server died under this call: it may or may not have been applied
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    // Killed at a random moment once the round is under way (a few writes answered), however slow the machine is.
    for (const started = Date.now(); ackedThisRound < 4 && Date.now() - started < 30_000; ) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, Math.random() * 400));
    await server.stop('SIGKILL');
    stop = true;
    await Promise.all([...writers, watching]);
    conn.close();
  }

  // A last restart: the server's state equals an independent replay of the file, node by node.
  const server = await startServer(dbPath);
  const conn = connect(server.address);
  try {
    const live = await conn.api.queryNodes({ workPlanId });
    const replayed = ReadModels.replay(openLog(dbPath).readAll()).workplan(workPlanId)!;
    assert.deepEqual(
      live.checks.map((c) => [c.id, c.state, Number(c.version), c.results.length]),
      [...replayed.checks.values()].map((c) => [c.id, CHECK_STATE[c.state], c.version, c.results.length]),
    );
    assert.deepEqual(
      live.stages.map((s) => [s.id, s.state, Number(s.version), s.attempts.length]),
      [...replayed.stages.values()].map((s) => [s.id, STAGE_STATE[s.state], s.version, s.attempts.length]),
    );
    assert.equal(Number(live.workPlanVersion), replayed.meta.version);

    // The log's own account of every change, streamed from version 0: it holds everything the watchers were sent.
    const history = new Set<string>();
    await watch(conn.client, workPlanId, 0, history, Number(live.workPlanVersion));
    const lost = [...watched].filter((k) => !history.has(k));
    assert.deepEqual(lost, [], 'changes a watcher was sent that the log does not hold');
    assert.ok(watched.size > 0, 'the watchers received nothing; the test did not exercise much');
    assert.ok(acked.size > rounds * 4, `only ${acked.size} writes were acknowledged; the test did not exercise much`);
  } finally {
    conn.close();
    await server.stop();
  }
});
