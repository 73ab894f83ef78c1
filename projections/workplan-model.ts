import type { Check, NodeKey, Stage, WorkPlanMeta } from '../src/domain/model.js';
import type { WorkPlanState } from '../src/domain/view.js';

/**
 * The committed read model of one workplan: its checks, its stages and the dependency indexes over them. Disposable:
 * replaying its stream rebuilds it exactly.
 */
export class WorkPlanModel implements WorkPlanState {
  readonly checks = new Map<string, Check>();
  readonly stages = new Map<string, Stage>();
  private readonly dependentsOf = new Map<NodeKey, Set<NodeKey>>();
  private readonly childrenOf = new Map<string, Set<string>>();
  private readonly finalTargetsOf = new Map<NodeKey, number>();
  /** request id → the stream version of the last event that request appended (for idempotent retries). */
  readonly requests = new Map<string, number>();
  /** Nodes not FINAL yet: at 0 (with nodes) the workplan is complete, and may be evicted once idle. */
  private unfinished = 0;

  constructor(public meta: WorkPlanMeta) {}

  /** Every node is FINAL (and there is at least one). */
  get complete(): boolean {
    return this.unfinished === 0 && this.checks.size + this.stages.size > 0;
  }

  check(id: string): Check | undefined {
    return this.checks.get(id);
  }
  stage(id: string): Stage | undefined {
    return this.stages.get(id);
  }
  dependents(target: NodeKey): Iterable<NodeKey> {
    return this.dependentsOf.get(target) ?? [];
  }
  finalTargets(node: NodeKey): number {
    return this.finalTargetsOf.get(node) ?? 0;
  }
  children(stageId: string): Iterable<string> {
    return this.childrenOf.get(stageId) ?? [];
  }

  putMeta(meta: WorkPlanMeta): void {
    this.meta = meta;
  }
  putCheck(check: Check): void {
    this.count(this.checks.get(check.id), check);
    this.checks.set(check.id, check);
  }
  putStage(stage: Stage): void {
    this.count(this.stages.get(stage.id), stage);
    this.stages.set(stage.id, stage);
  }
  link(target: NodeKey, dependent: NodeKey): void {
    addTo(this.dependentsOf, target, dependent);
  }
  setFinalTargets(node: NodeKey, count: number): void {
    // 0 is what an absent entry reads as: most nodes never have a FINAL target, and keep no entry (nor key string).
    if (count === 0) this.finalTargetsOf.delete(node);
    else this.finalTargetsOf.set(node, count);
  }
  unlink(target: NodeKey, dependent: NodeKey): void {
    this.dependentsOf.get(target)?.delete(dependent);
  }
  adopt(parentId: string, childId: string): void {
    addTo(this.childrenOf, parentId, childId);
  }
  orphan(parentId: string, childId: string): void {
    this.childrenOf.get(parentId)?.delete(childId);
  }

  private count(before: Check | Stage | undefined, after: Check | Stage): void {
    if (before && before.state !== 'FINAL') this.unfinished--;
    if (after.state !== 'FINAL') this.unfinished++;
  }
}

function addTo<K, V>(index: Map<K, Set<V>>, key: K, value: V): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(value);
}
