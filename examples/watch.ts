// Follows a workplan with WatchWorkPlan and prints one line per event; resumes by itself after a disconnect, a
// server restart or RESOURCE_EXHAUSTED, from the last version it received (see the README (section "Watching a workplan")).
//
//   npm run build && node dist/examples/watch.js <address> <workplan-id> [--after-version N] [--checks] [--stages]
//
// It exits 0 on the WorkPlanCompletedEvent, 1 on an error it cannot resume from (NOT_FOUND, INVALID_ARGUMENT...).
import { parseArgs } from 'node:util';
import { channel, CLIENT_ARG_OPTIONS, connectOptionsFrom } from '../src/client/connect.js';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { AttemptState, CheckState, StageState } from '../src/gen/turboci/v1/common.js';
import { TurboCIOrchestratorClient, WatchWorkPlanRequest, type WorkPlanEvent } from '../src/gen/turboci/v1/service.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'after-version': { type: 'string' },
    checks: { type: 'boolean', default: false },
    stages: { type: 'boolean', default: false },
    ...CLIENT_ARG_OPTIONS, // --token (or TURBOCI_TOKEN), --tls-ca, --tls-cert, --tls-key
  },
});
const [address, workPlanId] = positionals;
if (!address || !workPlanId) {
  console.error('usage: node dist/examples/watch.js <address> <workplan-id> [--after-version N] [--checks] [--stages]');
  process.exit(2);
}

const ch = channel(connectOptionsFrom(values));
const client = new TurboCIOrchestratorClient(address, ch.credentials, ch.options);
/**
 * The resume point: the version of the last change received (undefined: start with a snapshot). Snapshot events do
 * not move it until a live change arrives: a stream cut inside the snapshot is simply watched again from scratch.
 */
let lastVersion: number | undefined = values['after-version'] === undefined ? undefined : Number(values['after-version']);
let done = false;
/** Codes worth resuming after: the stream ended but the watch is still wanted. */
const RESUMABLE = new Set([status.RESOURCE_EXHAUSTED, status.UNAVAILABLE, status.CANCELLED, status.DEADLINE_EXCEEDED, status.INTERNAL]);

function describe(e: WorkPlanEvent): string {
  const tag = e.snapshot ? 'snapshot' : 'change';
  if (e.checkEvent) {
    const c = e.checkEvent;
    return `v${e.version} ${tag} check ${c.checkId}: ${CheckState[c.oldState]} -> ${CheckState[c.newState]} (node version ${c.check?.version})`;
  }
  if (e.stageEvent) {
    const s = e.stageEvent;
    const attempt = s.stage?.attempts.at(-1);
    const progress = attempt?.progress.at(-1)?.message;
    const current = attempt ? ` attempt ${attempt.idx} ${AttemptState[attempt.state]}` : '';
    return `v${e.version} ${tag} stage ${s.stageId}: ${StageState[s.oldState]} -> ${StageState[s.newState]}${current}${progress ? ` "${progress}"` : ''}`;
  }
  const d = e.completedEvent!;
  return `v${e.version} completed: ${d.checksCompleted} checks, ${d.stagesCompleted} stages, has_failures=${d.hasFailures}`;
}

function watchOnce(): Promise<'completed' | 'resume'> {
  return new Promise((resolve, reject) => {
    const request = WatchWorkPlanRequest.fromPartial({
      workPlanId,
      includeChecks: values.checks,
      includeStages: values.stages,
      afterVersion: lastVersion,
    });
    const stream = client.watchWorkPlan(request, new Metadata());
    stream.on('data', (e: WorkPlanEvent) => {
      if (!e.snapshot) lastVersion = e.version;
      console.log(describe(e));
      if (e.completedEvent) {
        done = true;
        stream.cancel();
        resolve('completed');
      }
    });
    stream.on('error', (err: ServiceError) => {
      if (done) return; // our own cancel after completion
      if (RESUMABLE.has(err.code)) {
        console.error(`stream ended (${status[err.code]}: ${err.details}); resuming after version ${lastVersion ?? '(snapshot)'}`);
        resolve('resume');
      } else reject(err);
    });
  });
}

try {
  for (;;) {
    if ((await watchOnce()) === 'completed') break;
    await new Promise((r) => setTimeout(r, 500));
  }
  client.close();
} catch (err) {
  console.error(`watch failed: ${(err as ServiceError).details ?? err}`);
  client.close();
  process.exitCode = 1;
}
