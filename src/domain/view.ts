import type { Check, NodeKey, Stage, WorkPlanMeta } from './model.js';

/** Read access to one workplan's current state, as decide and the resolver need it. */
export interface WorkPlanView {
  readonly meta: WorkPlanMeta;
  check(id: string): Check | undefined;
  stage(id: string): Stage | undefined;
  /** Nodes whose dependency group names `target`, in the order the edges were added. */
  dependents(target: NodeKey): Iterable<NodeKey>;
  /** How many of the node's dependency edges point at a FINAL node (kept by the dependency projection). */
  finalTargets(node: NodeKey): number;
  /** Stages whose parent_stage_id is `stageId`. */
  children(stageId: string): Iterable<string>;
}
