// Lease tokens and execution ids name the workplan they belong to: `<unique part>.<workplan id, base64url>`. The
// read models index only leases and executions in flight, so a late call about one that ended is answered from
// the workplan its token or id names (PullService.find, RunnerService.execution).

/** `unique` (with no `.` of its own at the end) followed by the workplan it belongs to. */
export function namingWorkPlan(unique: string, workPlanId: string): string {
  return `${unique}.${Buffer.from(workPlanId, 'utf8').toString('base64url')}`;
}

/** The workplan a token or id names; undefined for one issued before they named it (no `.`). */
export function workPlanNamedBy(tokenOrId: string): string | undefined {
  const dot = tokenOrId.lastIndexOf('.'); // base64url has no '.': the last one starts the name
  return dot < 0 ? undefined : Buffer.from(tokenOrId.slice(dot + 1), 'base64url').toString('utf8');
}
