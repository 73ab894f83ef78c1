// The runner protocol's decisions, as given events / when command / then events.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideCompletion, decideDeclined, decideDispatch, decideExecutionFailed, decideRegisterRunner, decideUnregisterRunner } from '../../src/domain/decide-runners.js';
import { DomainError } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import type { RunnerRegistration } from '../../src/domain/model.js';
import { ev, given, NOW } from './given-when-then.js';

const runner: RunnerRegistration = {
  registrationId: 'reg-1',
  runnerId: 'r1',
  runnerType: 'ci',
  address: 'h:1',
  supportedModes: ['SYNC'],
  maxConcurrent: 1,
  ttlSeconds: 300,
  metadata: {},
  registeredAt: NOW,
  lastHeartbeat: NOW,
  expiresAt: NOW + 300_000,
};
const ctx = { now: NOW, defaultMaxAttempts: 3 };
const started = [
  ev.checkCreated('c'),
  ev.stageCreated('s', { runnerType: 'ci', assignments: [{ checkId: 'c', goalState: 'FINAL' }] }),
  ev.stageStarted('s'),
];
const dispatched: DomainEvent[] = [
  ...started,
  { type: 'StageAttemptDispatched', data: { stageId: 's', idx: 1, executionId: 'x1', registrationId: 'reg-1', runnerId: 'r1', mode: 'SYNC', deadline: NOW + 1000 } },
];
const target = { executionId: 'x1', stageId: 's', idx: 1 };
const events = (p: { event: DomainEvent }[]) => p.map((e) => e.event);

describe('runner registry', () => {
  test('registering again before expiry refreshes the same registration; after expiry it is a new one', () => {
    const owned = { registration: runner, owner: 'anonymous' };
    const refreshed = decideRegisterRunner(owned, { ...runner, ttlSeconds: 10 }, NOW + 1000, () => 'new');
    assert.equal(refreshed[0]!.event.type, 'RunnerRefreshed');
    assert.equal((refreshed[0]!.event.data as { registrationId: string }).registrationId, 'reg-1');
    const anew = decideRegisterRunner(owned, runner, runner.expiresAt + 1, () => 'reg-2');
    assert.deepEqual([anew[0]!.event.type, (anew[0]!.event.data as { registrationId: string }).registrationId], ['RunnerRegistered', 'reg-2']);
  });

  test('auth off: a live runner_id cannot be moved to another address without its registration id', () => {
    const owned = { registration: runner, owner: 'anonymous' };
    const { registrationId: _, ...cmd } = runner;
    assert.throws(() => decideRegisterRunner(owned, { ...cmd, address: 'evil:1' }, NOW + 1000, () => 'x'), /already registered from another address/);
    assert.throws(() => decideRegisterRunner(owned, { ...cmd, runnerType: 'other' }, NOW + 1000, () => 'x'), /already registered/);
    assert.throws(() => decideRegisterRunner(owned, { ...cmd, address: 'evil:1', registrationId: 'guess' }, NOW + 1000, () => 'x'), /does not match/);
    const moved = decideRegisterRunner(owned, { ...cmd, address: 'new:2', registrationId: 'reg-1' }, NOW + 1000, () => 'x');
    assert.equal((moved[0]!.event.data as { address: string }).address, 'new:2');
  });

  test('auth on: only the token that registered may refresh or remove; an admin may remove', () => {
    const owned = { registration: runner, owner: 'bot-a' };
    const a = { principal: 'bot-a', authenticated: true, admin: false };
    const b = { principal: 'bot-b', authenticated: true, admin: false };
    assert.throws(() => decideRegisterRunner(owned, runner, NOW + 1000, () => 'x', b), (e: DomainError) => e.kind === 'PERMISSION_DENIED');
    assert.equal(decideRegisterRunner(owned, { ...runner, address: 'moved:1' }, NOW + 1000, () => 'x', a)[0]!.event.type, 'RunnerRefreshed');
    assert.throws(() => decideUnregisterRunner(owned, 'reg-1', b), (e: DomainError) => e.kind === 'PERMISSION_DENIED');
    assert.equal(decideUnregisterRunner(owned, 'reg-1', a).length, 1);
    assert.equal(decideUnregisterRunner(owned, 'reg-1', { principal: 'root', authenticated: true, admin: true }).length, 1);
  });

  test('defaults: no modes = SYNC, max_concurrent <= 0 = 1, ttl <= 0 = 300 s', () => {
    const [p] = decideRegisterRunner(undefined, { ...runner, supportedModes: [], maxConcurrent: 0, ttlSeconds: -5 }, NOW, () => 'r');
    assert.deepEqual(p!.event.data, {
      runnerId: 'r1', runnerType: 'ci', address: 'h:1', supportedModes: ['SYNC'], maxConcurrent: 1, ttlSeconds: 300, metadata: {}, registrationId: 'r', expiresAt: NOW + 300_000,
    });
  });
});

describe('executions', () => {
  test('dispatch: the attempt is SCHEDULED with its execution', () => {
    const g = given(...started);
    assert.deepEqual(events(decideDispatch({ stageId: 's', idx: 1, runner, executionId: 'x1', deadline: NOW + 1000 }, g.draft())), dispatched.slice(started.length));
  });

  test('the dispatch alone makes the attempt SCHEDULED; a version 1 log, with the state change beside it, folds the same', () => {
    const v2 = given(...dispatched).model.stage('s')!.attempts[0]!;
    assert.equal(v2.state, 'SCHEDULED');
    assert.deepEqual(given(...dispatched, ev.attemptState('s', 1, 'PENDING', 'SCHEDULED')).model.stage('s')!.attempts[0], v2);
  });

  test('a completion applies check updates, then the attempt (claimed by the runner), which ends the stage', () => {
    const g = given(...dispatched);
    const out = events(
      decideCompletion({ target, completion: { stageState: 'FINAL', checkUpdates: [{ checkId: 'c', resultData: { ok: 1 }, finalize: true, state: 'FINAL' }], fingerprint: 'f1' } }, g.draft(), ctx),
    );
    assert.deepEqual(
      out.map((e) => e.type),
      ['CheckResultAdded', 'CheckStateChanged', 'StageAttemptStateChanged', 'StageAttemptStateChanged'],
    );
    assert.deepEqual(out[2], ev.attemptState('s', 1, 'SCHEDULED', 'RUNNING', 'r1'));
    assert.deepEqual(out[3]!.data, {
      ...ev.attemptState('s', 1, 'RUNNING', 'COMPLETE', '', null, 'FINAL').data,
      completion: { via: 'execution', id: 'x1', fingerprint: 'f1' },
    });
  });

  test('an identical repeated completion decides nothing; a different one is FAILED_PRECONDITION (as recorded now and by version 1 logs)', () => {
    const running = [...dispatched, ev.attemptState('s', 1, 'SCHEDULED', 'RUNNING', 'r1')];
    const completed = ev.attemptState('s', 1, 'RUNNING', 'COMPLETE');
    const histories = {
      now: [
        ...running,
        {
          type: 'StageAttemptStateChanged' as const,
          data: { stageId: 's', idx: 1, from: 'RUNNING' as const, to: 'COMPLETE' as const, processUid: '', failure: null, completion: { via: 'execution' as const, id: 'x1', fingerprint: 'f1' } },
        },
        ev.stageState('s', 'ATTEMPTING', 'FINAL'),
      ],
      'version 1': [
        ...running,
        completed,
        ev.stageState('s', 'ATTEMPTING', 'FINAL'),
        { type: 'StageExecutionCompleted' as const, data: { stageId: 's', idx: 1, executionId: 'x1', fingerprint: 'f1' } },
      ],
    };
    for (const [name, history] of Object.entries(histories)) {
      const g = given(...history);
      assert.deepEqual(decideCompletion({ target, completion: { checkUpdates: [], fingerprint: 'f1' } }, g.draft(), ctx), [], name);
      assert.throws(
        () => decideCompletion({ target, completion: { checkUpdates: [], fingerprint: 'f2' } }, g.draft(), ctx),
        (e: unknown) => e instanceof DomainError && e.kind === 'FAILED_PRECONDITION',
        name,
      );
      assert.deepEqual(decideExecutionFailed({ target, message: 'late' }, g.draft()), [], `${name}: a finished execution cannot fail any more`);
    }
  });

  test('a runner failure makes the attempt INCOMPLETE; a decline puts it back to PENDING', () => {
    const g = given(...dispatched);
    assert.deepEqual(events(decideExecutionFailed({ target, message: 'unreachable' }, g.draft())), [
      ev.attemptState('s', 1, 'SCHEDULED', 'INCOMPLETE', '', { message: 'unreachable', occurredAt: NOW }),
    ]);
    assert.deepEqual(events(decideDeclined(target, g.draft())), [
      { type: 'StageAttemptDispatchDeclined', data: { stageId: 's', idx: 1, executionId: 'x1' } },
    ]);
    const after = given(...dispatched, { type: 'StageAttemptDispatchDeclined', data: { stageId: 's', idx: 1, executionId: 'x1' } });
    assert.equal(after.model.stage('s')!.attempts[0]!.state, 'PENDING');
    assert.equal(after.model.stage('s')!.attempts[0]!.execution, null);
  });
});
