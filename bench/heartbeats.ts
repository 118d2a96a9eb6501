// How many worker heartbeats one API process sustains, and how fast it answers them.
//
//   npx tsx bench/heartbeats.ts [--steps 50,200,1000,2000] [--seconds 10] [--interval 1] [--profile]
//
// One real API process (`src/main/api.ts` in a child process, so its RSS can be read from /proc) on
// its own database and Redis prefix. N simulated agents, each registered with its own join token and
// holding its own credential, send the agent's real heartbeat mutation through the agent's GraphQL
// client (fetch, keep-alive) on loopback. Each agent keeps its schedule (one heartbeat every
// --interval seconds, start times spread over the first interval) and never has two heartbeats in
// flight: when an answer is late, the next heartbeat goes out as soon as it arrives. So N agents offer
// N/interval heartbeats per second, and the measured rate falls short of that only when the API
// cannot keep up. Latency is measured from send to answer (a late answer delays the next send, so a
// saturated step shows its backlog in the rate, not in the latency).
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import setupTemplateDatabase from '../test/global-setup.js';
import { createTestDatabase, deleteRedisPrefix, REDIS_URL, uniqueRedisPrefix } from '../test/helpers/database.js';
import { GraphQLClient, GraphQLRequestError } from '../worker-agent/src/graphql-client.js';
import { REGISTER_WORKER, WORKER_HEARTBEAT } from '../worker-agent/src/agent.js';

const ROOT = new URL('..', import.meta.url);
const TARGET = { heartbeatsPerSecond: 2000, p99Ms: 50 };

type Options = { steps: number[]; seconds: number; intervalSeconds: number; profile: boolean };

function parseArgs(argv: string[]): Options {
  const options: Options = { steps: [50, 200, 1000, 2000], seconds: 10, intervalSeconds: 1, profile: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === '--steps') options.steps = value().split(',').map((n) => positiveInt(n, '--steps'));
    else if (arg === '--seconds') options.seconds = positiveInt(value(), '--seconds');
    else if (arg === '--interval') options.intervalSeconds = Number(value());
    else if (arg === '--profile') options.profile = true;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!(options.intervalSeconds > 0)) throw new Error('--interval must be a positive number of seconds');
  return options;
}

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 20_000) throw new Error(`${name}: ${text} is not a whole number in 1..20000`);
  return n;
}

// ---------------------------------------------------------------------------------------------- the API

type ApiProcess = { url: string; pid: number; child: ResultPromise; stop(): Promise<void> };

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

async function startApi(databaseUrl: string, redisPrefix: string, profileDir: string | null): Promise<ApiProcess> {
  const port = await freePort();
  const env = {
    ...process.env,
    NODE_ENV: 'production',
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_PREFIX: redisPrefix,
    PORT: String(port),
    HOST: '127.0.0.1',
    CONVOY_SECRET_KEY: randomBytes(32).toString('hex'),
    MIGRATE_ON_START: 'false',
    LOG_LEVEL: 'warn',
  };
  const nodeArgs = ['--import', 'tsx', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), 'src/main/api.ts'];
  const child = execa('node', nodeArgs, { env, cwd: ROOT, reject: false, stdout: 'pipe', stderr: 'pipe', buffer: false });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the API exited with ${child.exitCode}: ${output}`);
    const healthy = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (healthy) break;
    if (Date.now() > deadline) throw new Error(`the API did not become healthy: ${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: child.pid!,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await child;
      clearTimeout(killer);
    },
  };
}

async function rssMb(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

// ------------------------------------------------------------------------------------------- the fleet

type SimulatedAgent = { hostname: string; client: GraphQLClient };

async function inBatches<T, R>(items: T[], concurrency: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await work(items[index]!, index);
      }
    }),
  );
  return results;
}

async function registerFleet(apiUrl: string, count: number): Promise<SimulatedAgent[]> {
  const anonymous = new GraphQLClient({ url: apiUrl, timeoutMs: 30_000 });
  const email = `bench-${randomBytes(4).toString('hex')}@example.com`;
  const registered = await anonymous.request<{ register: { __typename: string; tokens?: { accessToken: string }; message?: string } }>(
    `mutation($input: RegisterInput!) { register(input: $input) { __typename ... on AuthPayload { tokens { accessToken } } ... on Error { message } } }`,
    { input: { email, password: 'correct horse battery staple', name: 'Bench Admin' } },
  );
  if (!registered.register.tokens) throw new Error(`registering the admin failed: ${JSON.stringify(registered.register)}`);
  // The first user of an installation is its platform admin.
  const admin = new GraphQLClient({ url: apiUrl, timeoutMs: 30_000, headers: { authorization: `Bearer ${registered.register.tokens.accessToken}` } });

  const run = randomBytes(3).toString('hex');
  return inBatches(Array.from({ length: count }, (_, i) => i), 16, async (i) => {
    const created = await admin.request<{ createWorkerJoinToken: { __typename?: string; token?: string; message?: string } }>(
      `mutation($ttl: Int!) { createWorkerJoinToken(ttlSeconds: $ttl) { __typename ... on WorkerJoinTokenPayload { token } ... on Error { message } } }`,
      { ttl: 3600 },
    );
    const token = created.createWorkerJoinToken.token;
    if (!token) throw new Error(`createWorkerJoinToken failed: ${JSON.stringify(created.createWorkerJoinToken)}`);
    const hostname = `bench-${run}-${i}`;
    const input = { joinToken: token, hostname, cpuCores: 4, memoryMb: 8192, diskGb: 100, labels: [], agentVersion: 'bench' };
    const result = await anonymous.request<{ registerWorker: { __typename: string; credential?: string; message?: string } }>(REGISTER_WORKER, { input });
    const credential = result.registerWorker.credential;
    if (!credential) throw new Error(`registerWorker failed: ${JSON.stringify(result.registerWorker)}`);
    return { hostname, client: new GraphQLClient({ url: apiUrl, timeoutMs: 30_000, headers: { authorization: `Bearer ${credential}` } }) };
  });
}

/** What a node with three Convoy containers reports. */
function heartbeatInput(i: number) {
  const containers = [0, 1, 2].map((c) => ({
    containerId: randomBytes(32).toString('hex'),
    serviceId: `bench-service-${i}-${c}`,
    taskId: randomBytes(12).toString('hex'),
    cpuPercent: 1.5 + c,
    memoryUsedMb: 64 + c,
    networkRxBytes: 1_000_000 * (c + 1),
    networkTxBytes: 500_000 * (c + 1),
  }));
  return { cpuPercent: 23.5, memoryUsedMb: 3000, memoryTotalMb: 8192, diskUsedGb: 40.2, diskTotalGb: 100, load1: 0.7, containers };
}

type StepResult = { agents: number; offered: number; sent: number; ok: number; failed: number; errors: Map<string, number>; rate: number; p50: number; p99: number; max: number; rss: number; peakRss: number };

async function runStep(api: ApiProcess, fleet: SimulatedAgent[], seconds: number, intervalSeconds: number): Promise<StepResult> {
  const intervalMs = intervalSeconds * 1000;
  const latencies: number[] = [];
  const errors = new Map<string, number>();
  let ok = 0;
  let failed = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  // Agents spread their first heartbeat over one interval, as a fleet that started at different times.
  await Promise.all(
    fleet.map(async (agent, i) => {
      const input = heartbeatInput(i);
      let nextAt = start + Math.random() * intervalMs;
      for (;;) {
        const wait = nextAt - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const sentAt = performance.now();
        if (sentAt >= end) return;
        try {
          await agent.client.request(WORKER_HEARTBEAT, { input });
          const answeredAt = performance.now();
          // Only answers inside the window count, so the rate is a rate over `seconds`.
          if (answeredAt <= end) {
            ok++;
            latencies.push(answeredAt - sentAt);
          }
        } catch (error) {
          failed++;
          const key = error instanceof GraphQLRequestError ? error.code : (error as Error).name;
          errors.set(key, (errors.get(key) ?? 0) + 1);
        }
        nextAt += intervalMs;
      }
    }),
  );
  const memory = await rssMb(api.pid);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  return {
    agents: fleet.length,
    offered: fleet.length / intervalSeconds,
    sent: ok + failed,
    ok,
    failed,
    errors,
    rate: ok / seconds,
    p50: pct(50),
    p99: pct(99),
    max: latencies.at(-1) ?? NaN,
    rss: memory.rss,
    peakRss: memory.peak,
  };
}

// ------------------------------------------------------------------------------------------------ main

const options = parseArgs(process.argv.slice(2));
const cleanups: (() => Promise<void>)[] = [];
let cleaning: Promise<void> | null = null;
const cleanup = () =>
  (cleaning ??= (async () => {
    for (const step of cleanups.reverse()) await step().catch((error: unknown) => console.error('cleanup failed:', error));
  })());
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

try {
  console.log(`heartbeat bench: steps ${options.steps.join(', ')} agents, ${options.seconds} s per step, one heartbeat per agent every ${options.intervalSeconds} s`);
  await setupTemplateDatabase();
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  const prefix = uniqueRedisPrefix();
  cleanups.push(() => deleteRedisPrefix(prefix));
  const profileDir = options.profile ? join(ROOT.pathname, 'tmp', `heartbeat-profile-${Date.now()}`) : null;
  if (profileDir) await mkdir(profileDir, { recursive: true });
  const api = await startApi(database.url, prefix, profileDir);
  cleanups.push(() => api.stop());
  const idle = await rssMb(api.pid);
  console.log(`API pid ${api.pid} at ${api.url}, RSS ${idle.rss.toFixed(0)} MB when idle`);

  const largest = Math.max(...options.steps);
  const registering = performance.now();
  const fleet = await registerFleet(api.url, largest);
  console.log(`registered ${fleet.length} simulated agents (one join token and credential each) in ${((performance.now() - registering) / 1000).toFixed(1)} s; RSS ${(await rssMb(api.pid)).rss.toFixed(0)} MB`);

  // Warm-up: JIT, connection pools and prepared statements, not counted.
  await runStep(api, fleet.slice(0, Math.min(50, fleet.length)), 2, options.intervalSeconds / 4);

  console.log('');
  console.log('agents  offered/s  heartbeats/s   p50 ms   p99 ms   max ms  failed  API RSS MB (peak)');
  const results: StepResult[] = [];
  for (const n of options.steps) {
    const result = await runStep(api, fleet.slice(0, n), options.seconds, options.intervalSeconds);
    results.push(result);
    const errors = result.failed ? `  ${[...result.errors].map(([k, v]) => `${k}×${v}`).join(' ')}` : '';
    console.log(
      `${String(n).padStart(6)}  ${result.offered.toFixed(0).padStart(9)}  ${result.rate.toFixed(0).padStart(12)}  ${result.p50.toFixed(1).padStart(7)}  ${result.p99.toFixed(1).padStart(7)}  ${result.max.toFixed(1).padStart(7)}  ${String(result.failed).padStart(6)}  ${result.rss.toFixed(0).padStart(10)} (${result.peakRss.toFixed(0)})${errors}`,
    );
  }
  const best = results.filter((r) => r.failed === 0 && r.p99 <= TARGET.p99Ms).sort((a, b) => b.rate - a.rate)[0];
  const pass = !!best && best.rate >= TARGET.heartbeatsPerSecond;
  console.log('');
  console.log(
    `best step within p99 <= ${TARGET.p99Ms} ms and no failures: ${best ? `${best.rate.toFixed(0)} heartbeats/s at ${best.agents} agents (p99 ${best.p99.toFixed(1)} ms)` : 'none'}; target >= ${TARGET.heartbeatsPerSecond}/s: ${pass ? 'PASS' : 'FAIL'}`,
  );
  if (profileDir) console.log(`CPU profile of the API (written when it exits): ${profileDir}`);
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await cleanup();
}
