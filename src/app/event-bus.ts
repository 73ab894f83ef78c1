import { Subject, type Observable } from 'rxjs';
import type { RecordedEvent } from '../domain/events.js';

/**
 * The live event stream, in two stages. `batches$`: every batch as soon as it is appended, synchronously, so the
 * read models are up to date before the next decision. `durable$`: the same batches once committed to disk: what
 * may leave the process (watchers, calls to runners) follows this one, so a crash never takes back what someone
 * outside has seen. Both complete when the orchestrator closes, which ends every subscription.
 */
export class EventBus {
  private readonly appended = new Subject<readonly RecordedEvent[]>();
  private readonly committed = new Subject<readonly RecordedEvent[]>();
  readonly batches$: Observable<readonly RecordedEvent[]> = this.appended.asObservable();
  readonly durable$: Observable<readonly RecordedEvent[]> = this.committed.asObservable();

  publish(batch: readonly RecordedEvent[]): void {
    if (batch.length > 0) this.appended.next(batch);
  }

  publishDurable(batch: readonly RecordedEvent[]): void {
    if (batch.length > 0) this.committed.next(batch);
  }

  complete(): void {
    this.appended.complete();
    this.committed.complete();
  }
}
