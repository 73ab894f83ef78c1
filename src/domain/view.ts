import type { Check, NodeKey, Stage, WorkPlanMeta } from './model.js';

/** Read access to one workplan's current state, as decide and the resolver need it. */
export interface WorkPlanView {
  readonly meta: WorkPlanMeta;
  check(id: string): Check | undefined;
  stage(id: string): Stage | undefined;
  /** Nodes whose dependency group names `target`, in the order the edges were added. */
  dependents(target: NodeKey): Iterable<NodeKey>;
  /** How many of the node's dependency edges point at a FINAL node. */
  finalTargets(node: NodeKey): number;
  /** Stages whose parent_stage_id is `stageId`. */
  children(stageId: string): Iterable<string>;
}

/**
 * A workplan's state as `evolve` writes it: the committed read model (projections/workplan-model.ts) and the
 * copy-on-write draft a decision works on (workplan-draft.ts) are both this.
 */
export interface WorkPlanState extends WorkPlanView {
  putMeta(meta: WorkPlanMeta): void;
  putCheck(check: Check): void;
  putStage(stage: Stage): void;
  link(target: NodeKey, dependent: NodeKey): void;
  unlink(target: NodeKey, dependent: NodeKey): void;
  setFinalTargets(node: NodeKey, count: number): void;
  adopt(parentId: string, childId: string): void;
  orphan(parentId: string, childId: string): void;
}
