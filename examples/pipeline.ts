// A sample CI pipeline for pull runners: checks build → test → lint, each finalized by a stage of runner type
// "shell" whose command runs one of this repository's npm scripts. One command creates it, one follows it:
//
//   node dist/examples/pipeline.js create [--server HOST:PORT] [--repo DIR] [--build CMD] [--test CMD] [--lint CMD]
//   node dist/examples/pipeline.js follow [--server HOST:PORT] WORKPLAN_ID
//
// With a server and an agent (`npx turboci runner --server HOST:PORT --type shell`) running, `create` prints the new
// workplan id; `follow` prints every stage and check transition until the workplan is done and exits 0 when every
// check passed, 1 otherwise.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { channel, CLIENT_ARG_OPTIONS, connectOptionsFrom } from '../src/client/connect.js';
import { AttemptState, CheckState, NodeType, PredicateType, StageState } from '../src/gen/turboci/v1/common.js';
import { QueryNodesRequest, TurboCIOrchestratorClient, WriteNodesRequest, type QueryNodesResponse } from '../src/gen/turboci/v1/service.js';
import type { CreateWorkPlanResponse } from '../src/gen/turboci/v1/workplan.js';
import { describeError, exampleArgs, reachable, usageError } from './support.js';

const USAGE = `usage: node dist/examples/pipeline.js create [--server HOST:PORT] [--repo DIR] [--build CMD] [--test CMD] [--lint CMD]
       node dist/examples/pipeline.js follow [--server HOST:PORT] WORKPLAN_ID

create: a workplan with checks build → test → lint, each finalized by a "shell" stage (run by npx turboci runner
--type shell); prints its id. follow: prints every transition until it is done; exit 0 when every check passed.`;
const { values, positionals } = exampleArgs(
  USAGE,
  {
    server: { type: 'string', default: '127.0.0.1:50051' },
    repo: { type: 'string', default: resolve(fileURLToPath(new URL('.', import.meta.url)), '../..') },
    build: { type: 'string', default: 'npm run build' },
    test: { type: 'string', default: 'npm test' },
    lint: { type: 'string', default: 'npx --no-install tsc -p tsconfig.json --noEmit' },
    'poll-ms': { type: 'string', default: '500' },
    ...CLIENT_ARG_OPTIONS, // --token (or TURBOCI_TOKEN), --tls-ca, --tls-cert, --tls-key
  },
  true,
);
const [command, workPlanArg] = positionals;
if (!(command === 'create' || (command === 'follow' && workPlanArg))) usageError(USAGE, command ? `cannot "${positionals.join(' ')}"` : 'create or follow?');
const ch = channel(connectOptionsFrom(values));
const client = new TurboCIOrchestratorClient(values.server!, ch.credentials, ch.options);
await reachable(client, values.server!);
const call = <Res>(method: Function, req: unknown) =>
  new Promise<Res>((res, rej) => method.call(client, req, new Metadata(), (e: ServiceError | null, r: Res) => (e ? rej(e) : res(r))));
const after = (checkId: string) => ({
  predicate: PredicateType.PREDICATE_TYPE_AND,
  dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: checkId }],
});

async function create(): Promise<number> {
  const { workPlan } = await call<CreateWorkPlanResponse>(client.createWorkPlan, { metadata: { pipeline: 'turboci-lite sample', repo: values.repo! } });
  const workPlanId = workPlan!.id;
  const steps = [
    { id: 'build', command: values.build!, dependsOn: null },
    { id: 'test', command: values.test!, dependsOn: 'build' },
    { id: 'lint', command: values.lint!, dependsOn: 'test' },
  ];
  await call(
    client.writeNodes,
    WriteNodesRequest.fromPartial({
      workPlanId,
      checks: steps.map((s) => ({
        id: s.id,
        kind: s.id,
        state: CheckState.CHECK_STATE_PLANNED,
        ...(s.dependsOn ? { dependencies: after(s.dependsOn) } : {}),
      })),
      stages: steps.map((s) => ({
        id: `run-${s.id}`,
        runnerType: 'shell',
        args: { command: s.command, cwd: values.repo!, env: { CI: '1' } },
        assignments: [{ targetCheckId: s.id }],
        maxAttempts: 2,
        executionPolicy: { heartbeatIntervalMs: 5000, retryBackoffMs: 2000, runTimeoutMs: 30 * 60_000 },
        ...(s.dependsOn ? { dependencies: after(s.dependsOn) } : {}),
      })),
    }),
  );
  console.log(workPlanId);
  return 0;
}

async function follow(workPlanId: string): Promise<number> {
  const seen = new Map<string, string>();
  const shownProgress = new Map<string, number>();
  for (;;) {
    const res = await call<QueryNodesResponse>(client.queryNodes, QueryNodesRequest.fromPartial({ workPlanId }));
    for (const s of res.stages) {
      const a = s.attempts.at(-1);
      const line = `stage ${s.id}: ${StageState[s.state]}${a ? ` (attempt ${a.idx} ${AttemptState[a.state]}${a.processUid ? ` on ${a.processUid}` : ''})` : ''}`;
      if (seen.get(`stage:${s.id}`) !== line) console.log(line);
      seen.set(`stage:${s.id}`, line);
      if (a) {
        const key = `${s.id}/${a.idx}`;
        const lines = a.progress.flatMap((p) => (p.details?.lines as string[] | undefined) ?? []);
        for (const l of lines.slice(shownProgress.get(key) ?? 0)) console.log(`  ${s.id}| ${l}`);
        shownProgress.set(key, lines.length);
        if (a.failure && seen.get(`failure:${key}`) !== a.failure.message) console.log(`  ${s.id}: attempt ${a.idx} failed: ${a.failure.message}`);
        if (a.failure) seen.set(`failure:${key}`, a.failure.message);
      }
    }
    for (const c of res.checks) {
      const failed = c.results.some((r) => r.failure);
      const line = `check ${c.id}: ${CheckState[c.state]}${c.state === CheckState.CHECK_STATE_FINAL ? (failed ? ' FAILED' : ' passed') : ''}`;
      if (seen.get(`check:${c.id}`) !== line) console.log(line);
      seen.set(`check:${c.id}`, line);
    }
    const done = res.checks.every((c) => c.state === CheckState.CHECK_STATE_FINAL) && res.stages.every((s) => s.state === StageState.STAGE_STATE_FINAL);
    if (done) {
      const failed = res.checks.filter((c) => c.results.some((r) => r.failure)).map((c) => c.id);
      console.log(failed.length ? `pipeline FAILED: ${failed.join(', ')}` : 'pipeline passed');
      return failed.length ? 1 : 0;
    }
    await new Promise((r) => setTimeout(r, Number(values['poll-ms'])));
  }
}

try {
  process.exitCode = command === 'create' ? await create() : await follow(workPlanArg!);
} catch (err) {
  console.error(`error: ${describeError(err)}`);
  process.exitCode = 1;
}
client.close();
