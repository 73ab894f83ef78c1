// The examples as a newcomer first runs them: --help, a server that is not running, a server that goes away.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { freePort } from '../support/ports.js';
import { connect, startServer, tempDir } from '../support/server.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}.js`, import.meta.url));
const EXAMPLES: Record<string, string[]> = {
  quickstart: [],
  runner: ['--server'],
  watch: [],
  pipeline: ['create', '--server'],
};

function run(name: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [example(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

const oneLine = (s: string) => s.trimEnd().split('\n').length === 1;

test('every example answers --help with its usage (exit 0) and an unknown option with one line (exit 2)', async () => {
  for (const name of Object.keys(EXAMPLES)) {
    const help = await run(name, ['--help']);
    assert.equal(help.code, 0, `${name}: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`^usage: node dist/examples/${name}\\.js `), name);
    assert.equal(help.stderr, '', name);
    const bad = await run(name, ['--no-such-option']);
    assert.equal(bad.code, 2, `${name}: ${bad.stderr}`);
    assert.match(bad.stderr, /Unknown option '--no-such-option'/, name);
    assert.doesNotMatch(bad.stderr, /\n\s+at /, `${name}: no stack`);
  }
});

test('against a server that is not running, every example says so in one line and exits 1', async () => {
  const address = `127.0.0.1:${await freePort()}`;
  for (const [name, before] of Object.entries(EXAMPLES)) {
    const args = name === 'watch' ? [address, 'some-workplan'] : [...before, address];
    const res = await run(name, args);
    assert.equal(res.code, 1, `${name}: ${res.stderr}`);
    assert.ok(oneLine(res.stderr), `${name}: ${res.stderr}`);
    assert.match(res.stderr, new RegExp(`^cannot reach a TurboCI server at ${address} \\(is it running\\? start one with: npx turboci serve\\)`), name);
  }
});

test('watch.js gives up (exit 1, one line naming where to resume) when the server stays away, instead of retrying forever', async () => {
  const dir = tempDir();
  const server = await startServer(`${dir.path}/examples.db`);
  const conn = connect(server.address);
  try {
    const id = (await conn.api.createWorkPlan({})).workPlan!.id;
    await conn.api.writeNodes({ workPlanId: id, checks: [{ id: 'c' }] });
    const child = spawn(process.execPath, [example('watch'), server.address, id, '--give-up-after', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (b: Buffer) => {
        stdout += b.toString();
        if (stdout.includes('\n')) resolve();
      }),
    );
    await conn.api.writeNodes({ workPlanId: id, checks: [{ id: 'd' }] });
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (stdout.includes('check d')) {
          clearInterval(poll);
          resolve();
        }
      }, 20);
    });
    await server.stop();
    const code = await exited;
    assert.equal(code, 1, stderr);
    const last = stderr.trimEnd().split('\n').at(-1)!;
    assert.match(last, new RegExp(`^watch failed: the server at ${server.address} has not answered for 2 s; giving up \\(watch again with --after-version 3\\)$`));
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack');
  } finally {
    conn.close();
    await server.stop();
    dir.remove();
  }
});
