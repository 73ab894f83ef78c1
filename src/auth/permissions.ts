// Roles, the permissions they grant, and the permission every RPC needs: the one table the transport checks.
import type { Role } from '../domain/decide-tokens.js';

export const PERMISSIONS = [
  'workplans.read', // GetWorkPlan, QueryNodes, WatchWorkPlan (in the token's realms)
  'workplans.create', // CreateWorkPlan (in the token's realms)
  'workplans.write', // WriteNodes (in the token's realms)
  'workplans.approve', // approval gates (kept for them)
  'eventlog.read', // ReadEvents, GetWorkPlanAt, GetReadModelDigest (in the token's realms)
  'runners.list', // ListStageRunners
  'runners.register', // RegisterStageRunner, UnregisterStageRunner (for the token's runner types)
  'runners.lease', // Lease, Heartbeat, CompleteLease, Work (for the token's runner types)
  'runners.callback', // UpdateStageExecution, CompleteStageExecution (executions dispatched to the token's runners)
  'tokens.manage', // creating and revoking tokens
] as const;
export type Permission = (typeof PERMISSIONS)[number];

const READER: readonly Permission[] = ['workplans.read', 'eventlog.read', 'runners.list'];

export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  reader: READER,
  writer: [...READER, 'workplans.create', 'workplans.write'],
  runner: ['runners.register', 'runners.lease', 'runners.callback'],
  approver: [...READER, 'workplans.approve'],
  admin: PERMISSIONS,
};

/** Permissions that apply within realms (the workplan's), and those that apply to runner types. */
export const REALM_SCOPED: ReadonlySet<Permission> = new Set(['workplans.read', 'workplans.create', 'workplans.write', 'workplans.approve', 'eventlog.read']);

/**
 * The permission each RPC needs, by the method name its handler is registered under. An RPC missing here is
 * refused to every token but an admin's (fail closed): add new RPCs here.
 */
export const METHOD_PERMISSIONS: Readonly<Record<string, Permission>> = {
  CreateWorkPlan: 'workplans.create',
  GetWorkPlan: 'workplans.read',
  WriteNodes: 'workplans.write',
  QueryNodes: 'workplans.read',
  WatchWorkPlan: 'workplans.read',
  RegisterStageRunner: 'runners.register',
  UnregisterStageRunner: 'runners.register',
  ListStageRunners: 'runners.list',
  UpdateStageExecution: 'runners.callback',
  CompleteStageExecution: 'runners.callback',
  ReadEvents: 'eventlog.read',
  GetWorkPlanAt: 'eventlog.read',
  GetReadModelDigest: 'eventlog.read',
  Lease: 'runners.lease',
  Heartbeat: 'runners.lease',
  CompleteLease: 'runners.lease',
  Work: 'runners.lease',
  Approve: 'workplans.approve',
};
