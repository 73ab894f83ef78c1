// The facts a workplan stream is made of. Every event is past tense and versioned (schemaVersion in the envelope).
// Events are built by our own deciders, which the type system checks; what comes back from the log (and what an
// import brings in) is validated by these zod schemas after upcasting.
import { z } from 'zod';
import {
  ATTEMPT_STATES,
  CHECK_STATES,
  EXECUTION_MODES,
  LEASE_EXPIRY_REASONS,
  NODE_KINDS,
  STAGE_STATES,
  type AttemptState,
  type Check,
  type Stage,
  type DependencyGroup,
  type JsonObject,
} from './model.js';

const json = z.record(z.string(), z.json()) as unknown as z.ZodType<JsonObject>;
const id = z.string().min(1);
const checkState = z.enum(CHECK_STATES);
const stageState = z.enum(STAGE_STATES);
const attemptState = z.enum(ATTEMPT_STATES);

const failure = z.object({ message: z.string(), occurredAt: z.number().int() });
/** `groups` (nested sub-groups) came later without a bump: optional, so events written before read unchanged. */
const dependencyGroup: z.ZodType<DependencyGroup> = z.lazy(() =>
  z.object({
    predicate: z.enum(['AND', 'OR']),
    threshold: z.number().int().min(0),
    edges: z.array(z.object({ kind: z.enum(NODE_KINDS), id })).readonly(),
    groups: z.array(dependencyGroup).readonly().optional(),
  }),
);
/** An approval gate: approvals required from distinct principals, and the deadline (epoch ms) if any. */
const approvalGate = z.object({ approvalsRequired: z.number().int().positive(), deadline: z.number().int().nullable() });
const assignment = z.object({ checkId: id, goalState: checkState });
const ms = z.number().int().min(0);
const policy = z.object({ pickupTimeoutMs: ms, runTimeoutMs: ms, heartbeatIntervalMs: ms, retryBackoffMs: ms });

const event = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) =>
  z.object({ type: z.literal(type), data: z.object(shape) });

/**
 * Schema version 2 added `createdBy`, who created the workplan when a client says so ('' when unknown). Version 1
 * events are upcast to createdBy '' (src/infra/event-codec.ts); writers may leave it out, which reads the same.
 */
export const WorkPlanCreated = event('WorkPlanCreated', {
  metadata: z.record(z.string(), z.string()),
  createdBy: z.string().max(256).optional(),
  /** Added without a bump: the realm the workplan belongs to; absent means "default". */
  realm: z.string().min(1).max(256).optional(),
});

/**
 * Schema version 2 added `state`: a check written PLANNED when it is created is created in PLANNED, one event
 * (version 1 wrote a CheckStateChanged PLANNING → PLANNED after it). Absent, as in every version 1 event, is PLANNING.
 */
export const CheckCreated = event('CheckCreated', {
  checkId: id,
  state: z.enum(['PLANNING', 'PLANNED']).optional(),
  kind: z.string(),
  options: json,
  dependencies: dependencyGroup.nullable(),
  /** Added without a bump (extension): absent means the check is not an approval gate. */
  gate: approvalGate.optional(),
});
/** Fields a client changed while the check was PLANNING. Absent fields are unchanged; options merge. */
export const CheckAmended = event('CheckAmended', {
  checkId: id,
  kind: z.string().optional(),
  options: json.optional(),
  dependencies: dependencyGroup.nullable().optional(),
});
export const CheckStateChanged = event('CheckStateChanged', { checkId: id, from: checkState, to: checkState });
export const CheckResultAdded = event('CheckResultAdded', {
  checkId: id,
  resultId: z.number().int().positive(),
  ownerType: z.string(),
  ownerId: z.string(),
  data: json,
  failure: failure.nullable(),
  finalized: z.boolean(),
});
/**
 * Someone approved or rejected an approval gate (the Approve RPC). `principal` is the caller's identity ('anonymous'
 * while the server runs without authentication). The resolver finalizes the gate when this completes it.
 */
export const CheckApprovalGiven = event('CheckApprovalGiven', {
  checkId: id,
  principal: z.string().min(1),
  decision: z.enum(['APPROVE', 'REJECT']),
  comment: z.string(),
});
/** An approval gate reached its deadline before it was approved; the resolver finalizes it as failed. */
export const CheckApprovalTimedOut = event('CheckApprovalTimedOut', { checkId: id, deadline: z.number().int() });

export const StageCreated = event('StageCreated', {
  stageId: id,
  args: json,
  assignments: z.array(assignment).readonly(),
  dependencies: dependencyGroup.nullable(),
  executionMode: z.enum(EXECUTION_MODES),
  runnerType: z.string(),
  maxAttempts: z.number().int().positive(),
  parentStageId: z.string(),
  /** Added after schema version 1 without a bump: absent in older events means 0 (the server's default). */
  attemptTimeoutSeconds: z.number().int().min(0).optional(),
  /** Added without a bump, like attemptTimeoutSeconds: absent means 0 / every field 0 (the server's defaults). */
  priority: z.number().int().optional(),
  policy: policy.optional(),
});
/** Fields a client changed while the stage was PLANNED. Absent fields are unchanged; args merge. */
export const StageAmended = event('StageAmended', {
  stageId: id,
  args: json.optional(),
  assignments: z.array(assignment).readonly().optional(),
  dependencies: dependencyGroup.nullable().optional(),
  executionMode: z.enum(EXECUTION_MODES).optional(),
  runnerType: z.string().optional(),
  maxAttempts: z.number().int().positive().optional(),
  parentStageId: z.string().optional(),
  attemptTimeoutSeconds: z.number().int().min(0).optional(),
  priority: z.number().int().optional(),
  /** The stage's whole policy after the change. */
  policy: policy.optional(),
});
export const StageStateChanged = event('StageStateChanged', {
  stageId: id,
  from: stageState,
  to: stageState,
  /** Set when the stage went FINAL without success. */
  failure: failure.nullable(),
});
/**
 * Attempt N was opened, PENDING. Schema version 2 added `startsStage`: the resolver's first attempt of a PLANNED stage
 * is also the stage's move to ATTEMPTING, one event (version 1 wrote a StageStateChanged before it).
 */
export const StageAttemptCreated = event('StageAttemptCreated', {
  stageId: id,
  idx: z.number().int().positive(),
  startsStage: z.boolean().optional(),
});
/** A runner's answer as applied: by the execution it was dispatched as, or by the lease it was leased under. */
const appliedCompletion = z.object({ via: z.enum(['execution', 'lease']), id, fingerprint: z.string() });
export type AppliedCompletion = z.infer<typeof appliedCompletion>;

/**
 * Schema version 2 added `completion`: the runner's answer that ended the attempt, recorded on the change it made
 * (version 1 wrote a StageExecutionCompleted or StageAttemptLeaseCompleted beside it instead; both still read).
 * Schema version 3 added `stageTo`: an attempt that goes COMPLETE ends its stage (FINAL, or AWAITING_GROUP while
 * child stages run), and that move is recorded on the same event (versions 1 and 2 wrote a StageStateChanged after
 * it, which still reads: applying both is the same as applying one).
 */
export const StageAttemptStateChanged = event('StageAttemptStateChanged', {
  stageId: id,
  idx: z.number().int().positive(),
  from: attemptState,
  to: attemptState,
  /** The claimer, set when the attempt enters RUNNING. */
  processUid: z.string(),
  failure: failure.nullable(),
  completion: appliedCompletion.optional(),
  /** With `to: COMPLETE`: the state the stage went to because of it. */
  stageTo: z.enum(['AWAITING_GROUP', 'FINAL']).optional(),
});
export const StageAttemptDetailsMerged = event('StageAttemptDetailsMerged', {
  stageId: id,
  idx: z.number().int().positive(),
  details: json,
});
export const StageAttemptProgressAppended = event('StageAttemptProgressAppended', {
  stageId: id,
  idx: z.number().int().positive(),
  message: z.string(),
  /** The client's timestamp when it gave one; otherwise the time the event was recorded. */
  timestamp: z.number().int().nullable(),
  details: json,
});

/**
 * The attempt was sent to a registered runner and is SCHEDULED. Schema version 2: the event itself moves the attempt
 * from PENDING to SCHEDULED; version 1 wrote a StageAttemptStateChanged beside it (read the same: applying both is
 * the same as applying one).
 */
export const StageAttemptDispatched = event('StageAttemptDispatched', {
  stageId: id,
  idx: z.number().int().positive(),
  executionId: id,
  registrationId: id,
  runnerId: id,
  mode: z.enum(EXECUTION_MODES),
  deadline: z.number().int(),
  /**
   * The server process that made the call (absent in older logs). A synchronous run's answer comes back to that
   * process only: on a shared log, the other replicas fail the run when that process is gone, so it is retried.
   */
  dispatchedBy: z.string().max(128).optional(),
});
/** The runner declined an async execution: the attempt is PENDING again and queued, no attempt used up. */
export const StageAttemptDispatchDeclined = event('StageAttemptDispatchDeclined', {
  stageId: id,
  idx: z.number().int().positive(),
  executionId: id,
});
/**
 * A runner's completion of an execution was applied (the attempt and check changes stand beside it). Written by
 * logs before schema version 2 of StageAttemptStateChanged, which records the completion on the attempt's change.
 */
export const StageExecutionCompleted = event('StageExecutionCompleted', {
  stageId: id,
  idx: z.number().int().positive(),
  executionId: id,
  fingerprint: z.string(),
});

/**
 * A pull runner leased the attempt, which goes from PENDING to RUNNING with the runner as its process uid. Schema
 * version 2: the event itself makes that change; version 1 wrote a StageAttemptStateChanged beside it (read the
 * same). Only the token's hash is recorded.
 */
export const StageAttemptLeased = event('StageAttemptLeased', {
  stageId: id,
  idx: z.number().int().positive(),
  leaseId: id,
  tokenHash: z.string().min(1),
  runnerId: id,
  runnerType: id,
  heartbeatIntervalMs: z.number().int().positive(),
  expiresAt: z.number().int(),
  runDeadline: z.number().int(),
});
/** A heartbeat extended the lease. */
export const StageAttemptLeaseExtended = event('StageAttemptLeaseExtended', {
  stageId: id,
  idx: z.number().int().positive(),
  leaseId: id,
  expiresAt: z.number().int(),
});
/**
 * The reaper enforced the stage's execution policy: the attempt was not leased in time (leaseId ''), missed two
 * heartbeats, or ran past its run timeout. The StageAttemptStateChanged to INCOMPLETE beside it carries the failure.
 */
export const StageAttemptLeaseExpired = event('StageAttemptLeaseExpired', {
  stageId: id,
  idx: z.number().int().positive(),
  leaseId: z.string(),
  reason: z.enum(LEASE_EXPIRY_REASONS),
});
/**
 * A pull runner's completion was applied (the attempt and check changes stand beside it). Written by logs before
 * schema version 2 of StageAttemptStateChanged, which records the completion on the attempt's change.
 */
export const StageAttemptLeaseCompleted = event('StageAttemptLeaseCompleted', {
  stageId: id,
  idx: z.number().int().positive(),
  leaseId: id,
  fingerprint: z.string(),
});

const registration = {
  registrationId: id,
  runnerId: id,
  runnerType: id,
  address: z.string().min(1),
  supportedModes: z.array(z.enum(EXECUTION_MODES)).readonly(),
  maxConcurrent: z.number().int().positive(),
  ttlSeconds: z.number().int().positive(),
  metadata: z.record(z.string(), z.string()),
  expiresAt: z.number().int(),
};
/** Facts of the runner registry stream. */
export const RunnerRegistered = event('RunnerRegistered', registration);
/** The runner registered again before expiring: same registration, fields refreshed, load kept. */
export const RunnerRefreshed = event('RunnerRefreshed', registration);
export const RunnerUnregistered = event('RunnerUnregistered', { registrationId: id });
export const RunnerExpired = event('RunnerExpired', { registrationId: id });

/**
 * Facts of the token stream (`tokens`): an API token was created, or revoked. Only the SHA-256 of the secret is
 * recorded; the secret itself is shown once, to whoever created the token.
 */
export const TokenCreated = event('TokenCreated', {
  name: id,
  role: z.enum(['reader', 'writer', 'runner', 'approver', 'admin']),
  /** Realms a reader/writer/approver may use; `*` = every realm. */
  realms: z.array(id).readonly(),
  /** Runner types a runner may serve; `*` = every type. */
  runnerTypes: z.array(id).readonly(),
  /** Epoch ms; null = never. */
  expiresAt: z.number().int().nullable(),
  secretHash: z.string().min(1),
});
export const TokenRevoked = event('TokenRevoked', { name: id });

export const DomainEvent = z.discriminatedUnion('type', [
  WorkPlanCreated,
  CheckCreated,
  CheckAmended,
  CheckStateChanged,
  CheckResultAdded,
  CheckApprovalGiven,
  CheckApprovalTimedOut,
  StageCreated,
  StageAmended,
  StageStateChanged,
  StageAttemptCreated,
  StageAttemptStateChanged,
  StageAttemptDetailsMerged,
  StageAttemptProgressAppended,
  StageAttemptDispatched,
  StageAttemptDispatchDeclined,
  StageExecutionCompleted,
  StageAttemptLeased,
  StageAttemptLeaseExtended,
  StageAttemptLeaseExpired,
  StageAttemptLeaseCompleted,
  RunnerRegistered,
  RunnerRefreshed,
  RunnerUnregistered,
  RunnerExpired,
  TokenCreated,
  TokenRevoked,
]);
export type DomainEvent = z.infer<typeof DomainEvent>;
export type EventType = DomainEvent['type'];
export type EventOf<T extends EventType> = Extract<DomainEvent, { type: T }>;

/** Current schema version of every event type; bump one and add an upcaster when its data changes shape. */
export const SCHEMA_VERSION: Record<EventType, number> = {
  WorkPlanCreated: 2,
  CheckCreated: 2,
  CheckAmended: 1,
  CheckStateChanged: 1,
  CheckResultAdded: 1,
  CheckApprovalGiven: 1,
  CheckApprovalTimedOut: 1,
  StageCreated: 1,
  StageAmended: 1,
  StageStateChanged: 1,
  StageAttemptCreated: 2,
  StageAttemptStateChanged: 3,
  StageAttemptDetailsMerged: 1,
  StageAttemptProgressAppended: 1,
  StageAttemptDispatched: 2,
  StageAttemptDispatchDeclined: 1,
  StageExecutionCompleted: 1,
  StageAttemptLeased: 2,
  StageAttemptLeaseExtended: 1,
  StageAttemptLeaseExpired: 1,
  StageAttemptLeaseCompleted: 1,
  RunnerRegistered: 1,
  RunnerRefreshed: 1,
  RunnerUnregistered: 1,
  RunnerExpired: 1,
  TokenCreated: 1,
  TokenRevoked: 1,
};

/** The stream holding the runner registry's events. */
export const RUNNER_REGISTRY_STREAM = 'runner-registry';

/** The events of the runner registry stream; every other type belongs to a workplan's stream. */
export const RUNNER_EVENT_TYPES = ['RunnerRegistered', 'RunnerRefreshed', 'RunnerUnregistered', 'RunnerExpired'] as const satisfies readonly EventType[];
/** The stream holding API tokens' events. */
export const TOKEN_STREAM = 'tokens';
export const TOKEN_EVENT_TYPES = ['TokenCreated', 'TokenRevoked'] as const satisfies readonly EventType[];
export const WORKPLAN_EVENT_TYPES: readonly EventType[] = (Object.keys(SCHEMA_VERSION) as EventType[]).filter(
  (t) => !(RUNNER_EVENT_TYPES as readonly string[]).includes(t) && !(TOKEN_EVENT_TYPES as readonly string[]).includes(t),
);

/** Why an event was appended: the client request that carried it, and the event that made the resolver emit it. */
export interface Causation {
  readonly requestId: string | null;
  /** Stream version of the event this one is a consequence of; null for what the client wrote itself. */
  readonly causedByVersion: number | null;
  /**
   * Who caused it: the name of the token the call carried, `anonymous` when auth is off, `system` for what the
   * server decides by itself (dispatch, expiry). Absent (null) in events recorded before principals were.
   */
  readonly principal?: string | null;
  /** Why, when the caller said so (WriteNodes `reason`). */
  readonly reason?: string | null;
}

/** The principal of what the server decides by itself (dispatches, expiries, registrations expiring). */
export const SYSTEM_PRINCIPAL = 'system';
/** The principal of calls when auth is off. */
export const ANONYMOUS_PRINCIPAL = 'anonymous';

/** Who makes a change, and why: carried from the transport into the orchestrator and onto every event's causation. */
export interface Actor {
  readonly principal: string;
  readonly reason?: string | null;
}

/** An event as the log holds it. */
export interface RecordedEvent {
  readonly position: number;
  readonly streamId: string;
  readonly version: number;
  readonly recordedAt: number;
  readonly causation: Causation;
  readonly event: DomainEvent;
  /** The node right after the event, as the decision that wrote it folded it (see PendingEvent.node); never stored. */
  readonly node?: Check | Stage;
}

/** An event decided but not yet appended; versions are assigned in order after the stream's current version. */
export interface PendingEvent {
  readonly event: DomainEvent;
  readonly causedByVersion: number | null;
  /**
   * The node right after the event, folded by the decision's draft: the read models and watchers take it instead of
   * folding the event a second and third time. Unset for events that create or amend a node, and for any change to
   * a node this decision created or amended (the committed model builds those itself, sharing its edge objects), and
   * for events without a node.
   */
  readonly node?: Check | Stage;
}

/** An event caused by the request itself, not by an earlier event of the stream. */
export const pending = (event: DomainEvent): PendingEvent => ({ event, causedByVersion: null });

/** The node an event is about, if any. */
export const eventNode = (event: DomainEvent): { kind: 'check' | 'stage'; id: string } | null => {
  switch (event.type) {
    case 'WorkPlanCreated':
    case 'RunnerRegistered':
    case 'RunnerRefreshed':
    case 'RunnerUnregistered':
    case 'RunnerExpired':
    case 'TokenCreated':
    case 'TokenRevoked':
      return null;
    case 'CheckCreated':
    case 'CheckAmended':
    case 'CheckStateChanged':
    case 'CheckResultAdded':
    case 'CheckApprovalGiven':
    case 'CheckApprovalTimedOut':
      return { kind: 'check', id: event.data.checkId };
    case 'StageCreated':
    case 'StageAmended':
    case 'StageStateChanged':
    case 'StageAttemptCreated':
    case 'StageAttemptStateChanged':
    case 'StageAttemptDetailsMerged':
    case 'StageAttemptProgressAppended':
    case 'StageAttemptDispatched':
    case 'StageAttemptDispatchDeclined':
    case 'StageExecutionCompleted':
    case 'StageAttemptLeased':
    case 'StageAttemptLeaseExtended':
    case 'StageAttemptLeaseExpired':
    case 'StageAttemptLeaseCompleted':
      return { kind: 'stage', id: event.data.stageId };
  }
};

/** An attempt's state change, as an event states it or implies it. */
export interface AttemptTransition {
  readonly stageId: string;
  readonly idx: number;
  readonly from: AttemptState;
  readonly to: AttemptState;
}

/**
 * The attempt state change `event` makes, if any: stated by StageAttemptStateChanged, implied by a lease (PENDING to
 * RUNNING) and by a dispatch (PENDING to SCHEDULED). Whoever follows attempt states asks this, not the event type.
 */
export function attemptTransition(event: DomainEvent): AttemptTransition | null {
  switch (event.type) {
    case 'StageAttemptStateChanged':
      return event.data;
    case 'StageAttemptLeased':
      return { stageId: event.data.stageId, idx: event.data.idx, from: 'PENDING', to: 'RUNNING' };
    case 'StageAttemptDispatched':
      return { stageId: event.data.stageId, idx: event.data.idx, from: 'PENDING', to: 'SCHEDULED' };
    default:
      return null;
  }
}

/**
 * The stage `event` made FINAL, if it did: stated by StageStateChanged, or by an attempt that went COMPLETE and
 * ended its stage with it (`stageTo`). Whoever reacts to a stage going FINAL asks this, not the event type.
 */
export function stageWentFinal(event: DomainEvent): string | null {
  if (event.type === 'StageStateChanged') return event.data.to === 'FINAL' ? event.data.stageId : null;
  if (event.type === 'StageAttemptStateChanged') return event.data.stageTo === 'FINAL' ? event.data.stageId : null;
  return null;
}
