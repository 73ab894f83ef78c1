// API tokens' decisions, pure.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideCreateToken, decideRevokeToken } from '../../src/domain/decide-tokens.js';
import { DomainError } from '../../src/domain/errors.js';
import type { RecordedEvent } from '../../src/domain/events.js';
import { TokenRegistry } from '../../projections/tokens.js';
import { NOW } from './given-when-then.js';

const base = { name: 'ci-bot', role: 'writer', realms: [], runnerTypes: [], expiresAt: null, secretHash: 'ab'.repeat(32) };
const fold = (registry: TokenRegistry, events: ReturnType<typeof decideCreateToken>) =>
  events.forEach((p, i) =>
    registry.fold({ position: i + 1, streamId: 'tokens', version: registry.version + 1, recordedAt: NOW, causation: { requestId: null, causedByVersion: null }, event: p.event } as RecordedEvent),
  );

describe('tokens', () => {
  test('a writer gets realm "default" unless named; an admin every realm and type; a runner must name its types', () => {
    const tokens = new TokenRegistry();
    assert.deepEqual((decideCreateToken(tokens, base, NOW)[0]!.event.data as unknown as { realms: string[] }).realms, ['default']);
    const admin = decideCreateToken(tokens, { ...base, role: 'admin', realms: ['x'] }, NOW)[0]!.event.data as unknown as { realms: string[]; runnerTypes: string[] };
    assert.deepEqual([admin.realms, admin.runnerTypes], [['*'], ['*']]);
    assert.throws(() => decideCreateToken(tokens, { ...base, role: 'runner' }, NOW), /names the runner types/);
    assert.throws(() => decideCreateToken(tokens, { ...base, role: 'root' }, NOW), /not one of/);
    assert.throws(() => decideCreateToken(tokens, { ...base, expiresAt: NOW }, NOW), /future/);
  });

  test('reserved principals cannot be token names; names are unique until revoked', () => {
    const tokens = new TokenRegistry();
    for (const name of ['anonymous', 'system', 'cli:root']) {
      assert.throws(() => decideCreateToken(tokens, { ...base, name }, NOW), (e: DomainError) => e.kind === 'INVALID_ARGUMENT');
    }
    fold(tokens, decideCreateToken(tokens, base, NOW));
    assert.throws(() => decideCreateToken(tokens, base, NOW), /already exists/);
    fold(tokens, decideRevokeToken(tokens, 'ci-bot'));
    assert.equal(tokens.token('ci-bot')!.revokedAt, NOW);
    assert.deepEqual(decideRevokeToken(tokens, 'ci-bot'), [], 'revoking twice appends nothing');
    assert.equal(decideCreateToken(tokens, { ...base, secretHash: 'cd'.repeat(32) }, NOW).length, 1, 'the name is free again');
    assert.throws(() => decideRevokeToken(tokens, 'nobody'), /no token/);
  });
});
