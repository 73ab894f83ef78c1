// Follows a workplan with WatchWorkPlan and prints one line per event; resumes by itself after a disconnect, a
// server restart or RESOURCE_EXHAUSTED, from the last version it received (see docs/watch.md).
//
//   npm run build && node dist/examples/watch.js <address> <workplan-id> [--after-version N] [--checks] [--stages]
//
// It exits 0 on the WorkPlanCompletedEvent, 1 on an error it cannot resume from (NOT_FOUND, INVALID_ARGUMENT...),
// when the server is not there to begin with, or after the server stayed away for about half a minute.
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { channel, CLIENT_ARG_OPTIONS, connectOptionsFrom } from '../src/client/connect.js';
import { AttemptState, CheckState, StageState } from '../src/gen/turboci/v1/common.js';
import { TurboCIOrchestratorClient, WatchWorkPlanRequest, type WorkPlanEvent } from '../src/gen/turboci/v1/service.js';
import { exampleArgs, reachable, usageError } from './support.js';

const USAGE = `usage: node dist/examples/watch.js <address> <workplan-id> [--after-version N] [--checks] [--stages] [--give-up-after S]

Prints one line per change of the workplan until it completes; resumes by itself after a disconnect, and gives up
when the server has not answered for S seconds (default 30).`;
const { values, positionals } = exampleArgs(
  USAGE,
  {
    'after-version': { type: 'string' },
    checks: { type: 'boolean', default: false },
    stages: { type: 'boolean', default: false },
    'give-up-after': { type: 'string', default: '30' },
    ...CLIENT_ARG_OPTIONS, // --token (or TURBOCI_TOKEN), --tls-ca, --tls-cert, --tls-key
  },
  true,
);
const giveUpMs = Number(values['give-up-after']) * 1000;
if (!(giveUpMs >= 0)) usageError(USAGE, `--give-up-after: "${values['give-up-after']}" is not a number of seconds`);
const [address, workPlanId] = positionals;
if (!address || !workPlanId) usageError(USAGE, 'an address and a workplan id are required');
if (values['after-version'] !== undefined && !/^\d{1,15}$/.test(values['after-version'])) usageError(USAGE, `--after-version: "${values['after-version']}" is not a version`);

const ch = channel(connectOptionsFrom(values));
const client = new TurboCIOrchestratorClient(address, ch.credentials, ch.options);
await reachable(client, address);
/** Resumes in a row without a single event in between, and since when: past --give-up-after the server is gone. */
let retries = 0;
let unansweredSince = 0;
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
      afterVersion: lastVersion === undefined ? undefined : BigInt(lastVersion),
    });
    const stream = client.watchWorkPlan(request, new Metadata());
    stream.on('data', (e: WorkPlanEvent) => {
      retries = 0;
      unansweredSince = 0;
      if (!e.snapshot) lastVersion = Number(e.version);
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
    unansweredSince ||= Date.now();
    if (Date.now() - unansweredSince >= giveUpMs) {
      const resume = lastVersion === undefined ? '' : ` (watch again with --after-version ${lastVersion})`;
      throw new Error(`the server at ${address} has not answered for ${values['give-up-after']} s; giving up${resume}`);
    }
    await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** ++retries))); // 0.5 s, 1 s, 2 s, 4 s, then every 5 s
  }
  client.close();
} catch (err) {
  console.error(`watch failed: ${(err as ServiceError).details ?? (err as Error).message ?? err}`);
  client.close();
  process.exitCode = 1;
}
