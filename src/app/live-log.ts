// The live items of one watched workplan, kept once for all the subscribers that take every change: each reads them
// at its own cursor. A change then costs one push whatever the number of watchers, where a queue per watcher cost a
// push (and a check) per watcher per change: with 100 watchers that was most of what fan-out cost the server.
//
// Items stay until every reader has passed them (dropped in chunks, at the checks below). A reader more than `limit`
// items behind is removed and told it overflowed: the same bound a queue per subscriber had, so a slow client still
// cannot make the server hold an unbounded backlog.

/** One reader of a LiveLog (a subscription). */
export interface LiveReader {
  /** Absolute index of the next item it takes. */
  readonly cursor: number;
  /** Items arrived after it found none (see waitFor); called from the bus callback. */
  wakeLive(): void;
  /** It fell more than `limit` items behind and was removed from the log: it must end. */
  overflowed(): void;
}

/** How many pushes may pass between two looks at the readers' cursors (to drop what all of them have passed). */
const CHECK_EVERY = 1024;

export class LiveLog<T> {
  private items: T[] = [];
  /** Absolute index of items[0]. */
  private base = 0;
  private readonly readers = new Set<LiveReader>();
  /** Readers that found nothing left, to wake on the next push. */
  private waiting: LiveReader[] = [];
  /** The cursors need a look once the log ends here: no reader can have overflowed before, nor much be droppable. */
  private checkAt: number;

  constructor(private readonly limit: number) {
    this.checkAt = Math.min(limit + 1, CHECK_EVERY);
  }

  /** Absolute index one past the last item. */
  get end(): number {
    return this.base + this.items.length;
  }

  get readerCount(): number {
    return this.readers.size;
  }

  /** Items held right now (what the slowest reader has not passed, and up to CHECK_EVERY more). */
  get retained(): number {
    return this.items.length;
  }

  /** The item at absolute index `i` (base <= i < end: a reader's cursor always is, until it reaches the end). */
  at(i: number): T {
    return this.items[i - this.base]!;
  }

  /** Adds a reader; it starts at the end (what is pushed from now on). Returns its first cursor. */
  add(reader: LiveReader): number {
    this.readers.add(reader);
    return this.end;
  }

  remove(reader: LiveReader): void {
    this.readers.delete(reader);
  }

  /** `reader` has taken everything: wake it on the next push (once). */
  waitFor(reader: LiveReader): void {
    this.waiting.push(reader);
  }

  push(item: T): void {
    this.items.push(item);
    if (this.end >= this.checkAt) this.check();
    if (this.waiting.length) {
      const waiting = this.waiting;
      this.waiting = [];
      for (const reader of waiting) reader.wakeLive();
    }
  }

  /** Ends readers too far behind, drops what every remaining reader has passed, and sets the next look. */
  private check(): void {
    const end = this.end;
    let min = end;
    for (const reader of [...this.readers]) {
      if (end - reader.cursor > this.limit) {
        this.readers.delete(reader);
        reader.overflowed();
      } else if (reader.cursor < min) min = reader.cursor;
    }
    if (min > this.base) {
      this.items = this.items.slice(min - this.base);
      this.base = min;
    }
    // The slowest reader overflows at the earliest one past `limit` behind; every other one later.
    this.checkAt = Math.min(min + this.limit + 1, end + CHECK_EVERY);
  }
}
