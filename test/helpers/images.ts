// Tiny HTTP app images made locally from the static busybox (no registry can be pulled from here): a root
// folder is written as a tar in memory and imported through the Engine API.
import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import { readFile, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { HealthCheck } from '../../src/platform/orchestrator/orchestrator.js';
import { dockerFromHost } from '../../src/platform/orchestrator/swarm.js';

const BUSYBOX_PATH = '/bin/busybox';
const APPLETS = [
  'sh', 'httpd', 'nc', 'printf', 'cat', 'grep', 'sleep', 'echo', 'nslookup', 'tr', 'head', 'tail', 'wc', 'date', 'seq',
];
const FINGERPRINT_LABEL = 'convoy.test.fingerprint';
export const TEST_APP_PORT = 8080;

export type TestImageOptions = {
  /** Served at GET / (a newline is appended). */
  body: string;
  /** Whether GET /health answers "ok"; default true. */
  healthy?: boolean;
  /** Make /health answer "ok" only this long after start (a slow-starting app). */
  healthyAfterMs?: number;
  port?: number;
  /** Lines "start line 1".."start line N" written to stdout first (a service with a long log). */
  startLines?: number;
  /** Extra files by absolute path inside the image. */
  extraFiles?: Record<string, string>;
};

const docker = dockerFromHost(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');
const builds = new Map<string, Promise<string>>();

/** Builds (or reuses, when the tag already holds the same content) an image; resolves to the tag. */
export async function buildTestImage(tag: string, options: TestImageOptions): Promise<string> {
  const fingerprint = await fingerprintOf(options);
  const key = `${tag}#${fingerprint}`;
  let build = builds.get(key);
  if (!build) {
    build = importUnlessPresent(tag, options, fingerprint);
    builds.set(key, build);
    build.catch(() => builds.delete(key));
  }
  return build;
}

export async function removeTestImages(tags: string[]): Promise<void> {
  for (const tag of tags) {
    for (const key of builds.keys()) if (key.startsWith(`${tag}#`)) builds.delete(key);
    await docker
      .getImage(tag)
      .remove({ force: true })
      .catch((error: { statusCode?: number }) => {
        if (error.statusCode !== 404) throw error;
      });
  }
}

/** A real HTTP health check: GET /health must answer a line that is exactly "ok". */
export function httpHealthCheck(port = TEST_APP_PORT, overrides: Partial<HealthCheck> = {}): HealthCheck {
  return {
    test: ['CMD-SHELL', `printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 ${port} | grep -qx ok`],
    intervalMs: 1000,
    timeoutMs: 2000,
    retries: 1,
    startPeriodMs: 0,
    ...overrides,
  };
}

/** Imports the image into the given engine (another node's, say) unless that tag already holds it there. */
export async function importTestImage(engine: Docker, tag: string, options: TestImageOptions): Promise<string> {
  return importUnlessPresent(tag, options, await fingerprintOf(options), engine);
}

async function importUnlessPresent(tag: string, options: TestImageOptions, fingerprint: string, engine: Docker = docker): Promise<string> {
  const existing = await engine.getImage(tag).inspect().catch(() => null);
  if (existing?.Config?.Labels?.[FINGERPRINT_LABEL] === fingerprint) return tag;

  const [repo, version] = splitTag(tag);
  const rootfs = await buildRootfsTar(options);
  const progress = await engine.importImage(Readable.from([rootfs]), {
    repo,
    tag: version,
    changes: [`CMD ${JSON.stringify(['/bin/sh', '-c', startScript(options)])}`, `LABEL ${FINGERPRINT_LABEL}=${fingerprint}`],
  });
  await new Promise<void>((resolve, reject) =>
    engine.modem.followProgress(progress, (error: Error | null, events: Array<{ error?: string }>) => {
      const failure = error?.message ?? events.find((event) => event.error)?.error;
      if (failure) reject(new Error(`importing ${tag} failed: ${failure}`));
      else resolve();
    }),
  );
  return tag;
}

/** Logs one stdout line on start; httpd -v logs one stderr line per request. */
function startScript(options: TestImageOptions): string {
  const port = options.port ?? TEST_APP_PORT;
  const becomeHealthy =
    options.healthyAfterMs !== undefined && options.healthy !== false
      ? `(sleep ${options.healthyAfterMs / 1000}; echo ok > /www/health) & `
      : '';
  const startLines = options.startLines ? `i=1; while [ $i -le ${options.startLines} ]; do echo "start line $i"; i=$((i+1)); done; ` : '';
  return `${startLines}echo "test app listening on port ${port}"; ${becomeHealthy}exec httpd -f -v -p ${port} -h /www`;
}

async function buildRootfsTar(options: TestImageOptions): Promise<Buffer> {
  const healthNow = options.healthy !== false && options.healthyAfterMs === undefined;
  const tar = new TarWriter();
  tar.directory('bin');
  tar.file('bin/busybox', await readFile(BUSYBOX_PATH), 0o755);
  for (const applet of APPLETS) tar.symlink(`bin/${applet}`, 'busybox');
  tar.directory('tmp', 0o1777);
  tar.directory('www');
  tar.file('www/index.html', Buffer.from(`${options.body}\n`));
  if (healthNow) tar.file('www/health', Buffer.from('ok\n'));
  for (const [path, content] of Object.entries(options.extraFiles ?? {})) {
    tar.file(path.replace(/^\/+/, ''), Buffer.from(content));
  }
  return tar.finish();
}

async function fingerprintOf(options: TestImageOptions): Promise<string> {
  const busybox = await stat(BUSYBOX_PATH);
  const inputs = [options, APPLETS, busybox.size, busybox.mtimeMs];
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

function splitTag(tag: string): [string, string] {
  const colon = tag.lastIndexOf(':');
  return colon > tag.lastIndexOf('/') ? [tag.slice(0, colon), tag.slice(colon + 1)] : [tag, 'latest'];
}

/** Just enough of the ustar format for a flat root folder: directories, files and symlinks, owned by root. */
class TarWriter {
  private readonly blocks: Buffer[] = [];

  directory(path: string, mode = 0o755): void {
    this.blocks.push(header(`${path}/`, '5', mode, 0));
  }

  file(path: string, content: Buffer, mode = 0o644): void {
    this.blocks.push(header(path, '0', mode, content.length), content, Buffer.alloc(padding(content.length)));
  }

  symlink(path: string, target: string): void {
    this.blocks.push(header(path, '2', 0o777, 0, target));
  }

  finish(): Buffer {
    return Buffer.concat([...this.blocks, Buffer.alloc(1024)]);
  }
}

function header(path: string, type: '0' | '2' | '5', mode: number, size: number, linkTarget = ''): Buffer {
  if (Buffer.byteLength(path) > 100) throw new Error(`tar path too long: ${path}`);
  const block = Buffer.alloc(512);
  block.write(path, 0, 100, 'utf8');
  writeOctal(block, 100, 8, mode);
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  writeOctal(block, 124, 12, size);
  writeOctal(block, 136, 12, Math.floor(Date.now() / 1000));
  block.write(' '.repeat(8), 148, 8, 'ascii'); // checksum counts as spaces while summing
  block.write(type, 156, 1, 'ascii');
  block.write(linkTarget, 157, 100, 'utf8');
  block.write('ustar\u000000', 257, 8, 'ascii');
  block.write('root', 265, 32, 'ascii');
  block.write('root', 297, 32, 'ascii');
  const checksum = block.reduce((sum, byte) => sum + byte, 0);
  block.write(`${checksum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return block;
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, length, 'ascii');
}

function padding(size: number): number {
  return (512 - (size % 512)) % 512;
}
