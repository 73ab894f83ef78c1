// Transactions against what the writer read: checkReadSet over given events.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkReadSet } from '../../src/domain/decide-transaction.js';
import { DomainError } from '../../src/domain/errors.js';
import { ev, given } from './given-when-then.js';

const refusal = (kind: string, message: RegExp, field: string) => (err: unknown) => {
  assert.ok(err instanceof DomainError);
  assert.equal(err.kind, kind);
  assert.match(err.message, message);
  assert.equal(err.field, field);
  return true;
};

describe('transactions against what the writer read', () => {
  // v2 a created, v3 b created, v4 a amended, v5 stage s created (v6, v7 its start)
  const g = given(
    ev.checkCreated('a'),
    ev.checkCreated('b'),
    { type: 'CheckAmended', data: { checkId: 'a', options: { x: 1 } } },
    ev.stageCreated('s'),
    ev.stageState('s', 'PLANNED', 'ATTEMPTING'),
    ev.attemptCreated('s', 1),
  );

  test('every node carries the stream version of its last change', () => {
    assert.equal(g.model.check('a')!.changedAtVersion, 4);
    assert.equal(g.model.check('b')!.changedAtVersion, 3);
    assert.equal(g.model.stage('s')!.changedAtVersion, 7, 'the attempt opened at v7 changed the stage');
  });

  test('reads unchanged since read_version pass, even when other nodes changed after it', () => {
    checkReadSet(g.model, { readVersion: 3, reads: [{ kind: 'check', id: 'b' }] });
    checkReadSet(g.model, { readVersion: 7, reads: [{ kind: 'check', id: 'a' }, { kind: 'stage', id: 's' }] });
  });

  test('a read node changed after read_version is ABORTED, naming the first such node and the version', () => {
    assert.throws(
      () => checkReadSet(g.model, { readVersion: 3, reads: [{ kind: 'check', id: 'b' }, { kind: 'stage', id: 's' }, { kind: 'check', id: 'a' }] }),
      refusal('ABORTED', /stage "s" changed at version 7, after read_version 3/, 'read_nodes[1]'),
    );
  });

  test('a node created after read_version changed; a node that does not exist did not', () => {
    assert.throws(() => checkReadSet(g.model, { readVersion: 4, reads: [{ kind: 'stage', id: 's' }] }), refusal('ABORTED', /version 7/, 'read_nodes[0]'));
    checkReadSet(g.model, { readVersion: 1, reads: [{ kind: 'check', id: 'ghost' }] });
  });

  test('a read_version beyond the workplan is INVALID_ARGUMENT', () => {
    assert.throws(() => checkReadSet(g.model, { readVersion: 8, reads: [] }), refusal('INVALID_ARGUMENT', /beyond the workplan's version 7/, 'read_version'));
  });
});
