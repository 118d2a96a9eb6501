// From template to running container: the offline busybox-http template is built with Nix, its
// closure written as a docker-archive, loaded into the real engine and run; the page answers over
// HTTP and the built-in probe works. Identical inputs give identical archives and image ids.
import type Docker from 'dockerode';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildResult } from '../../src/platform/builder/builder.js';
import { loadTemplate, startCommand, templateBuildSource, BUILT_IN_TEMPLATES_DIR, type Template } from '../../src/platform/builder/templates.js';
import { dockerFromHost } from '../../src/platform/orchestrator/index.js';
import { REPRODUCIBLE_CREATED, writeImageArchive } from '../../src/platform/images/archive.js';
import { loadImage } from '../../src/platform/images/docker.js';
import { NIX_LIB_DIR, nixString, nonce, testNixBuilder } from '../helpers/nix.js';
import { waitFor } from '../helpers/wait.js';

const docker = dockerFromHost(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');
const builder = testNixBuilder();
const id = nonce();
const repository = `convoy-test-builder/image-${id}`;
let workDir: string;
const containers: Docker.Container[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'convoy-image-test-'));
});

afterAll(async () => {
  for (const container of containers) await container.remove({ force: true }).catch(() => undefined);
  const images = await docker.listImages({ filters: JSON.stringify({ reference: [`${repository}:*`] }) });
  for (const image of images) await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
  await rm(workDir, { recursive: true, force: true });
});

describe('busybox-http template to a running container', () => {
  let template: Template;
  let first: BuildResult;
  const content = `<h1>hello ${id}</h1>`;

  beforeAll(async () => {
    template = await loadTemplate(join(BUILT_IN_TEMPLATES_DIR, 'busybox-http'));
    first = await builder.build(templateBuildSource(template, 'app', { args: { content } }));
    expect(first).toMatchObject({ status: 'SUCCEEDED', cacheHit: false });
  });

  function imageConfigFor(build: BuildResult) {
    const component = template.components[0];
    return {
      entrypoint: startCommand(component, build.outPath!),
      exposedPorts: [component.port!],
      primaryPath: build.outPath!,
      env: { GREETING: 'hi' },
      labels: { 'convoy.build': id },
      healthCheck: { port: component.port!, path: component.healthCheck!.path },
    };
  }

  it('serves the page from a container of the loaded image, as the non-root user', async () => {
    const archive = await writeImageArchive(first.closure, imageConfigFor(first), join(workDir, 'app.tar'));
    const loaded = await loadImage(docker, archive.archivePath, `${repository}:v1`);
    expect(loaded).toEqual({ imageId: archive.imageId, tag: `${repository}:v1` });

    const inspected = await docker.getImage(`${repository}:v1`).inspect();
    expect(inspected.Config).toMatchObject({
      User: '1000:1000',
      WorkingDir: '/home/convoy',
      Entrypoint: [`${first.outPath}/bin/convoy-start`],
      ExposedPorts: { '8080/tcp': {} },
      Labels: { 'convoy.build': id },
      Healthcheck: { Test: ['CMD', '/convoy/bin/http-probe', '8080', '/healthz'] },
    });
    expect(inspected.Config.Env).toEqual([`PATH=${first.outPath}/bin:/convoy/bin`, 'GREETING=hi']);

    const container = await startContainer(`${repository}:v1`);
    const ip = (await container.inspect()).NetworkSettings.Networks.bridge.IPAddress;
    let page = '';
    await waitFor('the page', async () => {
      page = await httpGet(`http://${ip}:8080/`).catch(() => '');
      return page !== '';
    });
    expect(page).toBe(content);
    expect(await execIn(container, ['/convoy/bin/busybox', 'id', '-u'])).toEqual({ exitCode: 0, output: '1000\n' });
    expect(await execIn(container, ['/convoy/bin/busybox', 'stat', '-c', '%a %U', '/tmp', '/home/convoy', '/data'])).toEqual({
      exitCode: 0,
      output: '1777 root\n755 convoy\n755 convoy\n',
    });
  });

  it('answers the built-in HTTP probe, and the probe fails on a closed port', async () => {
    const [container] = containers;
    expect(await execIn(container, ['/convoy/bin/http-probe', '8080', '/healthz'])).toEqual({ exitCode: 0, output: '' });
    const closed = await execIn(container, ['/convoy/bin/http-probe', '8081', '/healthz']);
    expect(closed.exitCode).toBe(1);
    expect(closed.output).toMatch(/Connection refused\nhttp-probe: no answer from 127\.0\.0\.1:8081\/healthz\n$/);
    const missing = await execIn(container, ['/convoy/bin/http-probe', '8080', '/missing']);
    expect(missing.exitCode).toBe(1);
    expect(missing.output).toMatch(/^http-probe: HTTP\/1\.[01] 404/);
  });

  it('builds the same source again as a cache hit, into a byte-identical archive and the same image id', async () => {
    const second = await builder.build(templateBuildSource(template, 'app', { args: { content } }));
    expect(second).toMatchObject({ status: 'SUCCEEDED', cacheHit: true, outPath: first.outPath, closure: first.closure });
    expect(second.durationMs).toBeLessThan(first.durationMs + 1_000);

    const a = await writeImageArchive(first.closure, imageConfigFor(first), join(workDir, 'a.tar'));
    const b = await writeImageArchive(second.closure, imageConfigFor(second), join(workDir, 'b.tar'));
    expect(b.imageId).toBe(a.imageId);
    expect(await sha256Of(b.archivePath)).toBe(await sha256Of(a.archivePath));

    const loaded = await loadImage(docker, b.archivePath, `${repository}:again`);
    expect(loaded.imageId).toBe((await docker.getImage(`${repository}:v1`).inspect()).Id);
  });

  it('dates the image by its inputs (a commit’s time, or a fixed recent date), never the Unix epoch', async () => {
    const committedAt = new Date('2025-03-04T05:06:07Z');
    const dated = await writeImageArchive(first.closure, { ...imageConfigFor(first), created: committedAt }, join(workDir, 'dated.tar'));
    const again = await writeImageArchive(first.closure, { ...imageConfigFor(first), created: committedAt }, join(workDir, 'dated-again.tar'));
    expect(again.imageId).toBe(dated.imageId);
    const loaded = await loadImage(docker, dated.archivePath, `${repository}:dated`);
    expect(new Date((await docker.getImage(loaded.tag).inspect()).Created)).toEqual(committedAt);

    // Without a time of its own (a template, an expression): the fixed date, so `docker images` reads sensibly.
    const undated = await docker.getImage(`${repository}:v1`).inspect();
    expect(new Date(undated.Created)).toEqual(REPRODUCIBLE_CREATED);
    expect(REPRODUCIBLE_CREATED.getUTCFullYear()).toBeGreaterThanOrEqual(2026);
  });

  it('gives a different image id when the content changes', async () => {
    const other = await builder.build(templateBuildSource(template, 'app', { args: { content: `${content} changed` } }));
    const archive = await writeImageArchive(other.closure, imageConfigFor(other), join(workDir, 'changed.tar'));
    const original = await writeImageArchive(first.closure, imageConfigFor(first), join(workDir, 'original.tar'));
    expect(archive.imageId).not.toBe(original.imageId);
    // The busybox layer is shared; only the app's layer differs.
    expect(archive.diffIds.filter((d) => original.diffIds.includes(d))).toHaveLength(archive.diffIds.length - 1);
  });
});

describe('layers', () => {
  it('caps the number of layers, keeps every store path, and links a CA bundle from the closure', async () => {
    // A root output referencing twelve small paths; one of them is a CA bundle, as nixpkgs' cacert lays it out.
    const parts = Array.from({ length: 12 }, (_, i) => `part${i}`);
    const expression = `{ convoyBusybox }:
let
  lib = (import ${nixString(NIX_LIB_DIR)}).bootstrap;
  part = name: size: lib.runBusybox { inherit name; busybox = convoyBusybox;
    script = "mkdir -p $out/share; head -c \${toString size} /dev/zero > $out/share/data; echo ${id} > $out/share/id"; };
  certs = lib.runBusybox { name = "fake-cacert-${id}"; busybox = convoyBusybox;
    script = "mkdir -p $out/etc/ssl/certs; echo 'FAKE CA ${id}' > $out/etc/ssl/certs/ca-bundle.crt"; };
  parts = [ ${parts.map((p, i) => `(part "${p}-${id}" ${(i + 1) * 1000})`).join(' ')} certs ];
in lib.runBusybox { name = "root-${id}"; busybox = convoyBusybox;
  script = "mkdir -p $out; echo \${builtins.concatStringsSep " " (map toString parts)} > $out/refs"; }`;
    const build = await builder.build({ kind: 'expression', expression });
    expect(build.status).toBe('SUCCEEDED');
    expect(build.closure).toHaveLength(14);

    const archive = await writeImageArchive(build.closure, { maxLayers: 4, entrypoint: ['/convoy/bin/busybox'], cmd: ['sh', '-c', 'ls /nix/store; cat /etc/ssl/certs/ca-certificates.crt; echo "$SSL_CERT_FILE"'] }, join(workDir, 'layers.tar'));
    expect(archive.diffIds).toHaveLength(4);
    await loadImage(docker, archive.archivePath, `${repository}:layers`);
    expect((await docker.getImage(`${repository}:layers`).inspect()).RootFS.Layers).toEqual(archive.diffIds);

    const output = await runToCompletion(`${repository}:layers`);
    const listed = output.split('\n').filter((l) => /^[a-z0-9]{32}-/.test(l));
    expect(listed.sort()).toEqual(build.closure.map((p) => p.slice('/nix/store/'.length)).sort());
    expect(output).toContain(`FAKE CA ${id}\n/etc/ssl/certs/ca-certificates.crt`);
  });
});

async function startContainer(image: string): Promise<Docker.Container> {
  const container = await docker.createContainer({ Image: image, name: `convoy-test-${nonce()}`, Labels: { 'convoy.test': 'builder' } });
  containers.push(container);
  await container.start();
  return container;
}

async function runToCompletion(image: string): Promise<string> {
  const container = await docker.createContainer({ Image: image, name: `convoy-test-${nonce()}` });
  containers.push(container);
  await container.start();
  await container.wait();
  const logs = await container.logs({ stdout: true, stderr: true });
  return demultiplex(logs);
}

async function execIn(container: Docker.Container, cmd: string[]): Promise<{ exitCode: number | null; output: string }> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const { ExitCode } = await exec.inspect();
  return { exitCode: ExitCode, output: demultiplex(Buffer.concat(chunks)) };
}

/** Docker's multiplexed stream: 8-byte frame headers (stream, 0, 0, 0, size) before each payload. */
function demultiplex(buffer: Buffer): string {
  let output = '';
  for (let offset = 0; offset + 8 <= buffer.length; ) {
    const size = buffer.readUInt32BE(offset + 4);
    output += buffer.subarray(offset + 8, offset + 8 + size).toString('utf8');
    offset += 8 + size;
  }
  return output;
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}
