// The WriteNodes decision and the resolver, as given events / when command / then events.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { nodeKey } from '../../src/domain/model.js';
import { ev, given, NOW, on } from './given-when-then.js';

describe('checks', () => {
  test('a new check is PLANNING; written PLANNED it is created PLANNED, and with no dependencies goes WAITING at once', () => {
    given().when({ checks: [{ id: 'c' }] }).then(ev.checkCreated('c'));
    given()
      .when({ checks: [{ id: 'c', state: 'PLANNED' }] })
      .then(ev.checkCreated('c', { state: 'PLANNED' }), ev.checkState('c', 'PLANNED', 'WAITING'));
  });

  test('a new check written PLANNED with a result: created PLANNED, then the result; FINAL is still a move after it', () => {
    const result = { ownerType: 'stage', ownerId: 's', data: { x: 1 }, finalize: true };
    given()
      .when({ checks: [{ id: 'c', state: 'PLANNED', kind: 'k', dependencies: on('check', 'd') }, { id: 'd' }] })
      .then(ev.checkCreated('c', { state: 'PLANNED', kind: 'k', dependencies: on('check', 'd') }), ev.checkCreated('d'));
    given()
      .when({ checks: [{ id: 'c', state: 'FINAL', result }] })
      .then(
        ev.checkCreated('c'),
        { type: 'CheckResultAdded', data: { checkId: 'c', resultId: 1, ownerType: 'stage', ownerId: 's', data: { x: 1 }, failure: null, finalized: true } },
        ev.checkState('c', 'PLANNING', 'FINAL'),
      );
  });

  test('a version 1 log, a check created PLANNING then moved PLANNED, folds to the same check and waits the same', () => {
    const v1 = given(ev.checkCreated('dep'), ev.checkCreated('c', { dependencies: on('check', 'dep') }), ev.checkState('c', 'PLANNING', 'PLANNED'));
    const v2 = given(ev.checkCreated('dep'), ev.checkCreated('c', { state: 'PLANNED', dependencies: on('check', 'dep') }));
    const { version: _v1, changedAtVersion: _c1, updatedAt: _u1, ...check1 } = v1.model.check('c')!;
    const { version: _v2, changedAtVersion: _c2, updatedAt: _u2, ...check2 } = v2.model.check('c')!;
    assert.deepEqual(check2, check1);
    assert.equal(check2.state, 'PLANNED');
    v1.when({ checks: [{ id: 'dep', state: 'FINAL' }] }).then(ev.checkState('dep', 'PLANNING', 'FINAL'), ev.checkState('c', 'PLANNED', 'WAITING'));
    v2.when({ checks: [{ id: 'dep', state: 'FINAL' }] }).then(ev.checkState('dep', 'PLANNING', 'FINAL'), ev.checkState('c', 'PLANNED', 'WAITING'));
  });

  test('a PLANNED check waits for its dependency, and goes WAITING in the write that finalizes it', () => {
    const g = given(
      ev.checkCreated('dep'),
      ev.checkCreated('c', { dependencies: on('check', 'dep') }),
      ev.checkState('c', 'PLANNING', 'PLANNED'),
    );
    const w = g.when({ checks: [{ id: 'dep', state: 'FINAL' }] });
    w.then(ev.checkState('dep', 'PLANNING', 'FINAL'), ev.checkState('c', 'PLANNED', 'WAITING'));
    assert.deepEqual(w.causes, [null, 5], 'the advance names the event that caused it');
  });

  test('a client cannot ask for WAITING, nor leave FINAL', () => {
    given(ev.checkCreated('c')).rejects({ checks: [{ id: 'c', state: 'WAITING' }] }, 'FAILED_PRECONDITION', /PLANNING to WAITING/, 'checks[0].state');
    given(ev.checkCreated('c'), ev.checkState('c', 'PLANNING', 'FINAL')).rejects(
      { checks: [{ id: 'c', state: 'PLANNED' }] },
      'FAILED_PRECONDITION',
      /FINAL and takes no more writes/,
    );
  });

  test('kind, options and dependencies are frozen once PLANNED; resending the same values is a no-op', () => {
    const g = given(ev.checkCreated('c', { kind: 'build', options: { a: 1 } }), ev.checkState('c', 'PLANNING', 'PLANNED'));
    g.rejects({ checks: [{ id: 'c', options: { a: 2 } }] }, 'FAILED_PRECONDITION', /only while it is PLANNING/, 'checks[0].options');
    g.when({ checks: [{ id: 'c', kind: 'build', options: { a: 1 } }] }).then();
  });

  test('options merge key by key while PLANNING', () => {
    given(ev.checkCreated('c', { options: { a: 1, b: 2 } }))
      .when({ checks: [{ id: 'c', options: { b: 3 } }] })
      .then({ type: 'CheckAmended', data: { checkId: 'c', options: { b: 3 } } });
  });

  test('a result is added with the next id, and its failure keeps the client time', () => {
    given(ev.checkCreated('c'))
      .when({
        checks: [{ id: 'c', result: { ownerType: 'stage', ownerId: 's', data: { x: 1 }, finalize: true, failure: { message: 'boom', occurredAt: 5 } } }],
      })
      .then({
        type: 'CheckResultAdded',
        data: { checkId: 'c', resultId: 1, ownerType: 'stage', ownerId: 's', data: { x: 1 }, failure: { message: 'boom', occurredAt: 5 }, finalized: true },
      });
  });
});

describe('stages and attempts', () => {
  test('a stage with satisfied dependencies starts: ATTEMPTING with attempt 1 PENDING', () => {
    given()
      .when({ stages: [{ id: 's' }] })
      .then(ev.stageCreated('s'), ev.stageStarted('s'));
    const started = given(ev.stageCreated('s'), ev.stageStarted('s')).model.stage('s')!;
    assert.equal(started.state, 'ATTEMPTING');
    assert.deepEqual(started.attempts.map((a) => [a.idx, a.state]), [[1, 'PENDING']]);
  });

  test('a version 1 log, the start and the first attempt as two events, folds to the same stage', () => {
    const v1 = given(ev.stageCreated('s'), ev.stageState('s', 'PLANNED', 'ATTEMPTING'), ev.attemptCreated('s', 1)).model.stage('s')!;
    const v2 = given(ev.stageCreated('s'), ev.stageStarted('s')).model.stage('s')!;
    assert.equal(v1.state, v2.state);
    assert.deepEqual(v1.attempts, v2.attempts);
  });

  const running = [ev.stageCreated('s'), ev.stageStarted('s')];

  test('a process_uid alone claims the attempt: RUNNING', () => {
    given(...running)
      .when({ stages: [{ id: 's', currentAttempt: { processUid: 'p1' } }] })
      .then(ev.attemptState('s', 1, 'PENDING', 'RUNNING', 'p1'));
  });

  test('another process cannot write a claimed attempt', () => {
    given(...running, ev.attemptState('s', 1, 'PENDING', 'RUNNING', 'p1')).rejects(
      { stages: [{ id: 's', currentAttempt: { processUid: 'p2', state: 'COMPLETE' } }] },
      'FAILED_PRECONDITION',
      /claimed by "p1"/,
      'stages[0].current_attempt.process_uid',
    );
  });

  test('COMPLETE finishes the stage, in the same event; sending FINAL with it is the compat no-op', () => {
    given(...running, ev.attemptState('s', 1, 'PENDING', 'RUNNING', 'p1'))
      .when({ stages: [{ id: 's', currentAttempt: { state: 'COMPLETE' }, state: 'FINAL' }] })
      .then(ev.attemptState('s', 1, 'RUNNING', 'COMPLETE', '', null, 'FINAL'));
  });

  test('a version 2 log, the completion and the stage going FINAL as two events, folds to the same stage and starts the same dependents', () => {
    const claimed = [...running, ev.stageCreated('next', { dependencies: on('stage', 's') }), ev.attemptState('s', 1, 'PENDING', 'RUNNING', 'p1')];
    const v2 = given(...claimed, ev.attemptState('s', 1, 'RUNNING', 'COMPLETE'), ev.stageState('s', 'ATTEMPTING', 'FINAL'));
    const v3 = given(...claimed, ev.attemptState('s', 1, 'RUNNING', 'COMPLETE', '', null, 'FINAL'));
    const { version: _v2, changedAtVersion: _c2, updatedAt: _u2, ...stage2 } = v2.model.stage('s')!;
    const { version: _v3, changedAtVersion: _c3, updatedAt: _u3, ...stage3 } = v3.model.stage('s')!;
    assert.deepEqual(stage3, stage2);
    assert.equal(stage3.state, 'FINAL');
    const next = nodeKey({ kind: 'stage', id: 'next' });
    assert.equal(v3.model.finalTargets(next), 1);
    assert.equal(v3.model.finalTargets(next), v2.model.finalTargets(next));
    given(...claimed)
      .when({ stages: [{ id: 's', currentAttempt: { state: 'COMPLETE' } }] })
      .then(ev.attemptState('s', 1, 'RUNNING', 'COMPLETE', '', null, 'FINAL'), ev.stageStarted('next'));
  });

  test('INCOMPLETE is retried with a new attempt while attempts remain', () => {
    given(...running)
      .when({ stages: [{ id: 's', currentAttempt: { failure: { message: 'oom' } } }] })
      .then(ev.attemptState('s', 1, 'PENDING', 'INCOMPLETE', '', { message: 'oom', occurredAt: NOW }), ev.attemptCreated('s', 2));
  });

  test('the last INCOMPLETE attempt fails the stage, which finalizes its unfinished checks with a failure', () => {
    const g = given(
      ev.checkCreated('c'),
      ev.stageCreated('s', { maxAttempts: 1, assignments: [{ checkId: 'c', goalState: 'FINAL' }] }),
      ev.stageStarted('s'),
    );
    g.when({ stages: [{ id: 's', currentAttempt: { failure: { message: 'oom' } } }] }).then(
      ev.attemptState('s', 1, 'PENDING', 'INCOMPLETE', '', { message: 'oom', occurredAt: NOW }),
      ev.stageState('s', 'ATTEMPTING', 'FINAL', { message: 'attempt 1 of 1 was INCOMPLETE: oom; no attempts left', occurredAt: NOW }),
      {
        type: 'CheckResultAdded',
        data: {
          checkId: 'c',
          resultId: 1,
          ownerType: 'stage',
          ownerId: 's',
          data: {},
          failure: { message: 'stage "s" finished without finalizing this check', occurredAt: NOW },
          finalized: true,
        },
      },
      ev.checkState('c', 'PLANNING', 'FINAL'),
    );
  });

  test('cancelling an ATTEMPTING stage makes its attempt INCOMPLETE and does not retry', () => {
    const cancelled = { message: 'stage cancelled: a client set it FINAL', occurredAt: NOW };
    given(...running)
      .when({ stages: [{ id: 's', state: 'FINAL' }] })
      .then(ev.attemptState('s', 1, 'PENDING', 'INCOMPLETE', '', cancelled), ev.stageState('s', 'ATTEMPTING', 'FINAL', cancelled));
  });

  test('a parent whose attempt completes waits for its children, and goes FINAL with the last of them', () => {
    const g = given(
      ...running,
      ev.attemptState('s', 1, 'PENDING', 'RUNNING', 'p'),
      ev.stageCreated('child', { parentStageId: 's' }),
      ev.stageStarted('child'),
      ev.attemptState('child', 1, 'PENDING', 'RUNNING', 'q'),
    );
    const waiting = ev.attemptState('s', 1, 'RUNNING', 'COMPLETE', '', null, 'AWAITING_GROUP');
    g.when({ stages: [{ id: 's', currentAttempt: { state: 'COMPLETE' }, state: 'FINAL' }] }).then(waiting);
    given(
      ...running,
      ev.attemptState('s', 1, 'PENDING', 'RUNNING', 'p'),
      ev.stageCreated('child', { parentStageId: 's' }),
      ev.stageStarted('child'),
      ev.attemptState('child', 1, 'PENDING', 'RUNNING', 'q'),
      waiting,
    )
      .when({ stages: [{ id: 'child', currentAttempt: { state: 'COMPLETE' } }] })
      .then(ev.attemptState('child', 1, 'RUNNING', 'COMPLETE', '', null, 'FINAL'), ev.stageState('s', 'AWAITING_GROUP', 'FINAL'));
  });

  test('frozen stage fields: args change only while PLANNED', () => {
    given(...running).rejects({ stages: [{ id: 's', args: { x: 1 } }] }, 'FAILED_PRECONDITION', /only while it is PLANNED/, 'stages[0].args');
  });
});

describe('whole-request validation', () => {
  test('a dependency on a node that does not exist is rejected naming the field', () => {
    given().rejects(
      { stages: [{ id: 's', dependencies: on('check', 'ghost') }] },
      'INVALID_ARGUMENT',
      /no check "ghost"/,
      'stages[0].dependencies.dependencies[0].target_id',
    );
  });

  test('a target created later in the same request is fine', () => {
    const w = given().when({ stages: [{ id: 'a', dependencies: on('stage', 'b') }, { id: 'b' }] });
    assert.deepEqual(
      w.events.map((e) => e.type),
      ['StageCreated', 'StageCreated', 'StageAttemptCreated'],
    );
  });

  test('a cycle is rejected naming it, including one closed through an existing node', () => {
    given().rejects(
      { checks: [{ id: 'a', dependencies: on('check', 'b') }, { id: 'b', dependencies: on('check', 'a') }] },
      'INVALID_ARGUMENT',
      /dependency cycle: check:a -> check:b -> check:a|dependency cycle: check:b -> check:a -> check:b/,
    );
    given(ev.checkCreated('a'), ev.checkCreated('b', { dependencies: on('check', 'a') })).rejects(
      { checks: [{ id: 'a', dependencies: on('check', 'b') }] },
      'INVALID_ARGUMENT',
      /cycle/,
    );
    given().rejects({ stages: [{ id: 's', dependencies: on('stage', 's') }] }, 'INVALID_ARGUMENT', /stage:s -> stage:s/);
  });

  test('threshold and OR groups', () => {
    const g = given(
      ev.checkCreated('a'),
      ev.checkCreated('b'),
      ev.checkCreated('c'),
      ev.stageCreated('two', { dependencies: { predicate: 'AND', threshold: 2, edges: on('check', 'a', 'b', 'c').edges } }),
      ev.stageCreated('any', { dependencies: { predicate: 'OR', threshold: 0, edges: on('check', 'a', 'b').edges } }),
    );
    assert.deepEqual(
      g.when({ checks: [{ id: 'a', state: 'FINAL' }] }).events.filter((e) => e.type === 'StageAttemptCreated'),
      [ev.stageStarted('any')],
    );
    assert.deepEqual(
      g.when({ checks: [{ id: 'a', state: 'FINAL' }, { id: 'c', state: 'FINAL' }] }).events.filter((e) => e.type === 'StageAttemptCreated'),
      [ev.stageStarted('two'), ev.stageStarted('any')],
    );
  });
});
