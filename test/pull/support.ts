// Helpers for pull-runner tests: real agent processes (`turboci runner`), a promise client for TurboCIRunnerPull,
// and the server's event log read from its SQLite file or PostgreSQL database (read-only, safe while it runs).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { credentials } from '@grpc/grpc-js';
import { unary, type UnaryMethod } from '../../src/client/unary.js';
import type { RecordedEvent } from '../../src/domain/events.js';
import {
  CompleteLeaseRequest,
  HeartbeatRequest,
  LeaseRequest,
  TurboCIRunnerPullClient,
  type CompleteLeaseResponse,
  type HeartbeatResponse,
  type LeaseResponse,
} from '../../src/gen/turboci/v1/pull.js';
import { BIN } from '../support/server.js';
import { readAllEvents } from '../support/store.js';

export interface AgentProcess {
  readonly child: ChildProcess;
  readonly logs: Record<string, unknown>[];
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export function startAgent(server: string, args: string[], env: NodeJS.ProcessEnv = process.env): AgentProcess {
  const child = spawn(process.execPath, [BIN, 'runner', '--server', server, '--wait', '2000', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    logs,
    exited,
    waitForLog: async (match, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = logs.find(match);
        if (found) return found;
        if (child.exitCode !== null) throw new Error(`agent exited (${child.exitCode}): ${stderr}`);
        if (Date.now() > deadline) throw new Error(`no matching agent log line within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface PullApi {
  lease(req: Partial<LeaseRequest>): Promise<LeaseResponse>;
  heartbeat(req: Partial<HeartbeatRequest>): Promise<HeartbeatResponse>;
  completeLease(req: Record<string, unknown>): Promise<CompleteLeaseResponse>;
  close(): void;
}

export function connectPull(address: string): PullApi {
  const client = new TurboCIRunnerPullClient(address, credentials.createInsecure());
  const call =
    <Req, Res, P>(method: UnaryMethod<Req, Res>, fromPartial: (r: P) => Req) =>
    (req: P): Promise<Res> =>
      unary(method.bind(client), fromPartial(req), { timeoutMs: 90_000 });
  return {
    lease: call(client.lease, (r: Partial<LeaseRequest>) => LeaseRequest.fromPartial(r)),
    heartbeat: call(client.heartbeat, (r: Partial<HeartbeatRequest>) => HeartbeatRequest.fromPartial(r)),
    completeLease: call(client.completeLease, (r: Record<string, unknown>) => CompleteLeaseRequest.fromPartial(r as Parameters<typeof CompleteLeaseRequest.fromPartial>[0])),
    close: () => client.close(),
  };
}

/** Every event in the log, in commit order. */
export function readLog(dbPath: string): RecordedEvent[] {
  return readAllEvents(dbPath);
}

/** True while the process exists and is not a zombie (an orphan's zombie waits for a reaper that may never come). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/** A free TCP port on 127.0.0.1 (for a server that must come back on the same address). */
/** A shell stage for runner type `type`, assigned to check `checkId` when given. */
export function shellStage(id: string, command: string | string[], more: Record<string, unknown> = {}) {
  return { id, runnerType: 'shell', args: { command }, ...more };
}
