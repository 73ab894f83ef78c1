import { TOKEN_EVENT_TYPES, type RecordedEvent } from '../src/domain/events.js';
import type { Token, TokenView } from '../src/domain/decide-tokens.js';
import type { Projection } from './projection.js';

/** API tokens, folded from the `tokens` stream: by name, and by the SHA-256 of their secret. */
export class TokenRegistry implements Projection, TokenView {
  readonly name = 'tokens';
  readonly handles = TOKEN_EVENT_TYPES;
  private readonly byName = new Map<string, Token>();
  private readonly byHash = new Map<string, Token>();
  /** Version of the token stream folded so far. */
  version = 0;

  token(name: string): Token | undefined {
    return this.byName.get(name);
  }

  bySecretHash(hash: string): Token | undefined {
    return this.byHash.get(hash);
  }

  tokens(): IterableIterator<Token> {
    return this.byName.values();
  }

  fold(rec: RecordedEvent): void {
    this.version = rec.version;
    const e = rec.event;
    if (e.type === 'TokenCreated') {
      const prev = this.byName.get(e.data.name);
      if (prev) this.byHash.delete(prev.secretHash);
      const t: Token = { ...e.data, createdAt: rec.recordedAt, revokedAt: null };
      this.byName.set(t.name, t);
      this.byHash.set(t.secretHash, t);
    } else if (e.type === 'TokenRevoked') {
      const prev = this.byName.get(e.data.name);
      if (!prev) return;
      const t = { ...prev, revokedAt: rec.recordedAt };
      this.byName.set(t.name, t);
      this.byHash.set(t.secretHash, t);
    }
  }
}
