// Transactions against what the writer read (extension): a write names the version it read at and the nodes its
// decision depended on; it is refused only if one of those nodes changed after that version. Pure.
import { aborted, invalidArgument } from './errors.js';
import type { NodeRef } from './model.js';
import type { WorkPlanView } from './view.js';

export interface ReadSet {
  /** The workplan version the writer read `reads` at. */
  readonly readVersion: number;
  /** The nodes the writer's decision depended on. */
  readonly reads: readonly NodeRef[];
}

/**
 * Throws ABORTED naming the first node of `reads` (in request order) that changed after `readVersion`, with the
 * version of its last change. A node that does not exist has not changed (nodes are never removed, so it did not
 * exist at readVersion either); a node created after readVersion has changed.
 */
export function checkReadSet(view: WorkPlanView, t: ReadSet): void {
  if (t.readVersion > view.meta.version) {
    throw invalidArgument(`${t.readVersion} is beyond the workplan's version ${view.meta.version}`, 'read_version');
  }
  t.reads.forEach((r, i) => {
    const node = r.kind === 'check' ? view.check(r.id) : view.stage(r.id);
    if (node && node.changedAtVersion > t.readVersion) {
      throw aborted(
        `${r.kind} "${r.id}" changed at version ${node.changedAtVersion}, after read_version ${t.readVersion}; read it again and retry`,
        `read_nodes[${i}]`,
      );
    }
  });
}
