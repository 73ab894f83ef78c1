// The workplans the scaling and restart benchmarks drive through the application layer, the way a client does
// over WriteNodes: checks and stages written in batches, then every stage's attempt claimed and completed by the
// "runner" that finalizes its check. Shared so both benchmarks exercise (and log) the same realistic event mix.
import type { Orchestrator, WriteNodesResult } from '../src/app/orchestrator.js';
import type { CheckWriteInput, StageWriteInput } from '../src/domain/commands.js';
import { currentAttempt, type DependencyGroup, type Stage } from '../src/domain/model.js';

export const SHAPES = ['chain', 'fan', 'dag', 'nested'] as const;
export type Shape = (typeof SHAPES)[number];

/** Nodes (checks + stages) per creating WriteNodes: large enough to amortize, small enough to be a real request. */
export const WRITE_BATCH_NODES = 500;

/** Seeded PRNG (mulberry32): the random DAG is the same in every run and every process. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const checkId = (i: number) => `check-${i}`;
const stageId = (i: number) => `stage-${i}`;

/**
 * Which earlier pairs pair i waits for (by index). chain: the one before; fan: pair 0 fans out to every middle pair,
 * and the last pair fans in on all of them; dag: up to 3 distinct earlier pairs picked at random; nested: up to 8, in a
 * 3-level nested group (nestedOnChecks).
 */
function predecessors(shape: Shape, i: number, pairs: number, random: () => number): number[] {
  if (i === 0) return [];
  switch (shape) {
    case 'chain':
      return [i - 1];
    case 'fan':
      return i < pairs - 1 || pairs === 2 ? [0] : Array.from({ length: pairs - 2 }, (_, k) => k + 1);
    case 'dag':
    case 'nested': {
      const picked = new Set<number>();
      const want = Math.min(shape === 'nested' ? 8 : 3, i);
      while (picked.size < want) picked.add(Math.floor(random() * i));
      return [...picked].sort((x, y) => x - y);
    }
  }
}

const onChecks = (pairs: readonly number[]): DependencyGroup | undefined =>
  pairs.length === 0 ? undefined : { predicate: 'AND', threshold: 0, edges: pairs.map((p) => ({ kind: 'check', id: checkId(p) })) };

/**
 * The nested shape's 3-level group of 8 edges: (p0 AND p1) OR (p2 AND p3), AND, (p4 AND p5) OR (p6 AND p7). Pairs
 * with fewer than 8 predecessors wait for all of them, flat.
 */
const nestedOnChecks = (pairs: readonly number[]): DependencyGroup | undefined => {
  if (pairs.length < 8) return onChecks(pairs);
  const edges = (a: number, b: number) => ({ predicate: 'AND' as const, threshold: 0, edges: [pairs[a]!, pairs[b]!].map((p) => ({ kind: 'check' as const, id: checkId(p) })) });
  const either = (a: number) => ({ predicate: 'OR' as const, threshold: 0, edges: [], groups: [edges(a, a + 1), edges(a + 2, a + 3)] });
  return { predicate: 'AND', threshold: 0, edges: [], groups: [either(0), either(4)] };
};

/**
 * One unit of work as a CI system writes it: a check (the objective, e.g. "//pkg/3:test passes on linux") and the
 * stage assigned to it, which waits for the checks of its predecessors. Payloads are the size real clients send.
 */
function pair(i: number, deps: readonly number[], nested: boolean): { check: CheckWriteInput; stage: StageWriteInput } {
  const target = `//pkg/${i % 97}:target_${i}`;
  return {
    check: { id: checkId(i), state: 'PLANNED', kind: 'build', options: { target, platform: 'linux-x86_64' } },
    stage: {
      id: stageId(i),
      args: { command: ['bazel', 'test', target], env: { CI: 'true' }, timeoutSeconds: 900 },
      assignments: [{ checkId: checkId(i), goalState: 'FINAL' }],
      dependencies: nested ? nestedOnChecks(deps) : onChecks(deps),
    },
  };
}

/** The WriteNodes requests that create a workplan of `nodes` nodes (nodes / 2 check + stage pairs), in order. */
export function creationBatches(shape: Shape, nodes: number, seed = 42): { checks: CheckWriteInput[]; stages: StageWriteInput[] }[] {
  const pairs = Math.max(2, Math.floor(nodes / 2));
  const random = prng(seed);
  const batches: { checks: CheckWriteInput[]; stages: StageWriteInput[] }[] = [];
  const perBatch = WRITE_BATCH_NODES / 2;
  for (let i = 0; i < pairs; i++) {
    if (i % perBatch === 0) batches.push({ checks: [], stages: [] });
    const { check, stage } = pair(i, predecessors(shape, i, pairs, random), shape === 'nested');
    batches.at(-1)!.checks.push(check);
    batches.at(-1)!.stages.push(stage);
  }
  return batches;
}

export interface DriveTimes {
  readonly createMs: number;
  readonly claimMs: number;
  readonly completeMs: number;
  /** Stages claimed and completed (every stage of the workplan). */
  readonly stages: number;
  /** The workplan's events (its stream version) once complete. */
  readonly events: number;
}

const sinceMs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
/** Resolves on the event loop's next check phase, after whatever the last write scheduled with setImmediate. */
export const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Creates a workplan of `nodes` nodes and drives it to completion: every stage whose attempt is PENDING (learnt
 * from the WriteNodes answers, which hold every node the resolver changed — no polling) is claimed by one write
 * and completed by another that finalizes its check with a result, as a runner does (semantics.md, "Stage").
 * Each write is its own turn of the event loop, as each request is in the server: what the orchestrator defers to
 * the next turn (publishing, committing a group) runs between writes and is timed with them.
 */
export async function driveWorkPlan(app: Orchestrator, shape: Shape, nodes: number, seed = 42): Promise<DriveTimes> {
  const workPlanId = app.createWorkPlan({ repo: 'bench', shape }).id;
  const ready: string[] = [];
  const seen = new Set<string>();
  const collect = (r: WriteNodesResult) => {
    for (const s of r.stages) {
      if (seen.has(s.id) || !isPending(s)) continue;
      seen.add(s.id);
      ready.push(s.id);
    }
  };
  const batches = creationBatches(shape, nodes, seed);
  let t0 = process.hrtime.bigint();
  for (const batch of batches) {
    collect(app.writeNodes({ workPlanId, requestId: null, ...batch }));
    await nextTurn();
  }
  const createMs = sinceMs(t0);
  let claimMs = 0;
  let completeMs = 0;
  for (let next = 0; next < ready.length; next++) {
    const id = ready[next]!;
    const runner = `runner-${next % 16}`;
    t0 = process.hrtime.bigint();
    app.writeNodes({ workPlanId, requestId: null, checks: [], stages: [{ id, currentAttempt: { processUid: runner } }] });
    await nextTurn();
    claimMs += sinceMs(t0);
    t0 = process.hrtime.bigint();
    collect(app.writeNodes({ workPlanId, requestId: null, ...completion(id, runner) }));
    await nextTurn();
    completeMs += sinceMs(t0);
  }
  assertAllFinal(app, workPlanId, ready.length);
  return { createMs, claimMs, completeMs, stages: ready.length, events: app.getWorkPlan(workPlanId).version };
}

const isPending = (s: Stage) => s.state === 'ATTEMPTING' && currentAttempt(s)?.state === 'PENDING';

/** The runner's report: its check passed (result, FINAL) and the attempt is COMPLETE, in one atomic write. */
function completion(id: string, runner: string): { checks: CheckWriteInput[]; stages: StageWriteInput[] } {
  const check = id.replace('stage-', 'check-');
  return {
    checks: [{ id: check, state: 'FINAL', result: { ownerType: 'stage', ownerId: id, data: { passed: true, runner, testsRun: 42 }, finalize: true } }],
    stages: [{ id, state: 'FINAL', currentAttempt: { state: 'COMPLETE', details: { exitCode: 0 } } }],
  };
}

/** A driver that stopped early would make every figure meaningless: check that the whole workplan ran. */
function assertAllFinal(app: Orchestrator, workPlanId: string, driven: number): void {
  const model = app.models.workplan(workPlanId)!;
  const open = [...model.stages.values()].filter((s) => s.state !== 'FINAL').length + [...model.checks.values()].filter((c) => c.state !== 'FINAL').length;
  if (open > 0 || driven !== model.stages.size) {
    throw new Error(`workplan ${workPlanId} not driven to completion: ${open} nodes not FINAL, ${driven} of ${model.stages.size} stages run`);
  }
}
