// One replica's writer for the concurrency test (event-store.test.ts), in a worker thread with its own connection:
// each round it takes the append lock (beginWrite), folds what the other writers committed since it last looked,
// appends a new stream of its own and one event to the stream every writer shares (at the version it folded), and
// commits (flush). It reports the positions it was given and the shared-stream versions it wrote.
import { parentPort, workerData } from 'node:worker_threads';
import type { PendingEvent } from '../../src/domain/events.js';
import { PostgresEventStore } from '../../src/infra/pg/postgres-event-store.js';

export interface WriterData {
  readonly url: string;
  readonly name: string;
  readonly rounds: number;
  readonly shared: string;
}

export interface WriterResult {
  readonly positions: number[];
  readonly sharedVersions: number[];
  /** Per round, how many events other writers had committed since this one's previous commit. */
  readonly folded: number[];
}

const { url, name, rounds, shared } = workerData as WriterData;
const created: PendingEvent = { event: { type: 'WorkPlanCreated', data: { metadata: { writer: name } } }, causedByVersion: null };
const check = (id: string): PendingEvent => ({
  event: { type: 'CheckCreated', data: { checkId: id, kind: 'k', options: {}, dependencies: null } },
  causedByVersion: null,
});

const store = new PostgresEventStore(url, { groupCommit: true, applicationName: `turboci test ${name}` });
const result: WriterResult = { positions: [], sharedVersions: [], folded: [] };
// Like a replica starting on the log: the first beginWrite(0) folds everything there is. The shared stream's
// version then moves only by what beginWrite hands back and by this writer's own appends.
let seen = 0;
let sharedVersion = 0;
try {
  for (let i = 0; i < rounds; i++) {
    const others = store.beginWrite(seen);
    result.folded.push(others.length);
    for (const e of others) {
      if (e.streamId === shared) sharedVersion = e.version;
      seen = e.position;
    }
    const own = store.append(`${name}-${i}`, 0, [created], { requestId: `${name}-r${i}`, recordedAt: 1_000 + i });
    const onShared = store.append(shared, sharedVersion, [check(`${name}-${i}`)], { requestId: `${name}-s${i}`, recordedAt: 1_000 + i, principal: name, reason: null });
    store.flush();
    sharedVersion = onShared[0]!.version;
    result.sharedVersions.push(sharedVersion);
    for (const e of [...own, ...onShared]) result.positions.push(e.position);
    seen = onShared[0]!.position;
  }
} finally {
  store.close();
}
parentPort!.postMessage(result);
