// Writes a small, reproducible sample event log for docs/debugging.md: a workplan whose check `build` is
// finalized by stage `compile`, whose stage `unit-tests` fails once and is retried, and whose stage `deploy`
// starts when check `tests` goes FINAL. It runs the real orchestrator (decide, resolver, SQLite event store) in
// process with a fixed clock and fixed ids, so every command in the walkthrough prints the same output.
//
// Run: npm run build && node dist/scripts/sample-log.js [PATH]     (default ./sample.db; an existing file is replaced)
import { rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Orchestrator } from '../src/app/orchestrator.js';
import { SqliteEventStore } from '../src/infra/sqlite-event-store.js';

export const SAMPLE_WORKPLAN = 'wp-sample';
export const SAMPLE_START = Date.parse('2025-01-31T12:00:00.000Z');

/** Writes the sample log to `path` and returns the workplan id and its final version. */
export function writeSampleLog(path: string): { workPlanId: string; version: number } {
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
  const store = new SqliteEventStore(path);
  let tick = 0;
  const app = Orchestrator.open(store, { clock: () => SAMPLE_START + 1500 * tick++, newWorkPlanId: () => SAMPLE_WORKPLAN });
  try {
    const id = app.createWorkPlan({ repo: 'example/app', change: '1234' }).id;
    const write = (requestId: string, body: Omit<Parameters<Orchestrator['writeNodes']>[0], 'workPlanId' | 'requestId'>) =>
      app.writeNodes({ workPlanId: id, requestId, ...body });

    write('r-plan', {
      checks: [
        { id: 'build', kind: 'build', state: 'PLANNED', options: { target: 'linux' } },
        { id: 'tests', kind: 'test', state: 'PLANNED', dependencies: { predicate: 'AND', threshold: 0, edges: [{ kind: 'check', id: 'build' }] } },
      ],
      stages: [
        { id: 'compile', args: { command: 'make' }, assignments: [{ checkId: 'build', goalState: 'FINAL' }] },
        {
          id: 'unit-tests',
          args: { command: 'make test' },
          maxAttempts: 2,
          assignments: [{ checkId: 'tests', goalState: 'FINAL' }],
          dependencies: { predicate: 'AND', threshold: 0, edges: [{ kind: 'check', id: 'build' }] },
        },
        { id: 'deploy', dependencies: { predicate: 'AND', threshold: 0, edges: [{ kind: 'check', id: 'tests' }] } },
      ],
    });
    write('r-claim-compile', { checks: [], stages: [{ id: 'compile', currentAttempt: { processUid: 'runner-a' } }] });
    write('r-compile-done', {
      checks: [{ id: 'build', state: 'FINAL', result: { ownerType: 'stage', ownerId: 'compile', data: { passed: true }, finalize: true } }],
      stages: [{ id: 'compile', state: 'FINAL', currentAttempt: { state: 'COMPLETE' } }],
    });
    write('r-claim-tests-1', { checks: [], stages: [{ id: 'unit-tests', currentAttempt: { processUid: 'runner-b' } }] });
    write('r-tests-flaky', {
      checks: [],
      stages: [{ id: 'unit-tests', currentAttempt: { state: 'INCOMPLETE', failure: { message: 'connection reset by peer' } } }],
    });
    write('r-claim-tests-2', { checks: [], stages: [{ id: 'unit-tests', currentAttempt: { processUid: 'runner-c' } }] });
    const last = write('r-tests-done', {
      checks: [{ id: 'tests', state: 'FINAL', result: { ownerType: 'stage', ownerId: 'unit-tests', data: { passed: 412 }, finalize: true } }],
      stages: [{ id: 'unit-tests', state: 'FINAL', currentAttempt: { state: 'COMPLETE' } }],
    });
    return { workPlanId: id, version: last.version };
  } finally {
    app.close();
    store.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const path = process.argv[2] ?? './sample.db';
  const { workPlanId, version } = writeSampleLog(path);
  console.log(`wrote ${path}: workplan ${workPlanId} at v${version}`);
}
