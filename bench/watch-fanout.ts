// Watch fan-out: what 100 WatchWorkPlan subscribers on a workplan cost the writers of that workplan.
//
// One real server (`turboci serve`, default --sync FULL, --log-level warn). A writer process (bench/transport-client.ts)
// makes a fixed number of WriteNodes calls, 16 in flight, each writing one new check to the round's fresh workplan
// (2 node changes each: created PLANNED, then WAITING; the count is read off a real write). Ours: with 100 watchers
// on that workplan, in a separate process (bench/watch-subscribers.ts, one connection each, every event consumed),
// opened and live before the writes start.
// Baseline: the same writes with no watcher. Watchers come in three kinds, each a kind of round: WatchWorkPlan (one
// message per event), WatchWorkPlanBatched (the events waiting when a stream is written, in one message) and
// WatchWorkPlanBatched with max_batch_delay_ms (a coalescing window: at most one message per window per stream).
// After each round with watchers, every watcher's event count and version sequence are checked against the
// workplan's final version; a mismatch is reported, not thrown.
//
// Environment, for profiling and exploring (the defaults are what docs/performance.md reports):
//   TURBOCI_BENCH_WATCH_KINDS=plain,none,batched,floor,windowed,floor-windowed   the kinds of round (default: all)
//   TURBOCI_BENCH_BATCH_DELAY_MS=50                                the windowed watchers' max_batch_delay_ms
//   TURBOCI_BENCH_WATCH_PLACEMENT=shared   the processes share every core (the default, own-cores, gives the watcher
//       process a core of its own and the server and the writer the other one: see PLACEMENT)
//   TURBOCI_BENCH_WATCHERS_NICE=10                                 the watcher process's niceness (default 0): a
//       rough stand-in for watchers on other machines, whose decoding does not take CPU from the writes
//   TURBOCI_BENCH_WATCHERS_RAW=1     the watchers read each event's version off the wire instead of decoding it
//       (another stand-in for watchers whose CPU is elsewhere; the checks of counts and versions are the same)
//
// A third kind of round measures the floor of fan-out in node: bench/noop-watch-server.ts streams copies of one of our
// real events (as many as FLOOR_WRITES writes make) to the same 100 watchers with grpc-js alone; its CPU per message sent is compared
// with what fan-out costs our server per event. The kinds of round take turns.
import { execFileSync } from 'node:child_process';
import { availableParallelism, loadavg, setPriority } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { CheckState } from '../src/gen/turboci/v1/common.js';
import { WatchWorkPlanRequest, WorkPlanEvent } from '../src/gen/turboci/v1/service.js';
import { connect, tempDir, type Api } from '../test/support/server.js';
import { benchArgs, median, ratio, report, type Ratio } from './harness.js';
import type { SubscribersResult } from './watch-subscribers.js';
import {
  benchScript,
  cpuSeconds,
  spawnChild,
  startLoadClient,
  startNoopWatchServer,
  startQuietServer,
  type ChildProc,
  type ChildServer,
  type LoadClient,
  type NoopWatchServer,
} from './transport-support.js';

const args = benchArgs();
const SUBSCRIBERS = args.smoke ? 5 : 100;
const CONCURRENCY = 16;
/**
 * Node changes per write (CheckCreated at PLANNED, PLANNED→WAITING): set from a real write by sampleEvent before any
 * round, so the counts checked and the CPU per event follow what the server does.
 */
let EVENTS_PER_WRITE = 0;
const SIZES = args.smoke
  ? { rounds: 1, firstWarmup: 16, calibrationCalls: 32, fixedCalls: 32, roundSeconds: 0 }
  : { rounds: 5, firstWarmup: 1000, calibrationCalls: 500, fixedCalls: 0, roundSeconds: 1.5 };
/**
 * Bounds on the writes of a round. Rounds are seconds long, so that what is measured is steady fan-out: rounds of
 * 200-400 writes (0.1-0.2 s) were mostly each round's start (a fresh workplan, the first windows) and moved by ±0.2
 * between runs. The upper bound keeps plain watchers, which take in about a third of the writes/s, within the
 * server's default buffer of 10,000 events each (beyond it: RESOURCE_EXHAUSTED) and the benchmark within ~2 min.
 */
const MIN_CALLS = 1500;
const MAX_CALLS = 4000;
/** The no-op floor's CPU per message needs no long round: it streams this many writes' worth of events. */
const FLOOR_WRITES = 400;
/** No new round starts after this much time (the first always does): a machine busy with other work keeps the budget. */
const ROUNDS_BUDGET_MS = 90_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type WatcherKind = 'plain' | 'batched' | 'windowed';
const BATCH_DELAY_MS = Number(process.env.TURBOCI_BENCH_BATCH_DELAY_MS ?? 50);
const WATCHERS: Record<WatcherKind, { readonly label: string; readonly argv: readonly string[] }> = {
  plain: { label: 'watchers (WatchWorkPlan)', argv: [] },
  batched: { label: 'batched watchers (WatchWorkPlanBatched)', argv: ['--batched'] },
  windowed: { label: `windowed watchers (WatchWorkPlanBatched, max_batch_delay_ms ${BATCH_DELAY_MS})`, argv: ['--batched', '--batch-delay-ms', String(BATCH_DELAY_MS)] },
};
/**
 * Where the processes run. own-cores (the default where `taskset` works and there are 2 cores or more): the watcher
 * process on one core, the server and the writer on another, in every kind of round alike (the rounds with no watcher
 * too). That stands in for watchers on other machines, as dashboards and bots are: otherwise 100 watchers decoding
 * every event take ~0.9 of this 2-core machine's cores (2-3 µs an event, 200 events a write) from the server and the
 * writer, and the ratio measures the watchers' CPU rather than what fan-out costs the server. shared: every process
 * on every core (what it was before 2026-12-04; the docs give both).
 */
const PLACEMENT: 'own-cores' | 'shared' = process.env.TURBOCI_BENCH_WATCH_PLACEMENT === 'shared' || availableParallelism() < 2 ? 'shared' : 'own-cores';
/** Set once the placement was tried: why the processes share the cores after all, if they do. */
let placementFailure: string | null = null;
const SERVER_CORE = '0';
const WATCHERS_CORE = '1';

/** Pins every thread of `pid` to `cpus` (own-cores placement); on failure, notes it and leaves the process be. */
function place(pid: number | undefined, cpus: string): void {
  if (PLACEMENT !== 'own-cores' || placementFailure !== null || pid === undefined) return;
  try {
    execFileSync('taskset', ['--all-tasks', '--cpu-list', '--pid', cpus, String(pid)], { stdio: 'ignore' });
  } catch (err) {
    placementFailure = `taskset failed (${(err as Error).message.split('\n')[0]}): the processes share every core`;
  }
}

const WATCHERS_NICE = Number(process.env.TURBOCI_BENCH_WATCHERS_NICE ?? 0);
const WATCHERS_RAW = process.env.TURBOCI_BENCH_WATCHERS_RAW === '1';
const ALL_KINDS = ['plain', 'none', 'batched', 'floor', 'windowed', 'floor-windowed'] as const;
type RoundKind = (typeof ALL_KINDS)[number];
const KINDS: readonly RoundKind[] = process.env.TURBOCI_BENCH_WATCH_KINDS
  ? process.env.TURBOCI_BENCH_WATCH_KINDS.split(',').map((k) => {
      if (!(ALL_KINDS as readonly string[]).includes(k)) throw new Error(`TURBOCI_BENCH_WATCH_KINDS: unknown kind "${k}" (known: ${ALL_KINDS.join(', ')})`);
      return k as RoundKind;
    })
  : ALL_KINDS;

/** Medians are taken over these, one entry per round. */
interface WithWatchers {
  writes: number[];
  /** Writes per second counted until the last watcher has the last event: what watchers can sustain. */
  delivered: number[];
  serverCpuPerWrite: number[];
  watcherCpuPerEvent: number[];
  /** Messages the watchers received per node event. */
  messagesPerEvent: number[];
  /** CPU cores busy over the round (CPU seconds / wall seconds): server, watcher process, writer process. */
  cores: [number, number, number][];
  results: SubscribersResult[];
}
const withWatchers = (): WithWatchers => ({ writes: [], delivered: [], serverCpuPerWrite: [], watcherCpuPerEvent: [], messagesPerEvent: [], cores: [], results: [] });
const m = {
  writesWithout: [] as number[],
  serverCpuPerWriteWithout: [] as number[],
  coresWithout: [] as [number, number, number][],
  floorServerCpuPerEvent: [] as number[],
  floorWatcherCpuPerEvent: [] as number[],
  floorResults: [] as SubscribersResult[],
  writerCpuPerWriteWithout: [] as number[],
  /** The windowed floor: the no-op server's CPU per write's worth of events, and the events it put in a message. */
  floorWindowedCpuPerWrite: [] as number[],
  floorWindowedPerMessage: [] as number[],
  floorWindowedResults: [] as SubscribersResult[],
  kinds: { plain: withWatchers(), batched: withWatchers(), windowed: withWatchers() } as Record<WatcherKind, WithWatchers>,
};

/** CPU seconds of a process, where /proc says. */
const cpuOf = (pid: number | undefined) => (pid === undefined ? undefined : cpuSeconds(pid));

/** (to - from) seconds over `n` things, in µs each; undefined without /proc. */
function usEach(from: number | undefined, to: number | undefined, n: number): number | undefined {
  return from === undefined || to === undefined ? undefined : ((to - from) / n) * 1e6;
}

function pushDefined(xs: number[], x: number | undefined): void {
  if (x !== undefined) xs.push(x);
}

/** CPU seconds per wall second since `t0` of each process (0 for one not measured), where /proc says. */
function pushCores(xs: [number, number, number][], t0: number, from: (number | undefined)[], to: (number | undefined)[]): void {
  const wall = (performance.now() - t0) / 1000;
  if (from[0] === undefined || to[0] === undefined) return;
  const core = (i: number) => (from[i] === undefined || to[i] === undefined ? 0 : (to[i]! - from[i]!) / wall);
  xs.push([core(0), core(1), core(2)]);
}

/** Per-process medians of `xs`, as "server / watchers / writer". */
function coresText(xs: [number, number, number][]): string {
  if (!xs.length) return 'n/a (no /proc)';
  const at = (i: number) => median(xs.map((x) => x[i]!)).toFixed(2);
  return `${at(0)} / ${at(1)} / ${at(2)}`;
}

/**
 * Starts the watcher process on `address`, resuming after `after`, and calls `prime` (one more event on the
 * workplan) every 200 ms until it says every stream has received an event: then all of them are live, and what
 * follows measures steady fan-out, not subscriptions being opened.
 */
async function startWatchers(address: string, workPlanId: string, after: number, prime: () => Promise<void>, kindArgv: readonly string[] = []): Promise<ChildProc> {
  const argv = ['--address', address, '--workplan', workPlanId, '--count', String(SUBSCRIBERS), '--after', String(after), ...kindArgv, ...(WATCHERS_RAW ? ['--raw'] : [])];
  const subs = spawnChild([benchScript('watch-subscribers'), ...argv]);
  if (WATCHERS_NICE && subs.child.pid !== undefined) setPriority(subs.child.pid, WATCHERS_NICE);
  place(subs.child.pid, WATCHERS_CORE);
  const ready = subs.nextLine(60_000);
  let settled = false;
  void ready.then(
    () => (settled = true),
    () => (settled = true),
  );
  try {
    while (!settled) {
      await prime();
      await Promise.race([ready, sleep(200)]);
    }
    await ready; // rethrows a timeout
    return subs;
  } catch (err) {
    await subs.stop();
    throw err;
  }
}

/** Tells the watchers the last version and waits for their tally. */
async function finishWatchers(subs: ChildProc, lastVersion: number): Promise<SubscribersResult> {
  subs.send(JSON.stringify({ expect: lastVersion }));
  return JSON.parse(await subs.nextLine(120_000)) as SubscribersResult;
}

class Rounds {
  private n = 0;

  constructor(
    private readonly api: Api,
    private readonly server: ChildServer,
    private readonly load: LoadClient,
    private readonly calls: number,
  ) {}

  private write(workPlanId: string, id: string): Promise<unknown> {
    return this.api.writeNodes({ workPlanId, checks: [{ id, state: CheckState.CHECK_STATE_PLANNED, kind: 'bench' }] });
  }

  /** Our writes with no watcher. */
  async without(): Promise<void> {
    const workPlanId = (await this.api.createWorkPlan({ metadata: { bench: 'watch-fanout' } })).workPlan!.id;
    const cpu0 = cpuOf(this.server.pid);
    const t0 = [performance.now(), cpuOf(this.load.pid)] as const;
    const r = await this.runWrites(workPlanId);
    pushCores(m.coresWithout, t0[0], [cpu0, undefined, t0[1]], [cpuOf(this.server.pid), undefined, cpuOf(this.load.pid)]);
    pushDefined(m.serverCpuPerWriteWithout, usEach(cpu0, cpuOf(this.server.pid), this.calls));
    pushDefined(m.writerCpuPerWriteWithout, usEach(t0[1], cpuOf(this.load.pid), this.calls));
    m.writesWithout.push(r.callsPerSec);
  }

  /**
   * Our writes with SUBSCRIBERS watchers of one kind. CPU is read once every watcher has the last event: fan-out
   * that lags behind the writes is still work done for them.
   */
  async with(kind: WatcherKind): Promise<void> {
    const into = m.kinds[kind];
    const workPlanId = (await this.api.createWorkPlan({ metadata: { bench: 'watch-fanout' } })).workPlan!.id;
    let k = 0;
    const prime = () => this.write(workPlanId, `prime-${k++}`).then(() => undefined);
    const subs = await startWatchers(this.server.address, workPlanId, 1, prime, WATCHERS[kind].argv);
    try {
      const cpu0 = [cpuOf(this.server.pid), cpuOf(subs.child.pid), cpuOf(this.load.pid)];
      const t0 = performance.now();
      const r = await this.runWrites(workPlanId);
      const result = await finishWatchers(subs, Number((await this.api.getWorkPlan({ id: workPlanId })).workPlan!.version));
      pushCores(into.cores, t0, cpu0, [cpuOf(this.server.pid), cpuOf(subs.child.pid), cpuOf(this.load.pid)]);
      const events = this.calls * EVENTS_PER_WRITE * SUBSCRIBERS;
      pushDefined(into.serverCpuPerWrite, usEach(cpu0[0], cpuOf(this.server.pid), this.calls));
      pushDefined(into.watcherCpuPerEvent, usEach(cpu0[1], cpuOf(subs.child.pid), events));
      into.writes.push(r.callsPerSec);
      into.delivered.push(this.calls / (r.seconds + result.catchUpMs / 1000));
      if (result.messages !== undefined && result.eventsReceived) into.messagesPerEvent.push(result.messages / result.eventsReceived);
      into.results.push(result);
    } finally {
      await subs.stop();
    }
  }

  /** The grpc-js floor: as many events as our writes make, streamed by the no-op server to as many watchers. */
  async floor(noop: NoopWatchServer, state: { last: number }): Promise<void> {
    const prime = async () => {
      noop.send({ events: 1 });
      state.last++;
    };
    const subs = await startWatchers(noop.address, 'floor', state.last, prime);
    try {
      const cpu0 = [cpuOf(noop.pid), cpuOf(subs.child.pid)];
      const events = Math.min(this.calls, FLOOR_WRITES) * EVENTS_PER_WRITE;
      noop.send({ events });
      state.last += events;
      const result = await finishWatchers(subs, state.last);
      pushDefined(m.floorServerCpuPerEvent, usEach(cpu0[0], cpuOf(noop.pid), events * SUBSCRIBERS));
      pushDefined(m.floorWatcherCpuPerEvent, usEach(cpu0[1], cpuOf(subs.child.pid), events * SUBSCRIBERS));
      m.floorResults.push(result);
    } finally {
      await subs.stop();
    }
  }

  /**
   * The grpc-js floor for windowed watchers: the events of as many writes, sent by the no-op server to as many
   * WatchWorkPlanBatched streams in messages of the size and at the pace ours sends them (one message per window,
   * holding what a window of writes at the no-watcher rate makes), each message encoded once for all streams.
   */
  async floorWindowed(noop: NoopWatchServer, state: { last: number }, writesPerSec: number): Promise<void> {
    const prime = async () => {
      noop.send({ events: 1, perMessage: 1, everyMs: 0 });
      state.last++;
    };
    const subs = await startWatchers(noop.address, 'floor', state.last, prime, WATCHERS.windowed.argv);
    try {
      const perMessage = Math.max(1, Math.round((writesPerSec * EVENTS_PER_WRITE * BATCH_DELAY_MS) / 1000));
      const cpu0 = cpuOf(noop.pid);
      const events = this.calls * EVENTS_PER_WRITE;
      noop.send({ events, perMessage, everyMs: BATCH_DELAY_MS });
      state.last += events;
      const result = await finishWatchers(subs, state.last);
      pushDefined(m.floorWindowedCpuPerWrite, usEach(cpu0, cpuOf(noop.pid), this.calls));
      m.floorWindowedPerMessage.push(perMessage);
      m.floorWindowedResults.push(result);
    } finally {
      await subs.stop();
    }
  }

  private async runWrites(workPlanId: string) {
    const r = await this.load.run({ address: this.server.address, workPlanId, calls: this.calls, warmup: 0, concurrency: CONCURRENCY, prefix: `r${this.n++}` });
    if (r.errors) throw new Error(`${r.errors} writes failed, first: ${r.firstError}`);
    return r;
  }
}

/**
 * What a write of one new check makes, read off a real one: how many node changes (events), and the encoded bytes of
 * the last of them, a real event of ours.
 */
async function sampleEvent(address: string, api: Api): Promise<{ sample: Uint8Array; eventsPerWrite: number }> {
  const workPlanId = (await api.createWorkPlan({ metadata: { bench: 'watch-fanout' } })).workPlan!.id;
  await api.writeNodes({ workPlanId, checks: [{ id: 'r0-0', state: CheckState.CHECK_STATE_PLANNED, kind: 'bench' }] });
  const eventsPerWrite = Number((await api.getWorkPlan({ id: workPlanId })).workPlan!.version) - 1; // 1: its creation
  const { client, close } = connect(address);
  try {
    const stream = client.watchWorkPlan(WatchWorkPlanRequest.fromPartial({ workPlanId, afterVersion: 1 }), new Metadata());
    const events: WorkPlanEvent[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (e: WorkPlanEvent) => {
        events.push(e);
        if (events.length === eventsPerWrite) resolve();
      });
      stream.on('error', reject);
    });
    stream.cancel();
    return { sample: WorkPlanEvent.encode(events.at(-1)!).finish(), eventsPerWrite };
  } finally {
    close();
  }
}

const round1 = (x: number) => Math.round(x * 10) / 10;

function summarize(sample: Uint8Array, calls: number, roundsDone: number, load: { before: number[]; after: number[] }): void {
  const cpu = (xs: number[]) => (xs.length ? round1(median(xs)) : 'n/a (no /proc)');
  const without = m.writesWithout.length ? median(m.writesWithout) : undefined;
  const floorPerEvent = m.floorServerCpuPerEvent.length ? median(m.floorServerCpuPerEvent) : undefined;
  const figures: Record<string, number | string> = {};
  const ratios: Ratio[] = [];
  if (without !== undefined) {
    figures['*WriteNodes calls/s, no watcher'] = without;
    figures['server CPU µs per write, no watcher'] = cpu(m.serverCpuPerWriteWithout);
    figures['CPU cores busy, server / watchers / writer, no watcher'] = coresText(m.coresWithout);
  }
  if (floorPerEvent !== undefined) figures['*server CPU µs per event sent to one watcher, no-op grpc-js streaming (one message per event)'] = round1(floorPerEvent);
  if (m.floorWatcherCpuPerEvent.length) figures['watcher process CPU µs per event received, no-op grpc-js streaming'] = cpu(m.floorWatcherCpuPerEvent);
  if (m.floorResults.length) figures['no-op streaming: time to deliver the same events, ms (median round)'] = median(m.floorResults.map((r) => r.catchUpMs));
  if (m.writerCpuPerWriteWithout.length) figures['writer CPU µs per write, no watcher'] = cpu(m.writerCpuPerWriteWithout);
  const floorWindowed = m.floorWindowedCpuPerWrite.length ? median(m.floorWindowedCpuPerWrite) : undefined;
  if (floorWindowed !== undefined) {
    figures[`*server CPU µs per write's events, no-op grpc-js windowed floor (${median(m.floorWindowedPerMessage)} events a message, a message every ${BATCH_DELAY_MS} ms to each stream)`] = round1(floorWindowed);
  }
  for (const kind of ['plain', 'batched', 'windowed'] as const) {
    const k = m.kinds[kind];
    if (!k.writes.length) continue;
    const label = `${SUBSCRIBERS} ${WATCHERS[kind].label}`;
    const writes = median(k.writes);
    const delivered = median(k.delivered);
    // What fan-out costs our server per event sent to one watcher: the extra CPU per write over the events it makes.
    const perEvent =
      k.serverCpuPerWrite.length && m.serverCpuPerWriteWithout.length
        ? (median(k.serverCpuPerWrite) - median(m.serverCpuPerWriteWithout)) / (EVENTS_PER_WRITE * SUBSCRIBERS)
        : undefined;
    figures[`*WriteNodes calls/s, ${label}`] = writes;
    figures[`writes/s delivered to all of them (until the last has the last event), ${kind}`] = delivered;
    figures[`server CPU µs per write, ${kind} (fan-out included)`] = cpu(k.serverCpuPerWrite);
    figures[`*server CPU µs per event sent to one watcher, ${kind}`] = perEvent === undefined ? 'n/a (no /proc)' : Math.round(perEvent * 100) / 100;
    figures[`watcher process CPU µs per event received, ${kind}`] = cpu(k.watcherCpuPerEvent);
    figures[`CPU cores busy, server / watchers / writer, ${kind}`] = coresText(k.cores);
    if (k.messagesPerEvent.length) figures[`messages per event received, ${kind}`] = Math.round(median(k.messagesPerEvent) * 1000) / 1000;
    figures[`watch latency p50 / p99 ms, recorded → received, ${kind} (median round)`] =
      `${median(k.results.map((r) => r.latencyP50Ms))} / ${median(k.results.map((r) => r.latencyP99Ms))}`;
    figures[`watchers catch-up after the last write, ms, ${kind} (median round)`] = median(k.results.map((r) => r.catchUpMs));
    if (without !== undefined) {
      ratios.push(ratio(`WriteNodes calls/s with ${label} vs none`, writes, without, 'calls/s', { target: 0.9 }));
      ratios.push(ratio(`writes/s delivered to ${SUBSCRIBERS} ${kind} watchers vs WriteNodes calls/s with none`, delivered, without, 'writes/s'));
    }
    if (kind === 'windowed' && perEvent !== undefined && perEvent > 0 && floorWindowed !== undefined) {
      const extra = perEvent * EVENTS_PER_WRITE * SUBSCRIBERS;
      ratios.push(ratio('fan-out server CPU per write, windowed vs the no-op grpc-js windowed floor', extra, floorWindowed, 'µs', { lowerIsBetter: true }));
      if (PLACEMENT === 'own-cores' && !placementFailure && m.writerCpuPerWriteWithout.length) {
        // Server and writer share one core: the writes can go at most this much of their rate if fan-out cost only
        // what the bare grpc-js server spends on the same messages.
        const own = median(m.serverCpuPerWriteWithout) + median(m.writerCpuPerWriteWithout);
        figures['calls/s with windowed watchers vs none that fan-out at the no-op floor\'s cost would leave (estimate: server and writer CPU per write with none, over that plus the floor)'] =
          Math.round((own / (own + floorWindowed)) * 100) / 100;
      }
    }
    if (perEvent !== undefined && perEvent > 0 && floorPerEvent !== undefined) {
      ratios.push(ratio(`server CPU per event sent, ${kind} vs no-op grpc-js streaming (one message per event)`, perEvent, floorPerEvent, 'µs', { lowerIsBetter: true }));
    }
  }
  const allResults = Object.values(m.kinds).flatMap((k) => k.results);
  const mismatched = allResults.reduce((s, r) => s + r.mismatched, 0);
  const gaps = allResults.reduce((s, r) => s + r.gaps, 0);
  const ended: Record<string, number> = {};
  for (const r of allResults) for (const [code, n] of Object.entries(r.ended)) ended[code] = (ended[code] ?? 0) + n;
  const endedText = Object.entries(ended).map(([code, n]) => `${n} ${code}`).join(', ') || 'none';
  const floorBad = [...m.floorResults, ...m.floorWindowedResults].filter((r) => r.mismatched || r.gaps || Object.keys(r.ended).length).length;
  Object.assign(figures, {
    'watchers with a wrong event count (all rounds)': mismatched,
    'version gaps seen by watchers (all rounds)': gaps,
    'watch streams ended by the server (all rounds)': endedText,
    'event bytes': sample.length,
    'writes per round': calls,
    'writes in flight': CONCURRENCY,
    placement: placementFailure ?? (PLACEMENT === 'own-cores' ? `own cores: server and writer on CPU ${SERVER_CORE}, watchers on CPU ${WATCHERS_CORE}` : 'shared: every process on every core'),
    'rounds (each kind)': roundsDone,
    ...(WATCHERS_RAW ? { 'watchers decode': 'version, kind and timestamp only (TURBOCI_BENCH_WATCHERS_RAW=1)' } : {}),
    ...(WATCHERS_NICE ? { 'watcher process niceness (TURBOCI_BENCH_WATCHERS_NICE)': WATCHERS_NICE } : {}),
    'load average (1 min) at start / end': `${load.before[0]!.toFixed(2)} / ${load.after[0]!.toFixed(2)}`,
  });
  report(
    {
      benchmark: 'watch-fanout',
      figures,
      ratios,
      notes: [
        `Writes: a separate client process, ${CONCURRENCY} calls in flight, each writing one new PLANNED check (${EVENTS_PER_WRITE} node changes, so ${EVENTS_PER_WRITE} events to every watcher); a fresh workplan per round; the server at its default --sync FULL. The kinds of round (${KINDS.join(', ')}) take turns, in a rotated order each round.`,
        `Watchers: ${SUBSCRIBERS} streams in one separate process, one connection each, resuming after version 1 and live (each has received a priming write) before the timed writes; each counts every node event and checks that versions follow one another. plain: WatchWorkPlan, one message per event. batched: WatchWorkPlanBatched, the events waiting for a stream when it is written go in one message. windowed: WatchWorkPlanBatched with max_batch_delay_ms ${BATCH_DELAY_MS}, at most one message per ${BATCH_DELAY_MS} ms per stream.`,
        'The target ratio is the writers\' throughput as the writer sees it. Live events wait in per-watcher queues, so a round of writes can end before the watchers have their events; "writes/s delivered" counts until the last watcher has the last event, the rate the watchers could keep up with for good (beyond it their queues grow until RESOURCE_EXHAUSTED).',
        'CPU figures: utime + stime from /proc of the server / the watcher process / the writer (all threads), from the first timed write until every watcher has the last event (clock-tick resolution: 10 ms over a round); "cores busy" is that CPU time over the same wall time. With the placement own cores, the server and the writer share one core in every kind of round, so what fan-out costs the server is taken from the writes, and the watchers decode on the other; shared, the watchers\' decoding is taken from the writes too (and whatever else runs on the machine: see the load average).',
        `No-op streaming floor: bench/noop-watch-server.ts writes ${sample.length}-byte copies of one of our real events (as many as ${FLOOR_WRITES} writes make, at most) to the same ${SUBSCRIBERS} watchers over their own connections, one message per event per stream, as fast as flow control allows (all at once rather than at the writers' pace).`,
        `Windowed floor: the no-op server sends as many writes' worth of the same event to ${SUBSCRIBERS} WatchWorkPlanBatched watchers (its own, like ours) in one message per ${BATCH_DELAY_MS} ms window, each holding what a window of writes at the no-watcher rate makes, every message encoded once: what ours would cost if its fan-out were only grpc-js writing the same messages.`,
        ...(mismatched || gaps || endedText !== 'none'
          ? [`DELIVERY PROBLEM: ${mismatched} watcher(s) got a wrong event count, ${gaps} version gap(s), streams ended by the server: ${endedText}.`]
          : [`Delivery checked: every watcher received exactly one event per version after the one it resumed from, in order (${allResults.map((r) => r.expectedPerSubscriber).join(', ')} events per watcher per round).`]),
        ...(floorBad ? [`The no-op streaming floor lost events in ${floorBad} round(s): its figures are suspect.`] : []),
        ...(roundsDone < SIZES.rounds ? [`Only ${roundsDone} of ${SIZES.rounds} rounds: the machine was too slow to fit them in the time budget.`] : []),
      ],
    },
    args,
  );
}

const dir = tempDir('turboci-bench-watch-fanout-');
const stoppers: (() => Promise<void> | void)[] = [() => dir.remove()];
const loadBefore = loadavg();
try {
  const server = await startQuietServer(join(dir.path, 'watch.db'));
  stoppers.unshift(() => server.stop());
  const { api, close } = connect(server.address);
  stoppers.unshift(close);
  const load = startLoadClient();
  stoppers.unshift(() => load.stop());
  place(server.pid, SERVER_CORE);
  place(load.pid, SERVER_CORE);
  const { sample, eventsPerWrite } = await sampleEvent(server.address, api);
  EVENTS_PER_WRITE = eventsPerWrite;
  const noop = await startNoopWatchServer(sample);
  stoppers.unshift(() => noop.stop());
  place(noop.pid, SERVER_CORE);

  // Warm-up (JIT of client and server) and calibration: size the rounds to about SIZES.roundSeconds without watchers.
  const calibrationPlan = (await api.createWorkPlan({ metadata: { bench: 'watch-fanout' } })).workPlan!.id;
  const cal = await load.run({
    ...{ address: server.address, workPlanId: calibrationPlan, calls: SIZES.calibrationCalls, warmup: SIZES.firstWarmup },
    ...{ concurrency: CONCURRENCY, prefix: 'calibration' },
  });
  const calls = SIZES.fixedCalls || Math.round(Math.min(MAX_CALLS, Math.max(MIN_CALLS, cal.callsPerSec * SIZES.roundSeconds)));

  const rounds = new Rounds(api, server, load, calls);
  const floorState = { last: 1 };
  const floorWindowedState = { last: 1 };
  const run: Record<RoundKind, () => Promise<void>> = {
    plain: () => rounds.with('plain'),
    none: () => rounds.without(),
    batched: () => rounds.with('batched'),
    floor: () => rounds.floor(noop, floorState),
    windowed: () => rounds.with('windowed'),
    'floor-windowed': () => rounds.floorWindowed(noop, floorWindowedState, m.writesWithout.length ? median(m.writesWithout) : cal.callsPerSec),
  };
  const kinds = KINDS.map((k) => run[k]);
  // Rotated order each round, so a drift of the machine hits every kind alike.
  const deadline = Date.now() + ROUNDS_BUDGET_MS;
  let done = 0;
  for (; done < SIZES.rounds && (done === 0 || Date.now() < deadline); done++) {
    for (let k = 0; k < kinds.length; k++) await kinds[(done + k) % kinds.length]!();
  }
  summarize(sample, calls, done, { before: loadBefore, after: loadavg() });
} finally {
  for (const stop of stoppers) await stop();
}
process.exit(0);
