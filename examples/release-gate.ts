// A release gate: stage "deploy" waits on an approval gate "release" and on a nested group of two platforms,
// (build-linux AND test-linux) AND (build-mac AND test-mac). The platforms finish; deploy still waits for the
// approval, which `turboci approve` gives. Run: node dist/examples/release-gate.js [host:port]
import { credentials } from '@grpc/grpc-js';
import { unary } from '../src/client/unary.js';
import { CheckState, NodeType, PredicateType, StageState, type DependencyGroup } from '../src/gen/turboci/v1/common.js';
import { TurboCIOrchestratorClient, WriteNodesRequest, type DeepPartial } from '../src/gen/turboci/v1/service.js';
import { CreateWorkPlanRequest } from '../src/gen/turboci/v1/workplan.js';

const address = process.argv[2] ?? '127.0.0.1:50051';
const client = new TurboCIOrchestratorClient(address, credentials.createInsecure());
const write = (req: DeepPartial<WriteNodesRequest>) => unary(client.writeNodes.bind(client), WriteNodesRequest.fromPartial(req), { timeoutMs: 10_000 });

const all = (checks: string[], groups: DeepPartial<DependencyGroup>[] = []): DeepPartial<DependencyGroup> => ({
  predicate: PredicateType.PREDICATE_TYPE_AND,
  dependencies: checks.map((targetId) => ({ targetType: NodeType.NODE_TYPE_CHECK, targetId })),
  groups,
});
const platforms = ['build-linux', 'test-linux', 'build-mac', 'test-mac'];

const { workPlan } = await unary(client.createWorkPlan.bind(client), CreateWorkPlanRequest.fromPartial({ metadata: { repo: 'example' } }), { timeoutMs: 10_000 });
const workPlanId = workPlan!.id;
console.log(`created workplan ${workPlanId}`);

const planned = await write({
  workPlanId,
  checks: [
    ...platforms.map((id) => ({ id, state: CheckState.CHECK_STATE_PLANNED })),
    { id: 'release', state: CheckState.CHECK_STATE_PLANNED, approvalGate: { approvalsRequired: 1 } },
  ],
  // deploy: release AND ((build-linux AND test-linux) AND (build-mac AND test-mac))
  stages: [{ id: 'deploy', dependencies: all(['release'], [all([], [all(['build-linux', 'test-linux']), all(['build-mac', 'test-mac'])])]) }],
});
const release = planned.checks.find((c) => c.id === 'release')!;
console.log(`plan -> v${planned.workPlanVersion}: gate release=${CheckState[release.state]}, stage deploy=${StageState[planned.stages[0]!.state]}`);

const built = await write({ workPlanId, checks: platforms.map((id) => ({ id, state: CheckState.CHECK_STATE_FINAL })) });
const deploy = built.stages.find((s) => s.id === 'deploy');
console.log(`platforms FINAL -> v${built.workPlanVersion}: stage deploy=${StageState[deploy?.state ?? StageState.STAGE_STATE_PLANNED]} (waits for the approval)`);
console.log(`approve with: turboci approve --server ${address} -w ${workPlanId} --check release --comment "ship it"`);
client.close();
