// The watch projection: given events, each folded event says what changed on its node and when the workplan
// completed.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { WatchTracker } from '../../projections/watch-tracker.js';
import type { DomainEvent, RecordedEvent } from '../../src/domain/events.js';
import { ev, NOW } from './given-when-then.js';

function fold(...events: DomainEvent[]) {
  const tracker = WatchTracker.empty();
  const all = [{ type: 'WorkPlanCreated', data: { metadata: {} } } as DomainEvent, ...events];
  const steps = all.map((event, i) => {
    const rec: RecordedEvent = { position: i + 1, streamId: 'wp', version: i + 1, recordedAt: NOW + i, causation: { requestId: null, causedByVersion: null }, event };
    return tracker.fold(rec);
  });
  return { tracker, steps };
}

describe('watch tracker', () => {
  test('each event gives the node before and right after it, not after its whole batch', () => {
    const { steps } = fold(ev.checkCreated('c'), ev.checkState('c', 'PLANNING', 'PLANNED'), ev.checkState('c', 'PLANNED', 'WAITING'));
    assert.equal(steps[0]!.change, null, 'WorkPlanCreated changes no node');
    const states = steps.slice(1).map((s) => s.change?.kind === 'check' && [s.change.before?.state, s.change.after.state]);
    assert.deepEqual(states, [[undefined, 'PLANNING'], ['PLANNING', 'PLANNED'], ['PLANNED', 'WAITING']]);
  });

  test('completion is reported once, by the event that made every node FINAL, with counts and failures', () => {
    const { tracker, steps } = fold(
      ev.checkCreated('c'),
      ev.stageCreated('s'),
      ev.checkState('c', 'PLANNING', 'FINAL'),
      ev.stageState('s', 'PLANNED', 'FINAL', { message: 'cancelled', occurredAt: NOW }),
    );
    assert.deepEqual(
      steps.map((s) => s.completed),
      [null, null, null, null, { checksCompleted: 1, stagesCompleted: 1, hasFailures: true }],
    );
    assert.equal(tracker.complete, true);
    assert.equal(tracker.lastCompletedAt, NOW + 4);
  });

  test('a new node makes a complete workplan incomplete again, and its completion is reported anew', () => {
    const { steps } = fold(ev.checkCreated('a'), ev.checkState('a', 'PLANNING', 'FINAL'), ev.checkCreated('b'), ev.checkState('b', 'PLANNING', 'FINAL'));
    assert.deepEqual(
      steps.map((s) => s.completed?.checksCompleted ?? null),
      [null, null, 1, null, 2],
    );
  });
});
