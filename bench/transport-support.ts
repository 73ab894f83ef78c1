// Child processes for the transport and watch-fanout benchmarks: the real server kept quiet, the no-op baselines,
// the load client and the watchers, each talking to the benchmark in JSON lines. Every one is its own OS process, so
// its CPU is its own as it would be in production (client and server never share an event loop), and the servers'
// CPU can be read from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startServer } from '../test/support/server.js';
import type { ClientJob, ClientResult } from './transport-client.js';

/** A server child process and the address it serves on. */
export interface ChildServer {
  readonly address: string;
  readonly pid: number;
  /** SIGTERM, then wait for the exit (SIGKILL if it takes more than 10 s). */
  stop(): Promise<void>;
}

/** The compiled script dist/bench/<name>.js next to this file. */
export function benchScript(name: string): string {
  return fileURLToPath(new URL(`./${name}.js`, import.meta.url));
}

/** Our server with only warnings logged (a log line per call would be part of what is measured). */
export async function startQuietServer(dbPath: string, extraArgs: readonly string[] = []): Promise<ChildServer> {
  const server = await startServer(dbPath, ['--log-level', 'warn', ...extraArgs]);
  return { address: server.address, pid: server.child.pid!, stop: async () => void (await server.stop()) };
}

/** The no-op baseline (bench/noop-server.ts): answers every WriteNodes with `response`, the bytes of a real answer. */
export function startNoopServer(response: Uint8Array): Promise<ChildServer> {
  return startScriptServer('noop-server', response);
}

/** The streaming floor (bench/noop-watch-server.ts). */
export interface NoopWatchServer extends ChildServer {
  /** N copies of `event` to every watcher; with perMessage, to every batched watcher, that many a message, every everyMs. */
  send(command: { events: number; perMessage?: number; everyMs?: number }): void;
}

export function startNoopWatchServer(event: Uint8Array): Promise<NoopWatchServer> {
  return startScriptServer('noop-watch-server', event);
}

/** A bench script serving gRPC, given bytes base64 on its command line, that prints {"address": …} when it listens. */
async function startScriptServer(name: string, bytes: Uint8Array): Promise<ChildServer & { send(command: object): void }> {
  const proc = spawnChild([benchScript(name), Buffer.from(bytes).toString('base64')]);
  try {
    const { address } = JSON.parse(await proc.nextLine()) as { address: string };
    return { address, pid: proc.child.pid!, stop: () => proc.stop(), send: (command) => proc.send(JSON.stringify(command)) };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** The load generator (bench/transport-client.ts), one process kept up across jobs like a real, warm client. */
export interface LoadClient {
  readonly pid: number | undefined;
  run(job: ClientJob): Promise<ClientResult>;
  stop(): Promise<void>;
}

export function startLoadClient(): LoadClient {
  const proc = spawnChild([benchScript('transport-client')]);
  return {
    pid: proc.child.pid,
    run: async (job) => {
      proc.send(JSON.stringify(job));
      return JSON.parse(await proc.nextLine(300_000)) as ClientResult;
    },
    stop: () => proc.stop(),
  };
}

/** A long-running child that talks in lines: stdout read line by line, stdin writable. */
export interface ChildProc {
  readonly child: ChildProcess;
  /** Resolves with the exit code once the process has exited and its output has been read. */
  readonly exited: Promise<number | null>;
  /** The next stdout line not yet taken (lines are queued until asked for); rejects if the child ends first. */
  nextLine(timeoutMs?: number): Promise<string>;
  send(line: string): void;
  /** The end of what the child wrote on stderr (for error messages). */
  stderr(): string;
  /** SIGTERM, then SIGKILL if it has not exited 10 s later; resolves once it has exited. */
  stop(): Promise<void>;
}

interface Waiter {
  resolve(line: string): void;
  reject(err: Error): void;
}

export function spawnChild(args: readonly string[]): ChildProc {
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-8192)));
  const queued: string[] = [];
  const waiting: Waiter[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const w = waiting.shift();
    if (w) w.resolve(line);
    else queued.push(line);
  });
  // 'close', not 'exit': it comes after stdout has ended, so every line has been read by then.
  let closed = false;
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      closed = true;
      for (const w of waiting.splice(0)) w.reject(new Error(`child exited (${code}) without the line awaited: ${err}`));
      resolve(code);
    }),
  );
  // A child that died must not crash us with EPIPE on a later send(): its exit is reported by nextLine instead.
  child.stdin!.on('error', () => undefined);
  const nextLine = (timeoutMs = 60_000) =>
    queued.length
      ? Promise.resolve(queued.shift()!)
      : new Promise<string>((resolve, reject) => {
          const w: Waiter = {
            resolve: (line) => {
              clearTimeout(t);
              resolve(line);
            },
            reject: (e) => {
              clearTimeout(t);
              reject(e);
            },
          };
          const t = setTimeout(() => {
            waiting.splice(waiting.indexOf(w), 1);
            reject(new Error(`no line from child within ${timeoutMs} ms: ${err}`));
          }, timeoutMs);
          if (closed) w.reject(new Error(`child exited (${child.exitCode ?? child.signalCode}): ${err}`));
          else waiting.push(w);
        });
  return {
    child,
    exited,
    nextLine,
    send: (line) => void child.stdin!.write(line + '\n'),
    stderr: () => err,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** Linux's USER_HZ: the unit of utime and stime in /proc/PID/stat (100 on every mainstream kernel). */
const CLOCK_TICKS_PER_SEC = 100;

/**
 * CPU seconds (user + system, every thread) a process has used so far, from /proc; undefined where there is no /proc.
 * It tells what a call costs the server whatever else the machine is doing, unlike throughput.
 */
export function cpuSeconds(pid: number): number | undefined {
  try {
    // Fields after the command name (which is in parentheses and may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC;
  } catch {
    return undefined;
  }
}
