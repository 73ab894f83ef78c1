// WatchWorkPlan against the real server process with a real gRPC client: filters, snapshot then live, completion,
// WatchWorkPlanBatched and its coalescing window, resume (after a disconnect, under racing writes, after
// RESOURCE_EXHAUSTED), cancellation and shutdown leaking no subscription (counted from the server's own log lines).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Metadata, status, type ClientReadableStream } from '@grpc/grpc-js';
import fc from 'fast-check';
import { AttemptState, CheckState, StageState } from '../src/gen/turboci/v1/common.js';
import {
  type TurboCIOrchestratorClient,
  WatchWorkPlanRequest,
  type WorkPlanEvent,
  type WorkPlanEventBatch,
  type WriteNodesRequest,
} from '../src/gen/turboci/v1/service.js';
import { connect, serverPerFile, startServer, tempDir, type ServerProcess } from './support/server.js';

type DeepPartial<T> = T extends Date | Function
  ? T
  : T extends readonly (infer U)[]
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

const WAIT_MS = 20_000;
const EXAMPLE = fileURLToPath(new URL('../examples/watch.js', import.meta.url));

/** Resolves when `ready()` holds, re-checked on every `poke`; rejects with `what` after WAIT_MS. */
function waitUntil(ready: () => boolean, what: () => string, subscribe: (poke: () => void) => () => void): Promise<void> {
  if (ready()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out waiting for ${what()}`));
    }, WAIT_MS);
    const unsubscribe = subscribe(() => {
      if (!ready()) return;
      clearTimeout(timer);
      unsubscribe();
      resolve();
    });
  });
}

/** Where a workplan stands: its version, its node count, whether it is complete (a completion is due at it). */
interface Target {
  readonly version: number;
  readonly nodes: number;
  readonly complete: boolean;
}

interface Ended {
  readonly code: status;
  readonly details: string;
}

/** A WorkPlanEvent with its int64 version as a number (versions stay far below 2^53). */
type Ev = Omit<WorkPlanEvent, 'version'> & { version: number };
/** A WatchWorkPlanRequest with after_version as a number. */
type WatchReq = Omit<DeepPartial<WatchWorkPlanRequest>, 'afterVersion'> & { afterVersion?: number | undefined };

/** One WatchWorkPlan call (or, batched, WatchWorkPlanBatched): collects events and the final status. */
class Watch {
  readonly events: Ev[] = [];
  /** Messages received (one per event unless batched). */
  messages = 0;
  ended: Ended | null = null;
  readonly stream: ClientReadableStream<WorkPlanEvent | WorkPlanEventBatch>;
  private readonly pokes = new Set<() => void>();

  constructor(client: TurboCIOrchestratorClient, req: WatchReq, deadlineMs = 120_000, batched = false) {
    const { afterVersion, ...rest } = req;
    const full = WatchWorkPlanRequest.fromPartial({ ...(rest as WatchWorkPlanRequest), afterVersion: afterVersion === undefined ? undefined : BigInt(afterVersion) });
    const options = { deadline: Date.now() + deadlineMs };
    this.stream = batched ? client.watchWorkPlanBatched(full, new Metadata(), options) : client.watchWorkPlan(full, new Metadata(), options);
    this.stream.on('data', (message: WorkPlanEvent | WorkPlanEventBatch) => {
      this.messages++;
      for (const e of 'events' in message ? message.events : [message]) this.events.push({ ...e, version: Number(e.version) });
      this.poke();
    });
    this.stream.on('error', () => {}); // the status event carries it
    this.stream.on('status', (s: { code: status; details: string }) => {
      // grpc-js reports the status as soon as the trailers arrive, even while messages received before them still
      // wait in a paused stream's buffer: the stream has ended for the test only once those are delivered too.
      const ended = () => {
        this.ended = { code: s.code, details: s.details };
        this.poke();
      };
      if (this.stream.readableLength === 0) ended();
      else this.stream.once('end', ended);
    });
  }

  /** Versions of the node events (check or stage), in order. */
  get nodeVersions(): number[] {
    return this.events.filter((e) => e.checkEvent || e.stageEvent).map((e) => e.version);
  }
  get lastVersion(): number {
    return this.events.at(-1)?.version ?? 0;
  }

  until(ready: (w: Watch) => boolean, what: string): Promise<void> {
    return waitUntil(
      () => ready(this),
      () => `${what} (got ${this.events.length} events, last version ${this.lastVersion}, ended ${JSON.stringify(this.ended)})`,
      (poke) => {
        this.pokes.add(poke);
        return () => this.pokes.delete(poke);
      },
    );
  }
  untilVersion(v: number): Promise<void> {
    return this.until((w) => w.events.some((e) => e.version >= v), `version ${v}`);
  }
  /** Until it has the change at `version` and, when the workplan is complete there, the completion event after it. */
  untilCaughtUp(t: Target): Promise<void> {
    const reached = (w: Watch) =>
      w.events.some((e) => !e.snapshot && e.version >= t.version) ||
      // A snapshot taken at that version: all of it (unfiltered watches only).
      w.events.filter((e) => e.snapshot && !e.completedEvent && e.version === t.version).length >= t.nodes;
    return this.until(
      (w) => reached(w) && (!t.complete || w.events.some((e) => e.completedEvent && e.version >= t.version)),
      `version ${t.version}${t.complete ? ' and its completion' : ''}`,
    );
  }
  async end(): Promise<Ended> {
    await this.until((w) => w.ended !== null, 'the end of the stream');
    return this.ended!;
  }
  async cancel(): Promise<void> {
    this.stream.cancel();
    await this.end();
  }
  private poke(): void {
    for (const p of [...this.pokes]) p();
  }
}

/** The server's watch subscription log lines. */
function subscriptionLines(server: ServerProcess) {
  return server.logs.filter((l) => l.msg === 'watch subscription opened' || l.msg === 'watch subscription closed');
}
/** The live subscription count the server last logged. */
function liveSubscriptions(server: ServerProcess): number {
  return Number(subscriptionLines(server).at(-1)?.subscriptions ?? 0);
}
function untilLog(server: ServerProcess, pred: (l: Record<string, unknown>) => boolean, what: string): Promise<void> {
  return waitUntil(
    () => server.logs.some(pred),
    () => what,
    (poke) => {
      const timer = setInterval(poke, 20);
      return () => clearInterval(timer);
    },
  );
}
function untilNoSubscriptions(server: ServerProcess): Promise<void> {
  return waitUntil(
    () => liveSubscriptions(server) === 0,
    () => `no watch subscriptions (log says ${liveSubscriptions(server)})`,
    (poke) => {
      const timer = setInterval(poke, 20);
      return () => clearInterval(timer);
    },
  );
}

/** The status a watch that must fail ends with. */
async function grpcError(w: Watch): Promise<Ended> {
  const end = await w.end();
  assert.equal(w.events.length, 0);
  return end;
}

/** fc.assert, with the counterexample's own failure in the message (the test runner does not print `cause`). */
async function fcAssert<T>(property: fc.IAsyncProperty<T>, params: fc.Parameters<T>): Promise<void> {
  try {
    await fc.assert(property, params);
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    if (err instanceof Error && cause) err.message += `\n${cause instanceof Error ? cause.message : String(cause)}`;
    throw err;
  }
}

const stripSnapshot = (e: Ev) => ({ ...e, snapshot: false });

const suite = serverPerFile('watch');

async function newWorkPlan(): Promise<string> {
  return (await suite.api.createWorkPlan({ metadata: { test: 'watch' } })).workPlan!.id;
}
async function write(req: DeepPartial<WriteNodesRequest>): Promise<number> {
  return Number((await suite.api.writeNodes(req)).workPlanVersion);
}
async function versionOf(id: string): Promise<number> {
  return Number((await suite.api.getWorkPlan({ id })).workPlan!.version);
}
async function target(id: string): Promise<Target> {
  const q = await suite.api.queryNodes({ workPlanId: id });
  const states = [...q.checks.map((c) => c.state === CheckState.CHECK_STATE_FINAL), ...q.stages.map((s) => s.state === StageState.STAGE_STATE_FINAL)];
  return { version: Number(q.workPlanVersion), nodes: states.length, complete: states.length > 0 && states.every(Boolean) };
}
/** The whole history of a workplan as WatchWorkPlan tells it from the log (after_version 0), up to its version now. */
async function history(id: string): Promise<Ev[]> {
  const t = await target(id);
  const w = new Watch(suite.client, { workPlanId: id, afterVersion: 0 });
  await w.untilCaughtUp(t);
  await w.cancel();
  return w.events;
}

// ---------------------------------------------------------------------------------------------------------------

describe('snapshot then live', () => {
  test('starts with one snapshot event per node at the current version, then every change with the node right after it', async () => {
    const id = await newWorkPlan();
    const v0 = await write({
      workPlanId: id,
      checks: [{ id: 'lint', kind: 'lint' }, { id: 'build', kind: 'build', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [{ id: 'builder', assignments: [{ targetCheckId: 'build', goalState: CheckState.CHECK_STATE_FINAL }] }],
    });
    const w = new Watch(suite.client, { workPlanId: id });
    await w.until((x) => x.events.length === 3, 'the snapshot');
    for (const e of w.events) {
      assert.equal(e.snapshot, true);
      assert.equal(e.version, v0);
      const ev = e.checkEvent ?? e.stageEvent!;
      assert.equal(ev.oldState, ev.newState);
    }
    assert.deepEqual(
      w.events.map((e) => [e.checkEvent?.checkId ?? e.stageEvent?.stageId, e.checkEvent?.newState ?? e.stageEvent?.newState]),
      [
        ['lint', CheckState.CHECK_STATE_PLANNING],
        ['build', CheckState.CHECK_STATE_WAITING],
        ['builder', StageState.STAGE_STATE_ATTEMPTING],
      ],
    );

    // One write, several events: a new check created PLANNED becomes WAITING through the resolver. Each event shows
    // the node as it stood right after that event, not after the whole write.
    const v1 = await write({ workPlanId: id, checks: [{ id: 'test', kind: 'test', state: CheckState.CHECK_STATE_PLANNED }] });
    await w.untilVersion(v1);
    const live = w.events.slice(3);
    assert.deepEqual(
      live.map((e) => e.version),
      Array.from({ length: v1 - v0 }, (_, i) => v0 + 1 + i),
    );
    assert.ok(live.every((e) => e.snapshot === false && e.checkEvent?.checkId === 'test'));
    assert.deepEqual(
      live.map((e) => [e.checkEvent!.oldState, e.checkEvent!.newState, e.checkEvent!.check!.state, Number(e.checkEvent!.check!.version)]),
      [
        [CheckState.CHECK_STATE_UNKNOWN, CheckState.CHECK_STATE_PLANNED, CheckState.CHECK_STATE_PLANNED, 1],
        [CheckState.CHECK_STATE_PLANNED, CheckState.CHECK_STATE_WAITING, CheckState.CHECK_STATE_WAITING, 2],
      ],
    );

    // Changes that are not state changes are streamed too, with old_state == new_state: a result, a progress entry.
    const v2 = await write({
      workPlanId: id,
      checks: [{ id: 'build', result: { ownerType: 'stage', ownerId: 'builder', data: { step: 1 } } }],
      stages: [{ id: 'builder', currentAttempt: { processUid: 'runner-1', progress: { message: 'compiling' } } }],
    });
    await w.untilVersion(v2);
    const byVersion = new Map(w.events.map((e) => [e.version, e]));
    const result = [...byVersion.values()].find((e) => e.checkEvent?.checkId === 'build' && !e.snapshot)!;
    assert.equal(result.checkEvent!.oldState, CheckState.CHECK_STATE_WAITING);
    assert.equal(result.checkEvent!.newState, CheckState.CHECK_STATE_WAITING);
    assert.deepEqual(result.checkEvent!.check!.results.map((r) => r.data), [{ step: 1 }]);
    const progress = byVersion.get(v2)!;
    assert.equal(progress.stageEvent?.stageId, 'builder');
    assert.equal(progress.stageEvent!.oldState, StageState.STAGE_STATE_ATTEMPTING);
    assert.equal(progress.stageEvent!.newState, StageState.STAGE_STATE_ATTEMPTING);
    assert.deepEqual(progress.stageEvent!.stage!.attempts.at(-1)!.progress.map((p) => p.message), ['compiling']);

    // The live events are exactly what the log says (a watch resumed from version 0 over the same range).
    const h = await history(id);
    const fromLog = h.filter((e) => e.version > v0);
    assert.deepEqual(w.events.slice(3).map(stripSnapshot), fromLog);
    await w.cancel();
  });
});

describe('filters', () => {
  test('kind, id and state filters (empty = all; neither include flag = both kinds), in snapshots and live', async () => {
    const id = await newWorkPlan();
    await write({
      workPlanId: id,
      checks: [{ id: 'a', kind: 'k' }, { id: 'b', kind: 'k', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [{ id: 's1' }, { id: 's2' }],
    });
    const cases: Array<[string, WatchReq, (e: Ev) => boolean]> = [
      ['all', {}, () => true],
      ['both flags', { includeChecks: true, includeStages: true }, () => true],
      ['checks only', { includeChecks: true }, (e) => !!e.checkEvent],
      ['stages only', { includeStages: true }, (e) => !!e.stageEvent],
      ['check id', { checkIdFilter: ['b'] }, (e) => (e.checkEvent ? e.checkEvent.checkId === 'b' : true)],
      ['stage id, stages only', { includeStages: true, stageIdFilter: ['s2'] }, (e) => e.stageEvent?.stageId === 's2'],
      [
        'check state',
        { checkStateFilter: [CheckState.CHECK_STATE_FINAL] },
        (e) => (e.checkEvent ? e.checkEvent.newState === CheckState.CHECK_STATE_FINAL : true),
      ],
      [
        'stage states and check ids together',
        { stageStateFilter: [StageState.STAGE_STATE_FINAL, StageState.STAGE_STATE_PLANNED], checkIdFilter: ['a', 'zzz'] },
        (e) =>
          e.checkEvent
            ? e.checkEvent.checkId === 'a'
            : [StageState.STAGE_STATE_FINAL, StageState.STAGE_STATE_PLANNED].includes(e.stageEvent!.newState),
      ],
    ];
    const snapshotWatches = cases.map(([, f]) => new Watch(suite.client, { ...f, workPlanId: id }));
    const resumedWatches = cases.map(([, f]) => new Watch(suite.client, { ...f, workPlanId: id, afterVersion: 0 }));
    const all = new Watch(suite.client, { workPlanId: id });
    await all.until((w) => w.events.length === 4, 'the full snapshot');
    const snapshot = [...all.events];

    const last = await write({
      workPlanId: id,
      checks: [
        { id: 'a', state: CheckState.CHECK_STATE_FINAL },
        { id: 'b', result: { ownerType: 't', ownerId: 'x', data: { n: 1 } } },
        { id: 'c', kind: 'k', state: CheckState.CHECK_STATE_FINAL },
      ],
      stages: [{ id: 's1', state: StageState.STAGE_STATE_FINAL }, { id: 's3' }],
    });
    await all.untilVersion(last);
    const liveAll = all.events.slice(snapshot.length);
    assert.ok(liveAll.length >= 5);
    const fullHistory = await history(id);

    for (const [i, [name, , keep]] of cases.entries()) {
      const s = snapshotWatches[i]!;
      const r = resumedWatches[i]!;
      // What the unfiltered watch saw, filtered client-side, is exactly what the filtered watch gets.
      const expectedSnapshot = snapshot.filter(keep);
      const expectedLive = liveAll.filter(keep);
      const expectedHistory = fullHistory.filter(keep);
      await s.until((w) => w.events.length >= expectedSnapshot.length + expectedLive.length, `${name}: snapshot + live`);
      await r.until((w) => w.events.length >= expectedHistory.length, `${name}: history + live`);
      assert.deepEqual(s.events, [...expectedSnapshot, ...expectedLive], name);
      assert.deepEqual(r.events, expectedHistory, name);
    }
    await Promise.all([...snapshotWatches, ...resumedWatches, all].map((w) => w.cancel()));
  });

  test('bad filters are INVALID_ARGUMENT naming the field; an unknown workplan is NOT_FOUND', async () => {
    const id = await newWorkPlan();
    const v = await versionOf(id);
    const cases: Array<[WatchReq, RegExp]> = [
      [{ checkStateFilter: [99 as CheckState] }, /^check_state_filter\[0\]: unknown check state 99/],
      [{ stageStateFilter: [StageState.STAGE_STATE_FINAL, 7 as StageState] }, /^stage_state_filter\[1\]: unknown stage state 7/],
      [{ checkStateFilter: [CheckState.CHECK_STATE_UNKNOWN] }, /^check_state_filter\[0\]: UNKNOWN/],
      [{ checkIdFilter: ['has space'] }, /^check_id_filter\[0\]: /],
      [{ stageIdFilter: ['ok', ''] }, /^stage_id_filter\[1\]: /],
      [{ afterVersion: v + 1 }, /^after_version: /],
      [{ afterVersion: -1 }, /^after_version: must not be negative/],
    ];
    for (const [req, message] of cases) {
      const err = await grpcError(new Watch(suite.client, { ...req, workPlanId: id }));
      assert.equal(err.code, status.INVALID_ARGUMENT, JSON.stringify(req));
      assert.match(err.details, message);
    }
    const bad = await grpcError(new Watch(suite.client, { workPlanId: 'no space allowed' }));
    assert.equal(bad.code, status.INVALID_ARGUMENT);
    assert.match(bad.details, /^work_plan_id: /);
    const missing = await grpcError(new Watch(suite.client, { workPlanId: 'no-such-workplan' }));
    assert.equal(missing.code, status.NOT_FOUND);
    assert.match(missing.details, /no-such-workplan/);
    // after_version equal to the current version is fine: nothing from the log, then live.
    const w = new Watch(suite.client, { workPlanId: id, afterVersion: v });
    const v1 = await write({ workPlanId: id, checks: [{ id: 'x', kind: 'k' }] });
    await w.untilVersion(v1);
    assert.deepEqual(w.nodeVersions, [v1]);
    await w.cancel();
  });
});

describe('completion', () => {
  test('WorkPlanCompletedEvent when every node is FINAL, right after the change that did it; no failures', async () => {
    const id = await newWorkPlan();
    await write({
      workPlanId: id,
      checks: [{ id: 'build', kind: 'build', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [{ id: 'builder', assignments: [{ targetCheckId: 'build', goalState: CheckState.CHECK_STATE_FINAL }] }],
    });
    // Watch only the stage: the completion event comes whatever the filters.
    const w = new Watch(suite.client, { workPlanId: id, includeStages: true });
    const resumed = new Watch(suite.client, { workPlanId: id, afterVersion: 0 });
    await w.until((x) => x.events.length === 1, 'the snapshot');
    await write({
      workPlanId: id,
      checks: [{ id: 'build', result: { ownerType: 'stage', ownerId: 'builder', data: { ok: true }, finalize: true }, state: CheckState.CHECK_STATE_FINAL }],
      stages: [{ id: 'builder', currentAttempt: { processUid: 'p1' } }],
    });
    assert.equal(w.events.filter((e) => e.completedEvent).length, 0);
    const done = await write({ workPlanId: id, stages: [{ id: 'builder', currentAttempt: { state: AttemptState.ATTEMPT_STATE_COMPLETE } }] });
    await w.until((x) => x.events.some((e) => e.completedEvent), 'the completion event');
    await resumed.until((x) => x.events.some((e) => e.completedEvent), 'the completion event (resumed)');
    for (const x of [w, resumed]) {
      const i = x.events.findIndex((e) => e.completedEvent);
      const completed = x.events[i]!;
      assert.deepEqual(completed.completedEvent, { checksCompleted: 1, stagesCompleted: 1, hasFailures: false });
      assert.equal(completed.version, done);
      assert.equal(x.events[i - 1]!.version, done, 'right after the node event of the same version');
      assert.equal(x.events.filter((e) => e.completedEvent).length, 1);
    }
    // Watching a complete workplan: the snapshot ends with the completion.
    const late = new Watch(suite.client, { workPlanId: id });
    await late.until((x) => x.events.some((e) => e.completedEvent), 'the completion in the snapshot');
    assert.deepEqual(late.events.map((e) => [e.snapshot, e.version, !!e.completedEvent]), [
      [true, done, false],
      [true, done, false],
      [true, done, true],
    ]);
    // Resuming at the completing change restates the completion (a client cut between the change and its
    // completion event must not wait forever); resuming just before it gets the change and the completion.
    const atDone = new Watch(suite.client, { workPlanId: id, afterVersion: done });
    const beforeDone = new Watch(suite.client, { workPlanId: id, afterVersion: done - 1 });
    await atDone.until((x) => x.events.length === 1, 'the restated completion');
    await beforeDone.until((x) => x.events.length === 2, 'the last change and the completion');
    assert.deepEqual(atDone.events.map((e) => [e.snapshot, e.version, !!e.completedEvent]), [[true, done, true]]);
    assert.deepEqual(beforeDone.events.map((e) => [e.snapshot, e.version, !!e.completedEvent]), [
      [false, done, false],
      [false, done, true],
    ]);
    await Promise.all([w.cancel(), resumed.cancel(), late.cancel(), atDone.cancel(), beforeDone.cancel()]);
  });

  test('has_failures: a check with a failure result, or a stage with a failure', async () => {
    const failedCheck = await newWorkPlan();
    const w1 = new Watch(suite.client, { workPlanId: failedCheck });
    await write({ workPlanId: failedCheck, checks: [{ id: 'a', kind: 'k' }, { id: 'b', kind: 'k' }] });
    await write({
      workPlanId: failedCheck,
      checks: [
        { id: 'a', state: CheckState.CHECK_STATE_FINAL },
        { id: 'b', result: { ownerType: 't', ownerId: 'x', failure: { message: 'boom' } }, state: CheckState.CHECK_STATE_FINAL },
      ],
    });
    await w1.until((x) => x.events.some((e) => e.completedEvent), 'completion with a failed check');
    assert.deepEqual(w1.events.find((e) => e.completedEvent)!.completedEvent, { checksCompleted: 2, stagesCompleted: 0, hasFailures: true });

    const failedStage = await newWorkPlan();
    const w2 = new Watch(suite.client, { workPlanId: failedStage, includeChecks: true }); // no check ever: only completion
    await write({ workPlanId: failedStage, stages: [{ id: 's', maxAttempts: 1 }] });
    await write({ workPlanId: failedStage, stages: [{ id: 's', currentAttempt: { processUid: 'p', failure: { message: 'crashed' } } }] });
    await w2.until((x) => x.events.some((e) => e.completedEvent), 'completion with a failed stage');
    assert.equal(w2.events.length, 1);
    assert.deepEqual(w2.events[0]!.completedEvent, { checksCompleted: 0, stagesCompleted: 1, hasFailures: true });
    await Promise.all([w1.cancel(), w2.cancel()]);
  });
});

describe('batched', () => {
  /** The events of a WatchWorkPlanBatched stream up to `version`, and how many messages carried them. */
  async function watchBatched(req: DeepPartial<WatchWorkPlanRequest>, version: number): Promise<{ events: Ev[]; messages: number }> {
    const stream = suite.client.watchWorkPlanBatched(WatchWorkPlanRequest.fromPartial(req as WatchWorkPlanRequest), new Metadata(), {
      deadline: Date.now() + WAIT_MS,
    });
    const events: Ev[] = [];
    let messages = 0;
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (batch: WorkPlanEventBatch) => {
        messages++;
        events.push(...batch.events.map((e) => ({ ...e, version: Number(e.version) })));
        if (events.some((e) => e.version >= version && !e.snapshot)) resolve();
      });
      stream.on('error', (err: Error) => reject(err));
    });
    stream.cancel();
    return { events, messages };
  }

  test('WatchWorkPlanBatched sends the same events as WatchWorkPlan, in order, in fewer messages, and resumes the same way', async () => {
    const id = await newWorkPlan();
    for (let i = 0; i < 10; i++) {
      await write({ workPlanId: id, checks: [{ id: `c${i}`, kind: 'k', state: CheckState.CHECK_STATE_PLANNED }], stages: [{ id: `s${i}` }] });
    }
    const log = await history(id);
    const v = await versionOf(id);
    const all = await watchBatched({ workPlanId: id, afterVersion: 0n }, v);
    assert.deepEqual(all.events, log, 'from the log: the very events WatchWorkPlan sends');
    assert.ok(all.messages < all.events.length, `${all.events.length} events came in ${all.messages} messages`);

    const resumeAt = log[Math.floor(log.length / 2)]!.version;
    const rest = await watchBatched({ workPlanId: id, afterVersion: BigInt(resumeAt) }, v);
    assert.deepEqual(rest.events, log.filter((e) => e.version > resumeAt), 'resumed after a version: exactly what followed it');
  });

  test('bad requests fail as WatchWorkPlan does', async () => {
    await assert.rejects(watchBatched({ workPlanId: 'no-such-workplan' }, 1), (err: { code: status }) => err.code === status.NOT_FOUND);
  });
});

describe('coalescing window (max_batch_delay_ms)', () => {
  /** A windowed WatchWorkPlanBatched stream. */
  const windowed = (req: WatchReq, windowMs: number, client = suite.client) => new Watch(client, { ...req, maxBatchDelayMs: windowMs }, 120_000, true);

  test('windowed watchers get exactly what unbatched ones get, filtered the same, under concurrent writes', async () => {
    const id = await newWorkPlan();
    const v0 = await write({ workPlanId: id, checks: [{ id: 'seed', kind: 'k' }], stages: [{ id: 'seed' }] });
    const filter: WatchReq = { includeChecks: true, checkStateFilter: [CheckState.CHECK_STATE_PLANNED] };
    const plain = new Watch(suite.client, { workPlanId: id, afterVersion: v0 });
    const plainFiltered = new Watch(suite.client, { ...filter, workPlanId: id, afterVersion: v0 });
    const plainSnapshot = new Watch(suite.client, { workPlanId: id });
    const watches = [
      windowed({ workPlanId: id, afterVersion: v0 }, 200),
      windowed({ workPlanId: id, afterVersion: v0 }, 20),
      windowed({ ...filter, workPlanId: id, afterVersion: v0 }, 50),
      windowed({ workPlanId: id }, 100),
    ];
    await Promise.all([plainSnapshot, watches[3]!].map((w) => w.until((x) => x.events.length === 2, 'the snapshot')));
    // Writes racing with each other (several land in one window), checks and stages, some completing.
    const writes: Promise<number>[] = [];
    for (let i = 0; i < 40; i++) {
      writes.push(
        write({
          workPlanId: id,
          checks: [{ id: `c${i}`, kind: 'k', state: i % 3 === 0 ? CheckState.CHECK_STATE_PLANNED : CheckState.CHECK_STATE_PLANNING }],
          ...(i % 4 === 0 ? { stages: [{ id: `s${i}` }] } : {}),
        }),
      );
      if (i % 8 === 7) await Promise.all(writes);
    }
    const last = Math.max(...(await Promise.all(writes)));
    const t = await target(id);
    assert.equal(t.version, last);
    await Promise.all([plain, plainSnapshot, watches[0]!, watches[1]!, watches[3]!].map((w) => w.untilCaughtUp(t)));
    const expectedFiltered = (await history(id)).filter((e) => e.version > v0 && e.checkEvent?.newState === CheckState.CHECK_STATE_PLANNED);
    await plainFiltered.until((w) => w.events.length >= expectedFiltered.length, 'every filtered event');
    await watches[2]!.until((w) => w.events.length >= expectedFiltered.length, 'every filtered event, windowed');

    assert.deepEqual(watches[0]!.events, plain.events, 'window 200 ms: the same events, order and versions');
    assert.deepEqual(watches[1]!.events, plain.events, 'window 20 ms: the same events, order and versions');
    assert.deepEqual(plainFiltered.events, expectedFiltered);
    assert.deepEqual(watches[2]!.events, expectedFiltered, 'filtered and windowed: what the filter keeps');
    assert.deepEqual(watches[3]!.events, plainSnapshot.events, 'snapshot then live, windowed');
    assert.equal(new Set(plain.events.map((e) => e.version)).size, t.version - v0, 'one event per version after v0');
    await Promise.all([plain, plainFiltered, plainSnapshot, ...watches].map((w) => w.cancel()));
  });

  test('a windowed watcher resumes from the last version it received: every change once, in order', async () => {
    const id = await newWorkPlan();
    const v0 = await write({ workPlanId: id, stages: [{ id: 's' }] });
    const step = (i: number) => write({ workPlanId: id, stages: [{ id: 's', currentAttempt: { processUid: 'p', progress: { message: `step ${i}` } } }] });
    const first = windowed({ workPlanId: id, afterVersion: v0 }, 100);
    let v = v0;
    for (let i = 0; i < 10; i++) v = await step(i);
    await first.untilVersion(v);
    // More writes, some perhaps waiting in the window when the client goes away.
    for (let i = 10; i < 15; i++) await step(i);
    await first.cancel();
    const resumeAt = first.lastVersion;
    for (let i = 15; i < 20; i++) v = await step(i);
    const second = windowed({ workPlanId: id, afterVersion: resumeAt }, 100);
    await second.untilVersion(v);
    const log = await history(id);
    assert.deepEqual([...first.events, ...second.events], log.filter((e) => e.version > v0), 'every change after v0 once, in order');
    await second.cancel();
  });

  test('a stream cancelled or shut down with events waiting in its window leaks nothing and says where to resume', async () => {
    const d = tempDir();
    const s = await startServer(`${d.path}/window.db`);
    const c = connect(s.address);
    try {
      const id = (await c.api.createWorkPlan({})).workPlan!.id;
      const v0 = Number((await c.api.writeNodes({ workPlanId: id, stages: [{ id: 's' }] })).workPlanVersion);
      const step = (i: number) =>
        c.api.writeNodes({ workPlanId: id, stages: [{ id: 's', currentAttempt: { processUid: 'p', progress: { message: `step ${i}` } } }] }).then((r) => Number(r.workPlanVersion));
      const cancelled = windowed({ workPlanId: id, afterVersion: v0 }, 1000, c.client);
      const shut = windowed({ workPlanId: id, afterVersion: v0 }, 1000, c.client);
      let v = await step(0);
      await Promise.all([cancelled.untilVersion(v), shut.untilVersion(v)]);
      for (let i = 1; i < 5; i++) v = await step(i);
      await cancelled.cancel();
      await untilLog(s, (l) => l.msg === 'watch subscription closed' && l.reason === 'cancelled', 'the cancelled subscription closed');
      const exited = s.stop('SIGTERM');
      const end = await shut.end();
      assert.equal(end.code, status.UNAVAILABLE);
      const m = /last version sent: (\d+); resume with after_version=(\d+)$/.exec(end.details);
      assert.ok(m, end.details);
      // Whatever was still waiting for the window was not sent, and the status says so: resume picks it up.
      assert.equal(shut.lastVersion, Number(m[1]));
      assert.deepEqual(shut.events.map((e) => e.version), Array.from({ length: Number(m[1]) - v0 }, (_, i) => v0 + 1 + i));
      assert.equal(await exited, 0);
      assert.equal(liveSubscriptions(s), 0);
    } finally {
      c.close();
      await s.stop();
      d.remove();
    }
  });

  test('large events are split across messages: no batch outgrows what a default client accepts (4 MiB)', async () => {
    const id = await newWorkPlan();
    const v0 = await write({ workPlanId: id, checks: [{ id: 'big', kind: 'k' }] });
    // Every event carries the whole check: 24 events of ~200 KiB are ~5 MB waiting at once for a resumed watcher.
    const blob = 'x'.repeat(200 * 1024);
    let v = v0;
    for (let i = 0; i < 24; i++) v = await write({ workPlanId: id, checks: [{ id: 'big', options: { blob, i } }] });
    for (const w of [new Watch(suite.client, { workPlanId: id, afterVersion: v0 }, 120_000, true), windowed({ workPlanId: id, afterVersion: v0 }, 200)]) {
      await w.until((x) => x.lastVersion >= v || x.ended !== null, `version ${v}`);
      assert.equal(w.ended, null, JSON.stringify(w.ended));
      assert.deepEqual(w.nodeVersions, Array.from({ length: v - v0 }, (_, i) => v0 + 1 + i));
      assert.ok(w.messages > 1, `${w.events.length} events in ${w.messages} message(s)`);
      await w.cancel();
    }
  });

  test('INVALID_ARGUMENT on WatchWorkPlan, and beyond 1000 ms', async () => {
    const id = await newWorkPlan();
    const plain = await grpcError(new Watch(suite.client, { workPlanId: id, maxBatchDelayMs: 10 }));
    assert.equal(plain.code, status.INVALID_ARGUMENT);
    assert.match(plain.details, /max_batch_delay_ms/);
    const tooLong = await grpcError(windowed({ workPlanId: id }, 1001));
    assert.equal(tooLong.code, status.INVALID_ARGUMENT);
    assert.match(tooLong.details, /max_batch_delay_ms/);
  });
});

describe('resume', () => {
  test('a client that disconnects and comes back with after_version gets exactly the missed events, in order, once', async () => {
    const id = await newWorkPlan();
    await write({ workPlanId: id, checks: [{ id: 'c1', kind: 'k', state: CheckState.CHECK_STATE_PLANNED }], stages: [{ id: 's1' }] });
    const first = new Watch(suite.client, { workPlanId: id });
    await first.until((x) => x.events.length === 2, 'the snapshot');
    const v1 = await write({ workPlanId: id, stages: [{ id: 's1', currentAttempt: { processUid: 'p', progress: { message: 'one' } } }] });
    await first.untilVersion(v1);
    await first.cancel();
    const resumeAt = first.lastVersion;

    // Missed while disconnected.
    await write({ workPlanId: id, stages: [{ id: 's1', currentAttempt: { processUid: 'p', progress: { message: 'two' } } }] });
    await write({ workPlanId: id, checks: [{ id: 'c2', kind: 'k' }, { id: 'c1', result: { ownerType: 't', ownerId: 's1' } }] });

    const second = new Watch(suite.client, { workPlanId: id, afterVersion: resumeAt });
    const vLast = await write({ workPlanId: id, stages: [{ id: 's1', currentAttempt: { processUid: 'p', progress: { message: 'three' } } }] });
    await second.untilVersion(vLast);

    const log = await history(id);
    assert.deepEqual(log.map((e) => e.version), Array.from({ length: vLast - 1 }, (_, i) => i + 2), 'the log: every version 2..N');
    assert.deepEqual(second.events, log.filter((e) => e.version > resumeAt));
    assert.deepEqual(first.events.filter((e) => !e.snapshot), log.filter((e) => e.version > first.events[0]!.version && e.version <= resumeAt));
    await second.cancel();
  });

  test('randomized: writes racing with subscribe and resume; the stream versions equal the log versions, each once', async () => {
    type Op = 'newCheck' | 'newChecks' | 'result' | 'finishCheck' | 'newStage' | 'progress';
    type Plan = { at: number; mode: 'snapshot' | 'resume' | 'zero'; cutAfter: number | null };
    type Part = { afterVersion: number | undefined; events: Ev[] };
    await fcAssert(
      fc.asyncProperty(
        fc.array(fc.constantFrom<Op>('newCheck', 'newChecks', 'result', 'finishCheck', 'newStage', 'progress'), { minLength: 5, maxLength: 30 }),
        fc.array(
          fc.record({
            at: fc.nat(30),
            mode: fc.constantFrom<Plan['mode']>('snapshot', 'resume', 'zero'),
            cutAfter: fc.option(fc.integer({ min: 1, max: 8 })),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        async (ops, plans) => {
          const id = await newWorkPlan();
          let known = 1;
          let n = 0;
          const open: string[] = [];
          const stages: string[] = [];
          let settle!: (t: Target) => void;
          const settled = new Promise<Target>((r) => (settle = r));

          /** One watcher: a stream opened while writes go on, maybe cut after some changes and resumed at once. */
          const run = async (plan: Plan): Promise<{ plan: Plan; parts: Part[] }> => {
            const parts: Part[] = [];
            let afterVersion = plan.mode === 'snapshot' ? undefined : plan.mode === 'zero' ? 0 : known;
            let w = new Watch(suite.client, { workPlanId: id, afterVersion });
            if (plan.cutAfter !== null) {
              const cut = plan.cutAfter;
              const cutReached = w.until((x) => x.events.filter((e) => !e.snapshot).length >= cut, 'the cut point');
              const outcome = await Promise.race([cutReached.then(() => 'cut' as const), settled.then(() => 'settled' as const)]);
              if (outcome === 'cut') {
                await w.cancel();
                parts.push({ afterVersion, events: [...w.events] });
                afterVersion = w.lastVersion;
                w = new Watch(suite.client, { workPlanId: id, afterVersion });
              } else cutReached.catch(() => {});
            }
            const t = await settled;
            // A watch resumed at the final version has nothing to get (but a completion restated, if complete).
            if (afterVersion === undefined || afterVersion < t.version) await w.untilCaughtUp(t);
            else if (t.complete) await w.until((x) => x.events.some((e) => e.completedEvent), 'the restated completion');
            await w.cancel();
            parts.push({ afterVersion, events: [...w.events] });
            return { plan, parts };
          };
          function writeFor(op: Op): DeepPartial<WriteNodesRequest> {
            n++;
            if ((op === 'result' || op === 'finishCheck') && open.length === 0) op = 'newCheck';
            if (op === 'progress' && stages.length === 0) op = 'newStage';
            switch (op) {
              case 'newCheck':
                open.push(`c${n}`);
                return { checks: [{ id: `c${n}`, kind: 'k', state: CheckState.CHECK_STATE_PLANNED }] };
              case 'newChecks':
                open.push(`c${n}a`, `c${n}b`, `c${n}c`);
                return { checks: ['a', 'b', 'c'].map((x) => ({ id: `c${n}${x}`, kind: 'k', state: CheckState.CHECK_STATE_PLANNED })) };
              case 'result':
                return { checks: [{ id: open[n % open.length]!, result: { ownerType: 't', ownerId: 'x', data: { n } } }] };
              case 'finishCheck': {
                const c = open.splice(n % open.length, 1)[0]!;
                const failure = n % 3 === 0 ? { result: { ownerType: 't', ownerId: 'x', failure: { message: 'failed' } } } : {};
                return { checks: [{ id: c, state: CheckState.CHECK_STATE_FINAL, ...failure }] };
              }
              case 'newStage':
                stages.push(`s${n}`);
                return { stages: [{ id: `s${n}` }] };
              case 'progress':
                return { stages: [{ id: stages[n % stages.length]!, currentAttempt: { processUid: 'p', progress: { message: `m${n}` } } }] };
            }
          }

          const watchers: Promise<{ plan: Plan; parts: Part[] }>[] = [];
          for (const [i, op] of ops.entries()) {
            // Watches opened here race with this write and the ones after it.
            for (const plan of plans.filter((p) => p.at === i)) watchers.push(run(plan));
            known = await write({ workPlanId: id, ...writeFor(op) });
          }
          for (const plan of plans.filter((p) => p.at >= ops.length)) watchers.push(run(plan));
          const t = await target(id);
          assert.equal(t.version, known);
          settle(t);
          const results = await Promise.all(watchers);

          const log = await history(id);
          const changes = (es: Ev[]) => es.filter((e) => e.checkEvent || e.stageEvent);
          const completions = (es: Ev[]) => es.filter((e) => e.completedEvent).map((e) => e.version);
          assert.deepEqual(changes(log).map((e) => e.version), Array.from({ length: known - 1 }, (_, i) => i + 2), 'the log: every version 2..N once');
          // The watch projection agrees with the read model: each node's last event holds the node QueryNodes returns.
          const q = await suite.api.queryNodes({ workPlanId: id });
          assert.deepEqual(
            new Map(changes(log).map((e) => [nodeKey(e), nodeOf(e)])),
            new Map<string, unknown>([...q.checks.map((c) => [`check:${c.id}`, c] as const), ...q.stages.map((x) => [`stage:${x.id}`, x] as const)]),
          );

          for (const { plan, parts } of results) {
            const label = JSON.stringify({ plan, parts: parts.map((p) => p.afterVersion) });
            const first = parts[0]!;
            let from: number;
            if (first.afterVersion === undefined) {
              const snap = first.events.filter((e) => e.snapshot);
              assert.deepEqual(first.events.slice(0, snap.length), snap, `${label}: snapshot first`);
              // An empty snapshot is only possible before the first node: at version 1.
              from = snap.length ? snap[0]!.version : 1;
              assert.ok(snap.every((e) => e.version === from), `${label}: one snapshot version`);
              // The snapshot holds every node as the log says it stood at that version.
              const asOf = new Map<string, unknown>();
              for (const e of changes(log)) if (e.version <= from) asOf.set(nodeKey(e), nodeOf(e));
              assert.deepEqual(new Map(changes(snap).map((e) => [nodeKey(e), nodeOf(e)])), asOf, `${label}: snapshot = the log at ${from}`);
            } else from = first.afterVersion;
            // The changes of all parts together: exactly the log's after `from`, in order, each once, same content.
            const streamed = parts.flatMap((p) => changes(p.events.filter((e) => !e.snapshot)));
            assert.deepEqual(streamed.map((e) => e.version), changes(log).map((e) => e.version).filter((v) => v > from), `${label}: versions`);
            assert.deepEqual(streamed, changes(log).filter((e) => e.version > from), `${label}: events`);
            // Completions: every one the log has after `from` (a resume restates one at its resume point).
            const seen = new Set(parts.flatMap((p) => completions(p.events)));
            for (const v of completions(log).filter((v) => v > from)) assert.ok(seen.has(v), `${label}: completion at ${v}`);
          }
        },
      ),
      { numRuns: 30, endOnFailure: true },
    );
    await untilNoSubscriptions(suite.server);
  });
});

const nodeKey = (e: Ev) => (e.checkEvent ? `check:${e.checkEvent.checkId}` : `stage:${e.stageEvent!.stageId}`);
const nodeOf = (e: Ev) => e.checkEvent?.check ?? e.stageEvent?.stage;

describe('cancellation and shutdown', () => {
  test('client cancel, deadline and a killed client end streams and leak no subscription', async () => {
    const id = await newWorkPlan();
    await write({ workPlanId: id, checks: [{ id: 'c', kind: 'k' }] });
    await untilNoSubscriptions(suite.server);
    const opened = () => suite.server.logs.filter((l) => l.msg === 'watch subscription opened').length;
    const closedLines = () => suite.server.logs.filter((l) => l.msg === 'watch subscription closed');
    const openedBefore = opened();
    const closedBefore = closedLines().length;

    const cancelled = [new Watch(suite.client, { workPlanId: id }), new Watch(suite.client, { workPlanId: id, afterVersion: 0, includeChecks: true })];
    const shortDeadline = new Watch(suite.client, { workPlanId: id }, 1000);
    // Another process (the example client) watching, killed without a goodbye.
    const example = spawn(process.execPath, [EXAMPLE, suite.server.address, id], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exampleExited = new Promise((resolve) => example.once('exit', resolve));
    const firstLine = new Promise<string>((resolve) => createInterface({ input: example.stdout! }).once('line', resolve));
    await Promise.all([...cancelled, shortDeadline].map((w) => w.until((x) => x.events.length > 0, 'first event')));
    assert.match(await firstLine, /^v\d+ snapshot check c: CHECK_STATE_PLANNING -> CHECK_STATE_PLANNING/);
    await untilLog(suite.server, () => opened() - openedBefore === 4, 'four subscriptions opened');
    assert.equal(liveSubscriptions(suite.server), 4);

    await Promise.all(cancelled.map((w) => w.cancel()));
    assert.equal((await shortDeadline.end()).code, status.DEADLINE_EXCEEDED);
    example.kill('SIGKILL');
    await exampleExited;
    await untilNoSubscriptions(suite.server);
    // The deadline one says `deadline` when the server's timer fires first, `cancelled` when the client's does.
    const reasons = closedLines().slice(closedBefore).map((l) => l.reason);
    assert.equal(reasons.length, 4);
    assert.ok(reasons.every((r) => r === 'cancelled' || r === 'deadline'), String(reasons));
    assert.equal(opened() - openedBefore, 4);
    // The server still serves and streams after all that.
    const w = new Watch(suite.client, { workPlanId: id });
    await w.until((x) => x.events.length === 1, 'a snapshot');
    await w.cancel();
    await untilNoSubscriptions(suite.server);
  });

  test('server shutdown ends streams with UNAVAILABLE naming where to resume, and closes every subscription', async () => {
    const d = tempDir();
    const s = await startServer(`${d.path}/shutdown.db`);
    const c = connect(s.address);
    try {
      const id = (await c.api.createWorkPlan({})).workPlan!.id;
      const v = Number((await c.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', kind: 'k' }] })).workPlanVersion);
      const w1 = new Watch(c.client, { workPlanId: id });
      const w2 = new Watch(c.client, { workPlanId: id, afterVersion: 0 });
      await Promise.all([w1.untilVersion(v), w2.untilVersion(v)]);
      await untilLog(s, (l) => l.msg === 'watch subscription opened' && l.subscriptions === 2, 'two subscriptions');
      const exited = s.stop('SIGTERM');
      for (const w of [w1, w2]) {
        const end = await w.end();
        assert.equal(end.code, status.UNAVAILABLE);
        assert.match(end.details, new RegExp(`last version sent: ${v}; resume with after_version=${v}$`));
      }
      assert.equal(await exited, 0);
      assert.equal(liveSubscriptions(s), 0);
      assert.deepEqual(s.logs.filter((l) => l.msg === 'watch subscription closed').map((l) => l.reason), ['shutdown', 'shutdown']);
    } finally {
      c.close();
      await s.stop();
      d.remove();
    }
  });
});

describe('backpressure', () => {
  let slow: ServerProcess;
  let slowDir: ReturnType<typeof tempDir>;
  let sc: ReturnType<typeof connect>;
  const BUFFER = 8;
  before(async () => {
    slowDir = tempDir();
    slow = await startServer(`${slowDir.path}/slow.db`, ['--watch-buffer', String(BUFFER)]);
    sc = connect(slow.address);
  });
  after(async () => {
    sc.close();
    await slow.stop();
    slowDir.remove();
  });

  test('a consumer that keeps up gets everything, far more events than the buffer holds', async () => {
    const id = (await sc.api.createWorkPlan({})).workPlan!.id;
    await sc.api.writeNodes({ workPlanId: id, stages: [{ id: 's' }] });
    const w = new Watch(sc.client, { workPlanId: id });
    await w.until((x) => x.events.length === 1, 'the snapshot');
    let v = 0;
    for (let i = 0; i < 10 * BUFFER; i++) {
      v = Number((await sc.api.writeNodes({ workPlanId: id, stages: [{ id: 's', currentAttempt: { processUid: 'p', progress: { message: `step ${i}` } } }] })).workPlanVersion);
    }
    await w.untilVersion(v);
    assert.equal(w.ended, null);
    assert.deepEqual(w.nodeVersions.slice(1), Array.from({ length: w.nodeVersions.length - 1 }, (_, i) => w.events[0]!.version + 1 + i));
    await w.cancel();
  });

  for (const [name, batched, windowMs] of [
    ['a consumer', false, 0],
    ['a windowed WatchWorkPlanBatched consumer', true, 20],
  ] as const) {
    test(`${name} that cannot keep up gets RESOURCE_EXHAUSTED with its last version, and resumes without loss`, async () => {
      const id = (await sc.api.createWorkPlan({})).workPlan!.id;
      const v0 = Number((await sc.api.writeNodes({ workPlanId: id, checks: [{ id: 'big', kind: 'k' }] })).workPlanVersion);
      const w = new Watch(sc.client, { workPlanId: id, ...(windowMs ? { maxBatchDelayMs: windowMs } : {}) }, 120_000, batched);
      await w.until((x) => x.events.length === 1, 'the snapshot');
      w.stream.pause(); // stop reading: gRPC flow control fills up, then the server's buffer, then it gives up
      const blob = 'x'.repeat(16 * 1024);
      const overflows = () => slow.logs.filter((l) => l.msg === 'watch subscription closed' && l.reason === 'overflow').length;
      const overflowsBefore = overflows();
      const overflowed = () => overflows() > overflowsBefore;
      let last = v0;
      for (let i = 0; i < 2000 && !overflowed(); i++) {
        last = Number((await sc.api.writeNodes({ workPlanId: id, checks: [{ id: 'big', options: { blob, i } }] })).workPlanVersion);
      }
      assert.ok(overflowed(), 'the server ended the slow subscriber');
      assert.equal(liveSubscriptions(slow), 0);
      w.stream.resume();
      const end = await w.end();
      assert.equal(end.code, status.RESOURCE_EXHAUSTED);
      const m = /last version sent: (\d+); resume with after_version=(\d+)/.exec(end.details);
      assert.ok(m, end.details);
      const sent = Number(m[1]);
      // Every event the server said it sent arrived, nothing after it: nothing was dropped silently.
      assert.equal(w.lastVersion, sent);
      assert.ok(sent < last);

      const more = Number((await sc.api.writeNodes({ workPlanId: id, checks: [{ id: 'big', options: { blob: 'small' } }] })).workPlanVersion);
      const resumed = new Watch(sc.client, { workPlanId: id, afterVersion: sent, ...(windowMs ? { maxBatchDelayMs: windowMs } : {}) }, 120_000, batched);
      await resumed.untilVersion(more);
      const versions = [...w.nodeVersions.slice(1), ...resumed.nodeVersions];
      assert.deepEqual(versions, Array.from({ length: more - v0 }, (_, i) => v0 + 1 + i), 'every change once, in order');
      await resumed.cancel();
      await untilNoSubscriptions(slow);
    });
  }
});
