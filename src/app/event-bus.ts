import { Subject, type Observable } from 'rxjs';
import type { RecordedEvent } from '../domain/events.js';

/**
 * The live event stream: every batch appended to the log is published here once committed, synchronously, so the
 * projections (and later subscribers such as watchers) are up to date before the RPC that caused it answers.
 */
export class EventBus {
  private readonly subject = new Subject<readonly RecordedEvent[]>();
  readonly batches$: Observable<readonly RecordedEvent[]> = this.subject.asObservable();

  publish(batch: readonly RecordedEvent[]): void {
    if (batch.length > 0) this.subject.next(batch);
  }

  complete(): void {
    this.subject.complete();
  }
}
