// Whether the log takes writes. After a failed commit (disk full, I/O error) the orchestrator refuses nothing up
// front: each write is tried, alone and committed before anything is folded, so the first one that fits ends the
// failure; meanwhile reads and watches go on from the read models, which hold exactly what the log holds. An
// optional probe (e.g. "is there free space again?") ends it too, so health turns SERVING without a write first.
import { BehaviorSubject, type Observable } from 'rxjs';
import { DomainError } from '../domain/errors.js';
import { StorageFailure } from './event-store.js';

export class StorageState {
  private readonly state = new BehaviorSubject<DomainError | null>(null);
  /** null while the log takes writes; the error writes get while it does not. */
  readonly changes$: Observable<DomainError | null> = this.state.asObservable();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly probe?: () => boolean,
    private readonly probeIntervalMs = 1000,
  ) {}

  get failure(): DomainError | null {
    return this.state.value;
  }

  /** Records a failed write; returns the error to give the writers. */
  failed(err: StorageFailure): DomainError {
    const error =
      err.reason === 'full'
        ? new DomainError('RESOURCE_EXHAUSTED', `the event log cannot take writes: ${err.message}; nothing of this write was stored; retry once space is freed`)
        : new DomainError('UNAVAILABLE', `the event log cannot take writes: ${err.message}; nothing of this write was stored`);
    this.state.next(error);
    if (this.probe && err.reason === 'full' && !this.timer) {
      this.timer = setInterval(() => {
        let ok = false;
        try {
          ok = this.probe!();
        } catch {
          ok = false;
        }
        if (ok) this.recovered();
      }, this.probeIntervalMs);
      this.timer.unref();
    }
    return error;
  }

  recovered(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.state.value !== null) this.state.next(null);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.state.complete();
  }
}
