// How the fold keeps nodes small in memory (issue 18, memory per node). Every node of every workplan in progress
// stays in memory, so the objects `evolve` builds are built to their exact size:
//
// - a dependency group and its edges are rebuilt as plain literals of exactly their fields;
// - arrays grow by `concat` or `map`, which allocate the exact length (`[...a, x]` reserves ~17 more slots);
// - empty arrays and the empty attempt details are one shared, frozen value, not one per node;
// - the id an edge, an assignment or a result names is the target node's own id string when that node exists, so a
//   workplan holds one copy of each id instead of one per reference;
// - a dependency tree is packed: an interned shape and its target ids (src/domain/packed-group.ts); a tree equal to
//   the one the committed model built last is that one.
//
// Values are unchanged (same fields, same order, same JSON): the read model rebuilt by replay equals the live one.
import type { Assignment, DependencyGroup, JsonObject, NodeKind } from './model.js';
import { pack, type PackedGroup } from './packed-group.js';

/** The one empty array every empty list of a node shares (frozen: a fold makes a new array, never pushes). */
export const EMPTY: readonly never[] = Object.freeze([]) as readonly never[];
/** The details of a new attempt: shared, frozen (merging details makes a new object). */
export const EMPTY_JSON: JsonObject = Object.freeze({}) as JsonObject;

/** Looks up the node an id names, to share its id string (the draft or the committed model; none = no sharing). */
export interface IdSource {
  check(id: string): { readonly id: string } | undefined;
  stage(id: string): { readonly id: string } | undefined;
  /**
   * A tree equal to `tree` that the workplan already keeps, to share instead (the committed model: the last one it
   * built, so that stages written alike one after the other, e.g. a fan-out, hold one tree); else `tree`.
   */
  sameTree?(tree: PackedGroup): PackedGroup;
}

/** `id`, as the string the node of that kind and id already holds when there is one. */
export function sharedId(nodes: IdSource | undefined, kind: NodeKind, id: string): string {
  if (!nodes) return id;
  return (kind === 'check' ? nodes.check(id) : nodes.stage(id))?.id ?? id;
}

/** `list` with `item` appended, allocated to its exact length. */
export const appended = <T>(list: readonly T[], item: T): readonly T[] => list.concat([item]);

/** An array of exactly `list`'s length (the shared empty one when empty), each item mapped. */
const exactMap = <T, U>(list: readonly T[], f: (item: T) => U): readonly U[] => (list.length === 0 ? EMPTY : list.map(f));

/** A dependency tree packed (src/domain/packed-group.ts): the same predicate, threshold, edges and sub-groups. */
export function compactGroup(group: DependencyGroup, nodes: IdSource | undefined): DependencyGroup {
  const tree = pack(group, (kind, id) => sharedId(nodes, kind, id));
  return nodes?.sameTree ? nodes.sameTree(tree) : tree;
}

export const compactGroupOrNull = (group: DependencyGroup | null, nodes: IdSource | undefined): DependencyGroup | null =>
  group === null ? null : compactGroup(group, nodes);

export const compactAssignments = (list: readonly Assignment[], nodes: IdSource | undefined): readonly Assignment[] =>
  exactMap(list, (a): Assignment => ({ checkId: sharedId(nodes, 'check', a.checkId), goalState: a.goalState }));
