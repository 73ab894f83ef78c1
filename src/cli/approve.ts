import { parseArgs } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { unary } from '../client/unary.js';
import { ApprovalDecision, CheckState } from '../gen/turboci/v1/common.js';
import { ApproveRequest, TurboCIOrchestratorClient } from '../gen/turboci/v1/service.js';
import { command, out } from './log-args.js';
import { UsageError } from './usage-error.js';

export const APPROVE_HELP = `Usage: turboci approve --server HOST:PORT -w ID --check ID [--reject] [--comment TEXT] [--request-id ID]

Approves (or with --reject, rejects) an approval gate: a check written with approval_gate. The gate goes FINAL
once it has the approvals it requires from distinct principals, or at once on a reject (its result names who
rejected and why). Stages that depend on the gate start when it is FINAL. Until authentication is on, every
caller is recorded as "anonymous".

Options:
  --server HOST:PORT   the server                                       (default: $TURBOCI_SERVER or 127.0.0.1:50051)
  -w, --workplan ID    the workplan
  --check ID           the gate
  --reject             reject instead of approve
  --comment TEXT       recorded with the approval (and in the failure of a reject)
  --request-id ID      makes a retry safe: the same id appends nothing the second time
  -h, --help           show this help

Prints the gate's state after the call and, once FINAL, its result. Exit 0 when the call was accepted, 1 when the
server refused it (e.g. FAILED_PRECONDITION: the gate is not WAITING yet, or already FINAL).

Examples:
  turboci approve --server 127.0.0.1:50051 -w 6ed53af4-... --check release --comment "ship it"
  turboci approve --server 127.0.0.1:50051 -w 6ed53af4-... --check release --reject --comment "CVE-2026-1 open"`;

export const approveCommand = command(async (argv) => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      server: { type: 'string' },
      workplan: { type: 'string', short: 'w' },
      check: { type: 'string' },
      reject: { type: 'boolean' },
      comment: { type: 'string' },
      'request-id': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(APPROVE_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (!values.workplan) throw new UsageError('--workplan ID is required');
  if (!values.check) throw new UsageError('--check ID is required');
  const server = values.server ?? process.env.TURBOCI_SERVER ?? '127.0.0.1:50051';
  const client = new TurboCIOrchestratorClient(server, credentials.createInsecure());
  try {
    const res = await unary(
      client.approve.bind(client),
      ApproveRequest.fromPartial({
        workPlanId: values.workplan,
        checkId: values.check,
        decision: values.reject ? ApprovalDecision.APPROVAL_DECISION_REJECT : ApprovalDecision.APPROVAL_DECISION_APPROVE,
        comment: values.comment ?? '',
        requestId: values['request-id'] ?? '',
      }),
      { timeoutMs: 30_000 },
    );
    const c = res.check!;
    const got = new Set(c.approvals.filter((a) => a.decision === ApprovalDecision.APPROVAL_DECISION_APPROVE).map((a) => a.principal)).size;
    const state = CheckState[c.state].replace('CHECK_STATE_', '');
    await out(`check ${c.id}: ${state} (${got} of ${c.approvalGate?.approvalsRequired ?? 1} approvals) at v${res.workPlanVersion}`);
    const final = c.results.at(-1);
    if (c.state === CheckState.CHECK_STATE_FINAL && final) await out(final.failure ? `failed: ${final.failure.message}` : 'approved');
    return 0;
  } finally {
    client.close();
  }
});
