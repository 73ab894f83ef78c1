// The identity side of the transport: the extension fields it reads (realm, reason) and the checks that need the
// application's state (a workplan's realm, the runner types a write targets). Permissions per RPC are checked by
// the unary wrapper (unary.ts) through the Authenticator.
import { z } from 'zod';
import type { Orchestrator } from '../app/orchestrator.js';
import type { Authenticator, Principal } from '../auth/authenticator.js';
import type { Permission } from '../auth/permissions.js';
import { permissionDenied } from '../domain/errors.js';
import { DEFAULT_REALM } from '../domain/model.js';
import { ID_PATTERN, ID_RULE } from '../domain/ids.js';
import { parseRequest } from './validation.js';

const realmField = z.object({ realm: z.union([z.literal(''), z.string().regex(ID_PATTERN, ID_RULE)]).optional() });
const reasonField = z.object({ reason: z.string().max(4096, 'must be at most 4096 characters').optional() });

/** CreateWorkPlan's realm (extension field 200); "default" when empty. */
export const requestedRealm = (req: unknown): string => parseRequest(realmField, req).realm || DEFAULT_REALM;

/** WriteNodes' reason (extension field 200); null when empty. */
export const requestedReason = (req: unknown): string | null => parseRequest(reasonField, req).reason || null;

/** The realm of a workplan, or undefined when there is none. */
export const realmOf = (app: Orchestrator, workPlanId: string): string | undefined => app.models.workplan(workPlanId)?.meta.realm;

/** A workplan-scoped call: the token must have `permission` in the workplan's realm (unknown workplans look the same). */
export function requireWorkPlan(app: Orchestrator, principal: Principal, permission: Permission, workPlanId: string): void {
  principal.requireRealm(permission, realmOf(app, workPlanId), workPlanId);
}

/**
 * `--runner-type-realms shell=trusted`: a stage whose runner_type is listed may be written only into workplans of
 * the listed realms, so a writer in one realm cannot reach another realm's agents.
 */
export function requireRunnerTypesTargetable(
  app: Orchestrator,
  auth: Authenticator | undefined,
  workPlanId: string,
  stages: readonly { runnerType?: string | undefined }[],
): void {
  if (!auth) return;
  const realm = realmOf(app, workPlanId);
  if (realm === undefined) return; // the write itself answers NOT_FOUND (or the realm check already denied it)
  stages.forEach((s, i) => {
    if (s.runnerType && !auth.mayTarget(s.runnerType, realm)) {
      throw permissionDenied(`runner type "${s.runnerType}" may not be targeted from realm "${realm}"`, `stages[${i}].runner_type`);
    }
  });
}
