// How every client of ours (the CLI's --server commands, the agent, the examples, the tests) reaches a server:
// TLS when given a CA (and a client certificate for mTLS), and `authorization: Bearer <token>` on every call when
// given a token. One place, so none of them grows its own variant.
import { readFileSync } from 'node:fs';
import { credentials, InterceptingCall, type ChannelCredentials, type ChannelOptions, type Interceptor } from '@grpc/grpc-js';

export interface ConnectOptions {
  /** The API token's secret (sent as a bearer token). */
  readonly token?: string | undefined;
  /** PEM of the CA that signed the server's certificate: dial TLS. */
  readonly tlsCa?: Buffer | undefined;
  /** A client certificate and key (PEM), for servers that require them (mTLS). */
  readonly tlsCert?: Buffer | undefined;
  readonly tlsKey?: Buffer | undefined;
}

/** The parseArgs options every client command accepts. */
export const CLIENT_ARG_OPTIONS = {
  token: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
} as const;

/** Help text for CLIENT_ARG_OPTIONS. */
export const CLIENT_ARG_HELP = `  --token SECRET       API token (servers with --auth on)        TURBOCI_TOKEN
  --tls-ca FILE        dial TLS, verifying the server with this CA (PEM)  TURBOCI_TLS_CA
  --tls-cert FILE      client certificate for mTLS (PEM)          TURBOCI_TLS_CERT
  --tls-key FILE       its private key (PEM)                      TURBOCI_TLS_KEY`;

/** Reads --token/--tls-* (or TURBOCI_TOKEN, TURBOCI_TLS_CA, TURBOCI_TLS_CERT, TURBOCI_TLS_KEY). */
export function connectOptionsFrom(values: { token?: string | undefined; 'tls-ca'?: string | undefined; 'tls-cert'?: string | undefined; 'tls-key'?: string | undefined }, env = process.env): ConnectOptions {
  const file = (path: string | undefined) => (path ? readFileSync(path) : undefined);
  return {
    token: values.token ?? env.TURBOCI_TOKEN,
    tlsCa: file(values['tls-ca'] ?? env.TURBOCI_TLS_CA),
    tlsCert: file(values['tls-cert'] ?? env.TURBOCI_TLS_CERT),
    tlsKey: file(values['tls-key'] ?? env.TURBOCI_TLS_KEY),
  };
}

/** Channel credentials and options (the bearer-token interceptor) for a generated client's constructor. */
export function channel(o: ConnectOptions = {}, extra: ChannelOptions = {}): { credentials: ChannelCredentials; options: ChannelOptions } {
  const tls = o.tlsCa !== undefined || o.tlsCert !== undefined;
  const creds = tls ? credentials.createSsl(o.tlsCa ?? null, o.tlsKey ?? null, o.tlsCert ?? null) : credentials.createInsecure();
  const interceptors: Interceptor[] = o.token ? [bearer(o.token)] : [];
  return { credentials: creds, options: { ...extra, ...(interceptors.length ? { interceptors } : {}) } };
}

function bearer(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}
