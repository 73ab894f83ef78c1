// A node's dependency tree as the fold keeps it (issue 18, memory at rest). Every node of every workplan in progress
// stays in memory, and a tree of plain objects costs a group object per group, an `edges` and a `groups` array per
// group and an edge object per target: ~880 B for the nested benchmark's 7-group tree of 8 edges, the largest part
// of such a stage. Here a tree is two values:
//
// - its shape: per group (in pre-order) its predicate, threshold, edge count and sub-groups, per edge its kind.
//   Shapes are immutable and small ones are interned, so the stages of a workplan written by one generator (and of
//   every workplan) share one;
// - its targets: the id of each edge's target in pre-order, each the named node's own string
//   (src/domain/compact.ts). A tree of up to 8 edges holds them in fields of its own object (one class per count,
//   so each object is exactly as large as its count: 24 B + 8 B per field, no array header); a larger tree holds
//   one array.
//
// A PackedGroup is still a DependencyGroup: `predicate`, `threshold`, `edges` and `groups` read the shape, and
// `toJSON` gives the plain tree (same fields, same order), so every reader, the wire and the JSON API see what they
// saw before. `edges` and `groups` build new arrays (and sub-group views) on each read: the fold's own hot paths
// (src/domain/dependency-groups.ts, the committed model's index) read the shape directly instead.
import type { DependencyGroup, NodeKind, NodeRef } from './model.js';

/** One group of a shape. */
export interface GroupLayout {
  readonly predicate: 'AND' | 'OR';
  readonly threshold: number;
  /** Its edges are the tree's targets [first, first + count), their kinds `kinds` at the same indexes. */
  readonly first: number;
  readonly count: number;
  /** Pre-order indexes of its sub-groups; null when the group has no `groups` field (flat groups leave it out). */
  readonly subs: readonly number[] | null;
  /** Groups in its subtree, itself included. */
  readonly size: number;
  /** Pre-order index of the group it is a member of; -1 for the root. */
  readonly parent: number;
}

/**
 * A tree without its targets. Plain data (no prototype to restore): a read-model snapshot (v8.serialize) keeps it as
 * it is, and keeps one shape shared by many trees shared.
 */
export interface TreeShape {
  /** Every group, in pre-order: the root is 0. */
  readonly groups: readonly GroupLayout[];
  /** Per edge, in pre-order: 'c' a check, 's' a stage. */
  readonly kinds: string;
}

const kindOf = (c: string): NodeKind => (c === 'c' ? 'check' : 'stage');

/**
 * Shapes with at most this many groups + edges are interned. Larger ones (a fan-in of thousands of edges) are rare
 * and unlike each other: each keeps its own.
 */
const INTERNED_MAX_MEMBERS = 64;
/** Interned shapes kept at most (a bound for a server that sees endless distinct trees; then it starts over). */
const INTERNED_MAX = 4096;
const interned = new Map<string, TreeShape>();

/** A packed tree (index 0), or a view of one of its sub-groups (made when read, never stored). */
export abstract class PackedGroup implements DependencyGroup {
  abstract readonly shape: TreeShape;
  /** The id of the tree's edge at pre-order index `i`. */
  abstract target(i: number): string;

  /** This group's pre-order index in the tree. */
  get index(): number {
    return 0;
  }
  /** The tree this group belongs to. */
  get tree(): PackedGroup {
    return this;
  }
  get layout(): GroupLayout {
    return this.shape.groups[this.index]!;
  }
  get predicate(): 'AND' | 'OR' {
    return this.layout.predicate;
  }
  get threshold(): number {
    return this.layout.threshold;
  }
  /** Members: edges and sub-groups. */
  get memberCount(): number {
    const l = this.layout;
    return l.count + (l.subs?.length ?? 0);
  }
  get edges(): readonly NodeRef[] {
    const { first, count } = this.layout;
    const edges = new Array<NodeRef>(count);
    for (let i = 0; i < count; i++) edges[i] = this.edge(first + i);
    return edges;
  }
  get groups(): readonly DependencyGroup[] | undefined {
    return this.layout.subs?.map((i) => this.group(i));
  }

  /** The edge at pre-order index `i` of the tree. */
  edge(i: number): NodeRef {
    return { kind: kindOf(this.shape.kinds[i]!), id: this.target(i) };
  }
  /** Every edge of the tree, however deep, in pre-order. */
  *allEdges(): IterableIterator<NodeRef> {
    const end = this.shape.kinds.length;
    for (let i = 0; i < end; i++) yield this.edge(i);
  }
  /** The group at pre-order index `i` of the tree. */
  group(i: number): PackedGroup {
    return i === 0 ? this.tree : new PackedSubGroup(this.tree, i);
  }
  /** The pre-order index of the group at `path` below this one; -1 when there is none there. */
  indexAt(path: readonly number[]): number {
    let at = this.index;
    for (const i of path) {
      const subs = this.shape.groups[at]!.subs;
      if (!subs || !(i >= 0 && i < subs.length)) return -1;
      at = subs[i]!;
    }
    return at;
  }
  /** The path of the group at pre-order index `at` of the tree, from the root. */
  pathOf(at: number): number[] {
    const path: number[] = [];
    const groups = this.shape.groups;
    for (let g = at; g > 0; ) {
      const parent = groups[g]!.parent;
      path.push(groups[parent]!.subs!.indexOf(g));
      g = parent;
    }
    return path.reverse();
  }

  /** Whether `other` is a tree of the same shape and targets (interned shapes only: others are each their own). */
  sameAs(other: PackedGroup): boolean {
    if (this.shape !== other.shape || this.index !== 0 || other.index !== 0) return false;
    for (let i = this.shape.kinds.length - 1; i >= 0; i--) if (this.target(i) !== other.target(i)) return false;
    return true;
  }

  /** The plain tree: the fields and order of a DependencyGroup literal, what JSON and the wire have always shown. */
  toJSON(): DependencyGroup {
    return this.plain(this.index);
  }
  private plain(at: number): DependencyGroup {
    const l = this.shape.groups[at]!;
    const edges = new Array<NodeRef>(l.count);
    for (let i = 0; i < l.count; i++) edges[i] = this.edge(l.first + i);
    if (l.subs === null) return { predicate: l.predicate, threshold: l.threshold, edges };
    return { predicate: l.predicate, threshold: l.threshold, edges, groups: l.subs.map((g) => this.plain(g)) };
  }
}

class PackedSubGroup extends PackedGroup {
  constructor(
    private readonly root: PackedGroup,
    private readonly at: number,
  ) {
    super();
  }
  override get index(): number {
    return this.at;
  }
  override get tree(): PackedGroup {
    return this.root;
  }
  get shape(): TreeShape {
    return this.root.shape;
  }
  target(i: number): string {
    return this.root.target(i);
  }
}

// The stored trees, by how many edges they have. Each class has exactly its fields (V8 sizes an instance by its
// class), so a tree of n <= 8 edges is one object of 24 + 8 * (n + 1) bytes.
class Packed0 extends PackedGroup {
  constructor(readonly shape: TreeShape) {
    super();
  }
  target(i: number): string {
    throw new RangeError(`no edge ${i} in a tree without edges`);
  }
}
/**
 * Trees of 1 to 8 edges: the subclass for n edges defines the fields t0 … t(n-1); they are only declared here (no
 * field is emitted), so one `target` serves them all without making any instance larger.
 */
abstract class PackedFields extends PackedGroup {
  declare readonly t0: string;
  declare readonly t1: string;
  declare readonly t2: string;
  declare readonly t3: string;
  declare readonly t4: string;
  declare readonly t5: string;
  declare readonly t6: string;
  declare readonly t7: string;
  target(i: number): string {
    switch (i) {
      case 0:
        return this.t0;
      case 1:
        return this.t1;
      case 2:
        return this.t2;
      case 3:
        return this.t3;
      case 4:
        return this.t4;
      case 5:
        return this.t5;
      case 6:
        return this.t6;
      default:
        return this.t7;
    }
  }
}
class Packed1 extends PackedFields {
  constructor(readonly shape: TreeShape, override readonly t0: string) {
    super();
  }
}
class Packed2 extends PackedFields {
  constructor(readonly shape: TreeShape, override readonly t0: string, override readonly t1: string) {
    super();
  }
}
class Packed3 extends PackedFields {
  constructor(
    readonly shape: TreeShape,
    override readonly t0: string,
    override readonly t1: string,
    override readonly t2: string,
  ) {
    super();
  }
}
class Packed4 extends PackedFields {
  constructor(
    readonly shape: TreeShape,
    override readonly t0: string,
    override readonly t1: string,
    override readonly t2: string,
    override readonly t3: string,
  ) {
    super();
  }
}
class Packed5 extends PackedFields {
  constructor(
    readonly shape: TreeShape,
    override readonly t0: string,
    override readonly t1: string,
    override readonly t2: string,
    override readonly t3: string,
    override readonly t4: string,
  ) {
    super();
  }
}
class Packed6 extends PackedFields {
  constructor(
    readonly shape: TreeShape,
    override readonly t0: string,
    override readonly t1: string,
    override readonly t2: string,
    override readonly t3: string,
    override readonly t4: string,
    override readonly t5: string,
  ) {
    super();
  }
}
class Packed7 extends PackedFields {
  constructor(
    readonly shape: TreeShape,
    override readonly t0: string,
    override readonly t1: string,
    override readonly t2: string,
    override readonly t3: string,
    override readonly t4: string,
    override readonly t5: string,
    override readonly t6: string,
  ) {
    super();
  }
}
class Packed8 extends PackedFields {
  constructor(
    readonly shape: TreeShape,
    override readonly t0: string,
    override readonly t1: string,
    override readonly t2: string,
    override readonly t3: string,
    override readonly t4: string,
    override readonly t5: string,
    override readonly t6: string,
    override readonly t7: string,
  ) {
    super();
  }
}
/** A tree of more than 8 edges: its targets in one array. */
class PackedN extends PackedGroup {
  constructor(readonly shape: TreeShape, readonly targets: readonly string[]) {
    super();
  }
  target(i: number): string {
    return this.targets[i]!;
  }
}

/** The class of a stored tree, by its number of edges (PackedN past 8). */
const BY_COUNT = [Packed0, Packed1, Packed2, Packed3, Packed4, Packed5, Packed6, Packed7, Packed8] as const;

function packedTree(shape: TreeShape, t: readonly string[]): PackedGroup {
  switch (t.length) {
    case 0:
      return new Packed0(shape);
    case 1:
      return new Packed1(shape, t[0]!);
    case 2:
      return new Packed2(shape, t[0]!, t[1]!);
    case 3:
      return new Packed3(shape, t[0]!, t[1]!, t[2]!);
    case 4:
      return new Packed4(shape, t[0]!, t[1]!, t[2]!, t[3]!);
    case 5:
      return new Packed5(shape, t[0]!, t[1]!, t[2]!, t[3]!, t[4]!);
    case 6:
      return new Packed6(shape, t[0]!, t[1]!, t[2]!, t[3]!, t[4]!, t[5]!);
    case 7:
      return new Packed7(shape, t[0]!, t[1]!, t[2]!, t[3]!, t[4]!, t[5]!, t[6]!);
    case 8:
      return new Packed8(shape, t[0]!, t[1]!, t[2]!, t[3]!, t[4]!, t[5]!, t[6]!, t[7]!);
    default:
      return new PackedN(shape, t.slice());
  }
}

/**
 * `group` packed: its shape (interned when small) and its target ids, each passed through `id` (to share the named
 * node's string). Values are unchanged: `pack(g).toJSON()` has g's fields in DependencyGroup order.
 */
export function pack(group: DependencyGroup, id: (kind: NodeKind, id: string) => string): PackedGroup {
  const groups: GroupLayout[] = [];
  const targets: string[] = [];
  // Joined once, flat: `+=` would keep a cons string per edge (~32 B each) behind a large tree's kinds.
  const kindChars: string[] = [];
  let members = 0;
  const visit = (g: DependencyGroup, parent: number): number => {
    const at = groups.length;
    const first = targets.length;
    for (const e of g.edges) {
      targets.push(id(e.kind, e.id));
      kindChars.push(e.kind === 'check' ? 'c' : 's');
    }
    members += 1 + g.edges.length;
    const layout = { predicate: g.predicate, threshold: g.threshold, first, count: g.edges.length, subs: g.groups === undefined ? null : ([] as number[]), size: 1, parent };
    groups.push(layout);
    for (const sub of g.groups ?? []) layout.subs!.push(visit(sub, at));
    layout.size = groups.length - at;
    return at;
  };
  visit(group, -1);
  const kinds = kindChars.join('');
  const shape = members <= INTERNED_MAX_MEMBERS ? intern(groups, kinds) : { groups: groups.map(frozenLayout), kinds };
  return packedTree(shape, targets);
}

function intern(groups: readonly GroupLayout[], kinds: string): TreeShape {
  const key = [kinds, ...groups.map((g) => `${g.predicate}${g.threshold},${g.count},${g.subs === null ? '-' : g.subs.join('.')}`)].join('|');
  let shape = interned.get(key);
  if (!shape) {
    if (interned.size >= INTERNED_MAX) interned.clear();
    shape = Object.freeze({ groups: Object.freeze(groups.map(frozenLayout)), kinds });
    interned.set(key, shape);
  }
  return shape;
}

const frozenLayout = (l: GroupLayout): GroupLayout =>
  Object.freeze({ ...l, subs: l.subs === null ? null : Object.freeze(l.subs.slice()) });

/**
 * A tree a read-model snapshot brought back (v8.deserialize keeps the fields, not the class) made a PackedGroup
 * again, in place; anything else is returned as it is.
 */
export function revivePacked(group: DependencyGroup | null): DependencyGroup | null {
  if (group === null || group instanceof PackedGroup) return group;
  const saved = group as { readonly shape?: TreeShape; readonly targets?: unknown };
  if (saved.shape === undefined) return group;
  const cls = saved.targets !== undefined ? PackedN : BY_COUNT[saved.shape.kinds.length];
  if (!cls) throw new Error(`a packed tree of ${saved.shape.kinds.length} edges without its targets array`);
  return Object.setPrototypeOf(group, cls.prototype) as PackedGroup;
}
