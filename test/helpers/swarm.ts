// Real-swarm fixtures: unique names, free host ports, cleanup of what a test file made, an HTTP/1.0 client
// and probe containers that look at services from inside an overlay network.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { demultiplexBuffer } from '../../src/platform/orchestrator/docker-frames.js';
import { DEPLOYMENT_LABEL, type SwarmServiceSpec } from '../../src/platform/orchestrator/orchestrator.js';
import { dockerFromHost } from '../../src/platform/orchestrator/swarm.js';
import { buildTestImage, TEST_APP_PORT } from './images.js';

export const testDocker: Docker = dockerFromHost(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');

const PROBE_IMAGE = 'convoy-test/probe:1';
const TEST_LABEL = 'convoy.test';

/** Short, DNS-safe and unique across parallel test files: `<prefix>-<8 random chars>`. */
export function uniqueName(prefix: string): string {
  const safePrefix = prefix.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 20);
  return `${safePrefix}-${randomBytes(5).toString('hex').slice(0, 8)}`;
}

const handedOutPorts = new Set<number>();

/** A random host port in 20000-40000 that nothing listens on right now. */
export async function freeHostPort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    if (!handedOutPorts.has(port) && (await isPortFree(port))) {
      handedOutPorts.add(port);
      return port;
    }
  }
  throw new Error('no free host port found in 20000-40000');
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
  });
}

export type HttpResponse = { status: number; body: string };

/** One HTTP/1.0 request over a plain socket: no keep-alive, no agent, nothing pooled between requests. */
export function httpGet(host: string, port: number, path = '/', timeoutMs = 3000): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`GET http://${host}:${port}${path} timed out`)));
    socket.on('connect', () => socket.write(`GET ${path} HTTP/1.0\r\nHost: ${host}\r\n\r\n`));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1]);
      if (!status) reject(new Error(`GET http://${host}:${port}${path}: no HTTP response (${JSON.stringify(raw)})`));
      else resolve({ status, body: raw.slice(raw.indexOf('\r\n\r\n') + 4) });
    });
  });
}

/** Retries until the request answers 200 (e.g. while a freshly published port comes up). */
export async function httpGetWhenReady(host: string, port: number, path = '/', timeoutMs = 15_000): Promise<HttpResponse> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await httpGet(host, port, path).catch((error: Error) => error);
    if (!(response instanceof Error) && response.status === 200) return response;
    if (Date.now() > deadline) throw response instanceof Error ? response : new Error(`GET ${path}: ${response.status}`);
    await sleep(200);
  }
}

/** Records the swarm objects a test file makes and removes them all, in dependency order. */
export class SwarmCleanup {
  private readonly services = new Set<string>();
  private readonly networks = new Set<string>();
  private readonly containers = new Set<string>();

  service<T extends string>(id: T): T {
    this.services.add(id);
    return id;
  }

  network<T extends string>(name: T): T {
    this.networks.add(name);
    return name;
  }

  container(id: string): void {
    this.containers.add(id);
  }

  async run(): Promise<void> {
    await Promise.all([...this.containers].map((id) => removeContainer(id)));
    await Promise.all([...this.services].map((id) => ignoreNotFound(testDocker.getService(id).remove())));
    await this.waitForServiceContainersGone();
    await Promise.all([...this.networks].map((name) => removeNetworkWhenFree(name)));
  }

  private async waitForServiceContainersGone(timeoutMs = 30_000): Promise<void> {
    if (this.services.size === 0) return;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const containers = await testDocker.listContainers({ all: true, filters: { label: ['com.docker.swarm.service.id'] } });
      const services = [...this.services];
      const ours = containers.filter((c) => {
        const labels = c.Labels ?? {};
        return services.includes(labels['com.docker.swarm.service.id']) || services.includes(labels['com.docker.swarm.service.name']);
      });
      if (ours.length === 0) return;
      await sleep(250);
    }
  }
}

async function removeNetworkWhenFree(name: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await testDocker.getNetwork(name).remove();
      return;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return;
      // Still in use while Swarm detaches the last tasks.
      if (Date.now() > deadline) throw error;
      await sleep(300);
    }
  }
}

async function removeContainer(id: string): Promise<void> {
  await ignoreNotFound(testDocker.getContainer(id).remove({ force: true }));
}

async function ignoreNotFound(operation: Promise<unknown>): Promise<void> {
  await operation.catch((error: { statusCode?: number }) => {
    if (error.statusCode !== 404) throw error;
  });
}

export type ProbeResult = { exitCode: number; stdout: string; stderr: string };

export type ProbeContainer = {
  id: string;
  /** SIGTERM (the script may trap it to finish its loop), then the container's output. */
  stop(): Promise<ProbeResult>;
};

/** Starts a plain container (not a service) on an attachable overlay network running a busybox sh script. */
export async function startProbeContainer(networkName: string, script: string, cleanup?: SwarmCleanup): Promise<ProbeContainer> {
  const image = await buildTestImage(PROBE_IMAGE, { body: 'probe' });
  const container = await testDocker.createContainer({
    Image: image,
    Cmd: ['/bin/sh', '-c', script],
    Labels: { [TEST_LABEL]: 'probe' },
    HostConfig: { NetworkMode: networkName, Init: true },
  });
  cleanup?.container(container.id);
  try {
    await container.start();
  } catch (error) {
    await removeContainer(container.id);
    throw error;
  }
  return {
    id: container.id,
    stop: async () => {
      await container.stop({ t: 5 }).catch((error: { statusCode?: number }) => {
        if (error.statusCode !== 304) throw error; // 304: already stopped
      });
      return collectAndRemove(container);
    },
  };
}

/** Runs a one-shot script in a probe container on the network and returns its output. */
export async function runProbeContainer(networkName: string, script: string, timeoutMs = 20_000): Promise<ProbeResult> {
  const probe = await startProbeContainer(networkName, script);
  const container = testDocker.getContainer(probe.id);
  const exited = container.wait() as Promise<{ StatusCode: number }>;
  const timedOut = sleep(timeoutMs).then(() => 'timeout' as const);
  if ((await Promise.race([exited, timedOut])) === 'timeout') {
    await probe.stop();
    throw new Error(`probe script did not finish within ${timeoutMs} ms: ${script}`);
  }
  return collectAndRemove(container);
}

async function collectAndRemove(container: Docker.Container): Promise<ProbeResult> {
  try {
    const { State } = await container.inspect();
    const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    return { exitCode: State.ExitCode, ...(await demultiplexBuffer(logs)) };
  } finally {
    await removeContainer(container.id);
  }
}

/** A shell line that GETs a path from host:port on the overlay network and prints the raw response. */
export function ncGet(host: string, port = TEST_APP_PORT, path = '/'): string {
  return `printf 'GET ${path} HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${host} ${port}`;
}

export type TestServiceOptions = {
  name: string;
  image: string;
  deploymentId: string;
  networkName: string;
  replicas?: number;
  hostPort?: number;
} & Partial<Omit<SwarmServiceSpec, 'name' | 'image' | 'networks' | 'replicas'>>;

/**
 * A service spec with the settings this machine needs (dnsrr, host-mode ports: no IPVS here) and short
 * timings so rollouts take seconds.
 */
export function testServiceSpec(options: TestServiceOptions): SwarmServiceSpec {
  const { name, image, deploymentId, networkName, replicas = 1, hostPort, ...overrides } = options;
  return {
    name,
    image,
    env: {},
    replicas,
    labels: { [TEST_LABEL]: 'true' },
    containerLabels: { [DEPLOYMENT_LABEL]: deploymentId },
    networks: [{ name: networkName, aliases: [] }],
    ports: hostPort ? [{ target: TEST_APP_PORT, published: hostPort, protocol: 'tcp', publishMode: 'host' }] : [],
    endpointMode: 'dnsrr',
    resources: {},
    placementConstraints: [],
    restartPolicy: { condition: 'any', delayMs: 500 },
    update: { order: 'start-first', monitorMs: 2000, parallelism: 1, failureAction: 'rollback' },
    rollback: { order: 'start-first', monitorMs: 2000, parallelism: 1 },
    stopGracePeriodMs: 1000,
    ...overrides,
  };
}

/** A deadline `ms` from now. */
export function inMs(ms: number): Date {
  return new Date(Date.now() + ms);
}

export type RequestLoopResult = {
  /** Body of every successful response, in order. */
  bodies: string[];
  /** The raw answer (or error) of every failed request. */
  failures: string[];
};

export type RequestLoop = {
  /** What the loop has seen so far. */
  peek(): Promise<RequestLoopResult>;
  stop(): Promise<RequestLoopResult>;
};

/**
 * Sends GET / to host:port every ~50 ms from a probe container on the network, resolving the name afresh
 * each time (as a client of the service would), until stopped.
 */
export async function startRequestLoop(networkName: string, host: string, cleanup: SwarmCleanup, port = TEST_APP_PORT): Promise<RequestLoop> {
  const script = [
    'stop=0',
    "trap 'stop=1' TERM",
    'while [ "$stop" = 0 ]; do',
    `  response=$(${ncGet(host, port)} 2>&1)`,
    '  case "$response" in',
    '    *"200 OK"*) echo "ok ${response##*\n}" ;;',
    '    *) echo "fail $(echo "$response" | tr "\\r\\n" "  ")" ;;',
    '  esac',
    '  sleep 0.05',
    'done',
  ].join('\n');
  const probe = await startProbeContainer(networkName, script, cleanup);
  const container = testDocker.getContainer(probe.id);
  return {
    peek: async () => {
      const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
      return parseRequestLoop((await demultiplexBuffer(logs)).stdout);
    },
    stop: async () => parseRequestLoop((await probe.stop()).stdout),
  };
}

function parseRequestLoop(output: string): RequestLoopResult {
  const result: RequestLoopResult = { bodies: [], failures: [] };
  for (const line of output.split('\n')) {
    if (line.startsWith('ok ')) result.bodies.push(line.slice(3));
    else if (line.startsWith('fail')) result.failures.push(line.slice(5));
  }
  return result;
}

/** Polls the loop until `condition` holds for what it has seen. */
export async function waitForRequests(loop: RequestLoop, condition: (seen: RequestLoopResult) => boolean, timeoutMs = 15_000): Promise<RequestLoopResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = await loop.peek();
    if (condition(seen)) return seen;
    if (Date.now() > deadline) throw new Error(`request loop: condition not met; saw ${JSON.stringify(seen).slice(0, 500)}`);
    await sleep(200);
  }
}
