// The live items shared by a workplan's unfiltered watchers (src/app/live-log.ts): every reader gets every item once,
// in order, at its own pace; a reader is woken once per wait; one too far behind is ended without touching the
// others; items every reader has passed are let go. The API tests (watch.test.ts) cover the same over gRPC.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LiveLog, type LiveReader } from '../src/app/live-log.js';

class Reader implements LiveReader {
  cursor: number;
  readonly got: number[] = [];
  wakes = 0;
  overflows = 0;
  constructor(private readonly log: LiveLog<number>) {
    this.cursor = log.add(this);
  }
  /** Takes up to `n` items, as a pump would; waits to be woken when it finds none. */
  take(n = Infinity): void {
    for (let k = 0; k < n; k++) {
      if (this.cursor >= this.log.end) {
        this.log.waitFor(this);
        return;
      }
      this.got.push(this.log.at(this.cursor++));
    }
  }
  wakeLive(): void {
    this.wakes++;
  }
  overflowed(): void {
    this.overflows++;
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

describe('shared live log', () => {
  test('a reader starts at the end: it gets what is pushed after it joined, each once, in order', () => {
    const log = new LiveLog<number>(100);
    log.push(0);
    const r = new Reader(log);
    for (const i of range(1, 50)) log.push(i);
    r.take(10);
    r.take();
    assert.deepEqual(r.got, range(1, 50));
  });

  test('a reader that found nothing is woken once by the next push, not by every push', () => {
    const log = new LiveLog<number>(100);
    const r = new Reader(log);
    r.take();
    assert.equal(r.wakes, 0);
    log.push(1);
    log.push(2);
    log.push(3);
    assert.equal(r.wakes, 1);
    r.take();
    log.push(4);
    assert.equal(r.wakes, 2);
    assert.deepEqual(r.got, [1, 2, 3]);
  });

  test('a reader more than the limit behind is ended; the others go on and lose nothing', () => {
    const limit = 10;
    const log = new LiveLog<number>(limit);
    const fast = new Reader(log);
    const slow = new Reader(log);
    for (const i of range(0, limit)) {
      log.push(i);
      fast.take();
    }
    assert.equal(slow.overflows, 0, 'exactly the limit behind is still allowed');
    log.push(limit);
    fast.take();
    assert.equal(slow.overflows, 1);
    assert.equal(log.readerCount, 1);
    for (const i of range(limit + 1, 5000)) {
      log.push(i);
      fast.take();
    }
    assert.equal(fast.overflows, 0);
    assert.deepEqual(fast.got, range(0, 5000));
  });

  test('items every reader has passed are let go; a slow reader keeps what it has not read yet', () => {
    const log = new LiveLog<number>(100_000);
    const fast = new Reader(log);
    const slow = new Reader(log);
    for (const i of range(0, 3000)) {
      log.push(i);
      fast.take();
    }
    assert.ok(log.retained >= 3000, `the slow reader read nothing: all ${log.retained} kept`);
    slow.take(2500);
    for (const i of range(3000, 6000)) {
      log.push(i);
      fast.take();
    }
    assert.ok(log.retained <= 6000 - 2500, `what both passed is gone (${log.retained} kept)`);
    slow.take();
    assert.deepEqual(slow.got, range(0, 6000));
    log.remove(slow);
    for (const i of range(6000, 9000)) {
      log.push(i);
      fast.take();
    }
    assert.ok(log.retained <= 1024, `with every reader caught up, at most one check's worth is kept (${log.retained})`);
    assert.deepEqual(fast.got, range(0, 9000));
  });
});
