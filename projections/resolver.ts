// The dependency resolver, a projection over a workplan's events: for each event it looks at the nodes the event
// can affect (through the reverse dependency index) and emits the state-advance events that follow from it.
// It runs inside the write that caused the events, on the decision's own draft, to a fixpoint, so every
// consequence is appended atomically with its cause, and records which event caused each consequence.
import type { DomainEvent } from '../src/domain/events.js';
import {
  currentAttempt,
  nodeKey,
  parseNodeKey,
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
      if (event.data.to === 'FINAL') {
        const stage = view.stage(event.data.stageId)!;
        finalizeAssignedChecks(view, stage, now, emit);
        finishParentGroup(view, stage, emit);
        advanceDependents(view, nodeKey({ kind: 'stage', id: stage.id }), emit);
      }
      return;
    case 'StageAttemptStateChanged':
      if (event.data.to === 'INCOMPLETE') retryOrFail(view.stage(event.data.stageId)!, now, emit);
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

export function isSatisfied(view: WorkPlanView, node: NodeKey, group: DependencyGroup | null): boolean {
  if (!group || group.edges.length === 0) return true;
  const final = view.finalTargets(node);
  if (group.threshold > 0) return final >= group.threshold;
  return group.predicate === 'OR' ? final > 0 : final === group.edges.length;
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
    emit({ type: 'StageStateChanged', data: { stageId: stage.id, from: 'PLANNED', to: 'ATTEMPTING', failure: null } });
    emit({ type: 'StageAttemptCreated', data: { stageId: stage.id, idx: stage.attempts.length + 1 } });
  }
}

function advanceDependents(view: WorkPlanView, key: NodeKey, emit: Emit): void {
  for (const dependent of [...view.dependents(key)]) advance(view, dependent, emit);
}

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
