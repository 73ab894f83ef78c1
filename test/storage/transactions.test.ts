// Serializability over the declared reads: for random transactions (each reads some checks at a version, then
// writes others with values computed from what it read) in random interleavings of reads and commits, the
// committed writes equal a serial execution in commit order, and a write is ABORTED exactly when a node it read
// changed after its read_version. In process, through Orchestrator.writeNodes on real SQLite files.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { Orchestrator } from '../../src/app/orchestrator.js';
import { DomainError } from '../../src/domain/errors.js';
import type { JsonObject } from '../../src/domain/model.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { tempDir } from '../support/server.js';

const dir = tempDir('turboci-transactions-');
after(() => dir.remove());

const NODES = ['a', 'b', 'c', 'd'];
const subset = fc.uniqueArray(fc.constantFrom(...NODES), { minLength: 1, maxLength: 3 });
const txn = fc.record({ reads: subset, writes: subset });
/** Transactions, and the order of their steps: each index appears twice, the first time it reads, then it commits. */
const workload = fc.array(txn, { minLength: 2, maxLength: 6 }).chain((txns) => {
  const steps = txns.flatMap((_, i) => [i, i]);
  return fc.tuple(fc.constant(txns), fc.shuffledSubarray(steps, { minLength: steps.length, maxLength: steps.length }));
});

/** What transaction k writes, from what it read: deterministic, and a new key each time (so every write changes the node). */
const written = (k: number, read: readonly JsonObject[]): JsonObject => ({ [`t${k}`]: JSON.stringify(read).length });

test('read-set transactions are serializable in commit order, and abort exactly on a changed read', () => {
  let run = 0;
  let committedTotal = 0;
  let abortedTotal = 0;
  fc.assert(
    fc.property(workload, ([txns, steps]) => {
      const store = new SqliteEventStore(`${dir.path}/tx-${run++}.db`, { synchronous: 'NORMAL' });
      const app = Orchestrator.open(store);
      const workPlanId = app.createWorkPlan({}).id;
      app.writeNodes({ workPlanId, requestId: null, checks: NODES.map((id) => ({ id, options: { init: id } })), stages: [] });
      const options = (id: string) => app.models.workplan(workPlanId)!.check(id)!.options;
      const reads = new Map<number, { version: number; values: JsonObject[] }>();
      const log: { k: number; committed: boolean; readAt: number; commitAt: number }[] = [];
      const seen = new Set<number>();
      for (const k of steps) {
        const t = txns[k]!;
        if (!seen.has(k)) {
          seen.add(k);
          reads.set(k, { version: app.getWorkPlan(workPlanId).version, values: t.reads.map(options) });
          continue;
        }
        const r = reads.get(k)!;
        const value = written(k, r.values);
        try {
          app.writeNodes({
            workPlanId,
            requestId: null,
            checks: t.writes.map((id) => ({ id, options: value })),
            stages: [],
            readVersion: r.version,
            reads: t.reads.map((id) => ({ kind: 'check', id })),
          });
          log.push({ k, committed: true, readAt: r.version, commitAt: app.getWorkPlan(workPlanId).version });
        } catch (err) {
          if (!(err instanceof DomainError) || err.kind !== 'ABORTED') throw err;
          log.push({ k, committed: false, readAt: r.version, commitAt: app.getWorkPlan(workPlanId).version });
        }
      }
      // The serial execution of the committed transactions, in commit order.
      const serial = new Map<string, JsonObject>(NODES.map((id) => [id, { init: id }]));
      for (const entry of log) {
        const t = txns[entry.k]!;
        // Aborted exactly when a transaction committed between its read and its commit wrote a node it read.
        const conflict = log.some(
          (o) => o.committed && o.k !== entry.k && o.commitAt > entry.readAt && o.commitAt <= entry.commitAt && txns[o.k]!.writes.some((w) => t.reads.includes(w)),
        );
        assert.equal(entry.committed, !conflict, `transaction ${entry.k}: committed=${entry.committed}, conflict=${conflict}`);
        if (!entry.committed) continue;
        const readNow = t.reads.map((id) => serial.get(id)!);
        assert.deepEqual(reads.get(entry.k)!.values, readNow, `transaction ${entry.k} read what the serial order gives it`);
        const value = written(entry.k, readNow);
        for (const id of t.writes) serial.set(id, { ...serial.get(id)!, ...value });
      }
      for (const id of NODES) assert.deepEqual(options(id), serial.get(id), `final ${id}`);
      committedTotal += log.filter((e) => e.committed).length;
      abortedTotal += log.filter((e) => !e.committed).length;
      app.close();
      store.close();
    }),
    { numRuns: 100 },
  );
  assert.ok(committedTotal > 100 && abortedTotal > 30, `the workloads must both commit and abort: ${committedTotal} / ${abortedTotal}`);
});
