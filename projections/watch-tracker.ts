// The watch projection: one workplan's nodes, folded event by event with the same domain evolve functions as the
// read models (projections/checks.ts, stages.ts, workplans.ts), so a watcher sees every node exactly as it stood right
// after each event, not after the whole batch it came in.
import { WORKPLAN_EVENT_TYPES, type RecordedEvent } from '../src/domain/events.js';
import type { Projection } from './projection.js';
import { evolveCheck, evolveStage, evolveWorkPlan, isCheckEvent, isStageEvent } from '../src/domain/evolve.js';
import { checkHasFailure, type Check, type Stage, type WorkPlanMeta } from '../src/domain/model.js';

/** How far a workplan is: what WorkPlanCompletedEvent reports. */
export interface Completion {
  readonly checksCompleted: number;
  readonly stagesCompleted: number;
  readonly hasFailures: boolean;
}

/** One node change: the node before (undefined when the event created it) and right after the event. */
export type NodeChange =
  | { readonly kind: 'check'; readonly before: Check | undefined; readonly after: Check }
  | { readonly kind: 'stage'; readonly before: Stage | undefined; readonly after: Stage };

/** What one event did, as a watcher sees it. */
export interface WatchStep {
  readonly version: number;
  readonly recordedAt: number;
  /** Who made the change and why (causation). */
  readonly principal?: string | null;
  readonly reason?: string | null;
  /** Null for the workplan's own events (WorkPlanCreated). */
  readonly change: NodeChange | null;
  /** Set when this event made every node of the workplan FINAL (it was not so right before). */
  readonly completed: Completion | null;
}

/**
 * A workplan's nodes, and counters that say whether every node is FINAL and whether any failed. It keeps only what
 * watching needs (no dependency indexes: the resolver never runs on a tracker).
 */
export class WatchTracker implements Projection {
  readonly name = 'watch';
  readonly handles = WORKPLAN_EVENT_TYPES;
  private readonly checks = new Map<string, Check>();
  private readonly stages = new Map<string, Stage>();
  private nodes = 0;
  private notFinal = 0;
  private finalChecks = 0;
  private finalStages = 0;
  private failed = 0;
  /** When the workplan last became complete (all nodes FINAL), in epoch ms. */
  private completedAt = 0;
  private meta: WorkPlanMeta | undefined;

  private constructor(meta: WorkPlanMeta | undefined) {
    this.meta = meta;
  }

  /** A tracker for a stream read from its beginning (feed it every event from version 1). */
  static empty(): WatchTracker {
    return new WatchTracker(undefined);
  }

  /** A tracker starting from a committed state (the nodes are immutable values, so this is a cheap copy). */
  static from(view: { meta: WorkPlanMeta; checks: ReadonlyMap<string, Check>; stages: ReadonlyMap<string, Stage> }): WatchTracker {
    const t = new WatchTracker(view.meta);
    for (const c of view.checks.values()) t.putCheck(c);
    for (const s of view.stages.values()) t.putStage(s);
    t.completedAt = view.meta.updatedAt;
    return t;
  }

  get version(): number {
    return this.meta?.version ?? 0;
  }

  /** Every node is FINAL (and there is at least one). */
  get complete(): boolean {
    return this.nodes > 0 && this.notFinal === 0;
  }

  completion(): Completion {
    return { checksCompleted: this.finalChecks, stagesCompleted: this.finalStages, hasFailures: this.failed > 0 };
  }

  /** When the current completion happened (only meaningful while `complete`). */
  get lastCompletedAt(): number {
    return this.completedAt;
  }

  /** Checks, then stages, each in creation order. */
  nodesInOrder(): { checks: Check[]; stages: Stage[] } {
    const byCreation = <T extends { createdAtVersion: number }>(m: Map<string, T>) =>
      [...m.values()].sort((a, b) => a.createdAtVersion - b.createdAtVersion);
    return { checks: byCreation(this.checks), stages: byCreation(this.stages) };
  }

  /** Folds one event of this workplan's stream and says what it changed. */
  fold(rec: RecordedEvent): WatchStep {
    const wasComplete = this.complete;
    const e = rec.event;
    let change: NodeChange | null = null;
    if (isCheckEvent(e)) {
      const before = this.checks.get(e.data.checkId);
      const after = (rec.node as Check | undefined) ?? evolveCheck(before, e, rec);
      this.putCheck(after);
      change = { kind: 'check', before, after };
    } else if (isStageEvent(e)) {
      const before = this.stages.get(e.data.stageId);
      const after = (rec.node as Stage | undefined) ?? evolveStage(before, e, rec);
      this.putStage(after);
      change = { kind: 'stage', before, after };
    }
    this.meta = evolveWorkPlan(this.meta, e, rec, rec.streamId);
    const completed = !wasComplete && this.complete ? this.completion() : null;
    if (completed) this.completedAt = rec.recordedAt;
    return { version: rec.version, recordedAt: rec.recordedAt, change, completed, principal: rec.causation.principal ?? null, reason: rec.causation.reason ?? null };
  }

  private putCheck(check: Check): void {
    this.count(this.checks.get(check.id), -1);
    this.checks.set(check.id, check);
    this.count(check, +1);
  }
  private putStage(stage: Stage): void {
    this.count(this.stages.get(stage.id), -1);
    this.stages.set(stage.id, stage);
    this.count(stage, +1);
  }

  private count(node: Check | Stage | undefined, sign: 1 | -1): void {
    if (!node) return;
    this.nodes += sign;
    const isCheck = 'results' in node;
    if (node.state !== 'FINAL') this.notFinal += sign;
    else if (isCheck) this.finalChecks += sign;
    else this.finalStages += sign;
    if (isCheck ? checkHasFailure(node) : node.failure !== null) this.failed += sign;
  }
}
