// Approval gates: decide(Approve), decide(deadline), and the resolver settling the gate, as given/when/then.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolve } from '../../projections/resolver.js';
import { decideApprovalTimeout, decideApprove, type Approve } from '../../src/domain/decide-approval.js';
import { DomainError } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { ev, given, NOW, on } from './given-when-then.js';

const gate = (approvalsRequired = 1, deadline: number | null = null) => ({ approvalsRequired, deadline });
const approval = (checkId: string, principal: string, decision: 'APPROVE' | 'REJECT' = 'APPROVE', comment = ''): DomainEvent => ({
  type: 'CheckApprovalGiven',
  data: { checkId, principal, decision, comment },
});
const result = (checkId: string, resultId: number, ownerId: string, data: object, failure: string | null): DomainEvent => ({
  type: 'CheckResultAdded',
  data: {
    checkId,
    resultId,
    ownerType: 'approval',
    ownerId,
    data: data as never,
    failure: failure === null ? null : { message: failure, occurredAt: NOW },
    finalized: true,
  },
});

/** A WAITING gate `release` needing `n` approvals, and a stage `deploy` that depends on it. */
const waitingGate = (n = 1, deadline: number | null = null, ...more: DomainEvent[]) =>
  given(
    ev.checkCreated('release', { gate: gate(n, deadline) }),
    ev.checkState('release', 'PLANNING', 'PLANNED'),
    ev.checkState('release', 'PLANNED', 'WAITING'),
    ev.stageCreated('deploy', { dependencies: on('check', 'release') }),
    ...more,
  );

/** decide(Approve) on a draft of `g`, then the resolver: every event the call would append. */
function approve(g: ReturnType<typeof given>, cmd: Partial<Approve> & { principal: string }): DomainEvent[] {
  const draft = g.draft();
  decideApprove({ checkId: 'release', decision: 'APPROVE', comment: '', ...cmd }, draft);
  resolve(draft);
  return draft.events.map((p) => p.event);
}

const refusal = (kind: string, message: RegExp) => (err: unknown) => {
  assert.ok(err instanceof DomainError, String(err));
  assert.equal(err.kind, kind);
  assert.match(err.message, message);
  return true;
};

describe('approval gates', () => {
  test('one approval (the default) makes the gate FINAL, and the stage that waits on it starts', () => {
    assert.deepEqual(approve(waitingGate(), { principal: 'alice', comment: 'ship it' }), [
      approval('release', 'alice', 'APPROVE', 'ship it'),
      result('release', 1, 'alice', { approvedBy: ['alice'] }, null),
      ev.checkState('release', 'WAITING', 'FINAL'),
      ev.stageStarted('deploy'),
    ]);
  });

  test('required approvals count distinct principals; a repeat by the same principal appends nothing', () => {
    const g = waitingGate(2, null, approval('release', 'alice'));
    assert.deepEqual(approve(g, { principal: 'alice' }), []);
    assert.deepEqual(approve(g, { principal: 'bob' }), [
      approval('release', 'bob'),
      result('release', 1, 'bob', { approvedBy: ['alice', 'bob'] }, null),
      ev.checkState('release', 'WAITING', 'FINAL'),
      ev.stageStarted('deploy'),
    ]);
  });

  test('the first reject makes it FINAL with a failure naming the principal and the comment', () => {
    const g = waitingGate(2, null, approval('release', 'alice'));
    assert.deepEqual(approve(g, { principal: 'carol', decision: 'REJECT', comment: 'CVE-123 open' }).slice(0, 3), [
      approval('release', 'carol', 'REJECT', 'CVE-123 open'),
      result('release', 1, 'carol', { rejectedBy: 'carol', comment: 'CVE-123 open' }, 'rejected by carol: CVE-123 open'),
      ev.checkState('release', 'WAITING', 'FINAL'),
    ]);
  });

  test('at the deadline a pending gate goes FINAL with "approval timed out"; not before it', () => {
    const early = waitingGate(2, NOW + 1, approval('release', 'alice'));
    const d0 = early.draft();
    decideApprovalTimeout({ checkId: 'release' }, d0);
    assert.deepEqual(d0.events, [], 'before the deadline nothing happens');

    const g = waitingGate(2, NOW, approval('release', 'alice'));
    const draft = g.draft();
    decideApprovalTimeout({ checkId: 'release' }, draft);
    resolve(draft);
    assert.deepEqual(draft.events.map((p) => p.event).slice(0, 3), [
      { type: 'CheckApprovalTimedOut', data: { checkId: 'release', deadline: NOW } },
      result('release', 1, 'deadline', { approvedBy: ['alice'] }, 'approval timed out (1 of 2 approvals)'),
      ev.checkState('release', 'WAITING', 'FINAL'),
    ]);
  });

  test('WriteNodes cannot make a gate FINAL, nor assign a stage to it; the gate may be set only at creation', () => {
    const g = waitingGate();
    g.rejects({ checks: [{ id: 'release', state: 'FINAL' }] }, 'FAILED_PRECONDITION', /approval gate: only Approve/, 'checks[0].state');
    g.rejects(
      { stages: [{ id: 'runner', assignments: [{ checkId: 'release', goalState: 'FINAL' }] }] },
      'FAILED_PRECONDITION',
      /approval gate/,
      'stages[0].assignments[0].target_check_id',
    );
    given(ev.checkCreated('c')).rejects({ checks: [{ id: 'c', gate: gate() }] }, 'FAILED_PRECONDITION', /only when the check is created/, 'checks[0].approval_gate');
    g.when({ checks: [{ id: 'release', gate: gate() }] }).then();
  });

  test('a gate takes approvals only while WAITING and before its deadline; other checks take none', () => {
    const planning = given(ev.checkCreated('release', { gate: gate() }));
    assert.throws(() => approve(planning, { principal: 'alice' }), refusal('FAILED_PRECONDITION', /PLANNING: it takes approvals once it is WAITING/));
    assert.throws(() => approve(waitingGate(1, NOW), { principal: 'alice' }), refusal('FAILED_PRECONDITION', /passed its deadline/));
    assert.throws(() => approve(given(ev.checkCreated('release')), { principal: 'alice' }), refusal('FAILED_PRECONDITION', /not an approval gate/));
    assert.throws(() => approve(given(), { principal: 'alice' }), refusal('NOT_FOUND', /no check "release"/));
    const done = waitingGate(1, null, approval('release', 'alice'), ev.checkState('release', 'WAITING', 'FINAL'));
    assert.throws(() => approve(done, { principal: 'bob', decision: 'REJECT' }), refusal('FAILED_PRECONDITION', /FINAL and takes no more approvals/));
  });

  test('a stage that depends on a gate waits while it is pending', () => {
    const g = waitingGate(2);
    assert.equal(g.model.stage('deploy')!.state, 'PLANNED');
    assert.deepEqual(approve(g, { principal: 'alice' }), [approval('release', 'alice')]);
  });
});
