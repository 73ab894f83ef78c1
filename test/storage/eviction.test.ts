// Eviction of idle complete workplans: only complete ones go, their header stays, anything that asks for one folds
// it back from the log exactly as it was, and writing to it afterwards works as before.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { ReadModels } from '../../projections/read-models.js';
import { Evictor } from '../../src/app/evictor.js';
import { Orchestrator } from '../../src/app/orchestrator.js';
import { digestReadModel } from '../../src/app/eventlog/digest.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { createLogger } from '../../src/logging.js';
import { CheckState } from '../../src/gen/turboci/v1/common.js';
import { BIN, connect, startServer, tempDir } from '../support/server.js';

const dir = tempDir('turboci-evict-');
after(() => dir.remove());

test('only complete workplans are evicted; a read folds one back unchanged; a write to it works and replays the same', () => {
  const store = new SqliteEventStore(`${dir.path}/evict.db`);
  let now = 1_700_000_000_000;
  const app = Orchestrator.open(store, { clock: () => now });
  const evictor = new Evictor(app, 60_000, createLogger('silent'));
  evictor.start();
  try {
    const done = app.createWorkPlan({ which: 'done' }).id;
    const busy = app.createWorkPlan({ which: 'busy' }).id;
    app.writeNodes({ workPlanId: done, requestId: 'r1', checks: [{ id: 'c', state: 'FINAL' }], stages: [{ id: 's', state: 'FINAL' }] });
    app.writeNodes({ workPlanId: busy, requestId: null, checks: [{ id: 'c', state: 'PLANNED' }], stages: [] });
    const before = digestReadModel(app.models.workplan(done)!);

    now += 59_999;
    assert.equal(evictor.sweep(), 0, 'not idle long enough');
    now += 1;
    assert.equal(evictor.sweep(), 1, 'the complete one, not the busy one');
    assert.deepEqual([...app.models.workplans.residentIds()], [busy]);
    assert.equal(app.getWorkPlan(done).version, before.version, 'the header stays in memory');
    assert.equal(app.models.workplans.foldBacks, 0);

    assert.equal(digestReadModel(app.models.workplan(done)!).sha256, before.sha256, 'folded back exactly');
    assert.equal(app.models.workplans.foldBacks, 1);
    assert.equal(evictor.sweep(), 0, 'a fold-back is a use: not evicted again at once');

    now += 60_000;
    assert.equal(evictor.sweep(), 1);
    // A retried request is answered from the folded-back model; a new write makes it incomplete again.
    assert.equal(app.writeNodes({ workPlanId: done, requestId: 'r1', checks: [{ id: 'c', state: 'FINAL' }], stages: [] }).version, before.version);
    app.writeNodes({ workPlanId: done, requestId: 'r2', checks: [{ id: 'more', state: 'PLANNED' }], stages: [] });
    now += 10 * 60_000;
    assert.equal(evictor.sweep(), 0, 'incomplete again');
    const replayed = ReadModels.replay(store.readAll());
    assert.equal(digestReadModel(replayed.workplan(done)!).sha256, digestReadModel(app.models.workplan(done)!).sha256);
  } finally {
    evictor.stop();
    app.close();
    store.close();
  }
});

test('serve --evict-after: an idle complete workplan leaves memory, answers the same, and verify agrees', async () => {
  const server = await startServer(`${dir.path}/serve.db`, ['--evict-after', '1']);
  const { api, close } = connect(server.address);
  try {
    const id = (await api.createWorkPlan({ metadata: {} })).workPlan!.id;
    await api.writeNodes({ workPlanId: id, checks: [{ id: 'c', state: CheckState.CHECK_STATE_FINAL }] });
    const before = await api.queryNodes({ workPlanId: id });
    await server.waitForLog((l) => l.msg === 'idle complete workplans evicted', 10_000);
    assert.deepEqual(await api.queryNodes({ workPlanId: id }), before);
    const verified = spawnSync(process.execPath, [BIN, 'verify', '--db', server.dbPath, '--server', server.address], { encoding: 'utf8' });
    assert.equal(verified.status, 0, verified.stdout + verified.stderr);
  } finally {
    close();
    await server.stop();
  }
});
