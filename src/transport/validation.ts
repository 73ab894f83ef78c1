// Edge validation: zod schemas over the decoded protobuf messages, producing domain commands. Every issue names
// the request field (proto spelling) and the reason; the first one becomes the INVALID_ARGUMENT message.
import { z } from 'zod';
import type { WriteNodes } from '../domain/commands.js';
import { invalidArgument } from '../domain/errors.js';
import type {
  AttemptState,
  CheckState,
  DependencyGroup as DomainDependencyGroup,
  ExecutionMode,
  JsonObject,
  StageState,
} from '../domain/model.js';
import type { NodeQuery } from '../app/queries.js';
import { MAX_GROUP_DEPTH } from '../domain/dependency-groups.js';
import { ID_RULE, isValidId } from '../domain/ids.js';
import {
  bytesText,
  capText,
  limits,
  MAX_KEY_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_METADATA_VALUE_BYTES,
  MAX_STRUCT_DEPTH,
  utf8Bytes,
} from '../domain/limits.js';

export const id = z.string().refine(isValidId, ID_RULE);
const optionalId = z.string().refine((s) => s === '' || isValidId(s), ID_RULE);
/** A required id whose absence is worth its own message. */
export const requiredId = (field: string) => z.string().min(1, `${field} is required`).refine(isValidId, ID_RULE);

/** A string of at most `max` bytes of UTF-8. */
export const text = (max: number) =>
  z.string().superRefine((s, ctx) => {
    if (s.length > max / 3 && utf8Bytes(s) > max) ctx.addIssue({ code: 'custom', message: `is ${bytesText(utf8Bytes(s))}; at most ${bytesText(max)} of UTF-8` });
  });

/**
 * Why a decoded Struct cannot be stored as it is, or null: nested past MAX_STRUCT_DEPTH, a number JSON cannot hold
 * (NaN, ±Infinity come back as null after a restart: refused, so the live and the replayed state are equal), or
 * larger than the value limit as JSON.
 */
export function jsonProblem(value: unknown): { path: string; message: string } | null {
  const walk = (v: unknown, depth: number, path: string): { path: string; message: string } | null => {
    if (typeof v === 'number') return Number.isFinite(v) ? null : { path, message: `${v} is not a number JSON can hold; send a finite number (or a string)` };
    if (v === null || typeof v !== 'object') return null;
    if (depth > MAX_STRUCT_DEPTH) return { path, message: `nests deeper than ${MAX_STRUCT_DEPTH} levels` };
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const p = walk(v[i], depth + 1, `${path}[${i}]`);
        if (p) return p;
      }
      return null;
    }
    for (const [k, x] of Object.entries(v)) {
      const p = walk(x, depth + 1, `${path}.${capText(k, 64)}`);
      if (p) return p;
    }
    return null;
  };
  const found = walk(value, 1, '');
  if (found) return found;
  const bytes = utf8Bytes(JSON.stringify(value));
  const max = limits().maxValueBytes;
  return bytes > max ? { path: '', message: `is ${bytesText(bytes)} as JSON; at most ${bytesText(max)} (--max-value-bytes)` } : null;
}

export const struct = z
  .record(z.string(), z.unknown())
  .optional()
  .superRefine((v, ctx) => {
    const p = v === undefined ? null : jsonProblem(v);
    if (p) ctx.addIssue({ code: 'custom', message: p.path ? `${p.path.replace(/^\./, '')}: ${p.message}` : p.message });
  }) as unknown as z.ZodType<JsonObject | undefined>;

/** A Timestamp (decoding already refused nanos and seconds out of range; this catches anything left). */
export const millis = z
  .instanceof(Date)
  .optional()
  .transform((d, ctx) => {
    if (d === undefined) return undefined;
    const ms = d.getTime();
    if (!Number.isFinite(ms)) ctx.addIssue({ code: 'custom', message: 'is not a time between the years 1 and 9999' });
    return ms;
  });

/** An int64 field (decoded as bigint, without precision loss), range-checked, as a number. */
export const int64 = (min: number, max: number, hint = '') =>
  z.bigint().transform((n, ctx) => {
    if (n < BigInt(min) || n > BigInt(max)) {
      const message = min === 0 && n < 0n ? 'must not be negative' : `${capText(n.toString(), 40)} is out of range; must be from ${min} to ${max}${hint}`;
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    return Number(n);
  });

/**
 * A string map (metadata, labels): keys at most 256 bytes, values at most 4 KiB, all of it at most
 * --max-metadata-bytes. Messages never quote a whole key: it may be the oversized thing.
 */
export const stringMap = z.record(z.string(), z.string()).superRefine((m, ctx) => {
  let total = 0;
  for (const [k, v] of Object.entries(m)) {
    const kb = utf8Bytes(k);
    const vb = utf8Bytes(v);
    total += kb + vb;
    if (kb > MAX_KEY_BYTES) {
      ctx.addIssue({ code: 'custom', message: `key "${capText(k, 64)}" is ${bytesText(kb)}; keys must be at most ${MAX_KEY_BYTES} bytes of UTF-8` });
      return;
    }
    if (vb > MAX_METADATA_VALUE_BYTES) {
      ctx.addIssue({ code: 'custom', message: `the value of "${capText(k, 64)}" is ${bytesText(vb)}; values must be at most ${bytesText(MAX_METADATA_VALUE_BYTES)} of UTF-8` });
      return;
    }
  }
  const max = limits().maxMetadataBytes;
  if (total > max) ctx.addIssue({ code: 'custom', message: `is ${bytesText(total)}; at most ${bytesText(max)} of keys and values (--max-metadata-bytes)` });
});

/** A protobuf enum: 0 (UNKNOWN) means "not set"; any number not in `values` is rejected. */
const protoEnum = <T extends string>(what: string, values: Record<number, T>) =>
  z.number().transform((n, ctx): T | undefined => {
    if (n === 0) return undefined;
    const v = values[n];
    if (v === undefined) ctx.addIssue({ code: 'custom', message: `unknown ${what} ${n}` });
    return v;
  });
const required = <T>(schema: z.ZodType<T | undefined>, message: string) =>
  schema.refine((v) => v !== undefined, message) as unknown as z.ZodType<T>;

const checkState = protoEnum<CheckState>('check state', { 10: 'PLANNING', 20: 'PLANNED', 30: 'WAITING', 40: 'FINAL' });
const stageState = protoEnum<StageState>('stage state', { 10: 'PLANNED', 20: 'ATTEMPTING', 30: 'AWAITING_GROUP', 40: 'FINAL' });
const attemptState = protoEnum<AttemptState>('attempt state', {
  10: 'PENDING',
  20: 'SCHEDULED',
  30: 'RUNNING',
  40: 'COMPLETE',
  50: 'INCOMPLETE',
});
const executionMode = protoEnum<ExecutionMode>('execution mode', { 1: 'SYNC', 2: 'ASYNC' });
const predicate = protoEnum<'AND' | 'OR'>('predicate', { 1: 'AND', 2: 'OR' });
const nodeType = protoEnum<'check' | 'stage'>('node type', { 1: 'check', 2: 'stage' });

const failure = z
  .object({ message: z.string().min(1, 'a failure needs a message'), occurredAt: millis })
  .optional();

/** One level of a DependencyGroup (its sub-groups are validated level by level, with their path). */
const groupLevel = z
  .object({
    predicate,
    threshold: z.number().int().min(0, 'must not be negative'),
    dependencies: z.array(
      z.object({ targetType: required(nodeType, 'target_type is required'), targetId: id }),
    ),
    /** Validated level by level by dependencyGroup; counted here as members. */
    groups: z.array(z.unknown()).optional(),
  })
  .superRefine((g, ctx) => {
    const members = g.dependencies.length + (g.groups?.length ?? 0);
    if (members > 0 && g.threshold === 0 && g.predicate === undefined) {
      ctx.addIssue({ code: 'custom', path: ['predicate'], message: 'AND or OR is required when there are members' });
    }
    if (g.threshold > members) {
      ctx.addIssue({ code: 'custom', path: ['threshold'], message: `${g.threshold} exceeds the ${members} member${members === 1 ? '' : 's'} (dependencies and groups)` });
    }
    const seen = new Set<string>();
    g.dependencies.forEach((d, j) => {
      const key = `${d.targetType}:${d.targetId}`;
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['dependencies', j], message: `duplicate dependency on ${key}` });
      seen.add(key);
    });
  });

interface ProtoGroup {
  readonly groups?: readonly ProtoGroup[];
}

/**
 * A DependencyGroup and its nested sub-groups (extension), at most MAX_GROUP_DEPTH deep: each level validated by
 * `groupLevel`, every issue naming its path (`dependencies.groups[1].groups[0].threshold`).
 */
const dependencyGroup = z
  .custom<ProtoGroup | undefined>((v) => v === undefined || (typeof v === 'object' && v !== null), 'must be a DependencyGroup')
  .transform((g, ctx): DomainDependencyGroup | undefined => {
    if (!g) return undefined;
    const toGroup = (raw: ProtoGroup, path: (string | number)[], depth: number): DomainDependencyGroup | undefined => {
      if (depth > MAX_GROUP_DEPTH) {
        ctx.addIssue({ code: 'custom', path, message: `dependency groups nest at most ${MAX_GROUP_DEPTH} deep` });
        return undefined;
      }
      const level = groupLevel.safeParse(raw);
      if (!level.success) {
        for (const issue of level.error.issues) ctx.addIssue({ code: 'custom', path: [...path, ...issue.path], message: issue.message });
        return undefined;
      }
      const groups: DomainDependencyGroup[] = [];
      for (const [i, sub] of (raw.groups ?? []).entries()) {
        const parsed = toGroup(sub, [...path, 'groups', i], depth + 1);
        if (!parsed) return undefined;
        groups.push(parsed);
      }
      const l = level.data;
      return {
        predicate: l.predicate ?? 'AND',
        threshold: l.threshold,
        edges: l.dependencies.map((d) => ({ kind: d.targetType, id: d.targetId })),
        // Flat groups leave `groups` out: they stay exactly what they were before nesting existed.
        ...(groups.length > 0 ? { groups } : {}),
      };
    };
    return toGroup(g, [], 1) ?? z.NEVER;
  });


const approvalGate = z
  .object({
    approvalsRequired: z.number().int().min(0, 'must not be negative').max(100, 'must be at most 100'),
    deadline: millis,
  })
  .optional()
  .transform((g) => g && { approvalsRequired: g.approvalsRequired || 1, deadline: g.deadline ?? null });

const checkWrite = z.object({
  id,
  state: checkState,
  kind: text(MAX_KEY_BYTES).transform((k) => k || undefined),
  options: struct,
  dependencies: dependencyGroup,
  approvalGate,
  result: z
    .object({ ownerType: text(MAX_KEY_BYTES), ownerId: text(MAX_KEY_BYTES), data: struct, finalize: z.boolean(), failure })
    .optional()
    .transform((r) => r && { ...r, data: r.data ?? {} }),
});

const attemptWrite = z
  .object({
    state: attemptState,
    processUid: text(MAX_KEY_BYTES).transform((u) => u || undefined),
    details: struct,
    progress: z
      .object({ message: text(MAX_MESSAGE_BYTES), timestamp: millis, details: struct })
      .optional()
      .transform((p) => p && { ...p, details: p.details ?? {} }),
    failure,
  })
  .optional();

const WEEK_MS = 7 * 24 * 3600 * 1000;
const policyMs = (min = 0) =>
  z
    .number()
    .int()
    .min(0, 'must not be negative')
    .max(WEEK_MS, 'must be at most a week (604800000 ms)')
    .refine((n) => n === 0 || n >= min, `must be 0 (the server's default) or at least ${min} ms`);
const executionPolicy = z
  .object({
    pickupTimeoutMs: policyMs(),
    runTimeoutMs: policyMs(100),
    heartbeatIntervalMs: policyMs(100),
    retryBackoffMs: policyMs(),
  })
  .optional();

const stageWrite = z.object({
  id,
  state: stageState,
  args: struct,
  assignments: z
    .array(z.object({ targetCheckId: id, goalState: checkState }))
    .transform((as) => (as.length ? as.map((a) => ({ checkId: a.targetCheckId, goalState: a.goalState ?? 'FINAL' })) : undefined)),
  dependencies: dependencyGroup,
  currentAttempt: attemptWrite,
  executionMode,
  runnerType: text(MAX_KEY_BYTES).transform((t) => t || undefined),
  maxAttempts: z
    .number()
    .int()
    .min(0, 'must not be negative')
    .max(1000, 'must be at most 1000')
    .transform((n) => n || undefined),
  parentStageId: optionalId.transform((p) => p || undefined),
  attemptTimeoutSeconds: z
    .number()
    .int()
    .min(0, 'must not be negative')
    .max(7 * 24 * 3600, 'must be at most a week')
    .transform((n) => n || undefined),
  priority: z
    .number()
    .int()
    .min(-1_000_000, 'must be from -1000000 to 1000000')
    .max(1_000_000, 'must be from -1000000 to 1000000')
    .transform((n) => n || undefined),
  executionPolicy,
}).transform((s) => ({
  // Built field by field: object rest/spread (`{ executionPolicy, ...rest }`) goes through a slow generic copy in V8,
  // and this runs for every stage written.
  id: s.id,
  state: s.state,
  args: s.args,
  assignments: s.assignments,
  dependencies: s.dependencies,
  currentAttempt: s.currentAttempt,
  executionMode: s.executionMode,
  runnerType: s.runnerType,
  maxAttempts: s.maxAttempts,
  parentStageId: s.parentStageId,
  attemptTimeoutSeconds: s.attemptTimeoutSeconds,
  priority: s.priority,
  policy: s.executionPolicy,
}));

export const writeNodesRequest = z
  .object({
  workPlanId: id,
  checks: z.array(checkWrite),
  stages: z.array(stageWrite),
  requestId: text(MAX_KEY_BYTES).transform((r) => r || null),
  expectedVersion: int64(0, Number.MAX_SAFE_INTEGER).optional(),
  readVersion: int64(0, Number.MAX_SAFE_INTEGER).optional(),
  readNodes: z.array(z.object({ nodeType: required(nodeType, 'node_type is required'), nodeId: id })),
  omitNodes: z.boolean(),
})
  .superRefine((r, ctx) => {
    if (r.readNodes.length > 0 && r.readVersion === undefined) {
      ctx.addIssue({ code: 'custom', path: ['readVersion'], message: 'required when read_nodes is set' });
    }
  })
  // Built field by field, not with object rest/spread: V8 copies those through a slow generic path, which was ~40% of
  // validating a WriteNodes of one check.
  .transform((r) => ({
    workPlanId: r.workPlanId,
    stages: r.stages,
    requestId: r.requestId,
    expectedVersion: r.expectedVersion,
    readVersion: r.readVersion,
    omitNodes: r.omitNodes,
    checks: r.checks.map((c) => ({
      id: c.id,
      state: c.state,
      kind: c.kind,
      options: c.options,
      dependencies: c.dependencies,
      result: c.result,
      gate: c.approvalGate,
    })),
    reads: r.readNodes.map((n) => ({ kind: n.nodeType, id: n.nodeId })),
  }));

export const approveRequest = z.object({
  workPlanId: id,
  checkId: id,
  decision: required(protoEnum<'APPROVE' | 'REJECT'>('approval decision', { 1: 'APPROVE', 2: 'REJECT' }), 'APPROVE or REJECT is required'),
  comment: text(4096),
  requestId: text(MAX_KEY_BYTES).transform((r) => r || null),
});

export const workPlanIdRequest = z.object({ id });

export const createWorkPlanRequest = z.object({
  metadata: stringMap,
});

export const queryNodesRequest = z.object({
  workPlanId: id,
  checkIds: z.array(id),
  stageIds: z.array(id),
  checkStates: z.array(required(checkState, 'UNKNOWN is not a state to filter by')),
  stageStates: z.array(required(stageState, 'UNKNOWN is not a state to filter by')),
  includeChecks: z.boolean(),
  includeStages: z.boolean(),
  pageSize: z.number().int().min(0, 'must not be negative'),
  pageToken: z.string(),
}) satisfies z.ZodType<NodeQuery & { workPlanId: string }, unknown>;

/** Parses a request or throws INVALID_ARGUMENT naming the first offending field. */
export function parseRequest<S extends z.ZodType>(schema: S, message: unknown): z.output<S> {
  const parsed = schema.safeParse(message);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw invalidArgument(capText(issue.message, 512), fieldPath(issue.path));
}

/** ['stages', 2, 'currentAttempt', 'processUid'] → 'stages[2].current_attempt.process_uid' */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += (out ? '.' : '') + capText(String(part), 64).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  }
  return out;
}

export type WriteNodesInput = z.output<typeof writeNodesRequest> & WriteNodes;
