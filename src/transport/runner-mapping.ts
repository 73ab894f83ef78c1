// A runner's answer (RunResponse or CompleteStageExecutionRequest) in domain terms.
import type { CheckUpdateInput, ExecutionCompletion } from '../domain/decide-completion.js';
import type { CheckState, JsonObject } from '../domain/model.js';
import { CheckState as PbCheckState, StageState as PbStageState } from '../gen/turboci/v1/common.js';
import type { RunResponse } from '../gen/turboci/v1/stagerunner.js';
import { z } from 'zod';
import { MAX_MESSAGE_BYTES } from '../domain/limits.js';
import { fieldPath, struct, text } from './validation.js';
import { capText } from '../domain/limits.js';

const failureMessage = z.object({ message: text(MAX_MESSAGE_BYTES) }).optional();
/** The parts of a runner's answer (CompleteStageExecution, CompleteLease) that carry values: bounded like a WriteNodes. */
export const completionValues = z.object({
  checkUpdates: z.array(z.object({ resultData: struct, failure: failureMessage })),
  failure: failureMessage,
  details: struct,
});

/** Why a runner's answer cannot be applied as it is (a NaN, a value over its limit...), or null. */
export function completionProblem(res: unknown): string | null {
  const parsed = completionValues.safeParse(res);
  if (parsed.success) return null;
  const issue = parsed.error.issues[0]!;
  return capText(`${fieldPath(issue.path)}: ${issue.message}`, 512);
}

const CHECK_STATE: Partial<Record<number, CheckState>> = {
  [PbCheckState.CHECK_STATE_PLANNING]: 'PLANNING',
  [PbCheckState.CHECK_STATE_PLANNED]: 'PLANNED',
  [PbCheckState.CHECK_STATE_WAITING]: 'WAITING',
  [PbCheckState.CHECK_STATE_FINAL]: 'FINAL',
};

/** Enum values we do not know are read as "not set". */
export function toCompletion(res: {
  stageState: PbStageState;
  checkUpdates: RunResponse['checkUpdates'];
  failure: RunResponse['failure'];
  details: RunResponse['details'];
}): Omit<ExecutionCompletion, 'fingerprint'> {
  const failure = res.failure?.message ? { message: res.failure.message, occurredAt: res.failure.occurredAt?.getTime() } : undefined;
  return {
    stageState: res.stageState === PbStageState.STAGE_STATE_FINAL ? 'FINAL' : undefined,
    checkUpdates: res.checkUpdates.map(
      (u): CheckUpdateInput => ({
        checkId: u.checkId,
        state: CHECK_STATE[u.state],
        resultData: u.resultData as JsonObject | undefined,
        finalize: u.finalize,
        failure: u.failure?.message ? { message: u.failure.message, occurredAt: u.failure.occurredAt?.getTime() } : undefined,
      }),
    ),
    failure,
    details: res.details as JsonObject | undefined,
  };
}

