// Ports for test servers. `freePort` is one the kernel just gave out: free now, fine for a server started at once.
// `stablePort` is for an address that must stay free while nothing listens on it (a server that comes back on the
// same port, a runner that is down and then starts): it is below the kernel's ephemeral range, which neither a
// listen on port 0 nor an outgoing connection ever picks. So no other test's server can take it meanwhile, and no
// client dialling it while it is down can connect to itself on it (a TCP self-connect holds the port).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function stablePort(): Promise<number> {
  const first = ephemeralRangeStart();
  const low = Math.max(1024, first - 12_000);
  for (let i = 0; i < 100; i++) {
    const port = low + Math.floor(Math.random() * (first - low));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${low}-${first - 1} after 100 tries`);
}

/** The first port of the kernel's ephemeral range (Linux: ip_local_port_range; 32768 where it cannot be read). */
function ephemeralRangeStart(): number {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(start) && start > 2048 ? start : 32_768;
  } catch {
    return 32_768;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
