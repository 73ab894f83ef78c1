// The shell agent's containment (scrubbed environment, cwd inside --workdir), TLS and mTLS end to end with auth on
// (certificates made on the fly with openssl), the audit trail (who and why in events --json, explain, replay
// --step and Watch), and the refusal to serve without auth on a non-loopback address.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Metadata, ServerCredentials, type ServiceError } from '@grpc/grpc-js';
import { CheckState, StageState } from '../../src/gen/turboci/v1/common.js';
import type { WorkPlanEvent } from '../../src/gen/turboci/v1/service.js';
import { startAgent } from '../pull/support.js';
import { eventually, startTestRunner } from '../support/runner.js';
import { BIN, connect, startServer, tempDir } from '../support/server.js';
import { cliNeedsFile } from '../support/store.js';
import { clients, createToken, outcome, turboci } from './support.js';

const dir = tempDir('turboci-tls-');
after(() => dir.remove());

const pki: Record<string, string> = {};
before(() => {
  const p = (f: string) => join(dir.path, f);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '1', '-subj', '/CN=turboci-test-ca');
  writeFileSync(p('san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  for (const who of ['server', 'client']) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${who}.key`), '-out', p(`${who}.csr`), '-subj', `/CN=${who === 'server' ? 'localhost' : 'turboci-client'}`);
    ssl('x509', '-req', '-in', p(`${who}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p(`${who}.crt`), '-days', '1', '-extfile', p('san.ext'));
  }
  for (const f of ['ca.crt', 'server.crt', 'server.key', 'client.crt', 'client.key']) pki[f] = p(f);
});

const shellStage = (command: unknown, extra: Record<string, unknown> = {}) => ({
  id: 'sh',
  runnerType: 'shell',
  args: { command, ...extra },
  assignments: [{ targetCheckId: 'ran', goalState: CheckState.CHECK_STATE_FINAL }],
});

test('the shell agent: a scrubbed environment (plus --pass-env), and a cwd that cannot leave --workdir', async () => {
  const server = await startServer(join(dir.path, 'agent.db'));
  const api = connect(server.address).api;
  const workdir = join(dir.path, 'work');
  const agent = startAgent(server.address, ['--type', 'shell', '--workdir', workdir, '--pass-env', 'PASSED_ON'], {
    ...process.env,
    SECRET: 'hunter2',
    PASSED_ON: 'yes',
  });
  try {
    const wp = (await api.createWorkPlan({ metadata: {} })).workPlan!.id;
    await api.writeNodes({ workPlanId: wp, checks: [{ id: 'ran', state: CheckState.CHECK_STATE_PLANNED }], stages: [shellStage('env', { env: { FROM_ARGS: '1' } })] });
    const check = await eventually(async () => {
      const c = (await api.queryNodes({ workPlanId: wp })).checks[0]!;
      return c.state === CheckState.CHECK_STATE_FINAL ? c : undefined;
    }, 'the env stage');
    const tail = String(check.results[0]!.data!.output_tail);
    assert.doesNotMatch(tail, /hunter2/, 'the agent\'s own environment does not reach the command');
    assert.match(tail, /PASSED_ON=yes/);
    assert.match(tail, /FROM_ARGS=1/);
    assert.match(tail, /^PATH=/m);

    const wp2 = (await api.createWorkPlan({ metadata: {} })).workPlan!.id;
    await api.writeNodes({ workPlanId: wp2, checks: [{ id: 'ran', state: CheckState.CHECK_STATE_PLANNED }], stages: [shellStage('touch escaped', { cwd: '../../../..' })] });
    const stage = await eventually(async () => {
      const st = (await api.queryNodes({ workPlanId: wp2 })).stages[0]!;
      return st.state === StageState.STAGE_STATE_FINAL ? st : undefined;
    }, 'the escaping stage');
    assert.match(stage.failure!.message, /args\.cwd "\.\.\/\.\.\/\.\.\/\.\." is outside the agent's --workdir/);
    const abs = (await api.createWorkPlan({ metadata: {} })).workPlan!.id;
    await api.writeNodes({ workPlanId: abs, checks: [{ id: 'ran', state: CheckState.CHECK_STATE_PLANNED }], stages: [shellStage('pwd', { cwd: '/' })] });
    await eventually(async () => {
      const st = (await api.queryNodes({ workPlanId: abs })).stages[0]!;
      return st.state === StageState.STAGE_STATE_FINAL && /outside the agent's --workdir/.test(st.failure?.message ?? '') ? st : undefined;
    }, 'the absolute cwd refused');
  } finally {
    await agent.stop();
    await server.stop();
  }
});

test('TLS + mTLS + auth end to end: the agent over TLS runs a shell stage; a client without a certificate is refused; audit shows who and why', async () => {
  const db = join(dir.path, 'tls.db');
  const bot = createToken(db, 'ci-bot', 'writer');
  const agentToken = createToken(db, 'shell-agent', 'runner', '--runner-type', 'shell');
  const server = await startServer(db, ['--auth', 'on', '--tls-cert', pki['server.crt']!, '--tls-key', pki['server.key']!, '--tls-client-ca', pki['ca.crt']!], cliNeedsFile);
  const tls = { tlsCa: readFileSync(pki['ca.crt']!), tlsCert: readFileSync(pki['client.crt']!), tlsKey: readFileSync(pki['client.key']!) };
  const writer = clients(server.address, { ...tls, token: bot });
  const agent = startAgent(server.address, [
    '--type', 'shell', '--workdir', join(dir.path, 'tls-work'), '--token', agentToken,
    '--tls-ca', pki['ca.crt']!, '--tls-cert', pki['client.crt']!, '--tls-key', pki['client.key']!,
  ]);
  try {
    // Without a client certificate (mTLS), or without TLS at all, nothing gets through.
    const noCert = clients(server.address, { tlsCa: tls.tlsCa, token: bot });
    assert.equal(await outcome(noCert.api.createWorkPlan({ metadata: {} })), 'UNAVAILABLE');
    noCert.close();
    const plain = clients(server.address, { token: bot });
    assert.equal(await outcome(plain.api.createWorkPlan({ metadata: {} })), 'UNAVAILABLE');
    plain.close();

    const wp = (await writer.api.createWorkPlan({ metadata: {} })).workPlan!.id;
    // A watcher sees who made each change.
    const seen: WorkPlanEvent[] = [];
    const watch = writer.orchestrator.watchWorkPlan({ workPlanId: wp, includeChecks: false, includeStages: false, checkStateFilter: [], stageStateFilter: [], checkIdFilter: [], stageIdFilter: [], afterVersion: 0n, maxBatchDelayMs: 0 }, new Metadata());
    watch.on('data', (e: WorkPlanEvent) => seen.push(e));
    watch.on('error', (_e: ServiceError) => {});
    await writer.api.writeNodes({
      workPlanId: wp,
      checks: [{ id: 'ran', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [shellStage('echo over tls')],
      requestId: 'r-release',
      reason: 'release 1.2: ship it',
    });
    const check = await eventually(async () => {
      const c = (await writer.api.queryNodes({ workPlanId: wp })).checks[0]!;
      return c.state === CheckState.CHECK_STATE_FINAL ? c : undefined;
    }, 'the shell stage over TLS');
    assert.match(String(check.results[0]!.data!.output_tail), /over tls/);
    await eventually(async () => (seen.some((e) => e.principal === 'shell-agent') ? true : undefined), 'watch events of the agent');
    watch.cancel();
    const created = seen.find((e) => e.checkEvent?.checkId === 'ran' && e.checkEvent.oldState === CheckState.CHECK_STATE_UNKNOWN)!;
    assert.deepEqual([created.principal, created.reason], ['ci-bot', 'release 1.2: ship it']);

    // events --json: every event of the write carries ci-bot and the reason; the agent's completion its own token.
    const events = turboci('events', '--db', db, '-w', wp, '--json');
    assert.equal(events.status, 0, events.stderr);
    const rows = events.stdout.trim().split('\n').map((l) => JSON.parse(l) as { requestId: string | null; principal?: string; reason?: string; type: string; data: { completion?: unknown } });
    const mine = rows.filter((r) => r.requestId === 'r-release');
    assert.ok(mine.length >= 3);
    assert.ok(mine.every((r) => r.principal === 'ci-bot' && r.reason === 'release 1.2: ship it'));
    assert.equal(rows.find((r) => r.type === 'StageAttemptStateChanged' && r.data.completion)!.principal, 'shell-agent');
    assert.equal(rows.find((r) => r.type === 'WorkPlanCreated')!.principal, 'ci-bot');
    // explain and replay --step say who and why; so does the CLI over TLS + mTLS + token.
    const explain = turboci('explain', '--db', db, '-w', wp, 'check:ran');
    assert.equal(explain.status, 0, explain.stderr);
    assert.match(explain.stdout, /check ran was created at v\d+, written by request r-release \(a client write\) by ci-bot \(reason: "release 1\.2: ship it"\)/);
    const step = turboci('replay', '--db', db, '-w', wp, '--step');
    assert.match(step.stdout, /CheckCreated .*\(request r-release by ci-bot \(reason: "release 1\.2: ship it"\)\)/);
    const remote = turboci('events', '--server', server.address, '-w', wp, '--json', '--token', bot, '--tls-ca', pki['ca.crt']!, '--tls-cert', pki['client.crt']!, '--tls-key', pki['client.key']!);
    assert.equal(remote.status, 0, remote.stderr);
    assert.match(remote.stdout, /"principal":"ci-bot","reason":"release 1.2: ship it"/);
    const noToken = turboci('events', '--server', server.address, '-w', wp, '--tls-ca', pki['ca.crt']!, '--tls-cert', pki['client.crt']!, '--tls-key', pki['client.key']!);
    assert.notEqual(noToken.status, 0);
    assert.match(noToken.stderr, /UNAUTHENTICATED/);
    // No secret in the agent's or the server's logs.
    const logs = JSON.stringify(server.logs) + JSON.stringify(agent.logs);
    assert.ok(!logs.includes(bot) && !logs.includes(agentToken));
  } finally {
    writer.close();
    await agent.stop();
    await server.stop();
  }
});

test('push runners registered with a tls:// address are dialed over TLS (verified with --runner-tls-ca)', async () => {
  const runner = await startTestRunner(
    { run: async (req) => ({ stageState: StageState.STAGE_STATE_FINAL, checkUpdates: [{ checkId: req.assignedCheckIds[0]!, state: CheckState.CHECK_STATE_FINAL, finalize: true, resultData: { over: 'tls' }, failure: undefined }] }) },
    ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(pki['server.crt']!), private_key: readFileSync(pki['server.key']!) }], false),
  );
  const server = await startServer(join(dir.path, 'push-tls.db'), ['--runner-tls-ca', pki['ca.crt']!]);
  const api = connect(server.address).api;
  try {
    await api.registerStageRunner({ runnerId: 'tls-runner', runnerType: 'secure', address: `tls://${runner.address}` });
    const wp = (await api.createWorkPlan({ metadata: {} })).workPlan!.id;
    await api.writeNodes({ workPlanId: wp, checks: [{ id: 'ran', state: CheckState.CHECK_STATE_PLANNED }], stages: [{ ...shellStage('unused'), runnerType: 'secure' }] });
    const check = await eventually(async () => {
      const c = (await api.queryNodes({ workPlanId: wp })).checks[0]!;
      return c.state === CheckState.CHECK_STATE_FINAL ? c : undefined;
    }, 'the TLS push runner\'s answer');
    assert.deepEqual(check.results[0]!.data, { over: 'tls' });
  } finally {
    await server.stop();
    await runner.close();
  }
});

test('auth off on 0.0.0.0 refuses to start in one line; --insecure-no-auth starts and warns', async () => {
  const refused = turboci('serve', '--host', '0.0.0.0', '--port', '0', '--db', join(dir.path, 'open.db'));
  assert.equal(refused.status, 2);
  assert.equal(refused.stderr.trim().split('\n').length, 1);
  assert.match(refused.stderr, /refusing to listen on 0\.0\.0\.0 with --auth off/);
  const server = await startServer(join(dir.path, 'open.db'), ['--host', '0.0.0.0', '--insecure-no-auth']);
  try {
    const warning = await server.waitForLog((l) => l.level === 40 && /auth is off on a non-loopback address/.test(String(l.msg)));
    assert.equal(warning.host, '0.0.0.0');
  } finally {
    await server.stop();
  }
  // With auth on it starts on 0.0.0.0 without complaint.
  const on = spawn(process.execPath, [BIN, 'serve', '--host', '0.0.0.0', '--port', '0', '--http-port', '0', '--db', join(dir.path, 'on.db'), '--auth', 'on'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const line = await new Promise<string>((resolve) => on.stdout.on('data', (b: Buffer) => /listening/.test(b.toString()) && resolve(b.toString())));
  assert.match(line, /"auth":"on"/);
  on.kill('SIGTERM');
  await new Promise((r) => on.once('exit', r));
});
