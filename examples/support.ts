// What every example does the same way: --help, usage errors, and a server that is not there, each in one line.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { status, type Client, type ServiceError } from '@grpc/grpc-js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * parseArgs with `-h/--help` (prints `usage`, exits 0) and usage errors as one line (exit 2), never a stack.
 */
export function exampleArgs<O extends Options>(usage: string, options: O, allowPositionals = false) {
  try {
    const parsed = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
    if ((parsed.values as { help?: boolean }).help) {
      console.log(usage);
      process.exit(0);
    }
    return parsed as ReturnType<typeof parseArgs<{ options: O; allowPositionals: boolean }>>;
  } catch (err) {
    usageError(usage, (err as Error).message);
  }
}

export function usageError(usage: string, message: string): never {
  console.error(`${message}\n${usage.split('\n')[0]}`);
  process.exit(2);
}

/** Waits (at most `ms`) for the client to connect; otherwise says so in one line and exits 1. */
export async function reachable(client: Client, address: string, ms = 3000): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => client.waitForReady(Date.now() + ms, (err) => resolve(!err)));
  if (ok) return;
  console.error(`cannot reach a TurboCI server at ${address} (is it running? start one with: npx turboci serve)`);
  process.exit(1);
}

/** One line for an error from a call: the status and its message, no grpc stack. */
export function describeError(err: unknown): string {
  const e = err as Partial<ServiceError>;
  if (typeof e.code === 'number' && e.code in status) return `${status[e.code]}: ${e.details || e.message}`;
  return err instanceof Error ? err.message : String(err);
}

/** Ends the example with one line on stderr and exit code 1 when `main` fails. */
export function runMain(main: () => Promise<number | void>): void {
  main().then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (err: unknown) => {
      console.error(`error: ${describeError(err)}`);
      process.exit(1);
    },
  );
}
