// Worker-thread entry of `turboci serve`'s background snapshots (see src/cli/snapshot.ts): folds the log into a new
// snapshot off the serving thread, through its own read-only connection.
import { parentPort, workerData } from 'node:worker_threads';
import { snapshotOnce } from './snapshot.js';

const { dbPath } = workerData as { dbPath: string };
try {
  parentPort!.postMessage({ ok: true, result: snapshotOnce(dbPath, { background: true }) });
} catch (err) {
  parentPort!.postMessage({ ok: false, error: (err as Error).message });
}
