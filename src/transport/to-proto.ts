// Domain → protobuf messages (ts-proto shapes).
import type * as d from '../domain/model.js';
import { ApprovalDecision, AttemptState, CheckState, ExecutionMode, NodeType, PredicateType, StageState } from '../gen/turboci/v1/common.js';
import type { DependencyGroup, Failure } from '../gen/turboci/v1/common.js';
import type { Check } from '../gen/turboci/v1/check.js';
import type { Stage } from '../gen/turboci/v1/stage.js';
import type { WorkPlan } from '../gen/turboci/v1/workplan.js';

export const CHECK_STATE: Record<d.CheckState, CheckState> = {
  PLANNING: CheckState.CHECK_STATE_PLANNING,
  PLANNED: CheckState.CHECK_STATE_PLANNED,
  WAITING: CheckState.CHECK_STATE_WAITING,
  FINAL: CheckState.CHECK_STATE_FINAL,
};
export const STAGE_STATE: Record<d.StageState, StageState> = {
  PLANNED: StageState.STAGE_STATE_PLANNED,
  ATTEMPTING: StageState.STAGE_STATE_ATTEMPTING,
  AWAITING_GROUP: StageState.STAGE_STATE_AWAITING_GROUP,
  FINAL: StageState.STAGE_STATE_FINAL,
};
const ATTEMPT_STATE: Record<d.AttemptState, AttemptState> = {
  PENDING: AttemptState.ATTEMPT_STATE_PENDING,
  SCHEDULED: AttemptState.ATTEMPT_STATE_SCHEDULED,
  RUNNING: AttemptState.ATTEMPT_STATE_RUNNING,
  COMPLETE: AttemptState.ATTEMPT_STATE_COMPLETE,
  INCOMPLETE: AttemptState.ATTEMPT_STATE_INCOMPLETE,
};
const EXECUTION_MODE: Record<d.ExecutionMode, ExecutionMode> = {
  SYNC: ExecutionMode.EXECUTION_MODE_SYNC,
  ASYNC: ExecutionMode.EXECUTION_MODE_ASYNC,
};

const date = (ms: number) => new Date(ms);

const failure = (f: d.Failure | null): Failure | undefined => (f ? { message: f.message, occurredAt: date(f.occurredAt) } : undefined);

function dependencies(g: d.DependencyGroup | null): DependencyGroup | undefined {
  return g ? group(g) : undefined;
}

function group(g: d.DependencyGroup): DependencyGroup {
  return {
    predicate: g.predicate === 'OR' ? PredicateType.PREDICATE_TYPE_OR : PredicateType.PREDICATE_TYPE_AND,
    threshold: g.threshold,
    dependencies: g.edges.map((e) => ({
      targetType: e.kind === 'check' ? NodeType.NODE_TYPE_CHECK : NodeType.NODE_TYPE_STAGE,
      targetId: e.id,
    })),
    groups: (g.groups ?? []).map(group),
  };
}

export function workPlanToProto(m: d.WorkPlanMeta): WorkPlan {
  return { id: m.id, createdAt: date(m.createdAt), updatedAt: date(m.updatedAt), version: BigInt(m.version), metadata: { ...m.metadata }, realm: m.realm };
}

export function checkToProto(workPlanId: string, c: d.Check): Check {
  return {
    id: c.id,
    workPlanId,
    state: CHECK_STATE[c.state],
    kind: c.kind,
    options: c.options,
    results: c.results.map((r) => ({
      id: BigInt(r.id),
      ownerType: r.ownerType,
      ownerId: r.ownerId,
      data: r.data,
      createdAt: date(r.createdAt),
      finalizedAt: r.finalizedAt === null ? undefined : date(r.finalizedAt),
      failure: failure(r.failure),
    })),
    dependencies: dependencies(c.dependencies),
    createdAt: date(c.createdAt),
    updatedAt: date(c.updatedAt),
    version: BigInt(c.version),
    approvalGate: c.gate
      ? { approvalsRequired: c.gate.approvalsRequired, deadline: c.gate.deadline === null ? undefined : date(c.gate.deadline) }
      : undefined,
    approvals: c.approvals.map((a) => ({
      principal: a.principal,
      decision: a.decision === 'REJECT' ? ApprovalDecision.APPROVAL_DECISION_REJECT : ApprovalDecision.APPROVAL_DECISION_APPROVE,
      comment: a.comment,
      givenAt: date(a.at),
    })),
    changedAtVersion: BigInt(c.changedAtVersion),
  };
}

/**
 * `revealCapabilities`: an attempt's execution and registration ids let their holder act as its runner (with auth
 * off they are the only proof), so they are blanked unless the caller may use them (an admin).
 */
export function stageToProto(workPlanId: string, s: d.Stage, revealCapabilities = false): Stage {
  return {
    id: s.id,
    workPlanId,
    state: STAGE_STATE[s.state],
    args: s.args,
    attempts: s.attempts.map((a) => ({
      idx: a.idx,
      state: ATTEMPT_STATE[a.state],
      processUid: a.processUid,
      details: a.details,
      progress: a.progress.map((p) => ({ message: p.message, timestamp: date(p.timestamp), details: p.details })),
      createdAt: date(a.createdAt),
      updatedAt: date(a.updatedAt),
      failure: failure(a.failure),
      execution: a.execution
        ? {
            executionId: revealCapabilities ? a.execution.executionId : '',
            registrationId: revealCapabilities ? a.execution.registrationId : '',
            runnerId: a.execution.runnerId,
            mode: EXECUTION_MODE[a.execution.mode],
            deadline: date(a.execution.deadline),
          }
        : undefined,
      lease: a.lease
        ? {
            leaseId: a.lease.leaseId,
            runnerId: a.lease.runnerId,
            expiresAt: date(a.lease.expiresAt),
            runDeadline: date(a.lease.runDeadline),
            heartbeatIntervalMs: a.lease.heartbeatIntervalMs,
          }
        : undefined,
    })),
    assignments: s.assignments.map((a) => ({ targetCheckId: a.checkId, goalState: CHECK_STATE[a.goalState] })),
    dependencies: dependencies(s.dependencies),
    createdAt: date(s.createdAt),
    updatedAt: date(s.updatedAt),
    version: BigInt(s.version),
    executionMode: EXECUTION_MODE[s.executionMode],
    runnerType: s.runnerType,
    maxAttempts: s.maxAttempts,
    parentStageId: s.parentStageId,
    attemptTimeoutSeconds: s.attemptTimeoutSeconds,
    priority: s.priority,
    executionPolicy: { ...s.policy },
    failure: failure(s.failure),
    changedAtVersion: BigInt(s.changedAtVersion),
  };
}
