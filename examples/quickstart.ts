// A short session against a running server: create a workplan, write a check and a stage that depends on it,
// then play the runner of the builder stage: claim its attempt, finish the check, and see the dependent
// stage start. Run: node dist/examples/quickstart.js [host:port]   (default 127.0.0.1:50051)
import { channel, CLIENT_ARG_OPTIONS, connectOptionsFrom } from '../src/client/connect.js';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { AttemptState, CheckState, NodeType, PredicateType, StageState } from '../src/gen/turboci/v1/common.js';
import { TurboCIOrchestratorClient, WriteNodesRequest, type DeepPartial, type WriteNodesResponse } from '../src/gen/turboci/v1/service.js';
import type { CreateWorkPlanResponse } from '../src/gen/turboci/v1/workplan.js';
import { exampleArgs, reachable, runMain, usageError } from './support.js';

const USAGE = `usage: node dist/examples/quickstart.js [HOST:PORT]   (default 127.0.0.1:50051)

Creates a workplan with a check and two stages on a running server (npx turboci serve) and plays the runner of one.`;
const { values, positionals } = exampleArgs(USAGE, { ...CLIENT_ARG_OPTIONS }, true);
if (positionals.length > 1) usageError(USAGE, `unexpected arguments: ${positionals.slice(1).join(' ')}`);
const address = positionals[0] ?? '127.0.0.1:50051';
// With a server started with --auth on: --token or TURBOCI_TOKEN (a writer token); --tls-ca etc. for TLS.
const ch = channel(connectOptionsFrom(values));
const client = new TurboCIOrchestratorClient(address, ch.credentials, ch.options);
await reachable(client, address);

const call = <Req, Res>(method: (req: Req, md: Metadata, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req) =>
  new Promise<Res>((resolve, reject) => method.call(client, req, new Metadata(), (e, r) => (e ? reject(e) : resolve(r))));
const write = (req: DeepPartial<WriteNodesRequest>) => call<WriteNodesRequest, WriteNodesResponse>(client.writeNodes, WriteNodesRequest.fromPartial(req));
const show = (label: string, res: WriteNodesResponse) => {
  const nodes = [
    ...res.checks.map((c) => `check ${c.id}=${CheckState[c.state]}`),
    ...res.stages.map((s) => `stage ${s.id}=${StageState[s.state]}${s.attempts.length ? ` (attempt ${s.attempts.at(-1)!.idx} ${AttemptState[s.attempts.at(-1)!.state]})` : ''}`),
  ];
  console.log(`${label} -> v${res.workPlanVersion}: ${nodes.join(', ')}`);
};

runMain(async () => {
  const { workPlan } = await call<{ metadata: Record<string, string>; realm: string }, CreateWorkPlanResponse>(client.createWorkPlan, {
    metadata: { repo: 'example' },
    realm: '',
  });
  const workPlanId = workPlan!.id;
  console.log(`created workplan ${workPlanId}`);

  show(
    'plan: check "build", stage "compile" assigned to it, stage "deploy" depending on it',
    await write({
      workPlanId,
      checks: [{ id: 'build', kind: 'build', state: CheckState.CHECK_STATE_PLANNED, options: { target: 'linux' } }],
      stages: [
        { id: 'compile', args: { command: 'make' }, assignments: [{ targetCheckId: 'build', goalState: CheckState.CHECK_STATE_FINAL }] },
        {
          id: 'deploy',
          dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'build' }] },
        },
      ],
    }),
  );
  show('runner claims compile', await write({ workPlanId, stages: [{ id: 'compile', currentAttempt: { processUid: 'runner-1' } }] }));
  show(
    'runner reports: build passed, compile complete',
    await write({
      workPlanId,
      checks: [
        {
          id: 'build',
          result: { ownerType: 'stage', ownerId: 'compile', data: { passed: true }, finalize: true },
          state: CheckState.CHECK_STATE_FINAL,
        },
      ],
      stages: [{ id: 'compile', currentAttempt: { state: AttemptState.ATTEMPT_STATE_COMPLETE }, state: StageState.STAGE_STATE_FINAL }],
    }),
  );
  client.close();
});
