// Image distribution: a built image pushed to a real registry (Debian's docker-registry on loopback)
// can be pulled back by an engine that no longer has it, with the same image id.
import type Docker from 'dockerode';
import { execa, type ResultPromise } from 'execa';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILT_IN_TEMPLATES_DIR, loadTemplate, startCommand, templateBuildSource } from '../../src/platform/builder/templates.js';
import { writeImageArchive } from '../../src/platform/images/archive.js';
import { loadImage, pushImage } from '../../src/platform/images/docker.js';
import { dockerFromHost } from '../../src/platform/orchestrator/index.js';
import { nonce, testNixBuilder } from '../helpers/nix.js';
import { waitFor } from '../helpers/wait.js';

const docker = dockerFromHost(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');
const id = nonce();
const localTag = `convoy-test-builder/push-${id}:v1`;
let workDir: string;
let registry: ResultPromise;
let registryHost: string;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'convoy-registry-test-'));
  const port = await freePort();
  registryHost = `127.0.0.1:${port}`;
  const config = join(workDir, 'config.yml');
  await writeFile(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(workDir, 'storage')}\nhttp:\n  addr: ${registryHost}\n`);
  registry = execa('docker-registry', ['serve', config], { reject: false, stdio: 'ignore' });
  await waitFor('the registry', async () => (await fetch(`http://${registryHost}/v2/`).catch(() => undefined))?.status === 200);
});

afterAll(async () => {
  for (const tag of [localTag, `${registryHost}/${localTag}`]) await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  registry.kill('SIGTERM');
  await registry;
  await rm(workDir, { recursive: true, force: true });
});

describe('pushImage', () => {
  it('pushes to REGISTRY_URL so another engine can pull the same image', async () => {
    const template = await loadTemplate(join(BUILT_IN_TEMPLATES_DIR, 'busybox-http'));
    const build = await testNixBuilder().build(templateBuildSource(template, 'app', { args: { content: `pushed ${id}` } }));
    const archive = await writeImageArchive(build.closure, { entrypoint: startCommand(template.components[0], build.outPath!) }, join(workDir, 'image.tar'));
    await loadImage(docker, archive.archivePath, localTag);

    const pushed = await pushImage(docker, localTag, `http://${registryHost}`);
    expect(pushed).toEqual({ reference: `${registryHost}/${localTag}`, digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });
    const tags = await (await fetch(`http://${registryHost}/v2/convoy-test-builder/push-${id}/tags/list`)).json();
    expect(tags).toEqual({ name: `convoy-test-builder/push-${id}`, tags: ['v1'] });

    // Forget the image locally, as a node that never had it, then pull it.
    for (const tag of [localTag, pushed.reference]) await docker.getImage(tag).remove({ force: true });
    await pull(docker, pushed.reference);
    expect((await docker.getImage(pushed.reference).inspect()).Id).toBe(archive.imageId);
  });
});

async function pull(client: Docker, reference: string): Promise<void> {
  const stream = await client.pull(reference);
  await new Promise<void>((resolve, reject) => client.modem.followProgress(stream, (error: Error | null) => (error ? reject(error) : resolve())));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
