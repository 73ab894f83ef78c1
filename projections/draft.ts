import type { Check, NodeKey, Stage, WorkPlanMeta } from '../src/domain/model.js';
import type { WorkPlanView } from '../src/domain/view.js';
import type { WorkPlanSink } from './sink.js';

/**
 * A copy-on-write layer over a workplan's committed read model: a write request's events (and the resolver's
 * consequences) are folded into it before anything is appended, and it is simply dropped if the request fails.
 */
export class WorkPlanDraft implements WorkPlanSink {
  private readonly checks = new Map<string, Check>();
  private readonly stages = new Map<string, Stage>();
  private readonly linked = new Map<NodeKey, Set<NodeKey>>();
  private readonly unlinked = new Map<NodeKey, Set<NodeKey>>();
  private readonly adopted = new Map<string, Set<string>>();
  private readonly orphaned = new Map<string, Set<string>>();
  private readonly finalTargetsOf = new Map<NodeKey, number>();
  meta: WorkPlanMeta;

  constructor(private readonly base: WorkPlanView) {
    this.meta = base.meta;
  }

  check(id: string): Check | undefined {
    return this.checks.get(id) ?? this.base.check(id);
  }
  stage(id: string): Stage | undefined {
    return this.stages.get(id) ?? this.base.stage(id);
  }
  dependents(target: NodeKey): Iterable<NodeKey> {
    return layered(this.base.dependents(target), this.linked.get(target), this.unlinked.get(target));
  }
  finalTargets(node: NodeKey): number {
    return this.finalTargetsOf.get(node) ?? this.base.finalTargets(node);
  }
  children(stageId: string): Iterable<string> {
    return layered(this.base.children(stageId), this.adopted.get(stageId), this.orphaned.get(stageId));
  }

  putMeta(meta: WorkPlanMeta): void {
    this.meta = meta;
  }
  putCheck(check: Check): void {
    this.checks.set(check.id, check);
  }
  putStage(stage: Stage): void {
    this.stages.set(stage.id, stage);
  }
  link(target: NodeKey, dependent: NodeKey): void {
    toggle(this.linked, this.unlinked, target, dependent);
  }
  setFinalTargets(node: NodeKey, count: number): void {
    this.finalTargetsOf.set(node, count);
  }
  unlink(target: NodeKey, dependent: NodeKey): void {
    toggle(this.unlinked, this.linked, target, dependent);
  }
  adopt(parentId: string, childId: string): void {
    toggle(this.adopted, this.orphaned, parentId, childId);
  }
  orphan(parentId: string, childId: string): void {
    toggle(this.orphaned, this.adopted, parentId, childId);
  }
}

function toggle<K, V>(add: Map<K, Set<V>>, remove: Map<K, Set<V>>, key: K, value: V): void {
  if (remove.get(key)?.delete(value)) return;
  let set = add.get(key);
  if (!set) add.set(key, (set = new Set()));
  set.add(value);
}

function* layered<V>(base: Iterable<V>, added: Set<V> | undefined, removed: Set<V> | undefined): Iterable<V> {
  for (const v of base) if (!removed?.has(v)) yield v;
  if (added) yield* added;
}
