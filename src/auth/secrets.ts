// API token secrets: 256 random bits, shown once; only their SHA-256 is stored (a salt or a slow hash buys nothing
// for secrets this long), and hashes are compared in constant time.
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

const PREFIX = 'tci_';

export const newSecret = (): string => `${PREFIX}${randomBytes(32).toString('base64url')}`;

export const hashSecret = (secret: string): string => hash('sha256', secret, 'hex');

export function hashesEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}
