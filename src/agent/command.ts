// Runs one stage command in its own process group, collecting output lines (bounded) and a tail of them, and can
// stop the whole group: SIGTERM, then SIGKILL after a grace period.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export interface CommandSpec {
  readonly file: string;
  readonly args: readonly string[];
  readonly cwd: string;
  /** The command's whole environment: nothing of the agent's is added (see scrubbedEnv). */
  readonly env: Readonly<Record<string, string>>;
  /** Seconds; 0 = no limit of its own. */
  readonly timeoutSeconds: number;
}

export interface CommandResult {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly durationMs: number;
  /** Set when the agent stopped it: why. */
  readonly stopped: string | null;
  readonly tail: string;
}

/** What args.command, args.env, args.cwd and args.timeout of a stage ask for; throws with a message saying what is wrong. */
export function parseCommandArgs(args: Record<string, unknown>): { file: string; argv: string[]; env: Record<string, string>; cwd: string; timeoutSeconds: number } {
  const command = args.command;
  let file: string;
  let argv: string[];
  if (typeof command === 'string' && command.trim()) {
    file = '/bin/sh';
    argv = ['-c', command];
  } else if (Array.isArray(command) && command.length > 0 && command.every((c) => typeof c === 'string')) {
    file = command[0] as string;
    argv = (command as string[]).slice(1);
  } else {
    throw new Error('args.command must be a non-empty string (run by /bin/sh -c) or a list of strings (argv)');
  }
  const env: Record<string, string> = {};
  if (args.env !== undefined) {
    if (!args.env || typeof args.env !== 'object' || Array.isArray(args.env)) throw new Error('args.env must be an object of strings');
    for (const [k, v] of Object.entries(args.env)) {
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw new Error(`args.env.${k} must be a string`);
      env[k] = String(v);
    }
  }
  if (args.cwd !== undefined && typeof args.cwd !== 'string') throw new Error('args.cwd must be a string');
  const timeout = args.timeout ?? 0;
  if (typeof timeout !== 'number' || !(timeout >= 0)) throw new Error('args.timeout must be a number of seconds');
  return { file: file!, argv, env, cwd: (args.cwd as string | undefined) ?? '', timeoutSeconds: timeout };
}

/** What a command inherits of the agent's environment, besides what --pass-env names. */
export const ENV_ALLOWLIST = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'] as const;

/**
 * The agent runs other people's commands: they get the allowlist and the variables the operator passes
 * explicitly (--pass-env), never the rest of the agent's environment (its token, cloud credentials, ...).
 */
export function scrubbedEnv(agentEnv: NodeJS.ProcessEnv, passEnv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of [...ENV_ALLOWLIST, ...passEnv]) {
    const v = agentEnv[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/**
 * Where a stage's command runs: args.cwd relative to its fresh directory, or absolute, but always inside `root`
 * (--workdir); `../../..` or `/` is refused. Symlinks are resolved before the check.
 */
export function containedCwd(root: string, dir: string, cwd: string): string {
  const target = resolve(dir, cwd || '.');
  const realRoot = realpathSync(root);
  const within = (p: string) => {
    const rel = relative(realRoot, p);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  };
  // Resolve what exists of the path (symlinks), then check the rest lexically.
  let existing = target;
  const rest: string[] = [];
  while (!existsSync(existing)) {
    rest.unshift(basename(existing));
    const up = dirname(existing);
    if (up === existing) break;
    existing = up;
  }
  const real = join(realpathSync(existing), ...rest);
  if (!within(real)) throw new Error(`args.cwd "${cwd}" is outside the agent's --workdir ${root}`);
  return real;
}

const TAIL_LINES = 40;
const TAIL_CHARS = 4000;

export class RunningCommand {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly done: Promise<CommandResult>;
  private readonly buffer: string[] = [];
  private dropped = 0;
  private readonly tailLines: string[] = [];
  private stopped: string | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  private timeoutTimer: NodeJS.Timeout | null = null;

  constructor(
    spec: CommandSpec,
    private readonly graceMs: number,
    private readonly maxBuffered = 2000,
  ) {
    const started = Date.now();
    this.child = spawn(spec.file, [...spec.args], {
      cwd: spec.cwd,
      env: { ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so the whole tree can be signalled
    });
    this.pid = this.child.pid ?? -1;
    const streams = [
      this.lines(this.child.stdout!, ''),
      this.lines(this.child.stderr!, '[stderr] '),
    ];
    if (spec.timeoutSeconds > 0) {
      this.timeoutTimer = setTimeout(() => this.stop(`timed out after ${spec.timeoutSeconds} s (args.timeout)`), spec.timeoutSeconds * 1000);
    }
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      this.child.once('error', (err) => {
        this.push(`[agent] could not start ${spec.file}: ${err.message}`);
        resolve({ code: 127, signal: null });
      });
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    this.done = exited.then(async ({ code, signal }) => {
      await Promise.all(streams);
      if (this.timeoutTimer) clearTimeout(this.timeoutTimer);
      // The group may outlive its leader (background jobs); a stop makes sure nothing is left.
      if (this.stopped) await this.waitGroupGone(this.graceMs + 2000);
      if (this.killTimer) clearTimeout(this.killTimer);
      return { exitCode: code, signal, durationMs: Date.now() - started, stopped: this.stopped, tail: this.tail() };
    });
  }

  /** Takes up to `max` buffered lines (oldest first); notes lines dropped because the buffer was full. */
  take(max: number): string[] {
    const out: string[] = [];
    if (this.dropped > 0) {
      out.push(`[agent] ${this.dropped} lines of output dropped (the agent's buffer was full)`);
      this.dropped = 0;
    }
    out.push(...this.buffer.splice(0, Math.max(0, max - out.length)));
    return out;
  }

  get buffered(): number {
    return this.buffer.length;
  }

  /** SIGTERM to the process group now, SIGKILL after the grace period if anything is left. */
  stop(why: string): void {
    if (this.stopped) return;
    this.stopped = why;
    signalGroup(this.pid, 'SIGTERM');
    this.killTimer = setTimeout(() => signalGroup(this.pid, 'SIGKILL'), this.graceMs);
  }

  private async waitGroupGone(maxMs: number): Promise<void> {
    const until = Date.now() + maxMs;
    while (groupAlive(this.pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    if (groupAlive(this.pid)) signalGroup(this.pid, 'SIGKILL');
  }

  private lines(stream: NodeJS.ReadableStream, prefix: string): Promise<void> {
    return new Promise((resolve) => {
      const rl = createInterface({ input: stream, crlfDelay: Infinity });
      rl.on('line', (line) => this.push(prefix + line));
      rl.once('close', () => resolve());
    });
  }

  private push(line: string): void {
    if (this.buffer.length >= this.maxBuffered) {
      this.buffer.shift();
      this.dropped++;
    }
    this.buffer.push(line);
    this.tailLines.push(line);
    if (this.tailLines.length > TAIL_LINES) this.tailLines.shift();
  }

  private tail(): string {
    const text = this.tailLines.join('\n');
    return text.length > TAIL_CHARS ? text.slice(text.length - TAIL_CHARS) : text;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

function groupAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}
