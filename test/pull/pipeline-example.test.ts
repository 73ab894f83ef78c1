// examples/pipeline.ts creates the sample pipeline and follows it to the end, with a real agent running the stages
// (quick commands stand in for the npm scripts, which take minutes).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { connect, startServer, tempDir } from '../support/server.js';
import { startAgent } from './support.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/pipeline.js', import.meta.url));
const run = (args: string[]) => promisify(execFile)(process.execPath, [EXAMPLE, ...args], { timeout: 60_000 });

test('examples/pipeline: create, then follow build → test → lint to the end; a failing step fails the pipeline', async () => {
  const dir = tempDir();
  const server = await startServer(`${dir.path}/pipeline.db`);
  const agent = startAgent(server.address, ['--type', 'shell', '--workdir', dir.path, '--id', 'ci-agent']);
  const { api, close } = connect(server.address);
  try {
    const quick = ['--server', server.address, '--repo', dir.path, '--build', 'echo compiling; pwd', '--test', 'echo 3 tests passed', '--lint', 'echo clean'];
    const created = await run(['create', ...quick]);
    const workPlanId = created.stdout.trim();
    assert.match(workPlanId, /^[0-9a-f-]{36}$/);
    const followed = await run(['follow', '--server', server.address, '--poll-ms', '100', workPlanId]);
    const out = followed.stdout;
    assert.match(out, /build\| compiling/);
    assert.match(out, new RegExp(`build\\| ${dir.path}`), 'ran in args.cwd (the repository)');
    assert.match(out, /check test: CHECK_STATE_FINAL passed/);
    assert.match(out, /check lint: CHECK_STATE_FINAL passed/);
    assert.match(out, /pipeline passed\n$/);
    assert.ok(out.indexOf('check build: CHECK_STATE_FINAL') < out.indexOf('check test: CHECK_STATE_FINAL'));
    assert.ok(out.indexOf('check test: CHECK_STATE_FINAL') < out.indexOf('check lint: CHECK_STATE_FINAL'));
    const { checks } = await api.queryNodes({ workPlanId, includeChecks: true });
    assert.deepEqual(checks.map((c) => [c.id, c.results[0]!.data!.exit_code]), [['build', 0], ['test', 0], ['lint', 0]]);

    const failing = (await run(['create', ...quick.slice(0, 6), '--test', 'echo 1 test failed; exit 1', '--lint', 'echo clean'])).stdout.trim();
    const err = await run(['follow', '--server', server.address, '--poll-ms', '100', failing]).then(
      () => assert.fail('follow should exit 1'),
      (e: { code: number; stdout: string }) => e,
    );
    assert.equal(err.code, 1);
    assert.match(err.stdout, /attempt 2 failed: command exited with code 1/);
    assert.match(err.stdout, /check lint: CHECK_STATE_FINAL passed/, 'lint still ran: a dependency is satisfied by FINAL, whatever its outcome');
    assert.match(err.stdout, /pipeline FAILED: test\n$/);
  } finally {
    close();
    await agent.stop('SIGKILL');
    await server.stop();
    dir.remove();
  }
});
