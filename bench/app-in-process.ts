// The application alone, in this process: what the pull path costs without gRPC. A real Orchestrator on a real
// SQLite file (--sync NORMAL's settings: group commit, the commit marker), a PullService, and `executors` Work
// sessions of one credit each that complete every attempt leased to them on the next turn of the event loop and
// give the credit back, as a Work stream does. Everything the server decides, appends (the hash chain included),
// commits, folds and publishes is here; the transport (grpc-js, validation, message mapping) is not. Beside the
// Work stream floor (grpc-js alone) it splits a stage's cost into the transport's and the application's.
import { Orchestrator } from '../src/app/orchestrator.js';
import { PullService, type LeasedAttempt, type WorkSession } from '../src/app/pull-service.js';
import type { Caller, StageWriteInput } from '../src/domain/commands.js';
import { SqliteEventStore } from '../src/infra/sqlite-event-store.js';
import { createLogger } from '../src/logging.js';
import { tempDir } from '../test/support/server.js';
import type { StageSpec } from './stage-drivers.js';

const CALLER: Caller = { principal: 'anonymous', authenticated: false, admin: false };

export interface InProcessRun {
  readonly ms: number;
  readonly submitMs: number;
  /** This process's CPU per stage (all its threads), submit included, in µs. */
  readonly cpuUsPerStage: number;
}

export interface AppInProcess {
  run(stages: readonly StageSpec[]): Promise<InProcessRun>;
  close(): void;
}

const stageWrite = (s: StageSpec): StageWriteInput => ({
  id: s.id,
  runnerType: s.runnerType,
  ...(s.dependsOn?.length ? { dependencies: { predicate: 'AND', threshold: 0, edges: s.dependsOn.map((id) => ({ kind: 'stage', id })) } } : {}),
});

/** One application, kept for every run (warm, as a server in service); each run a fresh workplan and runner type. */
export function startAppInProcess(executors: number): AppInProcess {
  const dir = tempDir('turboci-bench-app-');
  const store = new SqliteEventStore(`${dir.path}/app.db`, { groupCommit: true, synchronous: 'NORMAL', commitMarker: true });
  const app = Orchestrator.open(store);
  const pull = new PullService(app, createLogger('silent'));
  pull.start();
  let runs = 0;
  return {
    async run(stages) {
      const runnerType = `in-process-${++runs}`;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const workPlanId = app.createWorkPlan({}).id;
      app.writeNodes({ workPlanId, requestId: null, checks: [], stages: stages.map((s) => stageWrite({ ...s, runnerType })), omitNodes: true });
      await app.durable();
      const submitMs = performance.now() - t0;
      let completed = 0;
      const sessions: WorkSession[] = [];
      try {
        await new Promise<void>((resolve, reject) => {
          for (let k = 0; k < executors; k++) {
            const deliver = (leased: LeasedAttempt[]) => {
              for (const l of leased) {
                setImmediate(() => {
                  try {
                    session.complete(l.leaseToken, { checkUpdates: [] });
                    session.addCredit(1);
                    if (++completed === stages.length) resolve();
                  } catch (err) {
                    reject(err as Error);
                  }
                });
              }
            };
            const session: WorkSession = pull.openWork({ runnerId: `${runnerType}-${k}`, runnerType, labels: {} }, CALLER, deliver, () => undefined);
            sessions.push(session);
            session.addCredit(1);
          }
        });
      } finally {
        for (const s of sessions) s.close();
      }
      const ms = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      return { ms, submitMs, cpuUsPerStage: (cpu.user + cpu.system) / stages.length };
    },
    close() {
      pull.stop();
      app.close();
      store.close();
      dir.remove();
    },
  };
}
