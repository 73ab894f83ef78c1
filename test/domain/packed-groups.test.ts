// Dependency trees are kept packed (src/domain/packed-group.ts): a shape and the targets' ids. Nothing may be lost on
// the way: the packed tree reads, serializes and resolves as the tree that was written, live, replayed and restored
// from a snapshot.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { deserialize, serialize } from 'node:v8';
import fc from 'fast-check';
import { ReadModels } from '../../projections/read-models.js';
import type { WorkPlanModel } from '../../projections/workplan-model.js';
import { Orchestrator } from '../../src/app/orchestrator.js';
import { loadReadModels } from '../../src/app/snapshots.js';
import { canonicalJson, readModelState } from '../../src/app/eventlog/digest.js';
import { allEdges, groupAt, holds, memberCount, walkGroups } from '../../src/domain/dependency-groups.js';
import type { DependencyGroup, NodeRef } from '../../src/domain/model.js';
import { pack, PackedGroup, revivePacked } from '../../src/domain/packed-group.js';
import { SnapshotFile } from '../../src/infra/snapshot-file.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { stageToProto } from '../../src/transport/to-proto.js';
import { tempDir } from '../support/server.js';

const dir = tempDir('turboci-packed-');
after(() => dir.remove());

/** A tree read through the DependencyGroup fields only (getters, for a packed one), as a plain literal. */
function viaFields(g: DependencyGroup): DependencyGroup {
  const edges = g.edges.map((e): NodeRef => ({ kind: e.kind, id: e.id }));
  const base = { predicate: g.predicate, threshold: g.threshold, edges };
  return g.groups === undefined ? base : { ...base, groups: g.groups.map(viaFields) };
}

const edge = fc.record({ kind: fc.constantFrom('check' as const, 'stage' as const), id: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h') }, { noNullPrototype: true });
const { tree } = fc.letrec<{ tree: DependencyGroup }>((tie) => ({
  tree: fc.record(
    {
      predicate: fc.constantFrom('AND' as const, 'OR' as const),
      threshold: fc.integer({ min: 0, max: 3 }),
      edges: fc.uniqueArray(edge, { maxLength: 9, selector: (e) => `${e.kind}:${e.id}` }),
      // Absent, empty and non-empty `groups` are three different trees.
      groups: fc.oneof({ depthSize: 'small' }, fc.constant([]), fc.array(tie('tree'), { maxLength: 3 })),
    },
    { requiredKeys: ['predicate', 'threshold', 'edges'], noNullPrototype: true },
  ),
}));

describe('packed dependency trees', () => {
  test('any tree packs without loss: its fields, its JSON, its groups by path, its edges, its counts', () => {
    fc.assert(
      fc.property(tree, fc.array(fc.integer({ min: 0, max: 12 })), (plain, satisfied) => {
        const packed = pack(plain, (_kind, id) => id);
        assert.ok(packed instanceof PackedGroup);
        assert.equal(JSON.stringify(packed), JSON.stringify(plain));
        assert.deepEqual(viaFields(packed), plain);
        assert.deepEqual([...allEdges(packed)], [...allEdges(plain)]);
        const walked = [...walkGroups(plain)];
        const walkedPacked = [...walkGroups(packed)];
        assert.equal(walkedPacked.length, walked.length);
        walked.forEach(({ group, path }, i) => {
          assert.deepEqual(walkedPacked[i]!.path, path);
          const at = groupAt(packed, path)!;
          assert.equal(JSON.stringify(at), JSON.stringify(group), `group at [${path.join(', ')}]`);
          assert.equal(memberCount(at), memberCount(group));
          const n = satisfied[i % Math.max(1, satisfied.length)] ?? 0;
          assert.equal(holds(at, n), holds(group, n));
          assert.equal(packed.indexAt(path), i, 'pre-order index');
          assert.deepEqual(packed.pathOf(i), path);
        });
        assert.equal(groupAt(packed, [walked.length]), undefined);
      }),
      { numRuns: 300 },
    );
  });

  test('every number of edges (each kept its own way) survives a snapshot serialization and revival', () => {
    for (let n = 0; n <= 12; n++) {
      const plain: DependencyGroup = {
        predicate: 'OR',
        threshold: 0,
        edges: Array.from({ length: n }, (_, i): NodeRef => ({ kind: i % 3 === 0 ? 'stage' : 'check', id: `n${i}` })),
      };
      const packed = pack(plain, (_kind, id) => id);
      assert.deepEqual(viaFields(packed), plain, `${n} edges`);
      const revived = revivePacked(deserialize(serialize(packed)) as DependencyGroup);
      assert.ok(revived instanceof PackedGroup, `${n} edges revived`);
      assert.deepEqual(viaFields(revived), plain, `${n} edges revived`);
      assert.equal(JSON.stringify(revived), JSON.stringify(plain));
    }
  });

  test('trees written alike share one shape; their targets stay their own', () => {
    const nested = (ids: string[]): DependencyGroup => {
      const pair = (a: number) => ({ predicate: 'AND' as const, threshold: 0, edges: [ids[a]!, ids[a + 1]!].map((id) => ({ kind: 'check' as const, id })) });
      const either = (a: number) => ({ predicate: 'OR' as const, threshold: 0, edges: [], groups: [pair(a), pair(a + 2)] });
      return { predicate: 'AND', threshold: 0, edges: [], groups: [either(0), either(4)] };
    };
    const one = pack(nested(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']), (_k, id) => id);
    const two = pack(nested(['h', 'g', 'f', 'e', 'd', 'c', 'b', 'a']), (_k, id) => id);
    assert.equal(one.shape, two.shape);
    assert.deepEqual([...allEdges(two)].map((e) => e.id), ['h', 'g', 'f', 'e', 'd', 'c', 'b', 'a']);
  });
});

/** The benchmark's nested tree (bench/scaling-workload.ts), plus a mixed one: edges beside sub-groups, a threshold, stages. */
const NESTED: DependencyGroup = {
  predicate: 'AND',
  threshold: 0,
  edges: [],
  groups: [
    { predicate: 'OR', threshold: 0, edges: [], groups: [and('c1', 'c2'), and('c3', 'c4')] },
    { predicate: 'OR', threshold: 0, edges: [], groups: [and('c5', 'c6'), and('c7', 'c8')] },
  ],
};
const MIXED: DependencyGroup = {
  predicate: 'OR',
  threshold: 2,
  edges: [{ kind: 'stage', id: 'nested' }, { kind: 'check', id: 'c1' }],
  groups: [and('c2'), { predicate: 'AND', threshold: 0, edges: [], groups: [] }],
};
function and(...ids: string[]): DependencyGroup {
  return { predicate: 'AND', threshold: 0, edges: ids.map((id) => ({ kind: 'check', id })) };
}

test('nested trees round-trip through the read model: live, replayed, restored from a snapshot, and still resolve', () => {
  const path = `${dir.path}/nested.db`;
  const store = new SqliteEventStore(path, { synchronous: 'NORMAL' });
  const app = Orchestrator.open(store);
  const wp = app.createWorkPlan({}).id;
  const checkIds = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8'];
  app.writeNodes({
    workPlanId: wp,
    requestId: null,
    checks: checkIds.map((id) => ({ id, state: 'PLANNED' })),
    stages: [
      { id: 'nested', dependencies: NESTED },
      { id: 'mixed', dependencies: MIXED },
    ],
  });
  const trees = (m: WorkPlanModel) => ['nested', 'mixed'].map((id) => m.stage(id)!.dependencies);
  const live = app.models.workplan(wp)!;
  for (const [i, t] of trees(live).entries()) {
    assert.ok(t instanceof PackedGroup, 'kept packed');
    assert.equal(JSON.stringify(t), JSON.stringify([NESTED, MIXED][i]));
    assert.deepEqual(viaFields(t), [NESTED, MIXED][i]);
  }
  // The wire form is built from the fields: the same as from the plain tree.
  const proto = stageToProto(wp, live.stage('nested')!);
  assert.deepEqual(proto.dependencies, stageToProto(wp, { ...live.stage('nested')!, dependencies: NESTED }).dependencies);
  assert.deepEqual(app.queryNodes(wp, { checkIds: [], stageIds: [], checkStates: [], stageStates: [], includeChecks: false, includeStages: true, pageSize: 0, pageToken: '' }).stages.map((s) => JSON.stringify(s.dependencies)), [JSON.stringify(NESTED), JSON.stringify(MIXED)]);

  // `mixed` holds its empty sub-group from the start; c1 makes 2 of its 4 members. For `nested`, c1 AND c2 holds one
  // side of the first OR, c5 alone nothing: it waits.
  assert.equal(live.stage('mixed')!.state, 'PLANNED');
  app.writeNodes({ workPlanId: wp, requestId: null, checks: ['c1', 'c2', 'c5'].map((id) => ({ id, state: 'FINAL' })), stages: [] });
  assert.equal(app.models.workplan(wp)!.stage('nested')!.state, 'PLANNED');
  assert.equal(app.models.workplan(wp)!.stage('mixed')!.state, 'ATTEMPTING');

  const reader = new SqliteEventStore(path, { readonly: true });
  const all = [...reader.readAll()];
  const replayed = ReadModels.replay(all).workplan(wp)!;
  assert.equal(canonicalJson(readModelState(replayed)), canonicalJson(readModelState(app.models.workplan(wp)!)), 'replay equals live');
  for (const t of trees(replayed)) assert.ok(t instanceof PackedGroup);

  const file = new SnapshotFile(`${path}.snapshot`);
  const last = all.at(-1)!;
  file.write({ position: last.position, streamId: last.streamId, version: last.version }, ReadModels.replay(all).snapshot());
  const loaded = loadReadModels(reader, file);
  assert.equal(loaded.ignored, undefined);
  assert.equal(loaded.fromPosition, last.position);
  const restored = loaded.models.workplan(wp)!;
  for (const [i, t] of trees(restored).entries()) {
    assert.ok(t instanceof PackedGroup, 'a snapshot gives packed trees back as PackedGroups');
    assert.deepEqual(viaFields(t), [NESTED, MIXED][i]);
  }
  assert.equal(canonicalJson(readModelState(restored)), canonicalJson(readModelState(app.models.workplan(wp)!)), 'restored equals live');

  // The restored models resolve as the live ones do: c6 completes (c5 AND c6), so both ORs hold and `nested` starts.
  app.writeNodes({ workPlanId: wp, requestId: null, checks: [{ id: 'c6', state: 'FINAL' }], stages: [] });
  assert.equal(app.models.workplan(wp)!.stage('nested')!.state, 'ATTEMPTING');
  const after = [...reader.readAll(last.position)];
  for (const rec of after) loaded.models.apply(rec);
  assert.equal(loaded.models.workplan(wp)!.stage('nested')!.state, 'ATTEMPTING', 'the restored model resolved the same');
  assert.equal(canonicalJson(readModelState(loaded.models.workplan(wp)!)), canonicalJson(readModelState(app.models.workplan(wp)!)));
  reader.close();
  app.close();
  store.close();
});
