// The resolver's rules, as given events / when an event happens / then the events it emits in reaction.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ev, given, NOW, on } from './given-when-then.js';

const failure = (message: string) => ({ message, occurredAt: NOW });

describe('resolver: dependency predicates', () => {
  const planned = [
    ev.checkCreated('a'),
    ev.checkCreated('b'),
    ev.checkCreated('c'),
    ev.stageCreated('all', { dependencies: on('check', 'a', 'b') }),
    ev.stageCreated('any', { dependencies: { predicate: 'OR', threshold: 0, edges: on('check', 'a', 'b').edges } }),
    ev.stageCreated('two', { dependencies: { predicate: 'AND', threshold: 2, edges: on('check', 'a', 'b', 'c').edges } }),
  ];

  test('AND waits for every target; OR starts on the first; a threshold counts FINAL targets', () => {
    const g = given(...planned);
    g.happens(ev.checkState('a', 'PLANNING', 'FINAL')).then(ev.stageStarted('any'));
    const afterA = given(...planned, ev.checkState('a', 'PLANNING', 'FINAL'), ev.stageStarted('any'));
    afterA
      .happens(ev.checkState('b', 'PLANNING', 'FINAL'))
      .then(ev.stageStarted('all'), ev.stageStarted('two'));
  });

  test("each consequence names the event that caused it", () => {
    const w = given(...planned).happens(ev.checkState('a', 'PLANNING', 'FINAL'));
    const trigger = planned.length + 2; // WorkPlanCreated, the planned nodes, then the FINAL
    assert.deepEqual(w.causes, [trigger], 'the start (with its first attempt) follows from the FINAL');
  });

  test('a PLANNED check with satisfied dependencies goes WAITING', () => {
    given(ev.checkCreated('a'), ev.checkCreated('gate', { dependencies: on('check', 'a') }), ev.checkState('gate', 'PLANNING', 'PLANNED'))
      .happens(ev.checkState('a', 'PLANNING', 'FINAL'))
      .then(ev.checkState('gate', 'PLANNED', 'WAITING'));
  });
});

describe('resolver: stages', () => {
  const attempting = [ev.stageCreated('s', { maxAttempts: 2 }), ev.stageStarted('s')];

  test('an INCOMPLETE attempt is retried while attempts remain', () => {
    given(...attempting, ev.attemptState('s', 1, 'PENDING', 'RUNNING', 'p'))
      .happens(ev.attemptState('s', 1, 'RUNNING', 'INCOMPLETE', '', failure('boom')))
      .then(ev.attemptCreated('s', 2));
  });

  test('the last INCOMPLETE attempt ends the stage FINAL with the reason', () => {
    given(
      ...attempting,
      ev.attemptState('s', 1, 'PENDING', 'INCOMPLETE', '', failure('one')),
      ev.attemptCreated('s', 2),
    )
      .happens(ev.attemptState('s', 2, 'PENDING', 'INCOMPLETE', '', failure('two')))
      .then(ev.stageState('s', 'ATTEMPTING', 'FINAL', failure('attempt 2 of 2 was INCOMPLETE: two; no attempts left')));
  });

  test('a cancelled stage (FINAL) is not retried, and its assigned checks are finalized with a failure', () => {
    const g = given(ev.checkCreated('c'), ev.stageCreated('s', { assignments: [{ checkId: 'c', goalState: 'FINAL' }] }), ev.stageStarted('s'));
    g.happens(ev.attemptState('s', 1, 'PENDING', 'INCOMPLETE', '', failure('cancelled')), ev.stageState('s', 'ATTEMPTING', 'FINAL', failure('cancelled'))).then(
      {
        type: 'CheckResultAdded',
        data: { checkId: 'c', resultId: 1, ownerType: 'stage', ownerId: 's', data: {}, failure: failure('stage "s" finished without finalizing this check'), finalized: true },
      },
      ev.checkState('c', 'PLANNING', 'FINAL'),
    );
  });

  test('a parent AWAITING_GROUP goes FINAL when its last child does', () => {
    given(
      ev.stageCreated('parent'),
      ev.stageStarted('parent'),
      ev.stageCreated('kid-1', { parentStageId: 'parent' }),
      ev.stageCreated('kid-2', { parentStageId: 'parent' }),
      ev.stageState('kid-1', 'PLANNED', 'FINAL'),
      ev.attemptState('parent', 1, 'PENDING', 'RUNNING', 'p'),
      ev.attemptState('parent', 1, 'RUNNING', 'COMPLETE'),
      ev.stageState('parent', 'ATTEMPTING', 'AWAITING_GROUP'),
    )
      .happens(ev.stageState('kid-2', 'PLANNED', 'FINAL'))
      .then(ev.stageState('parent', 'AWAITING_GROUP', 'FINAL'));
  });

  test('a FINAL stage starts the stages that depend on it, and nothing else moves', () => {
    given(ev.stageCreated('build'), ev.stageCreated('deploy', { dependencies: on('stage', 'build') }), ev.stageCreated('other', { dependencies: on('stage', 'deploy') }))
      .happens(ev.stageState('build', 'PLANNED', 'FINAL'))
      .then(ev.stageStarted('deploy'));
  });
});
