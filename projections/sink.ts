import type { Check, NodeKey, Stage, WorkPlanMeta } from '../src/domain/model.js';
import type { WorkPlanView } from '../src/domain/view.js';

/** What the reducers write to: the committed read model of a workplan, or a draft over it. */
export interface WorkPlanSink extends WorkPlanView {
  putMeta(meta: WorkPlanMeta): void;
  putCheck(check: Check): void;
  putStage(stage: Stage): void;
  link(target: NodeKey, dependent: NodeKey): void;
  setFinalTargets(node: NodeKey, count: number): void;
  unlink(target: NodeKey, dependent: NodeKey): void;
  adopt(parentId: string, childId: string): void;
  orphan(parentId: string, childId: string): void;
}
