// The idle compactor: one compacting GC per busy period, only once the server has been idle long enough, and none
// while it works; the GC it runs needs no --expose-gc and leaves no `gc` behind. Whatever a GC does, the read
// models are the same objects with the same contents afterwards.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { compactHeap, IdleCompactor } from '../../src/app/idle-compactor.js';
import { digestReadModel } from '../../src/app/eventlog/digest.js';
import { Orchestrator } from '../../src/app/orchestrator.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { createLogger } from '../../src/logging.js';
import { tempDir } from '../support/server.js';

const dir = tempDir('turboci-compact-');
after(() => dir.remove());

test('compacts once per busy period, after idleMs without activity, never while active', () => {
  let position = 0;
  let now = 1_000_000;
  const compactor = new IdleCompactor(() => position, { idleMs: 30_000, minWastedBytes: 0 }, createLogger('silent'), () => now);
  assert.equal(compactor.check(), undefined, 'just started: not idle yet');
  for (let i = 0; i < 5; i++) {
    now += 20_000;
    position++;
    assert.equal(compactor.check(), undefined, 'writes keep coming');
  }
  now += 29_999;
  assert.equal(compactor.check(), undefined, 'not idle long enough');
  now += 1;
  const c = compactor.check();
  assert.ok(c, 'idle for idleMs after writes: compacts');
  assert.ok(c.ms >= 0 && c.wastedBeforeBytes >= 0 && c.rssBeforeBytes > 0);
  assert.equal(compactor.compactions, 1);
  now += 10 * 60_000;
  assert.equal(compactor.check(), undefined, 'still idle: once per busy period');
  position++;
  assert.equal(compactor.check(), undefined);
  now += 30_000;
  assert.ok(compactor.check(), 'the next busy period ends: compacts again');
  assert.equal(compactor.compactions, 2);
});

test('below minWastedBytes it does not compact', () => {
  let now = 0;
  const compactor = new IdleCompactor(() => 1, { idleMs: 1, minWastedBytes: Number.MAX_SAFE_INTEGER }, createLogger('silent'), () => now);
  now += 10;
  assert.equal(compactor.check(), undefined);
  assert.equal(compactor.compactions, 0);
});

test('compactHeap works without --expose-gc and leaves no gc global; the read models are unchanged by it', () => {
  const hadGc = typeof (globalThis as { gc?: unknown }).gc === 'function';
  const store = new SqliteEventStore(`${dir.path}/compact.db`);
  const app = Orchestrator.open(store);
  try {
    const id = app.createWorkPlan({}).id;
    for (let i = 0; i < 50; i++) {
      app.writeNodes({ workPlanId: id, requestId: null, checks: [{ id: `c${i}`, state: 'PLANNED' }], stages: [] });
      app.writeNodes({ workPlanId: id, requestId: null, checks: [{ id: `c${i}`, state: 'FINAL' }], stages: [] });
    }
    const before = digestReadModel(app.models.workplan(id)!).sha256;
    compactHeap();
    compactHeap();
    assert.equal(digestReadModel(app.models.workplan(id)!).sha256, before);
    assert.equal(typeof (globalThis as { gc?: unknown }).gc === 'function', hadGc, 'no gc global appears');
  } finally {
    app.close();
    store.close();
  }
});
