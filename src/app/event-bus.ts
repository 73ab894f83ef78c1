import { Subject, type Observable } from 'rxjs';
import type { RecordedEvent } from '../domain/events.js';

/**
 * The live event stream, in two stages. `batches$`: every batch as soon as it is appended, synchronously, so the
 * read models are up to date before the next decision. `durable$`: the same batches once flushed to disk: what
 * may leave the process (watchers, calls to runners) follows this one, so a crash never takes back what someone
 * outside has seen.
 */
export class EventBus {
  private readonly appended = new Subject<readonly RecordedEvent[]>();
  private readonly flushed = new Subject<readonly RecordedEvent[]>();
  readonly batches$: Observable<readonly RecordedEvent[]> = this.appended.asObservable();
  readonly durable$: Observable<readonly RecordedEvent[]> = this.flushed.asObservable();

  publish(batch: readonly RecordedEvent[]): void {
    if (batch.length > 0) this.appended.next(batch);
  }

  publishDurable(batch: readonly RecordedEvent[]): void {
    if (batch.length > 0) this.flushed.next(batch);
  }

  complete(): void {
    this.appended.complete();
    this.flushed.complete();
  }
}
