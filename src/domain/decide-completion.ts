// What a runner's answer amounts to, whichever protocol carried it (push Run, CompleteStageExecution, CompleteLease).
import type { CheckWriteInput, DecideContext, FailureInput, StageWriteInput } from './commands.js';
import { decideWriteNodes } from './decide-write-nodes.js';
import { invalidArgument } from './errors.js';
import type { AppliedCompletion, PendingEvent } from './events.js';
import type { CheckState, JsonObject, Stage, StageState } from './model.js';
import type { WorkPlanDraft } from './workplan-draft.js';

export interface CheckUpdateInput {
  readonly checkId: string;
  readonly state?: CheckState | undefined;
  readonly resultData?: JsonObject | undefined;
  readonly finalize: boolean;
  readonly failure?: FailureInput | undefined;
}

export interface ExecutionCompletion {
  readonly stageState?: StageState | undefined;
  readonly checkUpdates: readonly CheckUpdateInput[];
  readonly failure?: FailureInput | undefined;
  readonly details?: JsonObject | undefined;
  /** Identifies the completion's content: a repeat with the same fingerprint is acknowledged, nothing appended. */
  readonly fingerprint: string;
}

/** A runner's answer about `stage`; `before` are writes of the stage that must come first (a claim, when the runner never reported RUNNING). */
export interface RunnerAnswer {
  readonly stage: Stage;
  readonly completion: ExecutionCompletion;
  /** The execution or lease the answer came by: recorded, with the answer's fingerprint, on the attempt's change. */
  readonly via: Omit<AppliedCompletion, 'fingerprint'>;
  readonly before?: readonly StageWriteInput[];
}

/**
 * A runner's answer as one write: every check update (a result, finalize, then state), then the attempt
 * (COMPLETE, or INCOMPLETE with the failure; that change records the completion), then the stage state.
 */
export function decideRunnerAnswer(cmd: RunnerAnswer, draft: WorkPlanDraft, ctx: DecideContext): PendingEvent[] {
  const { stage, completion: c } = cmd;
  const checks: CheckWriteInput[] = c.checkUpdates.map((u, i) => {
    if (!draft.check(u.checkId)) throw invalidArgument(`no check "${u.checkId}" in this workplan`, `check_updates[${i}].check_id`);
    if (!stage.assignments.some((a) => a.checkId === u.checkId)) {
      throw invalidArgument(`check "${u.checkId}" is not assigned to stage "${stage.id}"; a runner updates only its stage's checks`, `check_updates[${i}].check_id`);
    }
    const hasResult = u.resultData !== undefined || u.failure !== undefined || u.finalize;
    return {
      id: u.checkId,
      state: u.state,
      result: hasResult ? { ownerType: 'stage', ownerId: stage.id, data: u.resultData ?? {}, finalize: u.finalize, failure: u.failure } : undefined,
    };
  });
  // Only FINAL is meaningful in an answer; with a failure it means "do not retry".
  const final = c.stageState === 'FINAL';
  const stages: StageWriteInput[] = [
    ...(cmd.before ?? []),
    {
      id: stage.id,
      currentAttempt: {
        state: c.failure ? 'INCOMPLETE' : 'COMPLETE',
        failure: c.failure,
        details: c.details,
        completion: { ...cmd.via, fingerprint: c.fingerprint },
      },
      state: final && !c.failure ? 'FINAL' : undefined,
    },
  ];
  const events = decideWriteNodes({ checks, stages, viaRunner: true }, draft, ctx);
  if (final && c.failure) {
    const failure = { message: c.failure.message, occurredAt: c.failure.occurredAt ?? ctx.now };
    events.push(draft.emit({ type: 'StageStateChanged', data: { stageId: stage.id, from: stage.state, to: 'FINAL', failure } }));
  }
  return events;
}
