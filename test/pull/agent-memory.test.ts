// The pull agents the runners page lists are remembered for ten minutes after their last call. Agents come and go
// (an id per pod or per job), so the server must forget the quiet ones by itself, not only when someone opens the
// runners page. In-process, on a real SQLite file, with the orchestrator's clock moved by hand.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Orchestrator } from '../../src/app/orchestrator.js';
import { PullService, type LeaseRequest } from '../../src/app/pull-service.js';
import { SqliteEventStore } from '../../src/infra/sqlite-event-store.js';
import { createLogger } from '../../src/logging.js';
import { tempDir } from '../support/server.js';

const agent = (runnerId: string): LeaseRequest => ({ runnerId, runnerType: 'build', labels: {}, waitMs: 0 });

test('agents quiet for ten minutes are forgotten as new ones call, without the runners page asking', () => {
  const dir = tempDir('turboci-agents-');
  const store = new SqliteEventStore(`${dir.path}/agents.db`);
  let now = 1_700_000_000_000;
  const app = Orchestrator.open(store, { clock: () => now });
  const pull = new PullService(app, createLogger('silent'));
  try {
    for (let i = 0; i < 100; i++) pull.sawAgent(agent(`job-${i}`));
    assert.equal(pull.agentsRemembered(), 100);

    now += 9 * 60_000;
    pull.sawAgent(agent('job-0'));
    pull.sawAgent(agent('steady'));
    assert.equal(pull.agentsRemembered(), 101, 'nobody is quiet for ten minutes yet');

    now += 2 * 60_000;
    pull.sawAgent(agent('late-comer'));
    assert.equal(pull.agentsRemembered(), 3, 'the 99 quiet ones are gone');
    assert.deepEqual([...pull.agents().keys()].sort(), ['job-0', 'late-comer', 'steady']);

    now += 10 * 60_000 + 1;
    assert.deepEqual([...pull.agents().keys()], [], 'the runners page lists no agent quiet for longer');
  } finally {
    app.close();
    store.close();
    dir.remove();
  }
});
