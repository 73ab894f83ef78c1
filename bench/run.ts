// `npm run bench [-- --smoke] [--json] [--only NAME[,NAME]]`: runs each benchmark in its own process (so one's heap,
// RSS and event loop never colour another's), then prints every ratio in one table.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RESULTS_DIR, fmt, type BenchReport } from './harness.js';

const BENCHMARKS = ['transport', 'append', 'scaling', 'watch-fanout', 'restart', 'dispatch', 'pull', 'bullmq', 'replicas', 'ui-page'] as const;

const HELP = `Usage: npm run bench -- [--smoke] [--json] [--only NAME[,NAME...]]

Runs TurboCI-Lite's benchmarks, each against a baseline measured side by side in the same run, and prints the
ratios (> 1 means we are better; targets from the issues are marked met or MISSED). Results are also written to
bench/results/NAME.json.

Benchmarks: ${BENCHMARKS.join(', ')}

  --smoke   tiny sizes: checks that every benchmark still runs (CI does this); the figures mean nothing
  --json    also print each benchmark's JSON summary on stdout
  --only    run only these benchmarks
  --scaling-1m[=SHAPE,...]
            scaling also runs 1M nodes per shape (all, or those named: chain, fan, dag, nested), for memory
            per node past 100k; ~10 minutes per shape
  --restart-1m
            restart runs on a log of 1M nodes (~5M events) instead of 1M events
  -h        this help`;

const argv = process.argv.slice(2);
if (argv.includes('-h') || argv.includes('--help')) {
  console.log(HELP);
  process.exit(0);
}
const onlyAt = argv.indexOf('--only');
const only = onlyAt >= 0 ? (argv[onlyAt + 1] ?? '').split(',').filter(Boolean) : [...BENCHMARKS];
for (const name of only) {
  if (!(BENCHMARKS as readonly string[]).includes(name)) {
    console.error(`--only: unknown benchmark "${name}" (known: ${BENCHMARKS.join(', ')})`);
    process.exit(2);
  }
}
const passOn = argv.filter((a) => a === '--smoke' || a === '--json' || a.startsWith('--scaling-1m') || a === '--restart-1m');
const here = fileURLToPath(new URL('.', import.meta.url));

const failed: string[] = [];
const reports: BenchReport[] = [];
const started = Date.now();
for (const name of only) {
  const resultFile = join(RESULTS_DIR, `${name}.json`);
  rmSync(resultFile, { force: true });
  console.log(`\n### ${name} (${((Date.now() - started) / 1000).toFixed(0)} s into the run)`);
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, `${name}.js`), ...passOn], { stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(resultFile)) {
    failed.push(name);
    console.log(`!! ${name} failed (exit ${r.status ?? r.signal})`);
    continue;
  }
  reports.push(JSON.parse(readFileSync(resultFile, 'utf8')) as BenchReport);
}

console.log(`\n== summary (${((Date.now() - started) / 1000).toFixed(0)} s)${argv.includes('--smoke') ? ' — smoke run, figures are not measurements' : ''}`);
for (const rep of reports) {
  for (const q of rep.ratios) {
    const verdict = q.target === undefined ? '' : q.ratio >= q.target ? 'met' : 'MISSED';
    console.log(
      `  ${`${rep.benchmark}: ${q.name}`.padEnd(60)} ${q.ratio.toFixed(2).padStart(7)}  ${q.target === undefined ? '' : `target ${q.target} ${verdict}`}`,
    );
  }
  for (const [k, v] of Object.entries(rep.figures)) if (k.startsWith('*')) console.log(`  ${`${rep.benchmark}: ${k.slice(1)}`.padEnd(60)} ${typeof v === 'number' ? fmt(v) : v}`);
}
console.log(`${reports.length} benchmarks ran, ${failed.length} failed${failed.length ? `: ${failed.join(', ')}` : ''}`);
process.exit(failed.length ? 1 : 0);
