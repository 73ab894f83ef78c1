// With the fsync off the main thread (the server's SQLite store at --sync FULL, when the disk is slow), a commit's effects get out only once
// its fdatasync is done: bus.durable$ (watchers, the web UI) and every afterFlush/durable() waiter (answers,
// dispatches, leases). In process, through the Orchestrator on a real SQLite file.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Orchestrator } from '../../src/app/orchestrator.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { tempDir } from '../support/server.js';

const dir = tempDir('turboci-durable-release-');
after(() => dir.remove());

test('a group commit is let out after its fdatasync, in commit order, and a waiter with nothing new waits for the last sync', async () => {
  // Every sync off the main thread (syncInlineBelowMs 0), as on a slow disk.
  const store = new SqliteEventStore(`${dir.path}/release.db`, { groupCommit: true, syncOffMainThread: true, syncInlineBelowMs: 0 });
  const app = Orchestrator.open(store);
  const seen: string[] = [];
  const sub = app.bus.durable$.subscribe((batch) => seen.push(`durable ${batch.map((r) => r.version).join(',')}`));

  const workPlanId = app.createWorkPlan({}).id;
  const first = app.durable().then(() => seen.push('first'));
  app.flush(); // the commit, as the next turn's group commit would make it
  assert.equal(seen.length, 0, 'committed, but nothing gets out before the fdatasync');
  app.writeNodes({ workPlanId, requestId: null, checks: [{ id: 'a', options: {} }], stages: [] });
  const second = app.durable().then(() => seen.push('second'));
  app.flush();
  // Nothing appended since: waits with the last commit rather than for a flush that may never come.
  let third = false;
  app.afterFlush(() => (third = true));
  assert.equal(third, false);
  await Promise.all([first, second]);
  assert.equal(third, true);
  assert.deepEqual(
    seen.filter((s) => !s.startsWith('durable')),
    ['first', 'second'],
  );
  assert.ok(seen.indexOf('durable 1') < seen.indexOf('first'), 'the events go out before (or with) the answer');
  assert.equal(seen.filter((s) => s.startsWith('durable')).length, 2);

  // Once every sync is done, a waiter runs at once.
  let now = false;
  app.afterFlush(() => (now = true));
  assert.equal(now, true);
  sub.unsubscribe();
  app.close();
  store.close();
});

test('closing the store runs what still waits for a sync', async () => {
  const store = new SqliteEventStore(`${dir.path}/close.db`, { groupCommit: true, syncOffMainThread: true, syncInlineBelowMs: 0 });
  const app = Orchestrator.open(store);
  app.createWorkPlan({});
  let released = false;
  app.afterFlush(() => (released = true));
  app.close(); // flushes: committed, its sync running
  store.close(); // syncs at once and lets it out
  assert.equal(released, true);
  const reopened = new SqliteEventStore(`${dir.path}/close.db`, { readonly: true });
  assert.equal(reopened.count(), 1);
  reopened.close();
});
