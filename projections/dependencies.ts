// Reducer for the dependency read model: the reverse index target → dependents (so resolution touches only the
// nodes a change can affect), per node the count of its edges whose target is FINAL (so checking a fan-in of N is
// O(1), not O(N)), and parent → child stages. Runs before the node reducers: it reads the old edges.
import type { RecordedEvent } from '../src/domain/events.js';
import { nodeKey, type DependencyGroup, type NodeKey } from '../src/domain/model.js';
import type { WorkPlanSink } from './sink.js';

export function reduceDependencies(sink: WorkPlanSink, rec: RecordedEvent): void {
  const e = rec.event;
  switch (e.type) {
    case 'CheckCreated':
    case 'CheckAmended': {
      if (e.data.dependencies === undefined) return;
      const self = nodeKey({ kind: 'check', id: e.data.checkId });
      relink(sink, self, sink.check(e.data.checkId)?.dependencies ?? null, e.data.dependencies);
      return;
    }
    case 'CheckStateChanged':
      if (e.data.to === 'FINAL') countFinal(sink, nodeKey({ kind: 'check', id: e.data.checkId }));
      return;
    case 'StageStateChanged':
      if (e.data.to === 'FINAL') countFinal(sink, nodeKey({ kind: 'stage', id: e.data.stageId }));
      return;
    case 'StageCreated':
    case 'StageAmended': {
      const prev = sink.stage(e.data.stageId);
      if (e.data.dependencies !== undefined) {
        relink(sink, nodeKey({ kind: 'stage', id: e.data.stageId }), prev?.dependencies ?? null, e.data.dependencies);
      }
      const parent = e.data.parentStageId;
      if (parent !== undefined && parent !== prev?.parentStageId) {
        if (prev?.parentStageId) sink.orphan(prev.parentStageId, e.data.stageId);
        if (parent) sink.adopt(parent, e.data.stageId);
      }
      return;
    }
    default:
      return;
  }
}

function relink(sink: WorkPlanSink, self: NodeKey, before: DependencyGroup | null, after: DependencyGroup | null): void {
  for (const edge of before?.edges ?? []) sink.unlink(nodeKey(edge), self);
  let final = 0;
  for (const edge of after?.edges ?? []) {
    sink.link(nodeKey(edge), self);
    const target = edge.kind === 'check' ? sink.check(edge.id) : sink.stage(edge.id);
    if (target?.state === 'FINAL') final += 1;
  }
  sink.setFinalTargets(self, final);
}

/** Nothing leaves FINAL, so each dependent's count goes up exactly once per target. */
function countFinal(sink: WorkPlanSink, target: NodeKey): void {
  for (const dependent of sink.dependents(target)) sink.setFinalTargets(dependent, sink.finalTargets(dependent) + 1);
}
