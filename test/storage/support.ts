// Helpers for the storage tests: run the turboci binary to completion (without blocking the event loop, so a
// test's own gRPC clients keep working meanwhile), and mount small file systems where the machine allows it.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { BIN } from '../support/server.js';

export interface Ran {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runTurboci(args: string[], timeoutMs = 30_000): Promise<Ran> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    }),
  );
}

/**
 * Mounts a tmpfs of `size` (e.g. "2m") at dir, read-only if asked; returns an unmount function, or a reason why
 * it could not (not root, no mount permission in this container): the caller skips its test saying so.
 */
export function mountTmpfs(dir: string, size: string, readOnly = false): { unmount(): void } | { skip: string } {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}${readOnly ? ',ro' : ''}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { skip: `cannot mount a tmpfs here (${r.error?.message ?? r.stderr.trim()}); needs root or CAP_SYS_ADMIN` };
  return { unmount: () => void spawnSync('umount', ['-l', dir]) };
}
