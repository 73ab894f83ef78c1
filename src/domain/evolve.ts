// evolve(state, event): the one fold of a workplan's events, used by the decision's draft and by the read model
// alike. Pure: the per-node functions return new nodes; `evolve` writes them, and the dependency indexes, into a
// WorkPlanState (the committed model or a copy-on-write draft over it).
import { groupAt, groupKey, holds, parseGroupKey, subGroups, type GroupKey } from './dependency-groups.js';
import { stageWentFinal, type DomainEvent } from './events.js';
import {
  DEFAULT_REALM,
  mergeJson,
  NO_POLICY,
  nodeKey,
  parseNodeKey,
  type Attempt,
  type Check,
  type DependencyGroup,
  type NodeKey,
  type Stage,
  type WorkPlanMeta,
} from './model.js';
import type { WorkPlanState } from './view.js';
import {
  appended,
  compactAssignments,
  compactGroupOrNull,
  EMPTY,
  EMPTY_JSON,
  sharedId,
  type IdSource,
} from './compact.js';

/** What evolution needs of an event besides its data: where it stands in the stream and when it was recorded. */
export interface EventPoint {
  readonly version: number;
  readonly recordedAt: number;
}

type CheckEventData = Extract<DomainEvent, { type: `Check${string}` }>;
type StageEventData = Extract<DomainEvent, { type: `Stage${string}` }>;

export const isCheckEvent = (e: DomainEvent): e is CheckEventData => e.type.startsWith('Check');
export const isStageEvent = (e: DomainEvent): e is StageEventData => e.type.startsWith('Stage');

/**
 * Folds one event of the workplan's stream into `state`: the dependency indexes first (unlinking the node's old
 * edges while the node still has them), then the node, then its new edges (linked once the node has them, so an
 * index may read a group's place from the node's own tree), then the header.
 */
export function evolve(state: WorkPlanState, event: DomainEvent, at: EventPoint & { readonly node?: Check | Stage }): void {
  const relinked = evolveDependencies(state, event);
  // `at.node`: the node right after this event as the decision's draft folded it (PendingEvent.node), the same value.
  if (isCheckEvent(event)) state.putCheck((at.node as Check | undefined) ?? evolveCheck(state.check(event.data.checkId), event, at, state));
  else if (isStageEvent(event)) state.putStage((at.node as Stage | undefined) ?? evolveStage(state.stage(event.data.stageId), event, at, state));
  if (relinked) link(state, relinked.self, relinked.after);
  state.putMeta(evolveWorkPlan(state.meta, event, at, state.meta.id));
}

/** A node whose dependencies an event replaced: its old edges are unlinked, the new ones still to link. */
interface Relinked {
  readonly self: NodeKey;
  readonly after: DependencyGroup | null;
}

/**
 * The dependency indexes: target → the groups that hold an edge to it (so resolution touches only the groups a
 * change can affect), per group the count of its satisfied members (edges whose target is FINAL, sub-groups that
 * hold), so checking a fan-in of N is O(1), not O(N), and parent → child stages. A node's root group is keyed by
 * the node's own key; sub-groups by the node key and their path (src/domain/dependency-groups.ts).
 */
function evolveDependencies(state: WorkPlanState, e: DomainEvent): Relinked | null {
  switch (e.type) {
    case 'CheckCreated':
    case 'CheckAmended': {
      if (e.data.dependencies === undefined) return null;
      const self = nodeKey({ kind: 'check', id: e.data.checkId });
      unlinkGroup(state, self, state.check(e.data.checkId)?.dependencies ?? null, []);
      return { self, after: e.data.dependencies };
    }
    case 'CheckStateChanged':
      if (e.data.to === 'FINAL') countFinal(state, nodeKey({ kind: 'check', id: e.data.checkId }));
      return null;
    case 'StageStateChanged':
    case 'StageAttemptStateChanged': {
      const final = stageWentFinal(e);
      if (final) countFinal(state, nodeKey({ kind: 'stage', id: final }));
      return null;
    }
    case 'StageCreated':
    case 'StageAmended': {
      const prev = state.stage(e.data.stageId);
      let relinked: Relinked | null = null;
      if (e.data.dependencies !== undefined) {
        const self = nodeKey({ kind: 'stage', id: e.data.stageId });
        unlinkGroup(state, self, prev?.dependencies ?? null, []);
        relinked = { self, after: e.data.dependencies };
      }
      const parent = e.data.parentStageId;
      if (parent !== undefined && parent !== prev?.parentStageId) {
        if (prev?.parentStageId) state.orphan(prev.parentStageId, e.data.stageId);
        if (parent) state.adopt(parent, e.data.stageId);
      }
      return relinked;
    }
    default:
      return null;
  }
}

/** Links a node's new dependencies (its old ones are unlinked already), or clears its count when it has none. */
function link(state: WorkPlanState, self: NodeKey, after: DependencyGroup | null): void {
  if (after) linkGroup(state, self, after, []);
  else state.setFinalTargets(self, 0);
}

function unlinkGroup(state: WorkPlanState, self: NodeKey, group: DependencyGroup | null, path: number[]): void {
  if (!group) return;
  const key = groupKey(self, path);
  for (const edge of group.edges) state.unlink(nodeKey(edge), key);
  subGroups(group).forEach((g, i) => unlinkGroup(state, self, g, [...path, i]));
}

/** Links every edge of the group and counts its satisfied members, sub-groups first; returns whether it holds. */
function linkGroup(state: WorkPlanState, self: NodeKey, group: DependencyGroup, path: number[]): boolean {
  const key = groupKey(self, path);
  let satisfied = 0;
  for (const edge of group.edges) {
    state.link(nodeKey(edge), key);
    const target = edge.kind === 'check' ? state.check(edge.id) : state.stage(edge.id);
    if (target?.state === 'FINAL') satisfied += 1;
  }
  subGroups(group).forEach((g, i) => {
    if (linkGroup(state, self, g, [...path, i])) satisfied += 1;
  });
  state.setFinalTargets(key, satisfied);
  return holds(group, satisfied);
}

/**
 * Nothing leaves FINAL, so each group's count goes up exactly once per target; a sub-group that starts to hold
 * counts once in its parent. Only the groups holding an edge to `target`, and their ancestors when they flip, are
 * touched.
 */
function countFinal(state: WorkPlanState, target: NodeKey): void {
  // Counting changes no dependents list, so the list is walked as it is given (each key is counted as it comes).
  for (const key of state.dependents(target)) countSatisfied(state, key);
}

function countSatisfied(state: WorkPlanState, key: GroupKey): void {
  const count = state.finalTargets(key) + 1;
  state.setFinalTargets(key, count);
  if (!key.includes(' ')) return; // a node's root group: no parent group to count in
  const { node, path } = parseGroupKey(key);
  const group = groupAt(dependenciesOf(state, node), path);
  if (group && !holds(group, count - 1) && holds(group, count)) countSatisfied(state, groupKey(node, path.slice(0, -1)));
}

function dependenciesOf(state: WorkPlanState, key: NodeKey): DependencyGroup | null {
  const ref = parseNodeKey(key);
  return (ref.kind === 'check' ? state.check(ref.id) : state.stage(ref.id))?.dependencies ?? null;
}

export function evolveWorkPlan(meta: WorkPlanMeta | undefined, event: DomainEvent, at: EventPoint, streamId: string): WorkPlanMeta {
  if (event.type === 'WorkPlanCreated') {
    return {
      id: streamId,
      metadata: event.data.metadata,
      createdAt: at.recordedAt,
      updatedAt: at.recordedAt,
      version: at.version,
      realm: event.data.realm ?? DEFAULT_REALM,
    };
  }
  if (!meta) throw new Error(`event ${event.type} at version ${at.version} before WorkPlanCreated`);
  // Every event makes a new header: written out rather than spread, which costs several times as much per event.
  return { id: meta.id, metadata: meta.metadata, createdAt: meta.createdAt, updatedAt: at.recordedAt, version: at.version, realm: meta.realm };
}

/**
 * Folds a check event into the check. `nodes` (the workplan's state) lets the new check share the id strings of the
 * nodes it names (src/domain/compact.ts); without it the values are the same, only not shared.
 */
export function evolveCheck(prev: Check | undefined, event: CheckEventData, at: EventPoint, nodes?: IdSource): Check {
  if (event.type === 'CheckCreated') {
    const d = event.data;
    return {
      id: d.checkId,
      state: d.state ?? 'PLANNING',
      kind: d.kind,
      options: d.options,
      results: EMPTY,
      dependencies: compactGroupOrNull(d.dependencies, nodes),
      gate: d.gate ?? null,
      approvals: EMPTY,
      createdAt: at.recordedAt,
      updatedAt: at.recordedAt,
      version: 1,
      createdAtVersion: at.version,
      changedAtVersion: at.version,
    };
  }
  if (!prev) throw new Error(`${event.type} for unknown check ${event.data.checkId} at version ${at.version}`);
  const touched = { updatedAt: at.recordedAt, version: prev.version + 1, changedAtVersion: at.version };
  switch (event.type) {
    case 'CheckAmended': {
      const d = event.data;
      return {
        ...prev,
        ...touched,
        kind: d.kind ?? prev.kind,
        options: d.options ? mergeJson(prev.options, d.options) : prev.options,
        dependencies: d.dependencies === undefined ? prev.dependencies : compactGroupOrNull(d.dependencies, nodes),
      };
    }
    case 'CheckStateChanged':
      return { ...prev, ...touched, state: event.data.to };
    case 'CheckResultAdded': {
      const d = event.data;
      const result = {
        id: d.resultId,
        ownerType: d.ownerType,
        ownerId: d.ownerType === 'stage' ? sharedId(nodes, 'stage', d.ownerId) : d.ownerId,
        data: d.data,
        createdAt: at.recordedAt,
        finalizedAt: d.finalized ? at.recordedAt : null,
        failure: d.failure,
      };
      return { ...prev, ...touched, results: appended(prev.results, result) };
    }
    case 'CheckApprovalGiven': {
      const d = event.data;
      const approval = { principal: d.principal, decision: d.decision, comment: d.comment, at: at.recordedAt };
      return { ...prev, ...touched, approvals: appended(prev.approvals, approval) };
    }
    case 'CheckApprovalTimedOut':
      return { ...prev, ...touched };
  }
}

/** Folds a stage event into the stage; `nodes` as for evolveCheck. */
export function evolveStage(prev: Stage | undefined, event: StageEventData, at: EventPoint, nodes?: IdSource): Stage {
  if (event.type === 'StageCreated') {
    const d = event.data;
    return {
      id: d.stageId,
      state: 'PLANNED',
      args: d.args,
      attempts: EMPTY,
      assignments: compactAssignments(d.assignments, nodes),
      dependencies: compactGroupOrNull(d.dependencies, nodes),
      executionMode: d.executionMode,
      runnerType: d.runnerType,
      maxAttempts: d.maxAttempts,
      parentStageId: d.parentStageId,
      attemptTimeoutSeconds: d.attemptTimeoutSeconds ?? 0,
      priority: d.priority ?? 0,
      policy: d.policy ?? NO_POLICY,
      failure: null,
      createdAt: at.recordedAt,
      updatedAt: at.recordedAt,
      version: 1,
      createdAtVersion: at.version,
      changedAtVersion: at.version,
    };
  }
  if (!prev) throw new Error(`${event.type} for unknown stage ${event.data.stageId} at version ${at.version}`);
  const touched = { updatedAt: at.recordedAt, version: prev.version + 1, changedAtVersion: at.version };
  switch (event.type) {
    case 'StageAmended': {
      const d = event.data;
      return {
        ...prev,
        ...touched,
        args: d.args ? mergeJson(prev.args, d.args) : prev.args,
        assignments: d.assignments ? compactAssignments(d.assignments, nodes) : prev.assignments,
        dependencies: d.dependencies === undefined ? prev.dependencies : compactGroupOrNull(d.dependencies, nodes),
        executionMode: d.executionMode ?? prev.executionMode,
        runnerType: d.runnerType ?? prev.runnerType,
        maxAttempts: d.maxAttempts ?? prev.maxAttempts,
        parentStageId: d.parentStageId ?? prev.parentStageId,
        attemptTimeoutSeconds: d.attemptTimeoutSeconds ?? prev.attemptTimeoutSeconds,
        priority: d.priority ?? prev.priority,
        policy: d.policy ?? prev.policy,
      };
    }
    case 'StageStateChanged':
      return { ...prev, ...touched, state: event.data.to, failure: event.data.failure ?? prev.failure };
    case 'StageAttemptCreated': {
      const attempt: Attempt = {
        idx: event.data.idx,
        state: 'PENDING',
        processUid: '',
        details: EMPTY_JSON,
        progress: EMPTY,
        createdAt: at.recordedAt,
        updatedAt: at.recordedAt,
        failure: null,
        execution: null,
      };
      const state = event.data.startsStage ? 'ATTEMPTING' : prev.state;
      return { ...prev, ...touched, state, attempts: appended(prev.attempts, attempt) };
    }
    case 'StageAttemptStateChanged': {
      const d = event.data;
      const c = d.completion;
      const next = withAttempt(prev, touched, d.idx, (a) => ({
        ...a,
        state: d.to,
        processUid: d.processUid || a.processUid,
        failure: d.failure ?? a.failure,
        updatedAt: at.recordedAt,
        ...(c?.via === 'execution' && a.execution ? { execution: { ...a.execution, completion: c.fingerprint } } : {}),
        ...(c?.via === 'lease' && a.lease ? { lease: { ...a.lease, completion: c.fingerprint } } : {}),
      }));
      return d.stageTo ? { ...next, state: d.stageTo } : next;
    }
    case 'StageAttemptDetailsMerged': {
      const d = event.data;
      return withAttempt(prev, touched, d.idx, (a) => ({ ...a, details: mergeJson(a.details, d.details), updatedAt: at.recordedAt }));
    }
    case 'StageAttemptProgressAppended': {
      const d = event.data;
      const entry = { message: d.message, timestamp: d.timestamp ?? at.recordedAt, details: d.details };
      return withAttempt(prev, touched, d.idx, (a) => ({ ...a, progress: appended(a.progress, entry), updatedAt: at.recordedAt }));
    }
    case 'StageAttemptDispatched': {
      const d = event.data;
      const execution = {
        executionId: d.executionId,
        registrationId: d.registrationId,
        runnerId: d.runnerId,
        mode: d.mode,
        deadline: d.deadline,
        completion: null,
      };
      return withAttempt(prev, touched, d.idx, (a) => ({ ...a, state: 'SCHEDULED', execution, updatedAt: at.recordedAt }));
    }
    case 'StageAttemptDispatchDeclined':
      // The only way back to PENDING: the runner never took the attempt, so it is queued again as it was.
      return withAttempt(prev, touched, event.data.idx, (a) => ({ ...a, state: 'PENDING', execution: null, updatedAt: at.recordedAt }));
    case 'StageExecutionCompleted': {
      const d = event.data;
      return withAttempt(prev, touched, d.idx, (a) => ({
        ...a,
        execution: a.execution && { ...a.execution, completion: d.fingerprint },
        updatedAt: at.recordedAt,
      }));
    }
    case 'StageAttemptLeased': {
      const d = event.data;
      const lease = {
        leaseId: d.leaseId,
        tokenHash: d.tokenHash,
        runnerId: d.runnerId,
        runnerType: d.runnerType,
        heartbeatIntervalMs: d.heartbeatIntervalMs,
        expiresAt: d.expiresAt,
        runDeadline: d.runDeadline,
        completion: null,
        expired: null,
      };
      return withAttempt(prev, touched, d.idx, (a) => ({ ...a, state: 'RUNNING', processUid: d.runnerId, lease, updatedAt: at.recordedAt }));
    }
    case 'StageAttemptLeaseExtended': {
      const d = event.data;
      return withAttempt(prev, touched, d.idx, (a) => ({ ...a, lease: a.lease && { ...a.lease, expiresAt: d.expiresAt }, updatedAt: at.recordedAt }));
    }
    case 'StageAttemptLeaseExpired': {
      const d = event.data;
      return withAttempt(prev, touched, d.idx, (a) => ({ ...a, lease: a.lease && { ...a.lease, expired: d.reason }, updatedAt: at.recordedAt }));
    }
    case 'StageAttemptLeaseCompleted': {
      const d = event.data;
      return withAttempt(prev, touched, d.idx, (a) => ({ ...a, lease: a.lease && { ...a.lease, completion: d.fingerprint }, updatedAt: at.recordedAt }));
    }
  }
}

function withAttempt(
  stage: Stage,
  touched: { updatedAt: number; version: number; changedAtVersion: number },
  idx: number,
  change: (a: Attempt) => Attempt,
): Stage {
  const i = stage.attempts.findIndex((a) => a.idx === idx);
  const attempt = stage.attempts[i];
  if (!attempt) throw new Error(`stage ${stage.id} has no attempt ${idx}`);
  const attempts = stage.attempts.slice();
  attempts[i] = change(attempt);
  return { ...stage, ...touched, attempts };
}
