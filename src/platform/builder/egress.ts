// Egress for fixed-output derivations (FODs) to CONVOY_BUILD_ALLOWED_HOSTS only.
//
// A build realises in an empty network namespace (sandbox.ts), and an FOD shares that namespace. For
// a build with egress, Convoy runs a forward proxy (this file) in the host's namespace, listening on a
// unix socket in a private directory; inside the build's namespace a small relay (FORWARDER_SCRIPT)
// brings up loopback, listens on 127.0.0.1:EGRESS_PROXY_PORT and hands each connection to that socket,
// then runs nix-store with http_proxy/https_proxy pointing at it. Nix's builtin:fetchurl (curl) and
// FOD builders that list the proxy variables in impureEnvVars (nixpkgs' fetchurl does) use it; anything
// else reaches nothing. Builds inside Nix's sandbox cannot see the socket (private /tmp and root).
//
// The proxy allows CONNECT and plain-HTTP requests (absolute URIs) to listed hosts only: exact names,
// ports 80 and 443 unless an entry names its port. It resolves them with the outbound guard
// (loopback, private, link-local and metadata addresses are refused unless the operator allowlists
// them in CONVOY_OUTBOUND_ALLOWED_HOSTS) and connects to the vetted address, never resolving again.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, isIP, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { resolveAndCheck, type HostResolver, type OutboundPolicy, type ResolvedAddress } from '../net/outbound-guard.js';

export interface BuildEgressOptions {
  /** CONVOY_BUILD_ALLOWED_HOSTS: `host` (ports 80 and 443) or `host:port`. Empty: no egress at all. */
  allowedHosts: string[];
  /** The outbound guard's policy (CONVOY_OUTBOUND_ALLOWED_HOSTS, Convoy's own hosts). */
  outbound?: OutboundPolicy;
  /** How names become addresses; the system resolver by default (tests pass their own). */
  resolve?: HostResolver;
}

/** Where the relay listens inside the build's namespace (it has one of its own: any port will do). */
export const EGRESS_PROXY_PORT = 3128;
const DEFAULT_PORTS = [80, 443];
const CONNECT_TIMEOUT_MS = 15_000;
/** A tunnel or request silent this long is closed. */
const IDLE_TIMEOUT_MS = 120_000;
/** Connections one build may hold open through its proxy (downloads run a few at a time). */
const MAX_CONNECTIONS = 64;
const ENTRY = /^([a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?$/;

type AllowedTarget = { host: string; ports: number[] };

/** One CONVOY_BUILD_ALLOWED_HOSTS entry, or null when it is not `host` or `host:port`. */
export function parseBuildAllowedHost(entry: string): AllowedTarget | null {
  const match = ENTRY.exec(entry.trim().toLowerCase());
  if (!match) return null;
  const host = match[1].replace(/^\[(.*)\]$/, '$1');
  if (host.includes(':') ? isIP(host) !== 6 : host.includes('..')) return null;
  const port = match[2] === undefined ? undefined : Number(match[2]);
  if (port !== undefined && !(port >= 1 && port <= 65_535)) return null;
  return { host, ports: port === undefined ? DEFAULT_PORTS : [port] };
}

export function isValidBuildAllowedHost(entry: string): boolean {
  return parseBuildAllowedHost(entry) !== null;
}

/** The proxy variables nix-store (and through impureEnvVars, FOD builders) get. */
export function egressProxyEnvironment(): Record<string, string> {
  const url = `http://127.0.0.1:${EGRESS_PROXY_PORT}`;
  return { http_proxy: url, https_proxy: url, HTTP_PROXY: url, HTTPS_PROXY: url };
}

/**
 * Runs inside the build's network namespace as `node -e FORWARDER_SCRIPT <ip> <socket> <port> -- <argv...>`:
 * brings loopback up, relays 127.0.0.1:<port> to the proxy's socket, then runs argv (nix-store) and
 * exits with its status. Signals reach nix-store through the process group; the relay waits for it.
 * Its arguments are only ever used as an argument array.
 */
export const FORWARDER_SCRIPT = `
const { execFileSync, spawn } = require('node:child_process');
const net = require('node:net');
const [ip, socketPath, port, separator, ...argv] = process.argv.slice(1);
if (separator !== '--' || argv.length === 0) { console.error('convoy egress relay: bad arguments'); process.exit(125); }
try { execFileSync(ip, ['link', 'set', 'lo', 'up'], { stdio: 'ignore' }); } catch (e) { console.error('convoy egress relay: cannot bring up loopback: ' + e.message); process.exit(125); }
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => {});
const server = net.createServer((client) => {
  const upstream = net.connect(socketPath);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.pipe(upstream).pipe(client);
});
server.on('error', (e) => { console.error('convoy egress relay: ' + e.message); process.exit(125); });
server.listen(Number(port), '127.0.0.1', () => {
  const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit' });
  child.on('error', (e) => { console.error('convoy egress relay: ' + e.message); process.exit(127); });
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (require('node:os').constants.signals[signal] ?? 0)));
});
`;

/** A refused or failed target, for the build log: host and port only (never paths, queries or headers). */
export type EgressEvent = { kind: 'refused' | 'failed'; target: string; reason: string };

/** One build's proxy: created before the build's nix-store runs, closed after. */
export class BuildEgressProxy {
  private readonly sockets = new Set<Duplex>();

  private constructor(
    private readonly dir: string,
    readonly socketPath: string,
    private readonly server: Server,
  ) {}

  static async start(options: BuildEgressOptions, onEvent: (event: EgressEvent) => void): Promise<BuildEgressProxy> {
    const allowed = options.allowedHosts.map(parseBuildAllowedHost).filter((t): t is AllowedTarget => t !== null);
    // mkdtemp creates the directory 0700: only this (root) process and the relay it starts reach the socket.
    const dir = await mkdtemp(join(tmpdir(), 'convoy-egress-'));
    const socketPath = join(dir, 'proxy.sock');
    const server = createServer({ requestTimeout: IDLE_TIMEOUT_MS, headersTimeout: 30_000 });
    server.maxConnections = MAX_CONNECTIONS;
    const proxy = new BuildEgressProxy(dir, socketPath, server);
    const vet = async (host: string, port: number): Promise<{ ok: true; address: ResolvedAddress } | { ok: false; status: number }> => {
      const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
      if (!allowed.some((a) => a.host === host && a.ports.includes(port))) {
        onEvent({ kind: 'refused', target, reason: 'not in CONVOY_BUILD_ALLOWED_HOSTS' });
        return { ok: false, status: 403 };
      }
      const checked = await resolveAndCheck(host, options.outbound ?? {}, { resolve: options.resolve });
      if (!checked.ok) {
        onEvent({ kind: 'refused', target, reason: checked.reason });
        return { ok: false, status: 403 };
      }
      return { ok: true, address: checked.addresses[0] };
    };
    server.on('connection', (socket: Socket) => proxy.track(socket));
    server.on('connect', (req: IncomingMessage, client: Duplex, head: Buffer) => {
      proxy.track(client);
      client.on('error', () => client.destroy());
      const target = parseAuthority(req.url ?? '');
      if (!target) {
        client.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        return;
      }
      void vet(target.host, target.port).then((vetted) => {
        if (!vetted.ok) {
          client.end(`HTTP/1.1 ${vetted.status} Forbidden\r\nConnection: close\r\n\r\n`);
          return;
        }
        if (client.destroyed) return;
        const upstream = connect({ host: vetted.address.address, port: target.port, family: vetted.address.family, timeout: CONNECT_TIMEOUT_MS });
        proxy.track(upstream);
        let established = false;
        upstream.once('connect', () => {
          established = true;
          upstream.setTimeout(IDLE_TIMEOUT_MS);
          client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
          if (head.length > 0) upstream.write(head);
          client.pipe(upstream).pipe(client);
        });
        upstream.once('timeout', () => upstream.destroy(new Error('timed out')));
        upstream.once('error', (error) => {
          if (!established) {
            onEvent({ kind: 'failed', target: `${target.host}:${target.port}`, reason: error.message });
            client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n');
          } else client.destroy();
        });
        client.once('close', () => upstream.destroy());
      });
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      let url: URL;
      try {
        url = new URL(req.url ?? '');
      } catch {
        res.writeHead(400, { connection: 'close' }).end();
        return;
      }
      if (url.protocol !== 'http:' || url.username || url.password) {
        res.writeHead(400, { connection: 'close' }).end();
        return;
      }
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
      const port = url.port ? Number(url.port) : 80;
      void vet(host, port).then((vetted) => {
        if (!vetted.ok) {
          res.writeHead(vetted.status, { connection: 'close' }).end();
          return;
        }
        const headers = { ...req.headers };
        delete headers['proxy-connection'];
        delete headers['proxy-authorization'];
        const upstream = httpRequest({
          host: vetted.address.address,
          family: vetted.address.family,
          port,
          method: req.method,
          path: `${url.pathname}${url.search}`,
          headers: { ...headers, host: url.host },
          timeout: IDLE_TIMEOUT_MS,
          // A connection of this build's own, closed with it (no pool shared between builds).
          agent: false,
        });
        upstream.on('response', (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        upstream.on('timeout', () => upstream.destroy(new Error('timed out')));
        upstream.on('error', (error) => {
          if (res.destroyed) return;
          onEvent({ kind: 'failed', target: `${host}:${port}`, reason: error.message });
          if (!res.headersSent) res.writeHead(502, { connection: 'close' }).end();
          else res.destroy();
        });
        res.once('close', () => {
          if (!res.writableFinished) upstream.destroy();
        });
        req.pipe(upstream);
      });
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => resolve());
      });
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    return proxy;
  }

  /** Closes every connection and removes the socket's directory. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
    await rm(this.dir, { recursive: true, force: true });
  }

  private track(socket: Duplex): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }
}

/** `host:port` of a CONNECT request (`[v6]:port` too), lower-cased; null when malformed. */
function parseAuthority(authority: string): { host: string; port: number } | null {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/?#@\s]+):([0-9]{1,5})$/.exec(authority);
  if (!match) return null;
  const port = Number(match[2]);
  if (!(port >= 1 && port <= 65_535)) return null;
  return { host: match[1].toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, ''), port };
}
