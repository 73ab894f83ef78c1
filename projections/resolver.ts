// The dependency resolver, a projection over a workplan's events: for each event it looks at the nodes the event
// can affect (through the reverse dependency index) and emits the state-advance events that follow from it.
// It runs inside the write that caused the events, on the decision's own draft, to a fixpoint, so every
// consequence is appended atomically with its cause, and records which event caused each consequence.
import { holds, parseGroupKey } from '../src/domain/dependency-groups.js';
import { stageWentFinal, type DomainEvent } from '../src/domain/events.js';
import {
  currentAttempt,
  nodeKey,
  parseNodeKey,
  type Check,
  type CheckResult,
  type DependencyGroup,
  type NodeKey,
  type Stage,
} from '../src/domain/model.js';
import type { WorkPlanView } from '../src/domain/view.js';
import type { WorkPlanDraft } from '../src/domain/workplan-draft.js';

type Emit = (event: DomainEvent) => void;

/**
 * Reacts to every event of the draft (the decided ones, then its own) until nothing more follows; each
 * consequence is emitted into the draft, caused by the event it reacted to. Deterministic: same draft, same result.
 */
export function resolve(draft: WorkPlanDraft): void {
  for (let i = 0; i < draft.events.length; i++) {
    const cause = draft.versionAt(i);
    react(draft, draft.events[i]!.event, draft.now, (e) => draft.emit(e, cause));
  }
}

/** The events that follow directly from `event`, given the state after it. */
export function react(view: WorkPlanView, event: DomainEvent, now: number, emit: Emit): void {
  switch (event.type) {
    case 'CheckCreated':
    case 'CheckAmended':
      advance(view, nodeKey({ kind: 'check', id: event.data.checkId }), emit);
      return;
    case 'CheckStateChanged': {
      const key = nodeKey({ kind: 'check', id: event.data.checkId });
      if (event.data.to === 'PLANNED') advance(view, key, emit);
      if (event.data.to === 'FINAL') advanceDependents(view, key, emit);
      return;
    }
    case 'StageCreated':
    case 'StageAmended':
      advance(view, nodeKey({ kind: 'stage', id: event.data.stageId }), emit);
      return;
    case 'StageStateChanged':
    case 'StageAttemptStateChanged': {
      if (event.type === 'StageAttemptStateChanged' && event.data.to === 'INCOMPLETE') retryOrFail(view.stage(event.data.stageId)!, now, emit);
      const final = stageWentFinal(event);
      if (final) {
        const stage = view.stage(final)!;
        finalizeAssignedChecks(view, stage, now, emit);
        finishParentGroup(view, stage, emit);
        advanceDependents(view, nodeKey({ kind: 'stage', id: stage.id }), emit);
      }
      return;
    }
    case 'CheckApprovalGiven':
    case 'CheckApprovalTimedOut':
      settleGate(view.check(event.data.checkId)!, event, now, emit);
      return;
    case 'WorkPlanCreated':
    case 'CheckResultAdded':
    case 'StageAttemptCreated':
    case 'StageAttemptDetailsMerged':
    case 'StageAttemptProgressAppended':
    case 'StageAttemptDispatched':
    case 'StageAttemptDispatchDeclined':
    case 'StageExecutionCompleted':
    case 'StageAttemptLeased':
    case 'StageAttemptLeaseExtended':
    case 'StageAttemptLeaseExpired':
    case 'StageAttemptLeaseCompleted':
    case 'RunnerRegistered':
    case 'RunnerRefreshed':
    case 'RunnerUnregistered':
    case 'RunnerExpired':
      return;
  }
}

/** Whether a node's dependencies hold: its root group, from the count of satisfied members the index keeps. */
export function isSatisfied(view: WorkPlanView, node: NodeKey, group: DependencyGroup | null): boolean {
  return !group || holds(group, view.finalTargets(node));
}

/** PLANNED check → WAITING; PLANNED stage → ATTEMPTING with a first attempt; when the dependencies are satisfied. */
function advance(view: WorkPlanView, key: NodeKey, emit: Emit): void {
  const ref = parseNodeKey(key);
  if (ref.kind === 'check') {
    const check = view.check(ref.id);
    if (check?.state === 'PLANNED' && isSatisfied(view, key, check.dependencies)) {
      emit({ type: 'CheckStateChanged', data: { checkId: check.id, from: 'PLANNED', to: 'WAITING' } });
    }
    return;
  }
  const stage = view.stage(ref.id);
  if (stage?.state === 'PLANNED' && isSatisfied(view, key, stage.dependencies)) {
    emit({ type: 'StageAttemptCreated', data: { stageId: stage.id, idx: stage.attempts.length + 1, startsStage: true } });
  }
}

/** The nodes with a group holding an edge to `key` (each once, in index order) are looked at again. */
function advanceDependents(view: WorkPlanView, key: NodeKey, emit: Emit): void {
  const nodes = new Set<NodeKey>();
  for (const group of view.dependents(key)) nodes.add(parseGroupKey(group).node);
  for (const dependent of nodes) advance(view, dependent, emit);
}

/**
 * An approval gate goes FINAL on the first reject, on approvals from enough distinct principals, or at its
 * deadline; the result says which.
 */
function settleGate(check: Check, event: Extract<DomainEvent, { type: 'CheckApprovalGiven' | 'CheckApprovalTimedOut' }>, now: number, emit: Emit): void {
  if (!check.gate || check.state === 'FINAL') return;
  const result = (data: CheckResult['data'], failure: string | null, ownerId: string) => {
    emit({
      type: 'CheckResultAdded',
      data: {
        checkId: check.id,
        resultId: check.results.length + 1,
        ownerType: 'approval',
        ownerId,
        data,
        failure: failure === null ? null : { message: failure, occurredAt: now },
        finalized: true,
      },
    });
    emit({ type: 'CheckStateChanged', data: { checkId: check.id, from: check.state, to: 'FINAL' } });
  };
  if (event.type === 'CheckApprovalTimedOut') {
    const approvers = distinctApprovers(check);
    result({ approvedBy: approvers }, `approval timed out (${approvers.length} of ${check.gate.approvalsRequired} approvals)`, 'deadline');
    return;
  }
  const d = event.data;
  if (d.decision === 'REJECT') {
    result({ rejectedBy: d.principal, comment: d.comment }, `rejected by ${d.principal}${d.comment ? `: ${d.comment}` : ''}`, d.principal);
    return;
  }
  const approvers = distinctApprovers(check);
  if (approvers.length >= check.gate.approvalsRequired) result({ approvedBy: approvers }, null, d.principal);
}

/** Principals who approved the gate, each once, in the order of their first approval. */
export const distinctApprovers = (check: Check): string[] => [
  ...new Set(check.approvals.filter((a) => a.decision === 'APPROVE').map((a) => a.principal)),
];

/** A FINAL stage leaves no assigned check unfinished, so no workplan waits forever. */
function finalizeAssignedChecks(view: WorkPlanView, stage: Stage, now: number, emit: Emit): void {
  for (const a of stage.assignments) {
    const check = view.check(a.checkId);
    if (!check || check.state === 'FINAL') continue;
    emit({
      type: 'CheckResultAdded',
      data: {
        checkId: check.id,
        resultId: check.results.length + 1,
        ownerType: 'stage',
        ownerId: stage.id,
        data: {},
        failure: { message: `stage "${stage.id}" finished without finalizing this check`, occurredAt: now },
        finalized: true,
      },
    });
    emit({ type: 'CheckStateChanged', data: { checkId: check.id, from: check.state, to: 'FINAL' } });
  }
}

function finishParentGroup(view: WorkPlanView, child: Stage, emit: Emit): void {
  if (!child.parentStageId) return;
  const parent = view.stage(child.parentStageId);
  if (parent?.state !== 'AWAITING_GROUP') return;
  for (const id of view.children(parent.id)) if (view.stage(id)?.state !== 'FINAL') return;
  emit({ type: 'StageStateChanged', data: { stageId: parent.id, from: 'AWAITING_GROUP', to: 'FINAL', failure: null } });
}

/** An INCOMPLETE attempt is retried while attempts remain; then the stage goes FINAL as failed. */
function retryOrFail(stage: Stage, now: number, emit: Emit): void {
  const attempt = currentAttempt(stage);
  if (stage.state !== 'ATTEMPTING' || attempt?.state !== 'INCOMPLETE') return;
  if (stage.attempts.length < stage.maxAttempts) {
    emit({ type: 'StageAttemptCreated', data: { stageId: stage.id, idx: attempt.idx + 1 } });
    return;
  }
  const why = attempt.failure ? `: ${attempt.failure.message}` : '';
  emit({
    type: 'StageStateChanged',
    data: {
      stageId: stage.id,
      from: 'ATTEMPTING',
      to: 'FINAL',
      failure: { message: `attempt ${attempt.idx} of ${stage.maxAttempts} was INCOMPLETE${why}; no attempts left`, occurredAt: now },
    },
  });
}
