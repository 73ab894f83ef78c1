// The JSON API and the SSE feeds of `turboci serve`, as the page sees them. Node types are the server's domain
// types (type-only imports: nothing of the server is bundled).
import type { Check, Stage } from '../../src/domain/model.js';

export type { Check, Stage };
export type NodeKind = 'check' | 'stage';
export type AnyNode = { kind: 'check'; node: Check } | { kind: 'stage'; node: Stage };

export interface WorkPlanSummary {
  id: string;
  metadata: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  version: number;
  checks: Record<string, number>;
  stages: Record<string, number>;
  complete: boolean;
  failed: boolean;
}

export interface EventView {
  version: number;
  type: string;
  node: string | null;
  summary: string;
  origin: string;
  recordedAt: string;
  requestId: string | null;
  causedByVersion: number | null;
}

export interface WorkPlanState {
  workPlan: WorkPlanSummary;
  current: number;
  version: number;
  checks: Check[];
  stages: Stage[];
  event?: EventView & { changes: string[] };
}

export interface CauseLink {
  version: number;
  type: string;
  summary: string;
  recordedAt: string;
  requestId: string | null;
}
export interface ExplainedEvent extends CauseLink {
  changes: string[];
  causedBy: CauseLink[];
  because: string;
}
export interface Explanation {
  node: { kind: NodeKind; id: string };
  version: number;
  history: ExplainedEvent[];
}

export interface RunnersView {
  now: string;
  push: {
    registrationId: string;
    runnerId: string;
    runnerType: string;
    address: string;
    modes: string[];
    maxConcurrent: number;
    load: number;
    ttlSeconds: number;
    lastHeartbeat: string;
    expiresAt: string;
    running: { workPlanId: string; stageId: string; idx: number; executionId: string; mode: string; deadline: string }[];
  }[];
  pull: {
    runnerId: string;
    runnerType: string;
    labels: Record<string, string>;
    lastSeen: string | null;
    waiting: boolean;
    leases: { workPlanId: string; stageId: string; idx: number; leaseId: string; expiresAt: string; runDeadline: string }[];
  }[];
}

/** One item of a workplan's stream (WatchWorkPlan as JSON). */
export interface StreamItem {
  version: number;
  timestamp: number;
  snapshot: boolean;
  change: { kind: NodeKind; oldState: string | null; node: Check | Stage } | null;
  completed: { checksCompleted: number; stagesCompleted: number; hasFailures: boolean } | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path, { headers: { accept: 'application/json' } });
  const body = (await res.json().catch(() => null)) as ({ error?: { message?: string } } & T) | null;
  if (!res.ok) throw new ApiError(res.status, body?.error?.message ?? `${res.status} ${res.statusText}`);
  return body as T;
}

export const nodeKey = (kind: NodeKind, id: string) => `${kind}:${id}`;
export const enc = encodeURIComponent;
