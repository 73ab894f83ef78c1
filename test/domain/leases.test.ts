// The pull protocol's decisions (lease, heartbeat, completion, expiry), as given events / when command / then events.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decideHeartbeat,
  decideLease,
  decideLeaseCompletion,
  decideLeaseExpiry,
  decidePickupExpiry,
  type LeaseGrant,
} from '../../src/domain/decide-leases.js';
import { DomainError } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { ev, given, NOW } from './given-when-then.js';

const grant: LeaseGrant = {
  leaseId: 'l1',
  tokenHash: 'h1',
  runnerId: 'agent-1',
  runnerType: 'shell',
  heartbeatIntervalMs: 1000,
  expiresAt: NOW + 2000,
  runDeadline: NOW + 60_000,
};
const ctx = { now: NOW, defaultMaxAttempts: 3 };
const pendingAttempt = [
  ev.checkCreated('c'),
  ev.stageCreated('s', { runnerType: 'shell', assignments: [{ checkId: 'c', goalState: 'FINAL' }] }),
  ev.stageStarted('s'),
];
const leasedEvents: DomainEvent[] = [{ type: 'StageAttemptLeased', data: { stageId: 's', idx: 1, ...grant } }];
const leased = [...pendingAttempt, ...leasedEvents];
const target = { stageId: 's', idx: 1, leaseId: 'l1' };
const events = (p: readonly { event: DomainEvent }[]) => p.map((e) => e.event);
const refused = (kind: string, message: RegExp) => (e: unknown) => e instanceof DomainError && e.kind === kind && message.test(e.message);

describe('lease decider', () => {
  test('leasing records the lease and moves the PENDING attempt to RUNNING under the runner', () => {
    const g = given(...pendingAttempt);
    assert.deepEqual(events(decideLease({ stageId: 's', idx: 1, grant }, g.draft())), leasedEvents);
  });

  test('the lease alone makes the attempt RUNNING; a version 1 log, with the state change beside it, folds the same', () => {
    const attempt = (...events: DomainEvent[]) => given(...pendingAttempt, ...events).model.stage('s')!.attempts[0];
    const v2 = attempt(...leasedEvents);
    assert.equal(v2!.state, 'RUNNING');
    assert.equal(v2!.processUid, 'agent-1');
    assert.deepEqual(attempt(...leasedEvents, ev.attemptState('s', 1, 'PENDING', 'RUNNING', 'agent-1')), v2);
  });

  test('an attempt that is no longer PENDING cannot be leased again', () => {
    const g = given(...leased);
    assert.throws(() => decideLease({ stageId: 's', idx: 1, grant: { ...grant, leaseId: 'l2' } }, g.draft()), refused('FAILED_PRECONDITION', /no longer PENDING/));
  });

  test('a heartbeat extends the lease (never past the run deadline) and appends the lines as progress', () => {
    const g = given(...leased);
    const d = decideHeartbeat({ target, heartbeat: { lines: ['compiling'], message: '', details: {}, expiresAt: NOW + 120_000 } }, g.draft());
    assert.equal(d.cancelRequested, false);
    assert.deepEqual(events(d.events), [
      { type: 'StageAttemptProgressAppended', data: { stageId: 's', idx: 1, message: '1 line of output', timestamp: null, details: { lines: ['compiling'] } } },
      { type: 'StageAttemptLeaseExtended', data: { stageId: 's', idx: 1, leaseId: 'l1', expiresAt: grant.runDeadline } },
    ]);
  });

  test('a heartbeat on a cancelled attempt asks the runner to stop and records nothing', () => {
    const g = given(...leased, ev.attemptState('s', 1, 'RUNNING', 'INCOMPLETE', '', { message: 'cancelled', occurredAt: NOW }));
    const d = decideHeartbeat({ target, heartbeat: { lines: [], message: '', details: {}, expiresAt: NOW + 2000 } }, g.draft());
    assert.deepEqual(d, { events: [], cancelRequested: true });
  });

  test('completion applies the answer, the attempt change recording the lease; an identical repeat decides nothing', () => {
    const g = given(...leased);
    const completion = { stageState: 'FINAL' as const, checkUpdates: [{ checkId: 'c', finalize: true, state: 'FINAL' as const }], fingerprint: 'f1' };
    const out = events(decideLeaseCompletion({ target, completion }, g.draft(), ctx));
    assert.deepEqual(
      out.map((e) => e.type),
      ['CheckResultAdded', 'CheckStateChanged', 'StageAttemptStateChanged'],
    );
    assert.deepEqual(out[2]!.data, {
      stageId: 's',
      idx: 1,
      from: 'RUNNING',
      to: 'COMPLETE',
      processUid: '',
      failure: null,
      completion: { via: 'lease', id: target.leaseId, fingerprint: 'f1' },
      stageTo: 'FINAL',
    });
    const done = given(...leased, ...out);
    assert.deepEqual(decideLeaseCompletion({ target, completion }, done.draft(), ctx), []);
    assert.throws(
      () => decideLeaseCompletion({ target, completion: { ...completion, fingerprint: 'f2' } }, done.draft(), ctx),
      refused('FAILED_PRECONDITION', /already completed with a different outcome/),
    );
  });

  test('a lease past its expiry is refused for completion, and the reaper expires it', () => {
    const late = { ...ctx, now: grant.expiresAt + 1 };
    const g = given(...leased);
    assert.throws(
      () => decideLeaseCompletion({ target, completion: { checkUpdates: [], fingerprint: 'f' } }, g.draft(), late),
      refused('FAILED_PRECONDITION', /has expired/),
    );
    const message = 'lease expired: missed heartbeats';
    const draft = g.draft();
    assert.deepEqual(events(decideLeaseExpiry({ target, reason: 'HEARTBEATS_MISSED', message }, draft)), [], 'not expired at NOW');
  });

  test('the reaper expires an overdue lease: the attempt goes INCOMPLETE with the reason', () => {
    const overdue = given(...pendingAttempt, { type: 'StageAttemptLeased', data: { stageId: 's', idx: 1, ...grant, expiresAt: NOW - 1 } });
    assert.deepEqual(events(decideLeaseExpiry({ target, reason: 'HEARTBEATS_MISSED', message: 'gone' }, overdue.draft())), [
      { type: 'StageAttemptLeaseExpired', data: { stageId: 's', idx: 1, leaseId: 'l1', reason: 'HEARTBEATS_MISSED' } },
      ev.attemptState('s', 1, 'RUNNING', 'INCOMPLETE', '', { message: 'gone', occurredAt: NOW }),
    ]);
  });

  test('pickup timeout: a PENDING attempt nobody leased goes INCOMPLETE; a leased one is left alone', () => {
    assert.deepEqual(events(decidePickupExpiry({ stageId: 's', idx: 1, message: 'nobody came' }, given(...pendingAttempt).draft())), [
      { type: 'StageAttemptLeaseExpired', data: { stageId: 's', idx: 1, leaseId: '', reason: 'PICKUP_TIMEOUT' } },
      ev.attemptState('s', 1, 'PENDING', 'INCOMPLETE', '', { message: 'nobody came', occurredAt: NOW }),
    ]);
    assert.deepEqual(decidePickupExpiry({ stageId: 's', idx: 1, message: 'x' }, given(...leased).draft()), []);
  });
});
