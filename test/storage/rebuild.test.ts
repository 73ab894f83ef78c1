// Read models are disposable: replaying the log must rebuild exactly what the live server holds, for any workload.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { ReadModels } from '../../projections/read-models.js';
import type { WorkPlanModel } from '../../projections/workplan-model.js';
import { Orchestrator } from '../../src/app/orchestrator.js';
import { loadReadModels } from '../../src/app/snapshots.js';
import type { CheckWriteInput, StageWriteInput } from '../../src/domain/commands.js';
import { DomainError } from '../../src/domain/errors.js';
import { nodeKey, type NodeRef } from '../../src/domain/model.js';
import { SnapshotFile } from '../../src/infra/snapshot-file.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { tempDir } from '../support/server.js';

const dir = tempDir('turboci-rebuild-');
after(() => dir.remove());

const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
const id = fc.constantFrom(...ids);
const flatGroup = fc.record({
  predicate: fc.constantFrom('AND' as const, 'OR' as const),
  threshold: fc.constant(0),
  edges: fc.uniqueArray(fc.record({ kind: fc.constantFrom('check' as const, 'stage' as const), id }), {
    maxLength: 3,
    selector: (e) => `${e.kind}:${e.id}`,
  }),
});
// Flat groups, and groups nesting flat sub-groups (the index keeps a count per sub-group: it must rebuild too).
const deps = fc.option(
  fc.oneof(
    flatGroup,
    fc.record({
      predicate: fc.constantFrom('AND' as const, 'OR' as const),
      threshold: fc.constant(0),
      edges: flatGroup.map((g) => g.edges.slice(0, 1)),
      groups: fc.array(flatGroup, { minLength: 1, maxLength: 2 }),
    }),
  ),
  { nil: undefined },
);
const checkWrite: fc.Arbitrary<CheckWriteInput> = fc.record(
  {
    id,
    state: fc.constantFrom('PLANNING' as const, 'PLANNED' as const, 'FINAL' as const),
    options: fc.dictionary(fc.constantFrom('x', 'y'), fc.integer({ min: 0, max: 3 }), { noNullPrototype: true }),
    dependencies: deps,
    gate: fc.constant({ approvalsRequired: 1, deadline: null }),
    result: fc.record({
      ownerType: fc.constant('test'),
      ownerId: fc.constant('t'),
      data: fc.dictionary(fc.constantFrom("r"), fc.integer(), { noNullPrototype: true }),
      finalize: fc.boolean(),
      failure: fc.option(fc.record({ message: fc.constant('bad') }), { nil: undefined }),
    }),
  },
  { requiredKeys: ['id'] },
);
const stageWrite: fc.Arbitrary<StageWriteInput> = fc.record(
  {
    id,
    state: fc.constant('FINAL' as const),
    args: fc.dictionary(fc.constantFrom('x', 'y'), fc.integer({ min: 0, max: 3 }), { noNullPrototype: true }),
    dependencies: deps,
    assignments: fc.uniqueArray(fc.record({ checkId: id, goalState: fc.constant('FINAL' as const) }), {
      maxLength: 2,
      selector: (a) => a.checkId,
    }),
    maxAttempts: fc.integer({ min: 1, max: 3 }),
    currentAttempt: fc.oneof(
      fc.record({ processUid: fc.constantFrom('p1', 'p2') }),
      fc.record({ state: fc.constantFrom('RUNNING' as const, 'COMPLETE' as const, 'SCHEDULED' as const), processUid: fc.constant('p1') }),
      fc.record({ failure: fc.record({ message: fc.constant('flaky') }) }),
      fc.record({ progress: fc.record({ message: fc.constant('step'), details: fc.constant({}) }) }),
    ),
  },
  { requiredKeys: ['id'] },
);
const request = fc.record({
  workplan: fc.integer({ min: 0, max: 1 }),
  checks: fc.array(checkWrite, { maxLength: 3 }),
  stages: fc.array(stageWrite, { maxLength: 3 }),
});

function snapshot(model: WorkPlanModel) {
  const keys: NodeRef[] = [
    ...[...model.checks.keys()].map((id) => ({ kind: 'check' as const, id })),
    ...[...model.stages.keys()].map((id) => ({ kind: 'stage' as const, id })),
  ];
  // Through JSON: the generators build null-prototype objects; what matters is the data.
  return JSON.parse(
    JSON.stringify({
    meta: model.meta,
    checks: [...model.checks.entries()],
    stages: [...model.stages.entries()],
    dependents: keys.map((k) => [nodeKey(k), [...model.dependents(nodeKey(k))]]),
    children: [...model.stages.keys()].map((s) => [s, [...model.children(s)]]),
    finalTargets: keys.map((k) => [nodeKey(k), model.finalTargets(nodeKey(k))]),
    // Every group key the index holds (sub-groups too) with its count of satisfied members.
    groupCounts: keys
      .flatMap((k) => [...model.dependents(nodeKey(k))])
      .sort()
      .map((g) => [g, model.finalTargets(g)]),
    requests: [...model.requests.entries()],
    }),
  ) as unknown;
}

/** Maps and Sets as arrays, objects as plain ones: what the projections hold, comparable with deepEqual. */
function plain(v: unknown): unknown {
  if (v instanceof Map) return [...v].map(([k, x]) => [k, plain(x)]);
  if (v instanceof Set) return [...v].map(plain);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

test('replaying the log rebuilds the live read models exactly, for random workloads; so does a snapshot plus the tail', () => {
  let run = 0;
  let totalApplied = 0;
  let totalEvents = 0;
  fc.assert(
    fc.property(fc.array(request, { minLength: 1, maxLength: 40 }), (requests) => {
      const path = `${dir.path}/rebuild-${run++}.db`;
      const store = new SqliteEventStore(path, { synchronous: 'NORMAL' });
      const app = Orchestrator.open(store);
      const workplans = [app.createWorkPlan({ n: '0' }).id, app.createWorkPlan({ n: '1' }).id];
      let applied = 0;
      const write = (workPlanId: string, checks: CheckWriteInput[], stages: StageWriteInput[], requestId: string) => {
        try {
          app.writeNodes({ workPlanId, checks, stages, requestId });
          applied++;
          return true;
        } catch (err) {
          if (!(err instanceof DomainError)) throw err;
          return false;
        }
      };
      requests.forEach((r, i) => {
        const wp = workplans[r.workplan]!;
        // A rejected request is retried write by write, so that workloads get deep into the state machines.
        if (write(wp, r.checks, r.stages, `r${i}`)) return;
        r.checks.forEach((c, j) => write(wp, [c], [], `r${i}c${j}`));
        r.stages.forEach((st, j) => write(wp, [], [st], `r${i}s${j}`));
      });
      const reader = new SqliteEventStore(path, { readonly: true });
      const all = [...reader.readAll()];
      const rebuilt = ReadModels.replay(all);
      for (const wp of workplans) {
        assert.deepEqual(snapshot(rebuilt.workplan(wp)!), snapshot(app.models.workplan(wp)!));
      }
      // A snapshot taken part-way (through the file format), restored, then the rest of the log folded on top.
      const cut = all[Math.floor(all.length / 2)]!;
      const file = new SnapshotFile(`${path}.snapshot`);
      file.write({ position: cut.position, streamId: cut.streamId, version: cut.version }, ReadModels.replay(all.filter((e) => e.position <= cut.position)).snapshot());
      const loaded = loadReadModels(reader, file);
      assert.equal(loaded.ignored, undefined);
      assert.equal(loaded.fromPosition, cut.position);
      assert.equal(loaded.tailEvents, all.filter((e) => e.position > cut.position).length);
      for (const wp of workplans) {
        assert.deepEqual(snapshot(loaded.models.workplan(wp)!), snapshot(app.models.workplan(wp)!));
      }
      assert.deepEqual(plain(loaded.models.snapshot()), plain(app.models.snapshot()), 'every projection, indexes included');
      reader.close();
      totalApplied += applied;
      totalEvents += [...rebuilt.workplanIds()].reduce((n, wp) => n + rebuilt.workplan(wp)!.meta.version, 0);
      app.close();
      store.close();
    }),
    { numRuns: 80 },
  );
  // The generators must reach deep states, or the property says little.
  assert.ok(totalApplied > 150, `only ${totalApplied} requests were accepted`);
  assert.ok(totalEvents > 500, `only ${totalEvents} events were appended`);
});
