/**
 * A trigger that runs `fn` once on the next turn of the event loop however often it is pulled before then: a burst
 * of events (one append can publish hundreds) costs one pass, not one per event.
 */
export function onNextTurn(fn: () => void): () => void {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      fn();
    });
  };
}
