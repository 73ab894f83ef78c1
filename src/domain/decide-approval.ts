// decide(Approve) and decide(approval deadline) → events. Pure. The resolver finalizes the gate when an approval
// completes it, on a reject, and on a timeout (projections/resolver.ts, settleGate).
import { failedPrecondition, notFound } from './errors.js';
import type { WorkPlanDraft } from './workplan-draft.js';

export interface Approve {
  readonly checkId: string;
  /** Who approves: the caller's identity, 'anonymous' while the server runs without authentication. */
  readonly principal: string;
  readonly decision: 'APPROVE' | 'REJECT';
  readonly comment: string;
}

/** The principal recorded while there is no authentication. */
export const ANONYMOUS = 'anonymous';

/**
 * An approval or rejection of a WAITING gate before its deadline. A repeated approval from a principal who already
 * approved appends nothing (approvals count per distinct principal).
 */
export function decideApprove(cmd: Approve, draft: WorkPlanDraft): void {
  const check = draft.check(cmd.checkId);
  const name = `approval gate "${cmd.checkId}"`;
  if (!check) throw notFound(`no check "${cmd.checkId}" in this workplan`, 'check_id');
  if (!check.gate) throw failedPrecondition(`check "${cmd.checkId}" is not an approval gate`, 'check_id');
  if (check.state === 'FINAL') throw failedPrecondition(`${name} is FINAL and takes no more approvals`, 'check_id');
  if (check.state !== 'WAITING') {
    throw failedPrecondition(`${name} is ${check.state}: it takes approvals once it is WAITING (PLANNED, dependencies satisfied)`, 'check_id');
  }
  if (check.gate.deadline !== null && draft.now >= check.gate.deadline) {
    throw failedPrecondition(`${name} passed its deadline ${new Date(check.gate.deadline).toISOString()}`, 'check_id');
  }
  if (cmd.decision === 'APPROVE' && check.approvals.some((a) => a.decision === 'APPROVE' && a.principal === cmd.principal)) return;
  draft.emit({ type: 'CheckApprovalGiven', data: { checkId: cmd.checkId, principal: cmd.principal, decision: cmd.decision, comment: cmd.comment } });
}

/** At the deadline, a gate that is not FINAL times out. Nothing happens before it, or to a FINAL gate. */
export function decideApprovalTimeout(cmd: { readonly checkId: string }, draft: WorkPlanDraft): void {
  const check = draft.check(cmd.checkId);
  const deadline = check?.gate?.deadline ?? null;
  if (!check || deadline === null || check.state === 'FINAL' || draft.now < deadline) return;
  draft.emit({ type: 'CheckApprovalTimedOut', data: { checkId: check.id, deadline } });
}
