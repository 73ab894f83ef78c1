// Explaining a node: its history, and for every transition the chain of causes back to a client request.
import { ANONYMOUS_PRINCIPAL } from '../../domain/events.js';
import { ReadModels } from '../../../projections/read-models.js';
import { groupKey, holds, subGroups, walkGroups } from '../../domain/dependency-groups.js';
import { eventNode, stageWentFinal, type DomainEvent, type RecordedEvent } from '../../domain/events.js';
import { nodeKey, type Check, type DependencyGroup, type NodeRef, type Stage } from '../../domain/model.js';
import type { WorkPlanView } from '../../domain/view.js';
import { matchesNode } from '../event-filter.js';
import { describeChange, describeEvent } from './describe.js';
import { nodeOf } from './replay.js';

export interface CauseLink {
  readonly version: number;
  readonly type: string;
  readonly summary: string;
  readonly recordedAt: string;
  readonly requestId: string | null;
  /** Who caused it and why (null when not recorded). */
  readonly principal: string | null;
  readonly reason: string | null;
}

export interface ExplainedEvent extends CauseLink {
  readonly position: number;
  /** Field changes on the node, as `path: old → new`. */
  readonly changes: string[];
  /** Who wrote it: the client (causedBy empty) or the resolver in reaction to causedBy[0], which reacted to [1]... */
  readonly causedBy: CauseLink[];
  /** The sentence: "stage deploy went ATTEMPTING at v15 because check build went FINAL at v14, written by request r-1". */
  readonly because: string;
  /**
   * When the node's dependencies became satisfied by this event's cause: the member that completed them, e.g.
   * "group 2 of 3 satisfied by stage build-mac" (a nested group) or "dependencies satisfied by check build".
   */
  readonly satisfiedBy?: string;
}

export interface Explanation {
  readonly workPlanId: string;
  readonly node: { kind: 'check' | 'stage'; id: string };
  readonly version: number;
  /** The node as it stands at `version` (domain form), or null when it does not exist. */
  readonly current: Check | Stage | null;
  readonly history: ExplainedEvent[];
}

/**
 * Explains a node from a workplan's events, read once in stream order. A cause is always an earlier event of the
 * same stream (the resolver reacts within the write), so a compact index of the events read so far answers every
 * causedByVersion without reading the stream again.
 */
export async function explainNode(
  events: AsyncIterable<RecordedEvent> | Iterable<RecordedEvent>,
  workPlanId: string,
  node: string,
): Promise<Explanation | undefined> {
  const models = new ReadModels();
  const history: ExplainedEvent[] = [];
  let ref: { kind: 'check' | 'stage'; id: string } | undefined;
  const seenEvents = new Map<number, CauseLink & { causedByVersion: number | null; finalNode: NodeRef | null }>();
  for await (const rec of events) {
    if (rec.streamId !== workPlanId) continue;
    seenEvents.set(rec.version, { ...link(rec), causedByVersion: rec.causation.causedByVersion, finalNode: wentFinal(rec.event) });
    const model = models.workplan(workPlanId);
    const about = matchesNode(rec, node) ? eventNode(rec.event)! : undefined;
    const before = about && model ? nodeOf(model, rec) : undefined;
    models.apply(rec);
    if (!about) continue;
    ref = about;
    const after = nodeOf(models.workplan(workPlanId)!, rec);
    const causedBy: CauseLink[] = [];
    const seen = new Set<number>();
    for (let v = rec.causation.causedByVersion; v !== null && !seen.has(v); ) {
      seen.add(v);
      const cause = seenEvents.get(v);
      if (!cause) break;
      const { causedByVersion, finalNode: _, ...causeLink } = cause;
      causedBy.push(causeLink);
      v = causedByVersion;
    }
    const self = link(rec);
    const cause = rec.causation.causedByVersion === null ? undefined : seenEvents.get(rec.causation.causedByVersion);
    const satisfiedBy =
      advanced(rec.event) && cause?.finalNode && after && 'dependencies' in after
        ? completedBy(models.workplan(workPlanId)!, about, after.dependencies, cause.finalNode)
        : undefined;
    history.push({
      ...self,
      position: rec.position,
      changes: describeChange(before, after),
      causedBy,
      because: because(self, causedBy),
      ...(satisfiedBy ? { satisfiedBy } : {}),
    });
  }
  const model = models.workplan(workPlanId);
  if (!model || !ref) return model && !ref ? { workPlanId, node: guessRef(node), version: model.meta.version, current: null, history } : undefined;
  const current = (ref.kind === 'check' ? model.check(ref.id) : model.stage(ref.id)) ?? null;
  return { workPlanId, node: ref, version: model.meta.version, current, history };
}

function guessRef(node: string): { kind: 'check' | 'stage'; id: string } {
  const colon = node.indexOf(':');
  const kind = node.slice(0, colon);
  if (colon > 0 && (kind === 'check' || kind === 'stage')) return { kind, id: node.slice(colon + 1) };
  return { kind: 'check', id: node };
}

function link(rec: RecordedEvent): CauseLink {
  return {
    version: rec.version,
    type: rec.event.type,
    summary: describeEvent(rec.event),
    recordedAt: new Date(rec.recordedAt).toISOString(),
    requestId: rec.causation.requestId,
    principal: rec.causation.principal ?? null,
    reason: rec.causation.reason ?? null,
  };
}

/**
 * " by ci-bot (reason: \"...\")" for the human-readable outputs; nothing when no principal was recorded, and
 * nothing for `anonymous` (auth off: everyone is; the JSON outputs still say so).
 */
export function byWhom(principal: string | null | undefined, reason: string | null | undefined): string {
  if (principal === ANONYMOUS_PRINCIPAL) principal = null;
  if (!principal && !reason) return '';
  return `${principal ? ` by ${principal}` : ''}${reason ? ` (reason: ${JSON.stringify(reason)})` : ''}`;
}

function because(self: CauseLink, chain: readonly CauseLink[]): string {
  const root = chain[chain.length - 1] ?? self;
  const request = root.requestId ? `written by request ${root.requestId}` : 'written without a request id';
  const who = byWhom(root.principal, root.reason);
  if (chain.length === 0) return `${self.summary} at v${self.version}, ${request} (a client write)${who}`;
  const causes = chain.map((c) => `${c.summary} at v${c.version}`).join(', because ');
  return `${self.summary} at v${self.version} because ${causes}, ${request}${who}`;
}

/** The node an event made FINAL, if it did. */
function wentFinal(e: DomainEvent): NodeRef | null {
  if (e.type === 'CheckStateChanged' && e.data.to === 'FINAL') return { kind: 'check', id: e.data.checkId };
  const stage = stageWentFinal(e);
  return stage === null ? null : { kind: 'stage', id: stage };
}

/** The resolver's advances that happen when dependencies become satisfied. */
const advanced = (e: DomainEvent): boolean =>
  (e.type === 'CheckStateChanged' && e.data.from === 'PLANNED' && e.data.to === 'WAITING') ||
  (e.type === 'StageStateChanged' && e.data.from === 'PLANNED' && e.data.to === 'ATTEMPTING') ||
  (e.type === 'StageAttemptCreated' && e.data.startsStage === true);

/**
 * Which member completed the node's dependencies when `target` went FINAL: the top-level sub-group holding it
 * (satisfied now), "group 2 of 3 satisfied by stage build-mac", or the target itself when it is a direct edge.
 */
function completedBy(view: WorkPlanView, node: NodeRef, root: DependencyGroup | null, target: NodeRef): string | undefined {
  if (!root) return undefined;
  const what = `${target.kind} ${target.id}`;
  const is = (e: NodeRef) => e.kind === target.kind && e.id === target.id;
  if (root.edges.some(is)) return `dependencies satisfied by ${what}`;
  const groups = subGroups(root);
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    const holdsTarget = [...walkGroups(g)].some(({ group }) => group.edges.some(is));
    if (holdsTarget && holds(g, view.finalTargets(groupKey(nodeKey(node), [i])))) return `group ${i + 1} of ${groups.length} satisfied by ${what}`;
  }
  return undefined;
}
