// decide(WriteNodes, draft) → events. Pure: reads and folds into the decision's draft, returns the events the request
// amounts to, or throws a DomainError and nothing happens. The resolver continues on the same draft.
import type { AttemptWriteInput, CheckWriteInput, DecideContext, FailureInput, StageWriteInput, WriteNodes } from './commands.js';
import { allEdges, groupField, walkGroups } from './dependency-groups.js';
import { failedPrecondition, invalidArgument, resourceExhausted } from './errors.js';
import { bytesText, capText, limits, utf8Bytes } from './limits.js';
import type { DomainEvent, EventOf, PendingEvent } from './events.js';
import {
  currentAttempt,
  isTerminalAttempt,
  jsonEqual,
  mergeJson,
  NO_POLICY,
  nodeKey,
  parseNodeKey,
  type AttemptState,
  type Attempt,
  type Check,
  type JsonObject,
  type CheckState,
  type DependencyGroup,
  type ExecutionPolicy,
  type Failure,
  type NodeKey,
  type Stage,
  type StageState,
} from './model.js';
import type { WorkPlanDraft } from './workplan-draft.js';

const CLIENT_CHECK_TRANSITIONS: ReadonlySet<string> = new Set([
  'PLANNING>PLANNED',
  'PLANNING>FINAL',
  'PLANNED>FINAL',
  'WAITING>FINAL',
]);
const ATTEMPT_TRANSITIONS: ReadonlySet<string> = new Set([
  'PENDING>SCHEDULED',
  'PENDING>RUNNING',
  'PENDING>INCOMPLETE',
  'SCHEDULED>RUNNING',
  'SCHEDULED>INCOMPLETE',
  'RUNNING>COMPLETE',
  'RUNNING>INCOMPLETE',
]);
const CANCELLED = 'stage cancelled: a client set it FINAL';

/** Where a node's dependency group was set in this request, for cycle and dangling-target errors. */
interface DependencySource {
  readonly key: NodeKey;
  readonly field: string;
}

/** Non-zero fields of `patch` replace those of `base`. */
const mergePolicy = (base: ExecutionPolicy, patch: Partial<ExecutionPolicy>): ExecutionPolicy => ({
  pickupTimeoutMs: patch.pickupTimeoutMs || base.pickupTimeoutMs,
  runTimeoutMs: patch.runTimeoutMs || base.runTimeoutMs,
  heartbeatIntervalMs: patch.heartbeatIntervalMs || base.heartbeatIntervalMs,
  retryBackoffMs: patch.retryBackoffMs || base.retryBackoffMs,
});

/**
 * decide(WriteNodes, draft) → the events the request amounts to, each emitted into (and folded by) the draft, or a
 * DomainError and the draft is dropped.
 */
export function decideWriteNodes(command: WriteNodes, draft: WorkPlanDraft, ctx: DecideContext): PendingEvent[] {
  const from = draft.events.length;
  new WriteNodesDecision(draft, ctx).run(command);
  return draft.events.slice(from);
}

class WriteNodesDecision {
  private readonly dependencySources: DependencySource[] = [];
  /** True once an existing node's outgoing edges change: only then can a cycle run through old nodes. */
  private oldEdgesChanged = false;

  constructor(
    private readonly draft: WorkPlanDraft,
    private readonly ctx: DecideContext,
  ) {}

  private viaRunner = false;

  run(command: WriteNodes): void {
    this.viaRunner = command.viaRunner === true;
    command.checks.forEach((w, i) => this.writeCheck(w, `checks[${i}]`));
    command.stages.forEach((w, i) => this.writeStage(w, `stages[${i}]`));
    this.validateReferences(command);
    this.rejectCycles();
  }

  private check(id: string): Check | undefined {
    return this.draft.check(id);
  }

  private stage(id: string): Stage | undefined {
    return this.draft.stage(id);
  }

  /** Emits into the draft; returns the event's stream version. */
  private emit(event: DomainEvent, causedByVersion: number | null = null): number {
    this.draft.emit(event, causedByVersion);
    return this.draft.meta.version;
  }

  private failure(input: FailureInput): Failure {
    return { message: input.message, occurredAt: input.occurredAt ?? this.ctx.now };
  }

  // ---- checks

  private writeCheck(w: CheckWriteInput, f: string): void {
    let check = this.check(w.id);
    if (!check) {
      if (w.state === 'WAITING') {
        throw failedPrecondition('a check cannot be created WAITING: the resolver moves it there once it is PLANNED', `${f}.state`);
      }
      this.emit({
        type: 'CheckCreated',
        data: {
          checkId: w.id,
          // Created in the state the write asks for when that is PLANNED (semantics: "created in PLANNING unless the
          // write sets PLANNED"): one event, not a creation and a move. FINAL stays a move, after any result.
          ...(w.state === 'PLANNED' ? { state: 'PLANNED' as const } : {}),
          kind: w.kind ?? '',
          options: w.options ?? {},
          dependencies: w.dependencies ?? null,
          ...(w.gate ? { gate: w.gate } : {}),
        },
      });
      if (w.dependencies) this.dependencySources.push({ key: nodeKey({ kind: 'check', id: w.id }), field: `${f}.dependencies` });
    } else {
      if (check.state === 'FINAL') throw failedPrecondition(`check "${w.id}" is FINAL and takes no more writes`, f);
      if (w.gate && !jsonEqual(w.gate, check.gate)) {
        throw failedPrecondition(`approval_gate of check "${w.id}" may be set only when the check is created`, `${f}.approval_gate`);
      }
      this.amendCheck(check, w, f);
    }
    check = this.check(w.id)!;
    if (w.result) {
      const r = w.result;
      this.emit({
        type: 'CheckResultAdded',
        data: {
          checkId: w.id,
          resultId: check.results.length + 1,
          ownerType: r.ownerType,
          ownerId: r.ownerId,
          data: r.data,
          failure: r.failure ? this.failure(r.failure) : null,
          finalized: r.finalize,
        },
      });
    }
    if (w.state && w.state !== check.state) this.moveCheck(check, w.state, `${f}.state`);
  }

  private amendCheck(check: Check, w: CheckWriteInput, f: string): void {
    const data: EventOf<'CheckAmended'>['data'] = { checkId: check.id };
    const changed: string[] = [];
    if (w.kind !== undefined && w.kind !== check.kind) {
      data.kind = w.kind;
      changed.push('kind');
    }
    if (w.options && !jsonEqual(mergeJson(check.options, w.options), check.options)) {
      data.options = w.options;
      changed.push('options');
    }
    if (w.dependencies && !jsonEqual(w.dependencies, check.dependencies)) {
      data.dependencies = w.dependencies;
      changed.push('dependencies');
    }
    if (changed.length === 0) return;
    if (check.state !== 'PLANNING') {
      throw failedPrecondition(
        `${changed[0]} of check "${check.id}" may change only while it is PLANNING; it is ${check.state}`,
        `${f}.${changed[0]}`,
      );
    }
    if (data.dependencies) {
      this.dependencySources.push({ key: nodeKey({ kind: 'check', id: check.id }), field: `${f}.dependencies` });
      this.oldEdgesChanged = true;
    }
    this.emit({ type: 'CheckAmended', data });
  }

  private moveCheck(check: Check, to: CheckState, f: string): void {
    if (to === 'FINAL' && check.gate) {
      throw failedPrecondition(
        `check "${check.id}" is an approval gate: only Approve (or its deadline) makes it FINAL`,
        f,
      );
    }
    if (!CLIENT_CHECK_TRANSITIONS.has(`${check.state}>${to}`)) {
      const hint = to === 'WAITING' ? ' (the resolver moves a PLANNED check to WAITING when its dependencies are satisfied)' : '';
      throw failedPrecondition(`check "${check.id}" cannot move from ${check.state} to ${to}${hint}`, f);
    }
    this.emit({ type: 'CheckStateChanged', data: { checkId: check.id, from: check.state, to } });
  }

  // ---- stages

  private writeStage(w: StageWriteInput, f: string): void {
    const existing = this.stage(w.id);
    if (!existing) {
      this.emit({
        type: 'StageCreated',
        data: {
          stageId: w.id,
          args: w.args ?? {},
          assignments: [...(w.assignments ?? [])],
          dependencies: w.dependencies ?? null,
          executionMode: w.executionMode ?? 'SYNC',
          runnerType: w.runnerType ?? '',
          maxAttempts: w.maxAttempts ?? this.ctx.defaultMaxAttempts,
          parentStageId: w.parentStageId ?? '',
          attemptTimeoutSeconds: w.attemptTimeoutSeconds ?? 0,
          ...(w.priority !== undefined ? { priority: w.priority } : {}),
          ...(w.policy !== undefined ? { policy: mergePolicy(NO_POLICY, w.policy) } : {}),
        },
      });
      if (w.dependencies) this.dependencySources.push({ key: nodeKey({ kind: 'stage', id: w.id }), field: `${f}.dependencies` });
      if (w.parentStageId && this.draft.committed.stage(w.parentStageId)) this.oldEdgesChanged = true;
    } else {
      this.amendStage(existing, w, f);
    }
    let completedNow = false;
    if (w.currentAttempt) completedNow = this.writeAttempt(this.stage(w.id)!, w.currentAttempt, `${f}.current_attempt`);
    const stage = this.stage(w.id)!;
    if (w.state && w.state !== stage.state) this.moveStage(stage, w.state, `${f}.state`, completedNow);
  }

  private amendStage(stage: Stage, w: StageWriteInput, f: string): void {
    const data: EventOf<'StageAmended'>['data'] = { stageId: stage.id };
    const changed: string[] = [];
    if (w.args && !jsonEqual(mergeJson(stage.args, w.args), stage.args)) {
      data.args = w.args;
      changed.push('args');
    }
    if (w.assignments && !jsonEqual(w.assignments, stage.assignments)) {
      data.assignments = [...w.assignments];
      changed.push('assignments');
    }
    if (w.dependencies && !jsonEqual(w.dependencies, stage.dependencies)) {
      data.dependencies = w.dependencies;
      changed.push('dependencies');
    }
    if (w.executionMode !== undefined && w.executionMode !== stage.executionMode) {
      data.executionMode = w.executionMode;
      changed.push('execution_mode');
    }
    if (w.runnerType !== undefined && w.runnerType !== stage.runnerType) {
      data.runnerType = w.runnerType;
      changed.push('runner_type');
    }
    if (w.maxAttempts !== undefined && w.maxAttempts !== stage.maxAttempts) {
      data.maxAttempts = w.maxAttempts;
      changed.push('max_attempts');
    }
    if (w.parentStageId !== undefined && w.parentStageId !== stage.parentStageId) {
      data.parentStageId = w.parentStageId;
      changed.push('parent_stage_id');
    }
    if (w.attemptTimeoutSeconds !== undefined && w.attemptTimeoutSeconds !== stage.attemptTimeoutSeconds) {
      data.attemptTimeoutSeconds = w.attemptTimeoutSeconds;
      changed.push('attempt_timeout_seconds');
    }
    if (w.priority !== undefined && w.priority !== stage.priority) {
      data.priority = w.priority;
      changed.push('priority');
    }
    if (w.policy !== undefined && !jsonEqual(mergePolicy(stage.policy, w.policy), stage.policy)) {
      data.policy = mergePolicy(stage.policy, w.policy);
      changed.push('execution_policy');
    }
    if (changed.length === 0) return;
    if (stage.state !== 'PLANNED') {
      throw failedPrecondition(
        `${changed[0]} of stage "${stage.id}" may change only while it is PLANNED; it is ${stage.state}`,
        `${f}.${changed[0]}`,
      );
    }
    if (data.dependencies) {
      this.dependencySources.push({ key: nodeKey({ kind: 'stage', id: stage.id }), field: `${f}.dependencies` });
      this.oldEdgesChanged = true;
    }
    if (data.parentStageId) this.oldEdgesChanged = true;
    this.emit({ type: 'StageAmended', data });
  }

  /** Applies an AttemptWrite to the current attempt; returns true when it completed the attempt. */
  private writeAttempt(stage: Stage, w: AttemptWriteInput, f: string): boolean {
    const attempt = currentAttempt(stage);
    if (!attempt) {
      throw failedPrecondition(`stage "${stage.id}" has no attempt yet (it is ${stage.state})`, f);
    }
    if (!this.viaRunner && !isTerminalAttempt(attempt.state) && (attempt.execution || attempt.lease)) {
      const by = attempt.execution
        ? `was dispatched to runner "${attempt.execution.runnerId}": only its callbacks (UpdateStageExecution, CompleteStageExecution)`
        : `is leased by runner "${attempt.lease!.runnerId}": only its lease token (Heartbeat, CompleteLease)`;
      throw failedPrecondition(`attempt ${attempt.idx} of stage "${stage.id}" ${by} may write it; set the stage FINAL to cancel it`, f);
    }
    if (w.failure && w.state === 'COMPLETE') {
      throw invalidArgument('an attempt cannot be COMPLETE with a failure; send INCOMPLETE (or no state)', `${f}.failure`);
    }
    if (w.processUid && attempt.processUid && w.processUid !== attempt.processUid) {
      throw failedPrecondition(
        `attempt ${attempt.idx} of stage "${stage.id}" is claimed by "${attempt.processUid}"`,
        `${f}.process_uid`,
      );
    }
    const claims = w.processUid && !attempt.processUid && (attempt.state === 'PENDING' || attempt.state === 'SCHEDULED');
    const target: AttemptState | undefined = w.state ?? (w.failure ? 'INCOMPLETE' : claims ? 'RUNNING' : undefined);
    const changesState = target !== undefined && target !== attempt.state;
    const hasDetails = w.details !== undefined && !jsonEqual(mergeJson(attempt.details, w.details), attempt.details);

    if (isTerminalAttempt(attempt.state) && (changesState || hasDetails || w.progress)) {
      throw failedPrecondition(`attempt ${attempt.idx} of stage "${stage.id}" is ${attempt.state} and takes no more writes`, f);
    }
    if (changesState && !ATTEMPT_TRANSITIONS.has(`${attempt.state}>${target}`)) {
      throw failedPrecondition(`attempt ${attempt.idx} of stage "${stage.id}" cannot move from ${attempt.state} to ${target}`, `${f}.state`);
    }
    const uid = w.processUid || attempt.processUid;
    if (changesState && target === 'RUNNING' && !uid) {
      throw invalidArgument('an attempt enters RUNNING only with the process_uid of its claimer', `${f}.process_uid`);
    }

    if (hasDetails) this.emit({ type: 'StageAttemptDetailsMerged', data: { stageId: stage.id, idx: attempt.idx, details: w.details! } });
    if (w.progress) {
      const p = w.progress;
      checkProgressRoom(stage.id, attempt, progressBytes(p), `${f}.progress`);
      this.emit({
        type: 'StageAttemptProgressAppended',
        data: { stageId: stage.id, idx: attempt.idx, message: p.message, timestamp: p.timestamp ?? null, details: p.details },
      });
    }
    if (!changesState) return false;
    const failure = target === 'INCOMPLETE' ? this.failure(w.failure ?? { message: 'attempt reported INCOMPLETE without a failure' }) : null;
    // A completed attempt ends the stage, in the same event: FINAL, unless child stages are still running (the group).
    const stageTo: 'AWAITING_GROUP' | 'FINAL' | undefined =
      target !== 'COMPLETE' ? undefined : [...this.draft.children(stage.id)].some((c) => this.stage(c)?.state !== 'FINAL') ? 'AWAITING_GROUP' : 'FINAL';
    this.emit({
      type: 'StageAttemptStateChanged',
      data: {
        stageId: stage.id,
        idx: attempt.idx,
        from: attempt.state,
        to: target,
        processUid: target === 'RUNNING' ? uid : '',
        failure,
        ...(w.completion ? { completion: w.completion } : {}),
        ...(stageTo ? { stageTo } : {}),
      },
    });
    return target === 'COMPLETE';
  }

  private moveStage(stage: Stage, to: StageState, f: string, completedNow: boolean): void {
    if (to === 'FINAL' && stage.state === 'AWAITING_GROUP' && completedNow) {
      return; // compat: FINAL sent with current_attempt COMPLETE; the stage still waits for its children
    }
    if (to !== 'FINAL' || (stage.state !== 'PLANNED' && stage.state !== 'ATTEMPTING')) {
      const hint =
        to === 'ATTEMPTING'
          ? ' (the resolver starts a stage when its dependencies are satisfied)'
          : stage.state === 'AWAITING_GROUP'
            ? ' (it goes FINAL when its child stages are FINAL)'
            : '';
      throw failedPrecondition(`stage "${stage.id}" cannot move from ${stage.state} to ${to}${hint}`, f);
    }
    // Cancellation: an unfinished attempt becomes INCOMPLETE, and the stage records why it ended.
    const attempt = currentAttempt(stage);
    const failure = { message: CANCELLED, occurredAt: this.ctx.now };
    if (attempt && !isTerminalAttempt(attempt.state)) {
      this.emit({
        type: 'StageAttemptStateChanged',
        data: { stageId: stage.id, idx: attempt.idx, from: attempt.state, to: 'INCOMPLETE', processUid: '', failure },
      });
    }
    this.emit({ type: 'StageStateChanged', data: { stageId: stage.id, from: stage.state, to: 'FINAL', failure } });
  }

  // ---- whole-request validation, once every write is applied

  private validateReferences(command: WriteNodes): void {
    const exists = (kind: 'check' | 'stage', id: string) => (kind === 'check' ? this.check(id) : this.stage(id)) !== undefined;
    const checkGroup = (root: DependencyGroup | undefined, f: string) => {
      for (const { group, path } of walkGroups(root ?? null)) {
        group.edges.forEach((e, j) => {
          if (!exists(e.kind, e.id)) {
            throw invalidArgument(`no ${e.kind} "${e.id}" in this workplan`, `${groupField(`${f}.dependencies`, path)}.dependencies[${j}].target_id`);
          }
        });
      }
    };
    command.checks.forEach((w, i) => checkGroup(w.dependencies, `checks[${i}]`));
    command.stages.forEach((w, i) => {
      const f = `stages[${i}]`;
      checkGroup(w.dependencies, f);
      w.assignments?.forEach((a, j) => {
        const check = this.check(a.checkId);
        if (!check) {
          throw invalidArgument(`no check "${a.checkId}" in this workplan`, `${f}.assignments[${j}].target_check_id`);
        }
        if (check.gate) {
          throw failedPrecondition(
            `check "${a.checkId}" is an approval gate: only Approve (or its deadline) makes it FINAL, so no stage may be assigned to it`,
            `${f}.assignments[${j}].target_check_id`,
          );
        }
      });
      if (w.parentStageId) this.validateParent(w.id, w.parentStageId, `${f}.parent_stage_id`);
    });
  }

  private validateParent(id: string, parentId: string, f: string): void {
    const parent = this.stage(parentId);
    if (!parent) throw invalidArgument(`no stage "${parentId}" in this workplan`, f);
    if (parent.state === 'FINAL') throw failedPrecondition(`parent stage "${parentId}" is FINAL`, f);
    const seen = new Set<string>([id]);
    for (let p: Stage | undefined = parent; p; p = p.parentStageId ? this.stage(p.parentStageId) : undefined) {
      if (seen.has(p.id)) throw invalidArgument(`parent ${cycleText([...seen, p.id])}`, f);
      seen.add(p.id);
    }
  }

  /** A node waits for its dependency targets and (a stage) for its children: a cycle there never resolves. */
  private rejectCycles(): void {
    if (this.dependencySources.length === 0 && !this.oldEdgesChanged) return;
    const fieldOf = new Map(this.dependencySources.map((s) => [s.key, s.field]));
    const changed = (key: NodeKey) => this.draft.touched(parseNodeKey(key));
    const waitsFor = (key: NodeKey): NodeKey[] => {
      const ref = parseNodeKey(key);
      const node = ref.kind === 'check' ? this.check(ref.id) : this.stage(ref.id);
      const out: NodeKey[] = [...allEdges(node?.dependencies ?? null)].map(nodeKey);
      if (ref.kind === 'stage') for (const c of this.draft.children(ref.id)) out.push(nodeKey({ kind: 'stage', id: c }));
      return out;
    };
    const done = new Set<NodeKey>();
    const starts: NodeKey[] = [...this.draft.touchedNodes()].map(nodeKey);
    for (const start of starts) {
      if (done.has(start)) continue;
      // Iterative DFS; `path` holds the grey nodes.
      const path: NodeKey[] = [];
      const onPath = new Set<NodeKey>();
      const stack: { key: NodeKey; next: NodeKey[] }[] = [];
      const enter = (key: NodeKey) => {
        path.push(key);
        onPath.add(key);
        stack.push({ key, next: waitsFor(key) });
      };
      enter(start);
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        const next = top.next.pop();
        if (next === undefined) {
          stack.pop();
          path.pop();
          onPath.delete(top.key);
          done.add(top.key);
          continue;
        }
        if (onPath.has(next)) {
          const cycle = [...path.slice(path.indexOf(next)), next];
          const culprit = cycle.find((k) => fieldOf.has(k)) ?? cycle[0]!;
          throw invalidArgument(`dependency ${cycleText(cycle)}`, fieldOf.get(culprit));
        }
        // Unchanged old nodes only lead to old nodes, which were acyclic, unless old edges changed.
        if (done.has(next) || (!this.oldEdgesChanged && !changed(next))) continue;
        enter(next);
      }
    }
  }
}

/**
 * "cycle: check:a -> check:b -> check:a"; a long one names its first nodes and its length, "cycle of 10000 nodes:
 * check:a -> … 9994 more … -> check:a" (a 10,000-node cycle once made a 1.7 MB status message).
 */
export function cycleText(cycle: readonly string[], show = 6): string {
  const nodes = cycle.length - 1; // the first node closes the cycle again at the end
  const names = cycle.map((k) => capText(k, 80));
  if (nodes <= show) return `cycle: ${names.join(' -> ')}`;
  return `cycle of ${nodes} nodes: ${names.slice(0, show).join(' -> ')} -> … ${nodes - show} more … -> ${names[0]}`;
}

/** What a progress entry weighs against the per-attempt limit: message plus details as JSON, in bytes of UTF-8. */
export const progressBytes = (p: { readonly message: string; readonly details: JsonObject }): number =>
  utf8Bytes(p.message) + utf8Bytes(JSON.stringify(p.details));

/**
 * Progress per attempt is bounded (--max-progress-bytes): an append that would pass the limit is refused with
 * RESOURCE_EXHAUSTED, and nothing already stored is dropped (live and replayed state stay equal whatever the limit).
 */
export function checkProgressRoom(stageId: string, attempt: Attempt, adding: number, field: string): void {
  const max = limits().maxProgressBytes;
  let used = 0;
  for (const p of attempt.progress) used += progressBytes(p);
  if (used + adding > max) {
    throw resourceExhausted(
      `attempt ${attempt.idx} of stage "${capText(stageId, 80)}" holds ${bytesText(used)} of progress; adding ${bytesText(adding)} would pass the ${bytesText(max)} an attempt may keep (--max-progress-bytes)`,
      field,
    );
  }
}
