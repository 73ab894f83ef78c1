// What clients ask of a workplan, in domain terms. Absent (undefined) fields mean "not set" in the request.
import type {
  ApprovalGate,
  AttemptState,
  ExecutionPolicy,
  CheckState,
  DependencyGroup,
  ExecutionMode,
  JsonObject,
  StageState,
} from './model.js';
import type { AppliedCompletion } from './events.js';

export interface FailureInput {
  readonly message: string;
  /** The client's time, if it gave one. */
  readonly occurredAt?: number | undefined;
}

export interface CheckResultInput {
  readonly ownerType: string;
  readonly ownerId: string;
  readonly data: JsonObject;
  readonly finalize: boolean;
  readonly failure?: FailureInput | undefined;
}

export interface CheckWriteInput {
  readonly id: string;
  readonly state?: CheckState | undefined;
  readonly kind?: string | undefined;
  readonly options?: JsonObject | undefined;
  readonly dependencies?: DependencyGroup | undefined;
  readonly result?: CheckResultInput | undefined;
  /** Makes a new check an approval gate. */
  readonly gate?: ApprovalGate | undefined;
}

export interface ProgressInput {
  readonly message: string;
  readonly timestamp?: number | undefined;
  readonly details: JsonObject;
}

export interface AttemptWriteInput {
  readonly state?: AttemptState | undefined;
  readonly processUid?: string | undefined;
  readonly details?: JsonObject | undefined;
  readonly progress?: ProgressInput | undefined;
  readonly failure?: FailureInput | undefined;
  /** Set by the server only, for a runner's answer: recorded on the state change the answer makes. */
  readonly completion?: AppliedCompletion | undefined;
}

export interface AssignmentInput {
  readonly checkId: string;
  readonly goalState: CheckState;
}

export interface StageWriteInput {
  readonly id: string;
  readonly state?: StageState | undefined;
  readonly args?: JsonObject | undefined;
  readonly assignments?: readonly AssignmentInput[] | undefined;
  readonly dependencies?: DependencyGroup | undefined;
  readonly currentAttempt?: AttemptWriteInput | undefined;
  readonly executionMode?: ExecutionMode | undefined;
  readonly runnerType?: string | undefined;
  readonly maxAttempts?: number | undefined;
  readonly parentStageId?: string | undefined;
  readonly attemptTimeoutSeconds?: number | undefined;
  readonly priority?: number | undefined;
  /** Non-zero fields replace the stage's. */
  readonly policy?: Partial<ExecutionPolicy> | undefined;
}

export interface WriteNodes {
  readonly checks: readonly CheckWriteInput[];
  readonly stages: readonly StageWriteInput[];
  /**
   * Set when the write comes through a runner's own channel (its callbacks or its lease token). Without it, an
   * attempt that was dispatched or leased and is not over takes no writes: only its runner reports on it.
   */
  readonly viaRunner?: boolean | undefined;
}

/**
 * Who calls, as the runner protocol's integrity rules need it. `authenticated` is false when auth is off (every
 * caller is `anonymous`, so identities cannot be told apart and capabilities, such as a registration id, decide);
 * `admin` may act on what others made.
 */
export interface Caller {
  readonly principal: string;
  readonly authenticated: boolean;
  readonly admin: boolean;
}

/** Settings decide needs that are not part of a request. */
export interface DecideContext {
  /** The time the events will be recorded at. */
  readonly now: number;
  readonly defaultMaxAttempts: number;
}
