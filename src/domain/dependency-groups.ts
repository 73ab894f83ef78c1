// Nested dependency groups: a group's members are its edges and its sub-groups. Each group of a node's tree has a
// key in the dependency index: the root group's key is the node's own key (so flat groups index exactly as before
// nesting existed), a sub-group's is the node key, a space (ids never contain one) and its path of sub-group
// indexes, e.g. `stage:deploy 1.0` for groups[1].groups[0]. The index counts, per group key, the members that are
// satisfied; nothing leaves FINAL, so counts only go up and a group, once satisfied, stays satisfied.
import type { DependencyGroup, NodeKey, NodeRef } from './model.js';
import { PackedGroup } from './packed-group.js';

/** How deep groups may nest: the root is depth 1. */
export const MAX_GROUP_DEPTH = 16;

/** A group's key in the dependency index (see above). */
export type GroupKey = NodeKey;

export const groupKey = (node: NodeKey, path: readonly number[]): GroupKey => (path.length === 0 ? node : (`${node} ${path.join('.')}` as GroupKey));

/** The node a group key belongs to, and the path of the group in its tree. */
export function parseGroupKey(key: GroupKey): { node: NodeKey; path: number[] } {
  const space = key.indexOf(' ');
  if (space < 0) return { node: key, path: [] };
  return { node: key.slice(0, space) as NodeKey, path: key.slice(space + 1).split('.').map(Number) };
}

export const subGroups = (g: DependencyGroup): readonly DependencyGroup[] => g.groups ?? [];

/** Members of a group: its edges and its sub-groups. (A packed tree's groups count from their shape.) */
export const memberCount = (g: DependencyGroup): number => (g instanceof PackedGroup ? g.memberCount : g.edges.length + subGroups(g).length);

/** Whether a group with `satisfied` satisfied members holds. An empty group holds. */
export function holds(g: DependencyGroup, satisfied: number): boolean {
  const members = memberCount(g);
  if (members === 0) return true;
  if (g.threshold > 0) return satisfied >= g.threshold;
  return g.predicate === 'OR' ? satisfied > 0 : satisfied >= members;
}

/** The group at `path` in the tree rooted at `root`, if there is one. */
export function groupAt(root: DependencyGroup | null, path: readonly number[]): DependencyGroup | undefined {
  if (root instanceof PackedGroup) {
    const at = root.indexAt(path);
    return at < 0 ? undefined : root.group(at);
  }
  let g: DependencyGroup | undefined = root ?? undefined;
  for (const i of path) g = g && subGroups(g)[i];
  return g;
}

/** Every group of the tree with its path, parents before children. */
export function* walkGroups(root: DependencyGroup | null, path: number[] = []): IterableIterator<{ group: DependencyGroup; path: number[] }> {
  if (!root) return;
  yield { group: root, path };
  const subs = subGroups(root);
  for (let i = 0; i < subs.length; i++) yield* walkGroups(subs[i]!, [...path, i]);
}

/** Every edge of the tree, however deep (a target may appear in several groups). */
export function* allEdges(root: DependencyGroup | null): IterableIterator<NodeRef> {
  if (root instanceof PackedGroup && root.index === 0) return yield* root.allEdges();
  for (const { group } of walkGroups(root)) yield* group.edges;
}

/** `dependencies.groups[1].groups[0]` for path [1, 0], after `prefix`. */
export const groupField = (prefix: string, path: readonly number[]): string => prefix + path.map((i) => `.groups[${i}]`).join('');
