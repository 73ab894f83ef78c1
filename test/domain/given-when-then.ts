// Given events / when command / then events (or error), in-process and pure: no server, no storage.
import assert from 'node:assert/strict';
import { ReadModels } from '../../projections/read-models.js';
import { resolve } from '../../projections/resolver.js';
import type { WriteNodes } from '../../src/domain/commands.js';
import { decideWriteNodes } from '../../src/domain/decide-write-nodes.js';
import { DomainError, type DomainErrorKind } from '../../src/domain/errors.js';
import type { DomainEvent, RecordedEvent } from '../../src/domain/events.js';
import { WorkPlanDraft } from '../../src/domain/workplan-draft.js';

export const NOW = 1_700_000_000_000;
const STREAM = 'wp-1';

export function given(...events: DomainEvent[]) {
  const history: RecordedEvent[] = [{ type: 'WorkPlanCreated', data: { metadata: {} } } as DomainEvent, ...events].map(
    (event, i) => ({
      position: i + 1,
      streamId: STREAM,
      version: i + 1,
      recordedAt: NOW,
      causation: { requestId: null, causedByVersion: null },
      event,
    }),
  );
  const model = ReadModels.replay(history).workplan(STREAM)!;
  const decide = (command: Partial<WriteNodes>) => {
    const draft = new WorkPlanDraft(model, NOW);
    decideWriteNodes({ checks: [], stages: [], ...command }, draft, { now: NOW, defaultMaxAttempts: 3 });
    return draft;
  };
  return {
    model,
    /** A fresh draft over the given state, for deciders other than WriteNodes. */
    draft: () => new WorkPlanDraft(model, NOW),
    /** decide, then the resolver's consequences on the same draft: everything the write would append. */
    when(command: Partial<WriteNodes>) {
      const draft = decide(command);
      resolve(draft);
      const events = draft.events;
      return {
        events: events.map((p) => p.event),
        causes: events.map((p) => p.causedByVersion),
        then(...expected: DomainEvent[]) {
          assert.deepEqual(this.events, expected);
        },
      };
    },
    /** These events happen (as a decider would emit them); then: what the resolver emits in reaction, with causes. */
    happens(...events: DomainEvent[]) {
      const draft = new WorkPlanDraft(model, NOW);
      for (const e of events) draft.emit(e);
      resolve(draft);
      const consequences = draft.events.slice(events.length);
      return {
        events: consequences.map((p) => p.event),
        causes: consequences.map((p) => p.causedByVersion),
        then(...expected: DomainEvent[]) {
          assert.deepEqual(this.events, expected);
        },
      };
    },
    /** decide alone, expecting a domain error of `kind` whose message matches. */
    rejects(command: Partial<WriteNodes>, kind: DomainErrorKind, message: RegExp, field?: string) {
      assert.throws(
        () => decide(command),
        (err: unknown) => {
          assert.ok(err instanceof DomainError, `expected a DomainError, got ${String(err)}`);
          assert.equal(err.kind, kind, err.message);
          assert.match(err.message, message);
          if (field !== undefined) assert.equal(err.field, field);
          return true;
        },
      );
    },
  };
}

// Event builders for readable expectations.
export const ev = {
  checkCreated: (checkId: string, more: Partial<Extract<DomainEvent, { type: 'CheckCreated' }>['data']> = {}): DomainEvent => ({
    type: 'CheckCreated',
    data: { checkId, kind: '', options: {}, dependencies: null, ...more },
  }),
  checkState: (checkId: string, from: string, to: string): DomainEvent =>
    ({ type: 'CheckStateChanged', data: { checkId, from, to } }) as DomainEvent,
  stageCreated: (stageId: string, more: Partial<Extract<DomainEvent, { type: 'StageCreated' }>['data']> = {}): DomainEvent => ({
    type: 'StageCreated',
    data: {
      stageId,
      args: {},
      assignments: [],
      dependencies: null,
      executionMode: 'SYNC',
      runnerType: '',
      maxAttempts: 3,
      parentStageId: '',
      attemptTimeoutSeconds: 0,
      ...more,
    },
  }),
  stageState: (stageId: string, from: string, to: string, failure: { message: string; occurredAt: number } | null = null): DomainEvent =>
    ({ type: 'StageStateChanged', data: { stageId, from, to, failure } }) as DomainEvent,
  attemptCreated: (stageId: string, idx: number): DomainEvent => ({ type: 'StageAttemptCreated', data: { stageId, idx } }),
  /** The resolver starts a PLANNED stage: attempt 1 opened, the stage ATTEMPTING (one event). */
  stageStarted: (stageId: string): DomainEvent => ({ type: 'StageAttemptCreated', data: { stageId, idx: 1, startsStage: true } }),
  attemptState: (
    stageId: string,
    idx: number,
    from: string,
    to: string,
    processUid = '',
    failure: { message: string; occurredAt: number } | null = null,
    /** With to COMPLETE: where the stage went with it (schema version 3 records it on the same event). */
    stageTo?: 'FINAL' | 'AWAITING_GROUP',
  ): DomainEvent =>
    ({ type: 'StageAttemptStateChanged', data: { stageId, idx, from, to, processUid, failure, ...(stageTo ? { stageTo } : {}) } }) as DomainEvent,
};

export const on = (kind: 'check' | 'stage', ...ids: string[]) => ({
  predicate: 'AND' as const,
  threshold: 0,
  edges: ids.map((id) => ({ kind, id })),
});
