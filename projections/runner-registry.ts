import { RUNNER_EVENT_TYPES, type RecordedEvent } from '../src/domain/events.js';
import type { SnapshotProjection } from './projection.js';
import type { RunnerRegistration } from '../src/domain/model.js';

/** Live runner registrations, folded from the registry stream. */
export class RunnerRegistry implements SnapshotProjection {
  readonly name = 'runners';
  readonly handles = RUNNER_EVENT_TYPES;
  private readonly live = new Map<string, RunnerRegistration>();
  private readonly byRunnerId = new Map<string, string>();
  /**
   * Live registration id → the principal that registered it. Dropped when the registration ends: an execution
   * dispatched to it keeps its own copy (ExecutionRef.owner), so this grows with the live runners only.
   */
  private readonly owners = new Map<string, string | null>();
  /** Version of the registry stream (for appends with an expected version). */
  version = 0;

  snapshot(): unknown {
    return { live: this.live, byRunnerId: this.byRunnerId, owners: this.owners, version: this.version };
  }
  restore(state: unknown): void {
    Object.assign(this, state);
  }

  registration(registrationId: string): RunnerRegistration | undefined {
    return this.live.get(registrationId);
  }

  byRunner(runnerId: string): RunnerRegistration | undefined {
    const id = this.byRunnerId.get(runnerId);
    return id === undefined ? undefined : this.live.get(id);
  }

  /** The principal that made a registration (null: recorded before principals were, or unknown). */
  ownerOf(registrationId: string): string | null {
    return this.owners.get(registrationId) ?? null;
  }

  registrations(): IterableIterator<RunnerRegistration> {
    return this.live.values();
  }

  fold(rec: RecordedEvent): void {
    this.version = rec.version;
    const e = rec.event;
    switch (e.type) {
      case 'RunnerRegistered':
        this.live.set(e.data.registrationId, { ...e.data, registeredAt: rec.recordedAt, lastHeartbeat: rec.recordedAt });
        this.byRunnerId.set(e.data.runnerId, e.data.registrationId);
        this.owners.set(e.data.registrationId, rec.causation.principal ?? null);
        return;
      case 'RunnerRefreshed': {
        const prev = this.live.get(e.data.registrationId);
        if (!prev) return;
        this.live.set(e.data.registrationId, { ...prev, ...e.data, lastHeartbeat: rec.recordedAt });
        return;
      }
      case 'RunnerUnregistered':
      case 'RunnerExpired': {
        const prev = this.live.get(e.data.registrationId);
        if (!prev) return;
        this.live.delete(e.data.registrationId);
        this.owners.delete(e.data.registrationId);
        if (this.byRunnerId.get(prev.runnerId) === prev.registrationId) this.byRunnerId.delete(prev.runnerId);
        return;
      }
      default:
        return;
    }
  }
}
