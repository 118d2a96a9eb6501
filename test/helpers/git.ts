// Real Git fixtures: repositories in temp dirs, and a private Git server over HTTP (git http-backend
// behind Basic auth) to clone from with a token.
import { execa } from 'execa';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'Convoy Test',
  GIT_AUTHOR_EMAIL: 'test@convoy.invalid',
  GIT_COMMITTER_NAME: 'Convoy Test',
  GIT_COMMITTER_EMAIL: 'test@convoy.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `convoy-${prefix}-`));
}

export async function git(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await execa('git', args, { cwd, env: GIT_ENV });
  return stdout.trim();
}

/** A repository at `dir` on branch `main`, with no commits yet. */
export async function initRepo(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await git(dir, ['init', '--quiet', '--initial-branch=main']);
}

/** Writes the files (relative path -> content) and commits them; returns the new commit SHA. */
export async function commitFiles(dir: string, files: Record<string, string>, message = 'update'): Promise<string> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  await git(dir, ['add', '--all']);
  await git(dir, ['commit', '--quiet', '-m', message]);
  return git(dir, ['rev-parse', 'HEAD']);
}

export interface PrivateGitServer {
  /** http://127.0.0.1:<port>/<name> for a repository under the served root. */
  urlOf(name: string): string;
  /** The Authorization headers the server received, in order. */
  authorizations: string[];
  close(): Promise<void>;
}

/** Serves the repositories under `root` with git http-backend to clients that send `username:token`. */
export async function servePrivateRepos(root: string, credentials: { username: string; token: string }): Promise<PrivateGitServer> {
  const expected = `Basic ${Buffer.from(`${credentials.username}:${credentials.token}`).toString('base64')}`;
  const authorizations: string[] = [];
  const server = createServer((req, res) => {
    authorizations.push(req.headers.authorization ?? '');
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="convoy-test"' }).end();
      return;
    }
    runHttpBackend(root, req, res).catch((error: Error) => res.writeHead(500).end(error.message));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    urlOf: (name) => `http://127.0.0.1:${port}/${name}`,
    authorizations,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** One CGI request to git http-backend. */
async function runHttpBackend(root: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const body: Buffer[] = [];
  for await (const chunk of req) body.push(chunk as Buffer);
  const { stdout } = await execa('git', ['http-backend'], {
    input: Buffer.concat(body),
    encoding: 'buffer',
    env: {
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
      GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
      REMOTE_USER: 'convoy-test',
      REMOTE_ADDR: '127.0.0.1',
    },
  });
  const output = Buffer.from(stdout);
  const split = output.indexOf('\r\n\r\n');
  const headerText = output.subarray(0, split).toString('latin1');
  const headers: Record<string, string> = {};
  let status = 200;
  for (const line of headerText.split('\r\n')) {
    const [name, ...rest] = line.split(':');
    const value = rest.join(':').trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
    else headers[name] = value;
  }
  res.writeHead(status, headers).end(output.subarray(split + 4));
}

export interface TestTcpServer {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/**
 * A TCP server on 127.0.0.1 that accepts and then never says a word: what a firewalled or hung
 * service looks like to a client. With `trickle`, it sends one byte every so often instead, a
 * transfer too slow to ever finish but never silent for long.
 */
export async function serveSilentPort(options: { trickleEveryMs?: number } = {}): Promise<TestTcpServer> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createTcpServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    if (options.trickleEveryMs) {
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nTransfer-Encoding: chunked\r\n\r\n');
      const timer = setInterval(() => socket.write('1\r\n0\r\n'), options.trickleEveryMs);
      socket.on('close', () => clearInterval(timer));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => accepted,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A TCP server on 127.0.0.1 that greets like an ssh server, records what clients send, and hangs up. */
export async function serveSshBanner(): Promise<TestTcpServer & { received: string[] }> {
  const received: string[] = [];
  let accepted = 0;
  const server = createTcpServer((socket) => {
    accepted++;
    socket.on('error', () => {});
    socket.write('SSH-2.0-OpenSSH_9.2p1 convoy-test\r\n');
    socket.once('data', (chunk) => {
      received.push(chunk.toString('latin1'));
      socket.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => accepted,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** An HTTP server on 127.0.0.1 that answers every request with a redirect to `location` + the path. */
export async function serveRedirects(location: string): Promise<TestTcpServer> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    res.writeHead(302, { Location: `${location}${req.url ?? '/'}` }).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export async function removeDirs(...dirs: string[]): Promise<void> {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}
