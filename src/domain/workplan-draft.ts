// The state a decision works on: a copy-on-write layer over a workplan's committed read model. A decider emits its
// events into the draft (each folded at once by the one `evolve`, so the next check sees it), the resolver
// continues on the same draft with the consequences, and the application appends `draft.events`. If the decision
// throws, the draft is dropped and nothing happened.
import type { DomainEvent, PendingEvent } from './events.js';
import { evolve, isCheckEvent, isStageEvent } from './evolve.js';
import type { Check, NodeKey, Stage, WorkPlanMeta } from './model.js';
import type { WorkPlanState, WorkPlanView } from './view.js';

/** What every decision over a workplan is given besides its command. */
export interface DraftContext {
  /** The time the events will be recorded at. */
  readonly now: number;
}

export class WorkPlanDraft implements WorkPlanState {
  private readonly checks = new Map<string, Check>();
  private readonly stages = new Map<string, Stage>();
  private readonly linked = new Map<NodeKey, Set<NodeKey>>();
  private readonly unlinked = new Map<NodeKey, Set<NodeKey>>();
  private readonly adopted = new Map<string, Set<string>>();
  private readonly orphaned = new Map<string, Set<string>>();
  private readonly finalTargetsOf = new Map<NodeKey, number>();
  private readonly pending: PendingEvent[] = [];
  meta: WorkPlanMeta;
  /** The committed version the draft started from: event i of `events` gets version baseVersion + i + 1. */
  readonly baseVersion: number;

  constructor(
    /** The committed state the draft layers over. */
    readonly committed: WorkPlanView,
    readonly now: number,
  ) {
    this.meta = committed.meta;
    this.baseVersion = committed.meta.version;
  }

  /** Everything emitted so far, in order: what the write appends. */
  get events(): readonly PendingEvent[] {
    return this.pending;
  }

  /** Folds `event` into the draft and records it; returns the stream version it will have. */
  emit(event: DomainEvent, causedByVersion: number | null = null): PendingEvent {
    evolve(this, event, { version: this.baseVersion + this.pending.length + 1, recordedAt: this.now });
    const node = this.adoptableNode(event);
    const p: PendingEvent = node ? { event, causedByVersion, node } : { event, causedByVersion };
    this.pending.push(p);
    return p;
  }

  /**
   * The node right after `event`, when the read models may take it as it is: a change to a node the committed model
   * already holds, with the same dependency tree (the committed model's tree is one it packed itself and may share
   * with the node written before; one this draft built, for a node it created or amended, is not, and the committed
   * model builds its own).
   */
  private adoptableNode(event: DomainEvent): Check | Stage | undefined {
    if (!adoptable(event)) return undefined;
    const [node, committed] = isCheckEvent(event)
      ? [this.checks.get(event.data.checkId), this.committed.check(event.data.checkId)]
      : [this.stages.get(event.data.stageId), this.committed.stage(event.data.stageId)];
    return node && committed && node.dependencies === committed.dependencies ? node : undefined;
  }

  /** The stream version the event at `index` of `events` will have. */
  versionAt(index: number): number {
    return this.baseVersion + index + 1;
  }

  /** True when this draft changed the node (it is not as the committed state has it). */
  touched(ref: { kind: 'check' | 'stage'; id: string }): boolean {
    return ref.kind === 'check' ? this.checks.has(ref.id) : this.stages.has(ref.id);
  }

  /** Nodes this draft changed, checks first, in the order they were first changed. */
  *touchedNodes(): IterableIterator<{ kind: 'check' | 'stage'; id: string }> {
    for (const id of this.checks.keys()) yield { kind: 'check', id };
    for (const id of this.stages.keys()) yield { kind: 'stage', id };
  }

  check(id: string): Check | undefined {
    return this.checks.get(id) ?? this.committed.check(id);
  }
  stage(id: string): Stage | undefined {
    return this.stages.get(id) ?? this.committed.stage(id);
  }
  dependents(target: NodeKey): Iterable<NodeKey> {
    return layered(this.committed.dependents(target), this.linked.get(target), this.unlinked.get(target));
  }
  finalTargets(node: NodeKey): number {
    return this.finalTargetsOf.get(node) ?? this.committed.finalTargets(node);
  }
  children(stageId: string): Iterable<string> {
    return layered(this.committed.children(stageId), this.adopted.get(stageId), this.orphaned.get(stageId));
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
  unlink(target: NodeKey, dependent: NodeKey): void {
    toggle(this.unlinked, this.linked, target, dependent);
  }
  setFinalTargets(node: NodeKey, count: number): void {
    this.finalTargetsOf.set(node, count);
  }
  adopt(parentId: string, childId: string): void {
    toggle(this.adopted, this.orphaned, parentId, childId);
  }
  orphan(parentId: string, childId: string): void {
    toggle(this.orphaned, this.adopted, parentId, childId);
  }
}

/** Events that change a node without creating or amending it (whose tree the committed model builds itself). */
function adoptable(event: DomainEvent): event is Extract<DomainEvent, { type: `Check${string}` | `Stage${string}` }> {
  switch (event.type) {
    case 'CheckCreated':
    case 'CheckAmended':
    case 'StageCreated':
    case 'StageAmended':
      return false;
    default:
      return isCheckEvent(event) || isStageEvent(event);
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
