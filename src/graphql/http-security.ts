// Browser-facing rules of the HTTP server: which origins may call it with credentials (CORS), and the
// security headers every response carries.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Plugin } from 'graphql-yoga';
import type { Config } from '../config.js';
import { GRAPHIQL_ASSETS_PATH, GRAPHIQL_CONTENT_SECURITY_POLICY } from './graphiql.js';
import { isTrustedProxy } from '../platform/ratelimit/client-address.js';

const LOCALHOST_ORIGIN = /^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$/;

/** Whether a request from this Origin may read the API's answers (credentials included). `null` never may. */
export function isAllowedOrigin(origin: string, allowed: Config['http']['corsOrigins']): boolean {
  return allowed === 'localhost' ? LOCALHOST_ORIGIN.test(origin) : allowed.includes(origin);
}

/**
 * Yoga's CORS options per request: the caller's origin when it is allowed, and no CORS headers at all
 * otherwise (Yoga's default reflects any Origin, `null` included, with credentials).
 */
export function corsOptions(allowed: Config['http']['corsOrigins']) {
  return (request: Request) => {
    const origin = request.headers.get('origin');
    if (!origin || !isAllowedOrigin(origin, allowed)) return false as const;
    return { origin: [origin], credentials: true, methods: ['GET', 'POST', 'OPTIONS'], exposedHeaders: ['x-request-id'], maxAge: 600 };
  };
}

// JSON, log downloads, the install script: nothing to render, so nothing may load or frame them.
const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

// GraphiQL's page and files (src/graphql/graphiql.ts, served from this origin) get the policy that lets the
// page run; frame-ancestors cannot be set by its <meta> policy, so it is added here.
const GRAPHIQL_CSP = `${GRAPHIQL_CONTENT_SECURITY_POLICY}; frame-ancestors 'none'`;

/** TLS on this socket, or a proxy the operator trusts (CONVOY_TRUSTED_PROXIES) says the client used https. */
export function arrivedOverTls(req: IncomingMessage, trustedProxies: readonly string[]): boolean {
  if ((req.socket as TLSSocket).encrypted) return true;
  if (!isTrustedProxy(req.socket.remoteAddress, trustedProxies)) return false;
  const proto = req.headers['x-forwarded-proto'];
  const first = (Array.isArray(proto) ? proto[0] : proto)?.split(',')[0]?.trim().toLowerCase();
  return first === 'https';
}

/** Set on every response before it is routed; GraphiQL's page gets its own CSP (graphiqlCspPlugin). */
export function setSecurityHeaders(req: IncomingMessage, res: ServerResponse, trustedProxies: readonly string[]): void {
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('x-frame-options', 'DENY');
  res.setHeader('referrer-policy', 'no-referrer');
  res.setHeader('content-security-policy', (req.url ?? '').startsWith(GRAPHIQL_ASSETS_PATH) ? GRAPHIQL_CSP : API_CSP);
  res.setHeader('cross-origin-opener-policy', 'same-origin');
  // Only over TLS: over plain HTTP the header is ignored at best, and a wrong one locks browsers out.
  if (arrivedOverTls(req, trustedProxies)) res.setHeader('strict-transport-security', 'max-age=31536000; includeSubDomains');
}

/** HTML from Yoga is GraphiQL: it gets the policy that lets it run. */
export function graphiqlCspPlugin(): Plugin {
  return {
    onResponse({ response }) {
      if (response.headers.get('content-type')?.startsWith('text/html')) response.headers.set('content-security-policy', GRAPHIQL_CSP);
    },
  };
}
