import { groupKey } from '../src/domain/dependency-groups.js';
import type { Attempt, Check, DependencyGroup, NodeKey, NodeKind, Stage, WorkPlanMeta } from '../src/domain/model.js';
import { PackedGroup, revivePacked } from '../src/domain/packed-group.js';
import type { WorkPlanState } from '../src/domain/view.js';

/** No node, group or edge (in the index arrays below). */
const NONE = -1;

/**
 * The group key a model named or looked up last, and its number: the fold asks about one group several times in a
 * row (linking each edge of a group, then setting its count; counting a target FINAL right after `dependents`
 * named the group), and the key is parsed once. Kept outside the models (it is no part of their state, and
 * snapshots copy their fields); a model forgets it whenever its nodes or its group ranges change.
 */
const named: { model: WorkPlanModel | null; key: string; group: number } = { model: null, key: '', group: NONE };

/**
 * The committed read model of one workplan: its checks, its stages and the dependency indexes over them. Disposable:
 * replaying its stream rebuilds it exactly.
 *
 * The dependency index is numeric (issue 18, memory per node): a node named by an edge or having dependencies gets
 * a number inside the workplan, the groups of its dependency tree a contiguous range of group numbers (in the
 * tree's pre-order), and the index is kept in typed arrays: per group its owner and its count of satisfied members,
 * per target node a list of the groups holding an edge to it (a linked list through an edge pool, in the order the
 * edges were linked). The view's string keys (`check:a`, `stage:b 1.0`) are parsed at the boundary and made again
 * on the way out; a group's path is read from its node's current tree, which is why `evolve` links new edges after
 * the node is stored and unlinks old ones before.
 */
export class WorkPlanModel implements WorkPlanState {
  readonly checks = new Map<string, Check>();
  readonly stages = new Map<string, Stage>();
  private readonly childrenOf = new Map<string, Set<string>>();
  /** request id → the stream version of the last event that request appended (for idempotent retries). */
  readonly requests = new Map<string, number>();
  /** Nodes not FINAL yet: at 0 (with nodes) the workplan is complete, and may be evicted once idle. */
  private unfinished = 0;

  // ---- the numeric dependency index
  /** id → node number, per kind (only nodes the index has seen). */
  private readonly checkNumbers = new Map<string, number>();
  private readonly stageNumbers = new Map<string, number>();
  private nodeCount = 0;
  /** Per node number: its kind (0 check, 1 stage) and id. */
  private nodeKind = new Uint8Array(16);
  private nodeId: string[] = [];
  /** Per node number: its first group number and how many groups its range has (NONE / 0 without). */
  private groupBase = new Int32Array(16).fill(NONE);
  private groupSpan = new Int32Array(16);
  /** Per node number: the first and last edge of its list of dependent groups. */
  private firstDependent = new Int32Array(16).fill(NONE);
  private lastDependent = new Int32Array(16).fill(NONE);
  private groupCount = 0;
  /** Per group number: the node it belongs to, and its count of satisfied members. */
  private groupOwner = new Int32Array(16);
  private satisfied = new Int32Array(16);
  private edgeCount = 0;
  /** Per edge of the dependents lists: the dependent group, and the next edge of the same target's list. */
  private edgeGroup = new Int32Array(16);
  private edgeNext = new Int32Array(16);

  /** The tree this model built last: an equal one built next is this one (IdSource.sameTree). */
  private lastTree: PackedGroup | null = null;

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
  /** The first attempt `match` accepts, with its stage: a scan of every stage, for rare lookups. */
  findAttempt(match: (attempt: Attempt) => boolean): { stage: Stage; attempt: Attempt } | undefined {
    for (const stage of this.stages.values()) {
      for (const attempt of stage.attempts) if (match(attempt)) return { stage, attempt };
    }
    return undefined;
  }
  *dependents(target: NodeKey): Iterable<NodeKey> {
    const n = this.nodeNumber(target, false);
    if (n === NONE) return;
    for (let e = this.firstDependent[n]!; e !== NONE; e = this.edgeNext[e]!) yield this.keyOfGroup(this.edgeGroup[e]!);
  }
  finalTargets(node: NodeKey): number {
    const g = this.groupNumber(node, false);
    return g === NONE ? 0 : this.satisfied[g]!;
  }
  children(stageId: string): Iterable<string> {
    return this.childrenOf.get(stageId) ?? [];
  }
  /**
   * After a read-model snapshot is restored: its dependency trees came back as plain fields (v8.deserialize keeps
   * no classes) and are made PackedGroups again, in place (the node objects are this model's own copies).
   */
  revive(): void {
    for (const node of [...this.checks.values(), ...this.stages.values()]) {
      if (node.dependencies !== null) revivePacked(node.dependencies);
    }
    this.lastTree = revivePacked(this.lastTree ?? null) as PackedGroup | null;
  }
  sameTree(tree: PackedGroup): PackedGroup {
    if (this.lastTree?.sameAs(tree)) return this.lastTree;
    return (this.lastTree = tree);
  }

  putMeta(meta: WorkPlanMeta): void {
    this.meta = meta;
  }
  putCheck(check: Check): void {
    this.forgetNamed();
    this.count(this.checks.get(check.id), check);
    this.checks.set(check.id, check);
  }
  putStage(stage: Stage): void {
    this.forgetNamed();
    this.count(this.stages.get(stage.id), stage);
    this.stages.set(stage.id, stage);
  }
  link(target: NodeKey, dependent: NodeKey): void {
    const g = this.groupNumber(dependent, true);
    if (g === NONE) throw new Error(`link of ${target} to ${dependent}, which is no group of its node`);
    const t = this.nodeNumber(target, true);
    const last = this.lastDependent[t]!;
    // The same edge twice in one group links once (the list is a set): its edges are linked one after the other.
    if (last !== NONE && this.edgeGroup[last] === g) return;
    const e = this.edgeCount++;
    if (e >= this.edgeGroup.length) {
      this.edgeGroup = grown(this.edgeGroup, e);
      this.edgeNext = grown(this.edgeNext, e);
    }
    this.edgeGroup[e] = g;
    this.edgeNext[e] = NONE;
    if (last === NONE) this.firstDependent[t] = e;
    else this.edgeNext[last] = e;
    this.lastDependent[t] = e;
  }
  setFinalTargets(node: NodeKey, count: number): void {
    const g = this.groupNumber(node, count !== 0);
    if (g !== NONE) this.satisfied[g] = count;
  }
  unlink(target: NodeKey, dependent: NodeKey): void {
    const t = this.nodeNumber(target, false);
    const g = this.groupNumber(dependent, false);
    if (t === NONE || g === NONE) return;
    let prev = NONE;
    for (let e = this.firstDependent[t]!; e !== NONE; prev = e, e = this.edgeNext[e]!) {
      if (this.edgeGroup[e] !== g) continue;
      const next = this.edgeNext[e]!;
      if (prev === NONE) this.firstDependent[t] = next;
      else this.edgeNext[prev] = next;
      if (this.lastDependent[t] === e) this.lastDependent[t] = prev;
      return;
    }
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

  /** The number of the node a key names; with `add`, a new one when it has none yet (else NONE). */
  private nodeNumber(key: NodeKey, add: boolean): number {
    const colon = key.indexOf(':');
    const kind: NodeKind = colon === 5 && key.startsWith('check') ? 'check' : 'stage';
    const id = key.slice(colon + 1);
    const numbers = kind === 'check' ? this.checkNumbers : this.stageNumbers;
    const n = numbers.get(id);
    if (n !== undefined || !add) return n ?? NONE;
    return this.addNode(kind, id);
  }

  private addNode(kind: NodeKind, given: string): number {
    // The node's own id string when it exists: one copy per id.
    const id = (kind === 'check' ? this.checks.get(given) : this.stages.get(given))?.id ?? given;
    const n = this.nodeCount++;
    if (n >= this.nodeKind.length) {
      this.nodeKind = grown(this.nodeKind, n);
      this.groupBase = grown(this.groupBase, n, NONE);
      this.groupSpan = grown(this.groupSpan, n);
      this.firstDependent = grown(this.firstDependent, n, NONE);
      this.lastDependent = grown(this.lastDependent, n, NONE);
    }
    this.nodeKind[n] = kind === 'check' ? 0 : 1;
    this.nodeId.push(id);
    (kind === 'check' ? this.checkNumbers : this.stageNumbers).set(id, n);
    return n;
  }

  private treeOf(n: number): DependencyGroup | null {
    const id = this.nodeId[n]!;
    return (this.nodeKind[n] === 0 ? this.checks.get(id) : this.stages.get(id))?.dependencies ?? null;
  }

  /**
   * The number of the group a key names (`node` or `node path`), placed in its node's current tree; with `add`, the
   * node gets a range of group numbers when it has none large enough. NONE when there is no such group.
   */
  private groupNumber(key: NodeKey, add: boolean): number {
    if (named.model === this && named.key === key) return named.group;
    const space = key.indexOf(' ');
    const node = space < 0 ? key : (key.slice(0, space) as NodeKey);
    const n = this.nodeNumber(node, add);
    if (n === NONE) return NONE;
    const tree = this.treeOf(n);
    if (!tree) return NONE;
    const at = space < 0 ? 0 : preorderIndex(tree, key.slice(space + 1).split('.').map(Number));
    if (at === NONE) return NONE;
    if (this.groupSpan[n]! <= at) {
      if (!add) return NONE;
      this.allocateGroups(n, treeSize(tree));
    }
    const g = this.groupBase[n]! + at;
    this.remember(key, g);
    return g;
  }

  private allocateGroups(n: number, size: number): void {
    this.forgetNamed();
    const base = this.groupCount;
    this.groupCount += size;
    if (this.groupCount > this.groupOwner.length) {
      this.groupOwner = grown(this.groupOwner, this.groupCount - 1);
      this.satisfied = grown(this.satisfied, this.groupCount - 1);
    }
    this.groupOwner.fill(n, base, base + size);
    this.satisfied.fill(0, base, base + size);
    this.groupBase[n] = base;
    this.groupSpan[n] = size;
  }

  /** A group's key: its node's key, and the group's path in the node's tree after a space unless it is the root. */
  private keyOfGroup(g: number): NodeKey {
    const n = this.groupOwner[g]!;
    const node: NodeKey = `${this.nodeKind[n] === 0 ? 'check' : 'stage'}:${this.nodeId[n]!}`;
    const at = g - this.groupBase[n]!;
    const key = at === 0 ? node : groupKey(node, pathAt(this.treeOf(n)!, at));
    this.remember(key, g);
    return key;
  }

  private remember(key: string, group: number): void {
    named.model = this;
    named.key = key;
    named.group = group;
  }

  private forgetNamed(): void {
    if (named.model === this) named.model = null;
  }
}

/** Groups in a tree (the root and every sub-group, however deep). A packed tree's shape knows (as below). */
function treeSize(g: DependencyGroup): number {
  if (g instanceof PackedGroup) return g.layout.size;
  let size = 1;
  for (const sub of g.groups ?? []) size += treeSize(sub);
  return size;
}

/** The pre-order index of the group at `path` in the tree (the root is 0); NONE when there is none there. */
function preorderIndex(root: DependencyGroup, path: readonly number[]): number {
  if (root instanceof PackedGroup) return root.indexAt(path);
  let at = 0;
  let g = root;
  for (const i of path) {
    const subs = g.groups ?? [];
    if (!(i >= 0 && i < subs.length)) return NONE;
    at += 1;
    for (let j = 0; j < i; j++) at += treeSize(subs[j]!);
    g = subs[i]!;
  }
  return at;
}

/** The path of the group with pre-order index `at` (> 0) in the tree. */
function pathAt(root: DependencyGroup, at: number): number[] {
  if (root instanceof PackedGroup) return root.pathOf(at);
  const path: number[] = [];
  let g = root;
  let left = at;
  while (left > 0) {
    left -= 1; // past g itself
    const subs = g.groups ?? [];
    let i = 0;
    while (left >= treeSize(subs[i]!)) left -= treeSize(subs[i++]!);
    path.push(i);
    g = subs[i]!;
  }
  return path;
}

/** A copy of `a` with room for index `at` (growing by half: at most a third of a large index is unused), new slots set to `fill`. */
function grown<T extends Int32Array | Uint8Array>(a: T, at: number, fill = 0): T {
  let size = a.length;
  while (size <= at) size = Math.ceil(size * 1.5);
  const b = new (a.constructor as new (n: number) => T)(size);
  b.set(a);
  if (fill !== 0) b.fill(fill, a.length);
  return b;
}

function addTo<K, V>(index: Map<K, Set<V>>, key: K, value: V): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(value);
}
