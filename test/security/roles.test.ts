// Who may do what, over real gRPC against a real server with --auth on: every role against every RPC (the exact
// status of each pair, including a wrong realm, a wrong runner type, an expired, a revoked, a forged and no
// token), realm isolation that never reveals existence, --runner-type-realms, revocation on the next call, and
// no secret in the server log, the event log or the database file.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CheckState, ExecutionMode, StageState } from '../../src/gen/turboci/v1/common.js';
import { sleep } from '../support/runner.js';
import { startServer, tempDir, type ServerProcess } from '../support/server.js';
import { cliNeedsFile } from '../support/store.js';
import { clients, createToken, outcome, turboci } from './support.js';

const dir = tempDir('turboci-roles-');
const db = join(dir.path, 'roles.db');
let server: ServerProcess;
const secrets: Record<string, string> = {};
let admin: ReturnType<typeof clients>;
let wp = '';

const IDENTITIES = ['admin', 'reader', 'writer', 'writer-other', 'approver', 'runner', 'runner-other', 'expired', 'revoked', 'forged', 'none'] as const;
type Identity = (typeof IDENTITIES)[number];

before(async () => {
  secrets.admin = createToken(db, 'root', 'admin');
  secrets.reader = createToken(db, 'reader-1', 'reader', '--realm', 'default');
  secrets.writer = createToken(db, 'ci-bot', 'writer');
  secrets['writer-other'] = createToken(db, 'other-writer', 'writer', '--realm', 'other');
  secrets.approver = createToken(db, 'approver-1', 'approver');
  secrets.runner = createToken(db, 'shell-agents', 'runner', '--runner-type', 'shell', '--runner-type', 'build');
  secrets['runner-other'] = createToken(db, 'gpu-agents', 'runner', '--runner-type', 'gpu');
  secrets.expired = createToken(db, 'short-lived', 'admin', '--expires', '1s');
  secrets.revoked = createToken(db, 'gone', 'admin');
  assert.equal(turboci('token', 'revoke', 'gone', '--db', db).status, 0);
  secrets.forged = 'tci_' + 'A'.repeat(43);
  server = await startServer(db, ['--auth', 'on', '--runner-type-realms', 'shell=trusted'], cliNeedsFile);
  admin = clients(server.address, { token: secrets.admin });
  wp = (await admin.api.createWorkPlan({ metadata: { repo: 'x' } })).workPlan!.id;
});
after(async () => {
  admin?.close();
  await server?.stop();
  dir.remove();
});

const as = (who: Identity) => clients(server.address, who === 'none' ? {} : { token: secrets[who]! });

const RPCS: Record<string, (c: ReturnType<typeof clients>, who: string) => Promise<string>> = {
  CreateWorkPlan: (c) => outcome(c.api.createWorkPlan({ metadata: {} })),
  GetWorkPlan: (c) => outcome(c.api.getWorkPlan({ id: wp })),
  QueryNodes: (c) => outcome(c.api.queryNodes({ workPlanId: wp })),
  WriteNodes: (c, who) => outcome(c.api.writeNodes({ workPlanId: wp, checks: [{ id: `c-${who}`, state: CheckState.CHECK_STATE_PLANNING }] })),
  WatchWorkPlan: (c) => c.watch(wp),
  ListStageRunners: (c) => outcome(c.api.listStageRunners({})),
  RegisterStageRunner: (c, who) => outcome(c.api.registerStageRunner({ runnerId: `r-${who}`, runnerType: 'shell', address: '127.0.0.1:9' })),
  UnregisterStageRunner: (c) => outcome(c.api.unregisterStageRunner({ registrationId: 'no-such-registration' })),
  UpdateStageExecution: (c) => outcome(c.api.updateStageExecution({ executionId: 'no-such-execution' })),
  CompleteStageExecution: (c) => outcome(c.api.completeStageExecution({ executionId: 'no-such-execution' })),
  ReadEvents: (c) => outcome(c.readEvents(wp)),
  GetWorkPlanAt: (c) => outcome(c.getWorkPlanAt(wp)),
  Lease: (c) => outcome(c.lease('shell')),
  Heartbeat: (c) => outcome(c.heartbeat('not-a-lease-token')),
  CompleteLease: (c) => outcome(c.completeLease('not-a-lease-token')),
};

const READS = ['GetWorkPlan', 'QueryNodes', 'WatchWorkPlan', 'ListStageRunners', 'ReadEvents', 'GetWorkPlanAt'];
const WRITES = ['CreateWorkPlan', 'WriteNodes'];
/** What a permitted runner gets for each runner RPC with made-up ids. */
const RUNNER: Record<string, string> = {
  RegisterStageRunner: 'OK',
  UnregisterStageRunner: 'NOT_FOUND',
  UpdateStageExecution: 'NOT_FOUND',
  CompleteStageExecution: 'NOT_FOUND',
  Lease: 'OK',
  Heartbeat: 'FAILED_PRECONDITION',
  CompleteLease: 'FAILED_PRECONDITION',
};

function expected(who: Identity, rpc: string): string {
  switch (who) {
    case 'admin':
      return RUNNER[rpc] ?? 'OK';
    case 'reader':
    case 'approver':
      return READS.includes(rpc) ? 'OK' : 'PERMISSION_DENIED';
    case 'writer':
      return READS.includes(rpc) || WRITES.includes(rpc) ? 'OK' : 'PERMISSION_DENIED';
    case 'writer-other': // its realm is "other": the workplan (realm default) is out of reach; runners are not realm-scoped
      return rpc === 'ListStageRunners' ? 'OK' : 'PERMISSION_DENIED';
    case 'runner':
      return RUNNER[rpc] ?? 'PERMISSION_DENIED';
    case 'runner-other': // serves "gpu" only: registering or leasing "shell" is denied
      return rpc === 'RegisterStageRunner' || rpc === 'Lease' ? 'PERMISSION_DENIED' : RUNNER[rpc] ?? 'PERMISSION_DENIED';
    default:
      return 'UNAUTHENTICATED';
  }
}

test('every role against every RPC gets exactly the expected status', async () => {
  // The expired token was made with --expires 1s: make sure that second is over (not a timing assertion).
  await sleep(1100);
  const got: Record<string, Record<string, string>> = {};
  const want: Record<string, Record<string, string>> = {};
  for (const who of IDENTITIES) {
    const c = as(who);
    got[who] = {};
    want[who] = {};
    for (const [rpc, call] of Object.entries(RPCS)) {
      got[who][rpc] = await call(c, who);
      want[who][rpc] = expected(who, rpc);
    }
    c.close();
  }
  assert.deepEqual(got, want);
});

test('PERMISSION_DENIED names the permission; UNAUTHENTICATED says nothing about which tokens exist', async () => {
  const reader = as('reader');
  await assert.rejects(
    reader.api.writeNodes({ workPlanId: wp, checks: [{ id: 'x', state: CheckState.CHECK_STATE_PLANNING }] }),
    /PERMISSION_DENIED: token "reader-1" \(role reader\) lacks permission workplans\.write$/,
  );
  reader.close();
  for (const who of ['expired', 'revoked', 'forged'] as const) {
    const c = as(who);
    await assert.rejects(c.api.getWorkPlan({ id: wp }), /UNAUTHENTICATED: invalid token: unknown, revoked or expired$/);
    c.close();
  }
  const none = as('none');
  await assert.rejects(none.api.getWorkPlan({ id: wp }), /UNAUTHENTICATED: missing credentials/);
  none.close();
});

test('outside its realms a token learns nothing: another realm and no workplan at all look the same', async () => {
  const other = as('writer-other');
  const elsewhere = await outcome(other.api.getWorkPlan({ id: wp }));
  const nowhere = await outcome(other.api.getWorkPlan({ id: 'no-such-workplan' }));
  assert.deepEqual([elsewhere, nowhere], ['PERMISSION_DENIED', 'PERMISSION_DENIED']);
  const m1 = await other.api.getWorkPlan({ id: wp }).catch((e: Error) => e.message.replace(wp, 'ID'));
  const m2 = await other.api.getWorkPlan({ id: 'no-such-workplan' }).catch((e: Error) => e.message.replace('no-such-workplan', 'ID'));
  assert.equal(m1, m2);
  // Its own realm works, and the workplan records it.
  const mine = await other.api.createWorkPlan({ metadata: {}, realm: 'other' });
  assert.equal(mine.workPlan!.realm, 'other');
  assert.equal(await outcome(other.api.createWorkPlan({ metadata: {}, realm: 'default' })), 'PERMISSION_DENIED');
  // The admin sees that the made-up one does not exist.
  assert.equal(await outcome(admin.api.getWorkPlan({ id: 'no-such-workplan' })), 'NOT_FOUND');
  other.close();
});

test('--runner-type-realms shell=trusted: a writer of realm default cannot reach the shell agents; a trusted writer can', async () => {
  const writer = as('writer');
  await assert.rejects(
    writer.api.writeNodes({ workPlanId: wp, stages: [{ id: 'sh', runnerType: 'shell', args: { command: 'id' } }] }),
    /PERMISSION_DENIED: stages\[0\]\.runner_type: runner type "shell" may not be targeted from realm "default"/,
  );
  writer.close();
  const trustedSecret = createToken(db, 'trusted-writer', 'writer', '--realm', 'trusted');
  const trusted = clients(server.address, { token: trustedSecret });
  const twp = (await trusted.api.createWorkPlan({ metadata: {}, realm: 'trusted' })).workPlan!.id;
  const res = await trusted.api.writeNodes({ workPlanId: twp, stages: [{ id: 'sh', runnerType: 'shell', args: { command: 'true' }, executionMode: ExecutionMode.EXECUTION_MODE_SYNC }] });
  assert.equal(res.stages[0]!.runnerType, 'shell');
  // Cancel it so no agent of this test file is expected to run it.
  await trusted.api.writeNodes({ workPlanId: twp, stages: [{ id: 'sh', state: StageState.STAGE_STATE_FINAL }] });
  trusted.close();
});

test('a token created while the server runs works on the next call; a revocation takes effect on the next call', async () => {
  const secret = createToken(db, 'temp-reader', 'reader');
  const c = clients(server.address, { token: secret });
  assert.equal(await outcome(c.api.getWorkPlan({ id: wp })), 'OK');
  assert.equal(turboci('token', 'revoke', 'temp-reader', '--db', db).status, 0);
  assert.equal(await outcome(c.api.getWorkPlan({ id: wp })), 'UNAUTHENTICATED');
  c.close();
  const list = turboci('token', 'list', '--db', db, '--json');
  const rows = list.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; status: string });
  assert.equal(rows.find((r) => r.name === 'temp-reader')!.status, 'revoked');
  assert.equal(rows.find((r) => r.name === 'short-lived')!.status, 'expired');
  assert.equal(rows.find((r) => r.name === 'root')!.status, 'active');
  assert.ok(!list.stdout.includes(secrets.admin!), 'list never shows a secret');
});

test('no secret appears in the server log, the event log or the database files', async () => {
  const events = turboci('events', '--db', db, '--json');
  assert.equal(events.status, 0, events.stderr);
  const tokenEvents = turboci('events', '--db', db, '--json', '--from-position', '1');
  const logText = server.logs.map((l) => JSON.stringify(l)).join('\n');
  const files = readdirSync(dir.path).filter((f) => f.startsWith('roles.db')).map((f) => readFileSync(join(dir.path, f)));
  assert.ok(files.length >= 1);
  for (const [who, secret] of Object.entries(secrets)) {
    if (who === 'forged') continue;
    assert.ok(!logText.includes(secret), `${who}'s secret is not in the server log`);
    assert.ok(!events.stdout.includes(secret) && !tokenEvents.stdout.includes(secret), `${who}'s secret is not in the event log`);
    for (const f of files) assert.ok(!f.includes(Buffer.from(secret)), `${who}'s secret is not in the database`);
  }
  // The calls are logged with the principal's name.
  assert.ok(server.logs.some((l) => l.msg === 'rpc' && l.principal === 'ci-bot'));
});
