// What the JSON API answers, built from the application layer's read models and the event log tooling (the same
// code the gRPC services and the `turboci` commands use). Nodes are sent in their domain form: plain JSON.
import { describeChange, describeEvent, describeOrigin } from '../app/eventlog/describe.js';
import { explainNode, type Explanation } from '../app/eventlog/explain.js';
import { readEventPage } from '../app/eventlog/queries.js';
import { replayWorkPlan } from '../app/eventlog/replay.js';
import type { Orchestrator } from '../app/orchestrator.js';
import type { PullService } from '../app/pull-service.js';
import { invalidArgument, notFound } from '../domain/errors.js';
import { eventNode, type RecordedEvent } from '../domain/events.js';
import { checkHasFailure, CHECK_STATES, STAGE_STATES, type Check, type Stage, type WorkPlanMeta } from '../domain/model.js';
import type { WorkPlanModel } from '../../projections/workplan-model.js';

export interface WorkPlanSummary {
  readonly id: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly version: number;
  readonly checks: Record<string, number>;
  readonly stages: Record<string, number>;
  /** Every node FINAL (and at least one node). */
  readonly complete: boolean;
  /** A check result or a stage carries a failure. */
  readonly failed: boolean;
}

export function summarize(model: WorkPlanModel): WorkPlanSummary {
  const checks: Record<string, number> = Object.fromEntries(CHECK_STATES.map((s) => [s, 0]));
  const stages: Record<string, number> = Object.fromEntries(STAGE_STATES.map((s) => [s, 0]));
  let failed = false;
  let open = 0;
  for (const c of model.checks.values()) {
    checks[c.state] = (checks[c.state] ?? 0) + 1;
    if (c.state !== 'FINAL') open++;
    if (!failed && checkHasFailure(c)) failed = true;
  }
  for (const s of model.stages.values()) {
    stages[s.state] = (stages[s.state] ?? 0) + 1;
    if (s.state !== 'FINAL') open++;
    if (s.failure) failed = true;
  }
  const m = model.meta;
  return {
    id: m.id,
    metadata: m.metadata,
    createdAt: iso(m.createdAt),
    updatedAt: iso(m.updatedAt),
    version: m.version,
    checks,
    stages,
    complete: open === 0 && model.checks.size + model.stages.size > 0,
    failed,
  };
}

/** `repo=x,branch=main` → every pair must match the workplan's metadata. */
export type MetadataFilter = ReadonlyArray<readonly [string, string]>;

export const matchesMetadata = (meta: WorkPlanMeta, filter: MetadataFilter): boolean => filter.every(([k, v]) => meta.metadata[k] === v);

/** The most recently updated workplans matching the filter. */
export function listWorkPlans(app: Orchestrator, filter: MetadataFilter, limit: number): { workPlans: WorkPlanSummary[]; total: number } {
  const models: WorkPlanModel[] = [];
  for (const id of app.models.workplanIds()) {
    const model = app.models.workplan(id)!;
    if (matchesMetadata(model.meta, filter)) models.push(model);
  }
  models.sort((a, b) => b.meta.updatedAt - a.meta.updatedAt || b.meta.createdAt - a.meta.createdAt);
  return { workPlans: models.slice(0, limit).map(summarize), total: models.length };
}

export function workPlanSummary(app: Orchestrator, id: string): WorkPlanSummary {
  app.getWorkPlan(id); // NOT_FOUND for an unknown workplan
  return summarize(app.models.workplan(id)!);
}

export interface WorkPlanState {
  readonly workPlan: WorkPlanSummary;
  /** The workplan's current version (the state may be older). */
  readonly current: number;
  readonly version: number;
  readonly checks: Check[];
  readonly stages: Stage[];
  /** With a version: the event at that version and the fields it changed. */
  readonly event?: EventView & { readonly changes: string[] };
}

/** The workplan now, or as of a stream version folded from the log by the projections (as GetWorkPlanAt does). */
export async function workPlanState(app: Orchestrator, id: string, version: number | undefined): Promise<WorkPlanState> {
  const current = app.getWorkPlan(id).version; // NOT_FOUND for an unknown workplan
  if (version === undefined) {
    const model = app.models.workplan(id)!;
    return { workPlan: summarize(model), current, version: current, ...nodes(model) };
  }
  if (version > current) throw invalidArgument(`the workplan is at version ${current}`, 'version');
  let event: WorkPlanState['event'];
  const model = await replayWorkPlan(app.readStream(id, { toVersion: version }), id, { version }, (rec, before, after) => {
    if (rec.version === version) event = { ...eventView(rec), changes: describeChange(before, after) };
  });
  if (!model) throw notFound(`no workplan "${id}"`, 'work_plan_id');
  return { workPlan: summarize(model), current, version, ...nodes(model), ...(event ? { event } : {}) };
}

const byCreation = <T extends { createdAtVersion: number }>(a: T, b: T) => a.createdAtVersion - b.createdAtVersion;
const nodes = (model: WorkPlanModel) => ({
  checks: [...model.checks.values()].sort(byCreation),
  stages: [...model.stages.values()].sort(byCreation),
});

export interface EventView {
  readonly version: number;
  readonly type: string;
  /** `check:<id>`, `stage:<id>`, or null for the workplan's own events. */
  readonly node: string | null;
  readonly summary: string;
  readonly origin: string;
  readonly recordedAt: string;
  readonly requestId: string | null;
  readonly causedByVersion: number | null;
}

export function eventView(rec: RecordedEvent): EventView {
  const about = eventNode(rec.event);
  return {
    version: rec.version,
    type: rec.event.type,
    node: about ? `${about.kind}:${about.id}` : null,
    summary: describeEvent(rec.event),
    origin: describeOrigin(rec),
    recordedAt: iso(rec.recordedAt),
    requestId: rec.causation.requestId,
    causedByVersion: rec.causation.causedByVersion,
  };
}

export function eventPage(
  app: Orchestrator,
  q: { workPlanId: string; after: number; limit: number; types: readonly string[] },
): { events: EventView[]; next: number | null; version: number } {
  const page = readEventPage(app, { workPlanId: q.workPlanId, afterVersion: q.after, toVersion: 0, types: q.types, pageSize: q.limit, resumeAfter: 0 });
  return { events: page.events.map(eventView), next: page.next, version: page.version };
}

/** `turboci explain`: the node's history, each transition with its chain of causes back to a client request. */
export async function explain(app: Orchestrator, id: string, node: string): Promise<Explanation> {
  app.getWorkPlan(id); // NOT_FOUND for an unknown workplan
  const out = await explainNode(app.readStream(id), id, node);
  if (!out || out.current === null) throw notFound(`no node "${node}" in workplan "${id}"`, 'node');
  return out;
}

export interface RunnersView {
  readonly now: string;
  readonly push: {
    readonly registrationId: string;
    readonly runnerId: string;
    readonly runnerType: string;
    readonly address: string;
    readonly modes: readonly string[];
    readonly maxConcurrent: number;
    readonly load: number;
    readonly ttlSeconds: number;
    readonly registeredAt: string;
    readonly lastHeartbeat: string;
    readonly expiresAt: string;
    readonly running: { workPlanId: string; stageId: string; idx: number; executionId: string; mode: string; deadline: string }[];
  }[];
  readonly pull: {
    readonly runnerId: string;
    readonly runnerType: string;
    readonly labels: Readonly<Record<string, string>>;
    /** Last Lease call (null when only its leases are known, e.g. after a restart). */
    readonly lastSeen: string | null;
    readonly waiting: boolean;
    readonly leases: { workPlanId: string; stageId: string; idx: number; leaseId: string; expiresAt: string; runDeadline: string }[];
  }[];
}

/** Push runners (registrations, load, what they run) and pull agents (what they lease), from the read models. */
export function runnersView(app: Orchestrator, pull: PullService | undefined): RunnersView {
  const running = new Map<string, RunnersView['push'][number]['running']>();
  for (const ex of app.models.executions.inFlight()) {
    const list = running.get(ex.registrationId) ?? [];
    list.push({ workPlanId: ex.workPlanId, stageId: ex.stageId, idx: ex.idx, executionId: ex.executionId, mode: ex.mode, deadline: iso(ex.deadline) });
    running.set(ex.registrationId, list);
  }
  const push = [...app.models.runners.registrations()]
    .map((r) => ({
      registrationId: r.registrationId,
      runnerId: r.runnerId,
      runnerType: r.runnerType,
      address: r.address,
      modes: r.supportedModes.length ? r.supportedModes : ['SYNC'],
      maxConcurrent: r.maxConcurrent,
      load: app.models.executions.load(r.registrationId),
      ttlSeconds: r.ttlSeconds,
      registeredAt: iso(r.registeredAt),
      lastHeartbeat: iso(r.lastHeartbeat),
      expiresAt: iso(r.expiresAt),
      running: running.get(r.registrationId) ?? [],
    }))
    .sort((a, b) => a.runnerType.localeCompare(b.runnerType) || a.runnerId.localeCompare(b.runnerId));

  const agents = new Map<string, RunnersView['pull'][number]>();
  const seen = pull?.agents() ?? new Map();
  for (const [runnerId, a] of seen) {
    agents.set(runnerId, { runnerId, runnerType: a.runnerType, labels: a.labels, lastSeen: iso(a.lastSeen), waiting: a.waiting, leases: [] });
  }
  for (const l of app.models.leases.activeLeases()) {
    let agent = agents.get(l.runnerId);
    if (!agent) agents.set(l.runnerId, (agent = { runnerId: l.runnerId, runnerType: l.runnerType, labels: {}, lastSeen: null, waiting: false, leases: [] }));
    agent.leases.push({ workPlanId: l.workPlanId, stageId: l.stageId, idx: l.idx, leaseId: l.leaseId, expiresAt: iso(l.expiresAt), runDeadline: iso(l.runDeadline) });
  }
  const pullList = [...agents.values()].sort((a, b) => a.runnerType.localeCompare(b.runnerType) || a.runnerId.localeCompare(b.runnerId));
  return { now: iso(app.now()), push, pull: pullList };
}

const iso = (ms: number) => new Date(ms).toISOString();
