// Egress for fixed-output builds (CONVOY_BUILD_ALLOWED_HOSTS) against the real Nix sandbox: a listed
// host is reachable through Convoy's per-build proxy, nothing else is (unlisted hosts, internal
// addresses the outbound guard refuses, direct connections), and other builds stay without network.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { connect as connectSocket, createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { BuildEgressProxy, parseBuildAllowedHost, type EgressEvent } from '../../src/platform/builder/egress.js';
import { nixBuilderOptionsFromEnv } from '../../src/platform/builder/nix.js';
import type { HostResolver } from '../../src/platform/net/outbound-guard.js';
import { NIX_LIB_DIR, busyboxExpression, nixString, nonce, testNixBuilder } from '../helpers/nix.js';

const EMPTY_FILE_SHA256 = 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';
const FILES_HOST = 'files.convoy-egress.test';
const OTHER_HOST = 'other.convoy-egress.test';

/** An HTTP server on loopback that records every request it gets. */
class RecordingServer {
  readonly requests: string[] = [];
  port = 0;
  private readonly server: Server;

  constructor(private readonly body: (path: string) => string) {
    this.server = createServer((req: IncomingMessage, res) => {
      this.requests.push(`${req.method} ${req.headers.host} ${req.url}`);
      res.end(this.body(req.url ?? '/'));
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** There is no DNS here: both test names point at loopback, where the servers listen. */
const resolve: HostResolver = async (host) => {
  if (host === FILES_HOST || host === OTHER_HOST) return [{ address: '127.0.0.1', family: 4 }];
  throw new Error('unknown host');
};

async function sha256Sri(text: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  return `sha256-${createHash('sha256').update(text).digest('base64')}`;
}

/** Nix's own fetcher (curl, honouring http_proxy), as nixpkgs' `fetchurl` uses for bootstrapping. */
async function builtinFetchurl(name: string, url: string, content: string): Promise<string> {
  return `derivation {
  name = ${nixString(name)};
  builder = "builtin:fetchurl";
  system = "builtin";
  url = ${nixString(url)};
  outputHashMode = "flat";
  outputHashAlgo = "sha256";
  outputHash = "${await sha256Sri(content)}";
}`;
}

describe('egress for fixed-output builds (CONVOY_BUILD_ALLOWED_HOSTS)', () => {
  const content = `payload ${nonce()}\n`;
  const files = new RecordingServer(() => content);
  const other = new RecordingServer(() => 'should never be fetched\n');
  let builder: ReturnType<typeof testNixBuilder>;

  beforeAll(async () => {
    await files.start();
    await other.start();
    builder = testNixBuilder({
      // Loopback is refused by the outbound guard unless the operator allowlists it (as here, for the test).
      egress: { allowedHosts: [`${FILES_HOST}:${files.port}`], outbound: { allowedHosts: ['127.0.0.1'] }, resolve },
    });
  });

  afterAll(async () => {
    await files.stop();
    await other.stop();
  });

  it('a builtin:fetchurl build downloads from a listed host through the proxy', async () => {
    const path = `/file-${nonce()}`;
    const logs: string[] = [];
    const result = await builder.build({ kind: 'expression', expression: await builtinFetchurl(`egress-ok-${nonce()}`, `http://${FILES_HOST}:${files.port}${path}`, content) }, { onLog: (l) => logs.push(l) });
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('SUCCEEDED');
    expect(await readFile(result.outPath!, 'utf8')).toBe(content);
    expect(files.requests).toContain(`GET ${FILES_HOST}:${files.port} ${path}`);
    expect(logs).toContainEqual(expect.stringContaining(`nix-store runs sandboxed: no network (fixed-output builds reach only ${FILES_HOST}:${files.port} through Convoy's proxy)`));
    // The build's proxy lived for the build only: its socket directory is gone.
    expect((await readdir(tmpdir())).filter((name) => name.startsWith('convoy-egress-'))).toEqual([]);
  });

  it('a fixed-output build with egress still stops at its time limit', async () => {
    const expression = `{ convoyBusybox }:
(import ${nixString(NIX_LIB_DIR)}).bootstrap.runBusybox {
  name = "egress-sleep-${nonce()}";
  busybox = convoyBusybox;
  env = { outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "${EMPTY_FILE_SHA256}"; };
  script = "sleep 60; touch $out";
}`;
    const started = Date.now();
    const result = await builder.build({ kind: 'expression', expression }, { timeoutMs: 3_000 });
    expect(result).toMatchObject({ status: 'TIMED_OUT', error: 'time limit reached: timed out after 3 s' });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect((await readdir(tmpdir())).filter((name) => name.startsWith('convoy-egress-'))).toEqual([]);
  });

  it('a host not in the list is refused: the build fails and the server behind it sees no request', async () => {
    const secretPath = `/download?token=secret-${nonce()}`;
    for (const url of [`http://${OTHER_HOST}:${other.port}${secretPath}`, `http://${FILES_HOST}:${other.port}${secretPath}`, `http://127.0.0.1:${other.port}${secretPath}`]) {
      const logs: string[] = [];
      const result = await builder.build({ kind: 'expression', expression: await builtinFetchurl(`egress-refused-${nonce()}`, url, 'anything') }, { onLog: (l) => logs.push(l) });
      expect(result.status).toBe('FAILED');
      expect(logs).toContainEqual(expect.stringMatching(/^error: unable to download .*: HTTP error 403/));
      const refusals = logs.filter((l) => l.startsWith('egress refused: '));
      expect(refusals).toEqual([`egress refused: ${new URL(url).host} (not in CONVOY_BUILD_ALLOWED_HOSTS)`]);
      expect(refusals.join('\n')).not.toContain('secret-');
    }
    expect(other.requests).toEqual([]);
  });

  it('a listed host that resolves to an internal address is refused unless the outbound allowlist permits it', async () => {
    const guarded = testNixBuilder({ egress: { allowedHosts: [`${FILES_HOST}:${files.port}`], resolve } });
    const before = files.requests.length;
    const logs: string[] = [];
    const result = await guarded.build({ kind: 'expression', expression: await builtinFetchurl(`egress-guarded-${nonce()}`, `http://${FILES_HOST}:${files.port}/guarded`, content) }, { onLog: (l) => logs.push(l) });
    expect(result.status).toBe('FAILED');
    expect(logs).toContain(`egress refused: ${FILES_HOST}:${files.port} (${FILES_HOST} resolves to a loopback address 127.0.0.1)`);
    expect(files.requests.length).toBe(before);
  });

  it('a busybox builder tunnels to a listed host with CONNECT; other CONNECTs and direct connections get nowhere', async () => {
    const id = nonce();
    const connect = (target: string, path: string) =>
      `(printf 'CONNECT ${target} HTTP/1.1\\r\\nHost: ${target}\\r\\n\\r\\nGET ${path} HTTP/1.0\\r\\nHost: ${target}\\r\\n\\r\\n'; sleep 1) | timeout 5 nc 127.0.0.1 3128 2>/dev/null | tr -d '\\r' | sed 's/^/connect ${target}: /' >&2 || true`;
    const script = [
      'echo "proxy=$http_proxy" >&2',
      connect(`${FILES_HOST}:${files.port}`, `/tunnel-${id}`),
      connect('127.0.0.1:5432', '/'),
      connect(`${OTHER_HOST}:${other.port}`, '/'),
      `if echo | timeout 3 nc 127.0.0.1 ${files.port} >/dev/null 2>&1; then echo "direct reached" >&2; else echo "direct blocked" >&2; fi`,
      'touch $out',
    ].join('\n');
    const expression = `{ convoyBusybox }:
(import ${nixString(NIX_LIB_DIR)}).bootstrap.runBusybox {
  name = "egress-connect-${id}";
  busybox = convoyBusybox;
  env = { outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "${EMPTY_FILE_SHA256}"; impureEnvVars = [ "http_proxy" ]; };
  script = ${nixString(script)};
}`;
    const logs: string[] = [];
    const result = await builder.build({ kind: 'expression', expression }, { onLog: (l) => logs.push(l) });
    expect(result.error).toBeUndefined();
    expect(logs).toContain('proxy=http://127.0.0.1:3128');
    expect(logs).toContain(`connect ${FILES_HOST}:${files.port}: HTTP/1.1 200 Connection Established`);
    expect(logs).toContain(`connect ${FILES_HOST}:${files.port}: ${content.trim()}`);
    expect(files.requests).toContain(`GET ${FILES_HOST}:${files.port} /tunnel-${id}`);
    expect(logs).toContain('connect 127.0.0.1:5432: HTTP/1.1 403 Forbidden');
    expect(logs).toContain(`connect ${OTHER_HOST}:${other.port}: HTTP/1.1 403 Forbidden`);
    expect(logs).toContain('direct blocked');
    expect(other.requests).toEqual([]);
  });

  it('a build that is not fixed-output still has no network at all, not even the proxy', async () => {
    const result = await builder.build({
      kind: 'expression',
      expression: busyboxExpression(`egress-plain-${nonce()}`, `if echo | timeout 3 nc 127.0.0.1 3128 >/dev/null 2>&1; then echo reached > $out; else echo blocked > $out; fi`),
    });
    expect(result.status).toBe('SUCCEEDED');
    expect(await readFile(result.outPath!, 'utf8')).toBe('blocked\n');
  });

  it('is configured from CONVOY_BUILD_ALLOWED_HOSTS, which takes host names or host:port only', () => {
    expect(loadConfig({ CONVOY_BUILD_ALLOWED_HOSTS: 'cache.nixos.org, github.com:443 tarballs.example.org:8080' }).build.allowedHosts).toEqual(['cache.nixos.org', 'github.com:443', 'tarballs.example.org:8080']);
    expect(loadConfig({}).build.allowedHosts).toEqual([]);
    for (const bad of ['https://github.com', 'github.com/path', 'github.com:99999', 'user@github.com']) {
      expect(() => loadConfig({ CONVOY_BUILD_ALLOWED_HOSTS: bad })).toThrow(/CONVOY_BUILD_ALLOWED_HOSTS/);
    }
    expect(nixBuilderOptionsFromEnv({ CONVOY_BUILD_ALLOWED_HOSTS: 'github.com', CONVOY_OUTBOUND_ALLOWED_HOSTS: '10.0.0.0/8' }).egress).toEqual({ allowedHosts: ['github.com'], outbound: { allowedHosts: ['10.0.0.0/8'] } });
    expect(nixBuilderOptionsFromEnv({}).egress).toBeUndefined();
  });
});

describe('the build egress proxy', () => {
  /** Sends raw bytes to the proxy's socket and returns everything it answers until it closes. */
  function exchange(socketPath: string, request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connectSocket(socketPath);
      let answer = '';
      socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')));
      socket.on('data', (chunk) => (answer += chunk.toString()));
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
      socket.write(request);
    });
  }

  it('answers 502 for a listed host that does not answer, and leaves nothing behind when closed', async () => {
    // A port that was just free: nothing listens there.
    const free = createTcpServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as { port: number }).port;
    await new Promise((resolve) => free.close(resolve));
    const events: EgressEvent[] = [];
    const proxy = await BuildEgressProxy.start({ allowedHosts: [`${FILES_HOST}:${port}`], outbound: { allowedHosts: ['127.0.0.1'] }, resolve }, (e) => events.push(e));
    try {
      expect(await exchange(proxy.socketPath, `CONNECT ${FILES_HOST}:${port} HTTP/1.1\r\nHost: ${FILES_HOST}:${port}\r\n\r\n`)).toMatch(/^HTTP\/1.1 502 /);
      expect(await exchange(proxy.socketPath, `GET http://${FILES_HOST}:${port}/x HTTP/1.1\r\nHost: ${FILES_HOST}:${port}\r\n\r\n`)).toMatch(/^HTTP\/1.1 502 /);
      expect(events).toEqual([
        { kind: 'failed', target: `${FILES_HOST}:${port}`, reason: expect.stringContaining('ECONNREFUSED') },
        { kind: 'failed', target: `${FILES_HOST}:${port}`, reason: expect.stringContaining('ECONNREFUSED') },
      ]);
      // Not a proxy request (a relative URL), or a scheme other than http: refused as malformed.
      expect(await exchange(proxy.socketPath, `GET /x HTTP/1.1\r\nHost: ${FILES_HOST}:${port}\r\n\r\n`)).toMatch(/^HTTP\/1.1 400 /);
      expect(await exchange(proxy.socketPath, `GET https://${FILES_HOST}:${port}/x HTTP/1.1\r\nHost: ${FILES_HOST}:${port}\r\n\r\n`)).toMatch(/^HTTP\/1.1 400 /);
    } finally {
      await proxy.close();
    }
    expect(existsSync(proxy.socketPath)).toBe(false);
  });

  it('reads CONVOY_BUILD_ALLOWED_HOSTS entries as exact hosts with their ports', () => {
    expect(parseBuildAllowedHost('GitHub.com')).toEqual({ host: 'github.com', ports: [80, 443] });
    expect(parseBuildAllowedHost('tarballs.example.org:8080')).toEqual({ host: 'tarballs.example.org', ports: [8080] });
    expect(parseBuildAllowedHost('[2001:db8::1]:443')).toEqual({ host: '2001:db8::1', ports: [443] });
    for (const bad of ['*.github.com', 'http://github.com', 'github.com/x', 'github.com:0', 'a..b', '', '[::zz]']) expect(parseBuildAllowedHost(bad)).toBeNull();
  });
});
