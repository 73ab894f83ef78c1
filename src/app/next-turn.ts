import { audit, Observable, type MonoTypeOperatorFunction } from 'rxjs';

/** Emits once on the next turn of the event loop (setImmediate), then completes. */
export const nextTurn = (): Observable<void> =>
  new Observable<void>((subscriber) => {
    const handle = setImmediate(() => {
      subscriber.next();
      subscriber.complete();
    });
    return () => clearImmediate(handle);
  });

/**
 * Lets through, on the next turn of the event loop, the latest of everything that came during this turn: a burst
 * of batches (one write can publish hundreds of events, one turn many writes) costs the consumer one pass.
 */
export const coalescePerTurn = <T>(): MonoTypeOperatorFunction<T> => audit(() => nextTurn());
