// The fsync of a group commit, off the main thread. SQLite at synchronous=FULL fsyncs its WAL inside COMMIT, and
// the event loop stands still for it (0.15–0.5 ms a commit here, more on a busy disk): nothing else is decided
// meanwhile. At synchronous=NORMAL the COMMIT only writes the WAL; this class then makes those frames durable with
// an fdatasync of the WAL file on libuv's thread pool, while the main thread goes on deciding the next calls.
// What the commit recorded is let out (answers, dispatches, leases, watch events) only once that fdatasync is done,
// so what a client or runner hears of is exactly as durable as at FULL.
//
// Group commit, pipelined: requests that arrive while an fdatasync runs wait for the next one, which starts the
// moment the running one ends and covers every commit made before it starts. Callbacks run in request order.
//
// Adaptive: while fdatasyncs are fast (a moving average under inlineBelowMs, 1 ms by default), one is made right here on the main
// thread and the callback runs at once, as SQLite's own FULL would: measured on an idle disk, the hop to the thread
// pool and back cost more than it freed (a fan-in of stages ran ~8% slower, with ~13% more, smaller commits). When
// the disk gets slow (another workload on it: 4 ms a sync was seen here), syncs move off the main thread, and back
// once they are fast again.
// SQLite checkpoints at NORMAL still sync the WAL before copying it and the database after, so a checkpoint never
// drops frames that this class has not synced yet.
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

export type DurableCallback = (err: Error | null) => void;

/** Syncs faster than this on average are made on the main thread (the default of WalSync's inlineBelowMs). */
export const INLINE_BELOW_MS = 1;
/** Weight of the latest sync in the moving average. */
const EWMA_WEIGHT = 0.2;

export class WalSync {
  private fd = -1;
  /** The callbacks of the fdatasync running now, if one is. */
  private inFlight: DurableCallback[] | null = null;
  /** Waiting for the next fdatasync (the running one may have started before their commits). */
  private next: DurableCallback[] = [];
  private closed = false;
  /** Moving average of recent fdatasyncs, in ms (including the trip to the thread pool and back, when they made it). */
  private averageMs = 0;

  /** inlineBelowMs: 0 makes every sync off the main thread; Infinity every one on it. */
  constructor(
    private readonly walPath: string,
    private readonly inlineBelowMs = INLINE_BELOW_MS,
  ) {}

  /** Where the next sync will run (tests, and the log of a slow disk). */
  get offMainThread(): boolean {
    return this.averageMs >= this.inlineBelowMs;
  }

  /** Calls back once everything committed before this call is on disk (or with the error that prevented it). */
  request(cb: DurableCallback): void {
    if (this.closed) {
      cb(new Error(`${this.walPath}: closed`));
      return;
    }
    if (!this.inFlight && !this.offMainThread) {
      this.syncHere(cb);
      return;
    }
    this.next.push(cb);
    if (!this.inFlight) this.start();
  }

  /**
   * Syncs what is left, at once, and runs every callback still waiting, the running fdatasync's included (the store
   * is closing; nothing may be left unsynced or uncalled). The file is closed here, or by the running fdatasync
   * when it ends.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    let err: Error | null = null;
    try {
      const fd = this.file();
      if (fd >= 0) fdatasyncSync(fd);
    } catch (e) {
      err = e as Error;
    }
    const waiting = [...(this.inFlight ?? []), ...this.next];
    const running = this.inFlight !== null;
    this.inFlight = running ? [] : null;
    this.next = [];
    for (const cb of waiting) cb(err);
    if (!running) this.closeFile();
  }

  /** One fdatasync on the main thread, timed; the callback runs before this returns. */
  private syncHere(cb: DurableCallback): void {
    let err: Error | null = null;
    const t0 = performance.now();
    try {
      const fd = this.file();
      if (fd >= 0) fdatasyncSync(fd);
    } catch (e) {
      err = e as Error;
    }
    this.observe(performance.now() - t0);
    cb(err);
  }

  private observe(ms: number): void {
    this.averageMs += EWMA_WEIGHT * (ms - this.averageMs);
  }

  private closeFile(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private start(): void {
    const batch = this.next;
    this.next = [];
    let fd: number;
    try {
      fd = this.file();
    } catch (err) {
      for (const cb of batch) cb(err as Error);
      return;
    }
    if (fd < 0) {
      // No WAL file: nothing was ever committed through it, so there is nothing to make durable.
      for (const cb of batch) cb(null);
      return;
    }
    this.inFlight = batch;
    const t0 = performance.now();
    fdatasync(fd, (err) => {
      this.observe(performance.now() - t0);
      // Still "running" while the callbacks run: a request one of them makes (a flush that commits) queues behind
      // them instead of syncing ahead of them, so callbacks stay in request order; close() finds none left to call.
      const called = this.inFlight!;
      this.inFlight = [];
      for (const cb of called) cb(err);
      this.inFlight = null;
      if (this.closed) this.closeFile();
      else if (this.next.length > 0) this.start();
    });
  }

  /**
   * The WAL's descriptor, opened on first use (SQLite creates the file with the first write; -1 until then). It is
   * not looked up again: SQLite deletes the WAL only when the last connection closes, and the store's own
   * connection stays open as long as this object is used. The directory is synced once, so the file's entry is
   * durable too.
   */
  private file(): number {
    if (this.fd >= 0) return this.fd;
    try {
      this.fd = openSync(this.walPath, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return -1;
      throw err;
    }
    const dir = openSync(dirname(this.walPath), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    return this.fd;
  }
}
