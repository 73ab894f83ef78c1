// Shared by every benchmark: arguments, side-by-side measurement, and the one report format (stdout + JSON file).
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const RESULTS_DIR = fileURLToPath(new URL('../../bench/results', import.meta.url));

export interface BenchArgs {
  /** Tiny sizes: proves the benchmark still runs (CI), says nothing about speed. */
  readonly smoke: boolean;
  /** Print the JSON summary on stdout as well. */
  readonly json: boolean;
}

export function benchArgs(argv = process.argv.slice(2)): BenchArgs {
  return { smoke: argv.includes('--smoke'), json: argv.includes('--json') };
}

/** One compared figure: ours against the baseline measured in the same run; higher is better unless lowerIsBetter. */
export interface Ratio {
  readonly name: string;
  readonly ours: number;
  readonly baseline: number;
  readonly unit: string;
  /** ours / baseline (or baseline / ours when lowerIsBetter), so > 1 always means "we are better". */
  readonly ratio: number;
  /** The target for `ratio`, if there is one. */
  readonly target?: number;
  readonly lowerIsBetter?: boolean;
}

export function ratio(name: string, ours: number, baseline: number, unit: string, opts: { target?: number; lowerIsBetter?: boolean } = {}): Ratio {
  const r = opts.lowerIsBetter ? baseline / ours : ours / baseline;
  return { name, ours, baseline, unit, ratio: r, ...opts };
}

export interface BenchReport {
  readonly benchmark: string;
  readonly command: string;
  readonly smoke: boolean;
  /** Free-form figures (throughputs, times, RSS), each with its unit in the key. */
  readonly figures: Record<string, number | string>;
  readonly ratios: readonly Ratio[];
  readonly notes?: readonly string[];
}

/** Prints a report for humans, writes bench/results/<benchmark>.json, and prints JSON too with --json. */
export function report(r: Omit<BenchReport, 'command' | 'smoke'>, args: BenchArgs): BenchReport {
  const full: BenchReport = {
    ...r,
    smoke: args.smoke,
    command: `npm run bench -- --only ${r.benchmark}${args.smoke ? ' --smoke' : ''}`,
    figures: r.figures,
  };
  console.log(`\n== ${full.benchmark}${full.smoke ? ' (smoke: sizes too small to mean anything)' : ''}`);
  for (const [k, v] of Object.entries(full.figures)) console.log(`  ${k.padEnd(48)} ${typeof v === 'number' ? fmt(v) : v}`);
  for (const q of full.ratios) {
    const verdict = q.target === undefined ? '' : q.ratio >= q.target ? `  (target ≥ ${q.target}: met)` : `  (target ≥ ${q.target}: MISSED)`;
    console.log(`  ratio ${q.name.padEnd(42)} ${q.ratio.toFixed(2)}  [ours ${fmt(q.ours)} vs baseline ${fmt(q.baseline)} ${q.unit}]${verdict}`);
  }
  for (const n of full.notes ?? []) console.log(`  note: ${n}`);
  console.log(`  reproduce: ${full.command}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${full.benchmark}.json`), JSON.stringify(full, null, 2) + '\n');
  if (args.json) console.log(JSON.stringify(full));
  return full;
}

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(3);
}

/** Wall-clock milliseconds of fn. */
export async function timed<T>(fn: () => Promise<T> | T): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

/**
 * Runs ours and the baseline alternately `rounds` times and keeps each one's median: on a noisy machine, both
 * sides then see the same noise.
 */
export async function sideBySide(rounds: number, ours: () => Promise<number>, baseline: () => Promise<number>): Promise<{ ours: number; baseline: number }> {
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      a.push(await ours());
      b.push(await baseline());
    } else {
      b.push(await baseline());
      a.push(await ours());
    }
  }
  return { ours: median(a), baseline: median(b) };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Samples this process's RSS every few ms; `stop()` returns the peak in bytes. */
export function rssSampler(everyMs = 20): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const t = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), everyMs);
  return {
    stop: () => {
      clearInterval(t);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}
