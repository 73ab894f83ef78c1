// Nested dependency groups, as given events / when command / then events.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DependencyGroup } from '../../src/domain/model.js';
import { ev, given } from './given-when-then.js';

const and = (...members: (DependencyGroup | string)[]): DependencyGroup => group('AND', 0, members);
const or = (...members: (DependencyGroup | string)[]): DependencyGroup => group('OR', 0, members);
const atLeast = (n: number, ...members: (DependencyGroup | string)[]): DependencyGroup => group('AND', n, members);
/** Members: check ids as strings, sub-groups as groups. */
function group(predicate: 'AND' | 'OR', threshold: number, members: (DependencyGroup | string)[]): DependencyGroup {
  const edges = members.filter((m): m is string => typeof m === 'string').map((id) => ({ kind: 'check' as const, id }));
  const groups = members.filter((m): m is DependencyGroup => typeof m !== 'string');
  return { predicate, threshold, edges, ...(groups.length ? { groups } : {}) };
}

const checks = (...ids: string[]) => ids.map((id) => ev.checkCreated(id));
const started = (stageId: string) => [ev.stageStarted(stageId)] as const;
const stageStarts = (events: readonly { type: string; data: unknown }[]) =>
  events.filter((e) => e.type === 'StageAttemptCreated' && (e.data as { startsStage?: boolean }).startsStage).map((e) => (e.data as { stageId: string }).stageId);

describe('nested dependency groups', () => {
  // (build-linux AND test-linux) OR (build-mac AND test-mac)
  const platforms = or(and('build-linux', 'test-linux'), and('build-mac', 'test-mac'));
  const g = given(...checks('build-linux', 'test-linux', 'build-mac', 'test-mac'), ev.stageCreated('deploy', { dependencies: platforms }));

  test('(A AND B) OR (C AND D): one member of each sub-group is not enough', () => {
    g.when({ checks: [{ id: 'build-linux', state: 'FINAL' }, { id: 'build-mac', state: 'FINAL' }] }).then(
      ev.checkState('build-linux', 'PLANNING', 'FINAL'),
      ev.checkState('build-mac', 'PLANNING', 'FINAL'),
    );
  });

  test('(A AND B) OR (C AND D): a whole sub-group starts the stage, caused by the member that completed it', () => {
    const g2 = given(
      ...checks('build-linux', 'test-linux', 'build-mac', 'test-mac'),
      ev.stageCreated('deploy', { dependencies: platforms }),
      ev.checkState('build-linux', 'PLANNING', 'FINAL'),
      ev.checkState('test-mac', 'PLANNING', 'FINAL'),
    );
    const w = g2.when({ checks: [{ id: 'build-mac', state: 'FINAL' }] });
    w.then(ev.checkState('build-mac', 'PLANNING', 'FINAL'), ...started('deploy'));
    assert.deepEqual(w.causes, [null, 9], 'build-mac (v9) completed the group');
  });

  test('"any 2 of these 3 groups": a threshold counts satisfied sub-groups', () => {
    const g3 = given(
      ...checks('a1', 'a2', 'b1', 'c1'),
      ev.stageCreated('s', { dependencies: atLeast(2, and('a1', 'a2'), or('b1'), and('c1')) }),
    );
    assert.deepEqual(stageStarts(g3.when({ checks: [{ id: 'a1', state: 'FINAL' }, { id: 'b1', state: 'FINAL' }] }).events), []);
    assert.deepEqual(stageStarts(g3.when({ checks: [{ id: 'c1', state: 'FINAL' }, { id: 'b1', state: 'FINAL' }] }).events), ['s']);
  });

  test('edges and sub-groups mix: AND of an edge and an OR group', () => {
    const gm = given(...checks('x', 'y', 'z'), ev.stageCreated('s', { dependencies: and('x', or('y', 'z')) }));
    assert.deepEqual(stageStarts(gm.when({ checks: [{ id: 'z', state: 'FINAL' }] }).events), []);
    assert.deepEqual(stageStarts(gm.when({ checks: [{ id: 'z', state: 'FINAL' }, { id: 'x', state: 'FINAL' }] }).events), ['s']);
  });

  test('an empty group is satisfied, nested or not: the stage starts when written', () => {
    given()
      .when({ stages: [{ id: 's', dependencies: and(and(), or()) }] })
      .then(ev.stageCreated('s', { dependencies: and(and(), or()) }), ...started('s'));
  });

  test('a group written with targets already FINAL counts them at once (three levels)', () => {
    const deep = and(or(and('a', 'b'), 'c'));
    const g2 = given(...checks('a', 'b'), ev.checkState('a', 'PLANNING', 'FINAL'), ev.checkState('b', 'PLANNING', 'FINAL'), ev.checkCreated('c'));
    assert.deepEqual(stageStarts(g2.when({ stages: [{ id: 's', dependencies: deep }] }).events), ['s']);
  });

  test('the index keys each group by node and path; a FINAL target counts only in the groups that hold it', () => {
    const m = g.model;
    assert.deepEqual([...m.dependents('check:build-linux')], ['stage:deploy 0']);
    assert.deepEqual([...m.dependents('check:test-mac')], ['stage:deploy 1']);
    const w = g.when({ checks: [{ id: 'build-linux', state: 'FINAL' }, { id: 'test-linux', state: 'FINAL' }] });
    assert.deepEqual(stageStarts(w.events), ['deploy']);
    const after = given(
      ...checks('build-linux', 'test-linux', 'build-mac', 'test-mac'),
      ev.stageCreated('deploy', { dependencies: platforms }),
      ev.checkState('build-linux', 'PLANNING', 'FINAL'),
    ).model;
    assert.equal(after.finalTargets('stage:deploy 0'), 1, 'linux group: 1 of 2');
    assert.equal(after.finalTargets('stage:deploy 1'), 0, 'mac group untouched');
    assert.equal(after.finalTargets('stage:deploy'), 0, 'root: no sub-group holds yet');
  });

  test('a dependency on a missing node deep in a group names its path', () => {
    given(ev.checkCreated('a')).rejects(
      { stages: [{ id: 's', dependencies: and('a', and('a'), or(and('ghost'))) }] },
      'INVALID_ARGUMENT',
      /no check "ghost"/,
      'stages[0].dependencies.groups[1].groups[0].dependencies[0].target_id',
    );
  });

  test('cycle detection sees through nesting', () => {
    given(ev.checkCreated('x'), ev.checkCreated('b'), ev.checkCreated('a', { dependencies: or(and('x'), and(or('b'))) })).rejects(
      { checks: [{ id: 'b', dependencies: and(or(and('a'))) }] },
      'INVALID_ARGUMENT',
      /dependency cycle: check:b -> check:a -> check:b/,
      'checks[0].dependencies',
    );
  });

  test('resending the same nested group is a no-op; flat groups stay without `groups`', () => {
    const g2 = given(ev.checkCreated('a'), ev.stageCreated('s', { dependencies: and(or('a')) }));
    g2.when({ stages: [{ id: 's', dependencies: and(or('a')) }] }).then();
    assert.equal('groups' in and('a'), false);
  });
});
