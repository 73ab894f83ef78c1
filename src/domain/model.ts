// The domain's own view of a workplan's nodes. Times are epoch milliseconds; transport maps them to Timestamps.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export const CHECK_STATES = ['PLANNING', 'PLANNED', 'WAITING', 'FINAL'] as const;
export type CheckState = (typeof CHECK_STATES)[number];

export const STAGE_STATES = ['PLANNED', 'ATTEMPTING', 'AWAITING_GROUP', 'FINAL'] as const;
export type StageState = (typeof STAGE_STATES)[number];

export const ATTEMPT_STATES = ['PENDING', 'SCHEDULED', 'RUNNING', 'COMPLETE', 'INCOMPLETE'] as const;
export type AttemptState = (typeof ATTEMPT_STATES)[number];

export const EXECUTION_MODES = ['SYNC', 'ASYNC'] as const;
export type ExecutionMode = (typeof EXECUTION_MODES)[number];

export const NODE_KINDS = ['check', 'stage'] as const;
export type NodeKind = (typeof NODE_KINDS)[number];

export interface NodeRef {
  readonly kind: NodeKind;
  readonly id: string;
}

/** `check:<id>` or `stage:<id>`: the key of a node in indexes. */
export type NodeKey = `${NodeKind}:${string}`;
export const nodeKey = (ref: NodeRef): NodeKey => `${ref.kind}:${ref.id}`;
export const parseNodeKey = (key: NodeKey): NodeRef => {
  const colon = key.indexOf(':');
  return { kind: key.slice(0, colon) as NodeKind, id: key.slice(colon + 1) };
};

export interface DependencyGroup {
  /** AND: every member; OR: at least one. Ignored when threshold > 0. */
  readonly predicate: 'AND' | 'OR';
  /** When > 0: at least this many members. */
  readonly threshold: number;
  /** Members that are edges: satisfied when their target is FINAL. */
  readonly edges: readonly NodeRef[];
  /**
   * Members that are sub-groups (extension): satisfied when their own predicate holds. Absent means none (groups
   * written before nesting existed, and every flat group, leave it out).
   */
  readonly groups?: readonly DependencyGroup[];
}

/** An approval gate (extension): a check that only the Approve RPC, or its deadline, makes FINAL. */
export interface ApprovalGate {
  /** Approvals from distinct principals needed. */
  readonly approvalsRequired: number;
  /** Epoch ms at which the gate goes FINAL with "approval timed out"; null = none. */
  readonly deadline: number | null;
}

export interface Approval {
  readonly principal: string;
  readonly decision: 'APPROVE' | 'REJECT';
  readonly comment: string;
  readonly at: number;
}

export interface Failure {
  readonly message: string;
  readonly occurredAt: number;
}

export interface CheckResult {
  readonly id: number;
  readonly ownerType: string;
  readonly ownerId: string;
  readonly data: JsonObject;
  readonly createdAt: number;
  readonly finalizedAt: number | null;
  readonly failure: Failure | null;
}

interface NodeCommon {
  readonly id: string;
  readonly dependencies: DependencyGroup | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Changes made to this node. */
  readonly version: number;
  /** Stream version of the event that created the node: orders nodes by creation. */
  readonly createdAtVersion: number;
  /**
   * Stream version of the last event that changed the node (extension): a transaction's read of the node is stale
   * when this is above its read_version.
   */
  readonly changedAtVersion: number;
}

export interface Check extends NodeCommon {
  readonly state: CheckState;
  readonly kind: string;
  readonly options: JsonObject;
  readonly results: readonly CheckResult[];
  /** Set when the check is an approval gate; null otherwise. */
  readonly gate: ApprovalGate | null;
  /** Approvals and rejections given to a gate, in order. */
  readonly approvals: readonly Approval[];
}

export interface ProgressEntry {
  readonly message: string;
  readonly timestamp: number;
  readonly details: JsonObject;
}

/** The dispatch of an attempt to a registered runner. */
export interface Execution {
  readonly executionId: string;
  readonly registrationId: string;
  readonly runnerId: string;
  readonly mode: ExecutionMode;
  /** Epoch ms after which the attempt is made INCOMPLETE. */
  readonly deadline: number;
  /** Fingerprint of the runner's completion, once applied: an identical repeat is acknowledged, not re-applied. */
  readonly completion: string | null;
}

/** Limits for attempts leased by pull runners, in ms; 0 = the server's default. */
export interface ExecutionPolicy {
  readonly pickupTimeoutMs: number;
  readonly runTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly retryBackoffMs: number;
}

export const NO_POLICY: ExecutionPolicy = { pickupTimeoutMs: 0, runTimeoutMs: 0, heartbeatIntervalMs: 0, retryBackoffMs: 0 };

export const LEASE_EXPIRY_REASONS = ['PICKUP_TIMEOUT', 'HEARTBEATS_MISSED', 'RUN_TIMEOUT'] as const;
export type LeaseExpiryReason = (typeof LEASE_EXPIRY_REASONS)[number];

/** The lease of an attempt by a pull runner. */
export interface Lease {
  readonly leaseId: string;
  /** sha256 of the token the runner holds (base64url); the token itself is never stored. */
  readonly tokenHash: string;
  readonly runnerId: string;
  readonly runnerType: string;
  readonly heartbeatIntervalMs: number;
  /** Epoch ms: without a heartbeat by then the attempt is made INCOMPLETE. */
  readonly expiresAt: number;
  /** Epoch ms: the attempt is made INCOMPLETE then, whatever the heartbeats. */
  readonly runDeadline: number;
  /** Fingerprint of the applied completion: an identical repeat is acknowledged, not re-applied. */
  readonly completion: string | null;
  /** Set when the reaper expired the lease. */
  readonly expired: LeaseExpiryReason | null;
}

export interface Attempt {
  readonly idx: number;
  readonly state: AttemptState;
  readonly processUid: string;
  readonly details: JsonObject;
  readonly progress: readonly ProgressEntry[];
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly failure: Failure | null;
  readonly execution: Execution | null;
  /** Set once a pull runner leased the attempt. Absent in attempts folded before leases existed: read as null. */
  readonly lease?: Lease | null;
}

export interface Assignment {
  readonly checkId: string;
  readonly goalState: CheckState;
}

export interface Stage extends NodeCommon {
  readonly state: StageState;
  readonly args: JsonObject;
  readonly attempts: readonly Attempt[];
  readonly assignments: readonly Assignment[];
  readonly executionMode: ExecutionMode;
  readonly runnerType: string;
  readonly maxAttempts: number;
  readonly parentStageId: string;
  /** Deadline of a dispatched attempt, in seconds; 0 = the server's default. */
  readonly attemptTimeoutSeconds: number;
  /** Pull scheduling: higher is leased first. */
  readonly priority: number;
  readonly policy: ExecutionPolicy;
  /** Why the stage went FINAL without success; null otherwise. */
  readonly failure: Failure | null;
}

export interface RunnerRegistration {
  readonly registrationId: string;
  readonly runnerId: string;
  readonly runnerType: string;
  readonly address: string;
  readonly supportedModes: readonly ExecutionMode[];
  readonly maxConcurrent: number;
  readonly ttlSeconds: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly registeredAt: number;
  readonly lastHeartbeat: number;
  readonly expiresAt: number;
}

export interface WorkPlanMeta {
  readonly id: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** The stream version: 1 after creation, +1 per event. */
  readonly version: number;
  /** The realm it belongs to ("default" unless given at creation). */
  readonly realm: string;
}

export const DEFAULT_REALM = 'default';

export const currentAttempt = (stage: Stage): Attempt | undefined => stage.attempts[stage.attempts.length - 1];

export const isTerminalAttempt = (state: AttemptState): boolean => state === 'COMPLETE' || state === 'INCOMPLETE';

export const checkHasFailure = (check: Check): boolean => check.results.some((r) => r.failure !== null);

/** Merges a patch into an object key by key (semantics.md: options, args and details merge). */
export const mergeJson = (base: JsonObject, patch: JsonObject): JsonObject => ({ ...base, ...patch });

export const jsonEqual = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
