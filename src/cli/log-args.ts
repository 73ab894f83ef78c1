// Small helpers shared by the debugging commands: option parsing, error reporting, aligned tables.
import { status } from '@grpc/grpc-js';
import { CliError } from './log-source.js';
import { UsageError } from './usage-error.js';

/** Runs a command body: CliError and zod errors become one line on stderr and exit 1; UsageError goes to main. */
export function command(run: (argv: string[]) => Promise<number>): (argv: string[]) => Promise<number> {
  return async (argv) => {
    try {
      return await run(argv);
    } catch (err) {
      if (err instanceof StdoutClosed) return 0; // the reader went away (e.g. "| head"): nothing more to say
      if (err instanceof CliError) {
        console.error(`turboci: ${err.message}`);
        return 1;
      }
      if (err instanceof UsageError || (err as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS')) throw err;
      if (typeof (err as { code?: unknown }).code === 'number' && (err as { details?: string }).details !== undefined) {
        console.error(`turboci: ${status[(err as { code: number }).code]}: ${(err as { details: string }).details}`);
        return 1;
      }
      throw err;
    }
  };
}

export function integer(flag: string, raw: string | undefined, min = 0): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag}: "${raw}" is not a whole number of at least ${min}`);
  return n;
}

/** An ISO 8601 time ("2025-01-31T12:00:00Z", "2025-01-31") or epoch milliseconds. */
export function time(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(ms)) throw new UsageError(`${flag}: "${raw}" is not a time (ISO 8601 or epoch milliseconds)`);
  return ms;
}

/** Repeatable, comma-separable list options: --type A --type B,C. */
export const list = (raw: string[] | undefined): string[] | undefined =>
  raw?.flatMap((r) => r.split(',')).map((s) => s.trim()).filter(Boolean);

export function pad(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
}

/** Prints rows as an aligned table (for bounded outputs: a node's history, a workplan's nodes). */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [pad(header, widths), ...rows.map((r) => pad(r, widths))].join('\n');
}

export const iso = (ms: number): string => new Date(ms).toISOString();

class StdoutClosed extends Error {}

/** Writes to stdout, waiting when the pipe is full (large outputs stream without buffering everything). */
let guarded = false;
export async function out(line: string): Promise<void> {
  if (!guarded) {
    guarded = true;
    process.stdout.on('error', () => {}); // EPIPE: seen as `destroyed` on the next write
  }
  if (process.stdout.destroyed) throw new StdoutClosed('stdout was closed');
  if (process.stdout.write(`${line}\n`)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      process.stdout.off('drain', done).off('error', done).off('close', done);
      if (err || process.stdout.destroyed) reject(new StdoutClosed('stdout was closed'));
      else resolve();
    };
    process.stdout.once('drain', done).once('error', done).once('close', done);
  });
}
