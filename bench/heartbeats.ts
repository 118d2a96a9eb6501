// How many worker heartbeats one API process sustains, and how fast it answers them.
//
//   npx tsx bench/heartbeats.ts [--steps 50,200,1000,2000] [--seconds 10] [--interval 1]
//                               [--transports http,ws] [--clients 2] [--profile]
//
// One real API process (`src/main/api.ts` in a child process, so its RSS can be read from /proc) on
// its own database and Redis prefix. N simulated agents, each registered with its own join token and
// holding its own credential, send the agent's real heartbeat mutation through the agent's GraphQL
// clients on loopback: over HTTP (fetch, keep-alive) and over WebSocket (graphql-ws, one connection per
// agent), one transport after the other. The agents run in --clients load-generator processes of their
// own (bench/lib/load-generator.ts), so the clients' CPU never shares an event loop with the API's or
// the bench's. Each agent keeps its schedule (one heartbeat every --interval seconds, start times
// spread over the first interval) and never has two heartbeats in flight: when an answer is late, the
// next heartbeat goes out as soon as it arrives. So N agents offer N/interval heartbeats per second, and
// the measured rate falls short of that only when the API cannot keep up. Latency is measured from send
// to answer. Past saturation all N heartbeats wait inside the API at once, so latency grows towards
// N / capacity; the time an agent spent waiting to send (its previous answer was late) is not counted,
// so compare rates there, not only latencies.
import { fork, type ChildProcess } from 'node:child_process';
import { constants as perfConstants } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import setupTemplateDatabase from '../test/global-setup.js';
import pg from 'pg';
import { ADMIN_URL, createTestDatabase, deleteRedisPrefix, REDIS_URL, uniqueRedisPrefix } from '../test/helpers/database.js';
import { GraphQLClient } from '../worker-agent/src/graphql-client.js';
import { REGISTER_WORKER } from '../worker-agent/src/agent.js';
import { cpuPercentBetween, readCpuTimes } from '../worker-agent/src/metrics.js';
import type { GeneratorReply, GeneratorRequest, SimulatedAgent, StepOutcome, Target, Transport } from './lib/load-generator.js';

const ROOT = new URL('..', import.meta.url);
const TARGET = { heartbeatsPerSecond: 2000, p99Ms: 50 };
// USER_HZ: 100 on every Linux architecture Node runs on.
const CLOCK_TICKS_PER_SECOND = 100;

/** CLOCK_MONOTONIC in µs: the same clock V8 stamps CPU profile samples with. */
function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

type Options = { steps: number[]; seconds: number; intervalSeconds: number; transports: Transport[]; clients: number; apiNodeArgs: string[]; profile: boolean; baseline: boolean };

function parseArgs(argv: string[]): Options {
  const options: Options = { steps: [50, 200, 1000, 2000], seconds: 10, intervalSeconds: 1, transports: ['http', 'ws'], clients: 2, apiNodeArgs: [], profile: false, baseline: true };
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
    else if (arg === '--transports') options.transports = value().split(',').map((t) => transport(t));
    else if (arg === '--clients') options.clients = positiveInt(value(), '--clients');
    else if (arg === '--api-node-args') options.apiNodeArgs = value().split(/\s+/).filter(Boolean);
    else if (arg === '--profile') options.profile = true;
    else if (arg === '--no-baseline') options.baseline = false;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!(options.intervalSeconds > 0)) throw new Error('--interval must be a positive number of seconds');
  return options;
}

function transport(text: string): Transport {
  if (text !== 'http' && text !== 'ws') throw new Error(`--transports: ${text} is neither http nor ws`);
  return text;
}

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 20_000) throw new Error(`${name}: ${text} is not a whole number in 1..20000`);
  return n;
}

// ---------------------------------------------------------------------------------------------- the API

/** A server under load: Convoy's API or the baseline, each in a child process of its own. */
type ServerProcess = { url: string; pid: number; child: ResultPromise; gcLog: string; stop(): Promise<void> };

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

/** Starts `script` with node (and tsx) on a free loopback port, and waits until its /healthz answers. */
async function startServerProcess(what: string, script: string, env: Record<string, string>, nodeArgs: string[]): Promise<ServerProcess> {
  const port = await freePort();
  const gcDir = await mkdtemp(join(tmpdir(), 'convoy-bench-gc-'));
  const gcLog = join(gcDir, 'gc.log');
  const child = execa('node', [...nodeArgs, '--import', 'tsx', '--import', new URL('./lib/gc-log.ts', import.meta.url).pathname, script], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', BENCH_GC_LOG: gcLog },
    cwd: ROOT,
    reject: false,
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the ${what} exited with ${child.exitCode}: ${output}`);
    const healthy = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (healthy) break;
    if (Date.now() > deadline) throw new Error(`the ${what} did not become healthy: ${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: child.pid!,
    child,
    gcLog,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await child;
        clearTimeout(killer);
      }
      await rm(gcDir, { recursive: true, force: true });
    },
  };
}

function startApi(databaseUrl: string, redisPrefix: string, profileDir: string | null, extraNodeArgs: string[]): Promise<ServerProcess> {
  const env = {
    NODE_ENV: 'production',
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_PREFIX: redisPrefix,
    CONVOY_SECRET_KEY: randomBytes(32).toString('hex'),
    // Required in production; no node is installed from this run.
    CONVOY_PUBLIC_URL: 'http://127.0.0.1:4000',
    MIGRATE_ON_START: 'false',
    LOG_LEVEL: 'warn',
  };
  const nodeArgs = [...extraNodeArgs, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])];
  return startServerProcess('API', 'src/main/api.ts', env, nodeArgs);
}

function startBaseline(): Promise<ServerProcess> {
  return startServerProcess('baseline server', 'bench/lib/baseline-server.ts', { NODE_ENV: 'production' }, []);
}

/** CPU time (user + system) a process has used so far, in ms. */
async function processCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are the 12th and 13th of those.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU time of the stores this bench uses, by process: the PostgreSQL backends of its database and the
 * server's background processes (from pg_stat_activity), and every Redis server. Backends of other
 * databases on the same server (a test suite running meanwhile) count as other work on the machine.
 */
class StoreCpu {
  private constructor(
    private readonly admin: pg.Client,
    private readonly databaseName: string,
  ) {}

  static async connect(databaseName: string): Promise<StoreCpu> {
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    return new StoreCpu(admin, databaseName);
  }

  async sample(): Promise<Map<number, number>> {
    const { rows } = await this.admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 OR backend_type <> 'client backend'`, [this.databaseName]);
    const pids = rows.map((r) => r.pid);
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === 'redis-server') pids.push(Number(entry));
    }
    const samples = await Promise.all(pids.map(async (pid) => [pid, await processCpuMs(pid).catch(() => NaN)] as const));
    return new Map(samples.filter(([, ms]) => !Number.isNaN(ms)));
  }

  /** ms of CPU between two samples; a process that started meanwhile counts from zero, one that ended is lost. */
  static between(before: Map<number, number>, after: Map<number, number>): number {
    let total = 0;
    for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
    return total;
  }

  close(): Promise<void> {
    return this.admin.end();
  }
}

/** The server's garbage collections during a step: young-generation scavenges and full mark-compacts. */
type GcFigures = { scavenges: number; scavengeMs: number; scavengeMaxMs: number; markCompacts: number; markCompactMaxMs: number };

async function gcDuring(gcLog: string, fromEpochMs: number, toEpochMs: number): Promise<GcFigures> {
  const figures: GcFigures = { scavenges: 0, scavengeMs: 0, scavengeMaxMs: 0, markCompacts: 0, markCompactMaxMs: 0 };
  const text = await readFile(gcLog, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [at, kind, ms] = line.split(' ').map(Number);
    if (at === undefined || kind === undefined || ms === undefined || at < fromEpochMs || at > toEpochMs) continue;
    if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) {
      figures.scavenges++;
      figures.scavengeMs += ms;
      figures.scavengeMaxMs = Math.max(figures.scavengeMaxMs, ms);
    } else if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) {
      figures.markCompacts++;
      figures.markCompactMaxMs = Math.max(figures.markCompactMaxMs, ms);
    }
  }
  return figures;
}

async function rssMb(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

// ------------------------------------------------------------------------------------------- the fleet

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
      `mutation($ttl: Int!) { createWorkerJoinToken(ttlSeconds: $ttl) { __typename ... on CreateWorkerJoinTokenPayload { token } ... on Error { message } } }`,
      { ttl: 3600 },
    );
    const token = created.createWorkerJoinToken.token;
    if (!token) throw new Error(`createWorkerJoinToken failed: ${JSON.stringify(created.createWorkerJoinToken)}`);
    const hostname = `bench-${run}-${i}`;
    const input = { joinToken: token, hostname, cpuCores: 4, memoryMb: 8192, diskGb: 100, labels: [], agentVersion: 'bench' };
    const result = await anonymous.request<{ registerWorker: { __typename: string; credential?: string; message?: string } }>(REGISTER_WORKER, { input });
    const credential = result.registerWorker.credential;
    if (!credential) throw new Error(`registerWorker failed: ${JSON.stringify(result.registerWorker)}`);
    return { index: i, hostname, credential };
  });
}

type StepResult = {
  target: Target;
  transport: Transport;
  agents: number;
  offered: number;
  sent: number;
  ok: number;
  failed: number;
  errors: Map<string, number>;
  rate: number;
  p50: number;
  p99: number;
  max: number;
  rss: number;
  peakRss: number;
  /** The server's (the API's or the baseline's), of one core. */
  apiCpuPercent: number;
  apiCpuMsPerHeartbeat: number;
  benchCpuPercent: number;
  /** Of one core: the bench database's PostgreSQL backends, PostgreSQL's background processes and Redis. */
  storeCpuPercent: number;
  /** Of all cores: what else ran (PostgreSQL, Redis, other work on the machine) shows up here. */
  machineCpuPercent: number;
  /** Of one core: the machine's busy time less the server's, the load generators' and the stores'. */
  otherCpuPercent: number;
  /** Monotonic clock (µs, the CPU profile's time base) at the start and end of the step. */
  window: [number, number];
  gc: GcFigures;
};

/**
 * The load-generator processes. Agent i runs in process i mod --clients, so every step of N agents
 * (the first N of the fleet) spreads evenly over them.
 */
class LoadGenerators {
  private constructor(private readonly children: ChildProcess[]) {}

  static async start(count: number): Promise<LoadGenerators> {
    const file = new URL('./lib/load-generator.ts', import.meta.url).pathname;
    const children = Array.from({ length: count }, () => fork(file, [], { execArgv: ['--import', 'tsx'], cwd: ROOT.pathname, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    await Promise.all(children.map((child) => new Promise((resolve, reject) => child.once('spawn', resolve).once('error', reject))));
    return new LoadGenerators(children);
  }

  private ask(child: ChildProcess, request: GeneratorRequest): Promise<GeneratorReply> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`a load generator exited with ${code}`));
      child.once('exit', onExit);
      child.once('message', (reply: GeneratorReply) => {
        child.off('exit', onExit);
        if (reply.type === 'error') reject(new Error(`load generator: ${reply.message}`));
        else resolve(reply);
      });
      child.send(request);
    });
  }

  async connect(target: Target, url: string, transport: Transport, fleet: SimulatedAgent[]): Promise<void> {
    await Promise.all(this.children.map((child, c) => this.ask(child, { type: 'connect', target, url, transport, agents: fleet.filter((a) => a.index % this.children.length === c) })));
  }

  async run(target: Target, agents: number, seconds: number, intervalMs: number, startAtEpochMs: number): Promise<StepOutcome> {
    const replies = await Promise.all(this.children.map((child) => this.ask(child, { type: 'run', target, agents, seconds, intervalMs, startAtEpochMs })));
    const outcomes = replies.map((r) => (r as Extract<GeneratorReply, { type: 'result' }>).outcome);
    const errors = new Map<string, number>();
    for (const [key, n] of outcomes.flatMap((o) => o.errors)) errors.set(key, (errors.get(key) ?? 0) + n);
    return {
      ok: outcomes.reduce((n, o) => n + o.ok, 0),
      failed: outcomes.reduce((n, o) => n + o.failed, 0),
      errors: [...errors],
      latencies: outcomes.flatMap((o) => o.latencies),
      cpuMs: outcomes.reduce((n, o) => n + o.cpuMs, 0),
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.children.filter((c) => c.connected).map((child) => this.ask(child, { type: 'close' })));
    for (const child of this.children) if (child.exitCode === null) child.kill();
  }
}

async function runStep(target: Target, api: ServerProcess, stores: StoreCpu, generators: LoadGenerators, transport: Transport, agents: number, seconds: number, intervalSeconds: number): Promise<StepResult> {
  // Every process starts the step at the same wall-clock moment; the server's counters are read then.
  const startAtEpochMs = Date.now() + 200;
  const running = generators.run(target, agents, seconds, intervalSeconds * 1000, startAtEpochMs);
  await new Promise((r) => setTimeout(r, startAtEpochMs - Date.now()));
  const [apiCpuBefore, machineBefore, storeBefore] = await Promise.all([processCpuMs(api.pid), readCpuTimes(), stores.sample()]);
  const windowStart = monotonicMicros();
  const start = performance.now();
  const startEpochMs = Date.now();
  const outcome = await running;
  const windowEnd = monotonicMicros();
  const endEpochMs = Date.now();
  const elapsedMs = performance.now() - start;
  const [memory, apiCpuAfter, machineAfter, storeAfter] = await Promise.all([rssMb(api.pid), processCpuMs(api.pid), readCpuTimes(), stores.sample()]);
  const storeMs = StoreCpu.between(storeBefore, storeAfter);
  // The server writes its collections to the log every 100 ms.
  await new Promise((r) => setTimeout(r, 300));
  const gc = await gcDuring(api.gcLog, startEpochMs, endEpochMs);
  const latencies = outcome.latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  return {
    target,
    transport,
    agents,
    offered: agents / intervalSeconds,
    sent: outcome.ok + outcome.failed,
    ok: outcome.ok,
    failed: outcome.failed,
    errors: new Map(outcome.errors),
    rate: outcome.ok / seconds,
    p50: pct(50),
    p99: pct(99),
    max: latencies.at(-1) ?? NaN,
    rss: memory.rss,
    peakRss: memory.peak,
    apiCpuPercent: ((apiCpuAfter - apiCpuBefore) / elapsedMs) * 100,
    apiCpuMsPerHeartbeat: outcome.ok ? (apiCpuAfter - apiCpuBefore) / outcome.ok : NaN,
    benchCpuPercent: (outcome.cpuMs / elapsedMs) * 100,
    storeCpuPercent: (storeMs / elapsedMs) * 100,
    machineCpuPercent: cpuPercentBetween(machineBefore, machineAfter),
    otherCpuPercent: Math.max(0, cpuPercentBetween(machineBefore, machineAfter) * cpus().length - ((apiCpuAfter - apiCpuBefore) / elapsedMs) * 100 - (outcome.cpuMs / elapsedMs) * 100 - (storeMs / elapsedMs) * 100),
    window: [windowStart, windowEnd],
    gc,
  };
}

// --------------------------------------------------------------------------------------------- profile

type ProfileNode = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };
type CpuProfile = { nodes: ProfileNode[]; startTime: number; samples: number[]; timeDeltas: number[] };

/** node_modules package, node: module, Convoy file, or V8's own (idle), (garbage collector), (program). */
function profileCategory(frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const own = url.indexOf('/src/');
  return own >= 0 ? url.slice(own + 1) : url;
}

const LAYERS: [RegExp, string][] = [
  [/^(graphql-yoga|@whatwg-node\/|@envelop\/|graphql$|@graphql-tools\/|@pothos\/|@escape\.tech\/|node:_http|node:http)/, 'HTTP + GraphQL (Yoga, envelop, graphql-js, Pothos)'],
  [/^(@prisma\/client|@prisma\/client-runtime-utils|@prisma\/debug|wasm:)/, 'Prisma client (query building, WASM compiler, result mapping)'],
  [/^(pg|pg-protocol|pg-pool|pg-types|@prisma\/adapter-pg|@prisma\/driver-adapter-utils)$/, 'PostgreSQL driver (pg, adapter-pg)'],
  [/^(ioredis|@ioredis\/|redis-parser|cluster-key-slot|denque)/, 'Redis client (ioredis)'],
  [/^zod$/, 'input validation (zod)'],
  [/^src\//, 'Convoy code (src/)'],
];

function layerOf(category: string): string {
  for (const [pattern, layer] of LAYERS) if (pattern.test(category)) return layer;
  if (category === '(garbage collector)') return 'garbage collection';
  if (category === '(idle)' || category === '(program)') return category;
  return 'Node.js internals (streams, timers, events, microtasks)';
}

/**
 * Where the API's CPU went between two monotonic timestamps: by layer, by package and by function.
 * Native frames (socket writes, string encoding) count towards the JavaScript code that called them,
 * and socket writes are shown apart: each is a syscall, and on loopback the kernel does the
 * receiver's TCP work inside it.
 */
async function summariseProfile(file: string, [from, to]: [number, number], heartbeats: number, detailed: boolean) {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parents = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parents.set(child, n.id);
  const selfByNode = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at >= from && at <= to) selfByNode.set(id, (selfByNode.get(id) ?? 0) + delta);
  });
  const byLayer = new Map<string, number>();
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us);
  for (const [id, us] of selfByNode) {
    const node = nodes.get(id)!;
    total += us;
    let category = profileCategory(node.callFrame);
    if (category === '(native)') {
      // Attribute to the code that asked for it: the nearest caller outside Node's own plumbing.
      let caller = '(native)';
      for (let cur = parents.get(id); cur !== undefined; cur = parents.get(cur)) {
        const frame = nodes.get(cur)!.callFrame;
        if (!frame.url) continue;
        caller = profileCategory(frame);
        if (!/^node:(internal|net|stream|events|buffer|timers)/.test(caller)) break;
      }
      const isSocketWrite = /^(writev|writeBuffer|writeUtf8String|writeLatin1String|writeAsciiString)$/.test(node.callFrame.functionName);
      add(byLayer, isSocketWrite ? `socket writes (syscalls) from ${layerOf(caller).replace(/ \(.*/, '')}` : layerOf(caller), us);
      category = `${caller} → native`;
    } else {
      add(byLayer, layerOf(category), us);
    }
    add(byCategory, category, us);
    add(byFunction, `${node.callFrame.functionName || '(anonymous)'} (${category}:${node.callFrame.lineNumber + 1})`, us);
  }
  const busy = total - (byCategory.get('(idle)') ?? 0);
  const print = (title: string, map: Map<string, number>, count: number) => {
    console.log(`  ${title}`);
    for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, count)) {
      if (key === '(idle)') continue;
      console.log(`    ${(us / 1000).toFixed(0).padStart(6)} ms  ${((us / busy) * 100).toFixed(1).padStart(5)} % of busy  ${(us / heartbeats).toFixed(0).padStart(5)} µs/heartbeat  ${key}`);
    }
  };
  console.log(`  ${(total / 1000).toFixed(0)} ms sampled on the API's main thread, ${(busy / 1000).toFixed(0)} ms busy (${((busy / total) * 100).toFixed(0)} %): ${(busy / heartbeats).toFixed(0)} µs per answered heartbeat`);
  print('by layer:', byLayer, 20);
  if (!detailed) return;
  print('by package (native code counted under its caller):', byCategory, 16);
  print('by function:', byFunction, 20);
}

// ------------------------------------------------------------------------------------------------ report

const SERVER_NAMES: Record<Target, string> = { api: 'API', baseline: 'baseline server' };

function printStep(result: StepResult) {
  const errors = result.failed ? `\n        failures: ${[...result.errors].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, v]) => `${v}× ${k}`).join('; ')}` : '';
  console.log(
    [
      result.transport.padEnd(9),
      (result.target === 'api' ? 'convoy' : 'baseline').padEnd(8),
      String(result.agents).padStart(6),
      result.offered.toFixed(0).padStart(9),
      result.rate.toFixed(0).padStart(12),
      result.p50.toFixed(1).padStart(7),
      result.p99.toFixed(1).padStart(7),
      result.max.toFixed(1).padStart(7),
      String(result.failed).padStart(6),
      `${result.rss.toFixed(0).padStart(6)} (${result.peakRss.toFixed(0)})`.padEnd(13),
      result.apiCpuPercent.toFixed(0).padStart(12),
      result.apiCpuMsPerHeartbeat.toFixed(2).padStart(16),
      result.benchCpuPercent.toFixed(0).padStart(11),
      result.storeCpuPercent.toFixed(0).padStart(14),
      result.machineCpuPercent.toFixed(0).padStart(13),
      result.otherCpuPercent.toFixed(0).padStart(11),
    ].join('  ') + errors,
  );
}

/** Each step's garbage collection in the server: its pauses are what a heartbeat arriving meanwhile waits for. */
function printGc(results: StepResult[]) {
  console.log("Garbage collection in the server during each step (pauses of the server's main thread):");
  console.log('transport  server    agents  scavenges  scavenge ms total  scavenge ms max  mark-compacts  mark-compact ms max');
  for (const r of results) {
    console.log(
      [
        r.transport.padEnd(9),
        (r.target === 'api' ? 'convoy' : 'baseline').padEnd(8),
        String(r.agents).padStart(6),
        String(r.gc.scavenges).padStart(9),
        r.gc.scavengeMs.toFixed(0).padStart(17),
        r.gc.scavengeMaxMs.toFixed(1).padStart(15),
        String(r.gc.markCompacts).padStart(13),
        r.gc.markCompactMaxMs.toFixed(1).padStart(19),
      ].join('  '),
    );
  }
  console.log('');
}

/** Convoy's figures over the baseline's, for each step of each transport (the two ran back to back). */
function printComparison(results: StepResult[], transports: Transport[]) {
  console.log('Convoy against the baseline, step by step (ratio = Convoy / baseline):');
  console.log('transport  agents   p50 ms convoy  baseline  ratio   p99 ms convoy  baseline  ratio   CPU ms/hb convoy  baseline  ratio');
  for (const transport of transports) {
    const steps = results.filter((r) => r.transport === transport);
    for (let i = 0; i + 1 < steps.length; i += 2) {
      const [convoy, floor] = [steps[i]!, steps[i + 1]!];
      const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(1) : '-').padStart(5);
      console.log(
        [
          transport.padEnd(9),
          String(convoy.agents).padStart(6),
          convoy.p50.toFixed(1).padStart(14),
          floor.p50.toFixed(1).padStart(8),
          ratio(convoy.p50, floor.p50),
          convoy.p99.toFixed(1).padStart(14),
          floor.p99.toFixed(1).padStart(8),
          ratio(convoy.p99, floor.p99),
          convoy.apiCpuMsPerHeartbeat.toFixed(2).padStart(17),
          floor.apiCpuMsPerHeartbeat.toFixed(2).padStart(8),
          ratio(convoy.apiCpuMsPerHeartbeat, floor.apiCpuMsPerHeartbeat),
        ].join('  '),
      );
    }
  }
  console.log('');
}

// A step whose answers kept up with its offer. Answers that arrive after the window are not counted, so
// a step answered in full reads a little under its offer; one that fell behind reads far under it.
const KEPT_UP = 0.99;

/** The highest-rate step of a server over a transport that kept up, with no failures and p99 within the target. */
function bestStep(results: StepResult[], target: Target, transport: Transport): StepResult | undefined {
  return results
    .filter((r) => r.target === target && r.transport === transport && r.failed === 0 && r.p99 <= TARGET.p99Ms && r.rate >= KEPT_UP * r.offered)
    .sort((a, b) => b.offered - a.offered)[0];
}

/** What a step sustained: its offer, which it kept up with. */
function sustained(step: StepResult): number {
  return step.offered;
}

function describeBest(step: StepResult | undefined): string {
  return step ? `${sustained(step).toFixed(0)} heartbeats/s sustained at ${step.agents} agents (${step.rate.toFixed(0)}/s answered inside the window, p99 ${step.p99.toFixed(1)} ms)` : 'none';
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
  console.log(
    `heartbeat bench: steps ${options.steps.join(', ')} agents, ${options.seconds} s per step, one heartbeat per agent every ${options.intervalSeconds} s, over ${options.transports.join(' then ')}, from ${options.clients} load-generator process${options.clients === 1 ? '' : 'es'}`,
  );
  await setupTemplateDatabase();
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  const prefix = uniqueRedisPrefix();
  cleanups.push(() => deleteRedisPrefix(prefix));
  const profileDir = options.profile ? join(ROOT.pathname, 'tmp', `heartbeat-profile-${Date.now()}`) : null;
  if (profileDir) await mkdir(profileDir, { recursive: true });
  const api = await startApi(database.url, prefix, profileDir, options.apiNodeArgs);
  cleanups.push(() => api.stop());
  const idle = await rssMb(api.pid);
  console.log(`API pid ${api.pid} at ${api.url}, RSS ${idle.rss.toFixed(0)} MB when idle`);

  const largest = Math.max(...options.steps);
  const registering = performance.now();
  const fleet = await registerFleet(api.url, largest);
  console.log(`registered ${fleet.length} simulated agents (one join token and credential each) in ${((performance.now() - registering) / 1000).toFixed(1)} s; RSS ${(await rssMb(api.pid)).rss.toFixed(0)} MB`);
  const generators = await LoadGenerators.start(options.clients);
  cleanups.push(() => generators.close());
  const stores = await StoreCpu.connect(database.name);
  cleanups.push(() => stores.close());

  const baseline = options.baseline ? await startBaseline() : null;
  if (baseline) cleanups.push(() => baseline.stop());
  const servers: [Target, ServerProcess][] = baseline ? [['api', api], ['baseline', baseline]] : [['api', api]];

  const results: StepResult[] = [];
  for (const transport of options.transports) {
    console.log('');
    for (const [target, server] of servers) {
      const connecting = performance.now();
      await generators.connect(target, server.url, transport, fleet);
      console.log(`${transport}: ${fleet.length} agents connected to the ${SERVER_NAMES[target]} (one uncounted heartbeat each) in ${((performance.now() - connecting) / 1000).toFixed(1)} s; its RSS ${(await rssMb(server.pid)).rss.toFixed(0)} MB`);
      // Warm-up: JIT, connection pools and prepared statements, not counted.
      await runStep(target, server, stores, generators, transport, Math.min(50, fleet.length), 2, options.intervalSeconds / 4);
    }
    console.log('transport  server    agents  offered/s  heartbeats/s   p50 ms   p99 ms   max ms  failed  RSS MB (peak)  server CPU %  server CPU ms/hb  bench CPU %  PG+Redis CPU %  machine CPU %  other CPU %');
    // Convoy and the baseline take turns at each step, so both meet the machine as it is at that moment.
    for (const n of options.steps) {
      for (const [target, server] of servers) {
        const result = await runStep(target, server, stores, generators, transport, n, options.seconds, options.intervalSeconds);
        results.push(result);
        printStep(result);
      }
    }
  }
  console.log('');
  if (baseline) printComparison(results, options.transports);
  printGc(results);
  const passing: Transport[] = [];
  for (const transport of options.transports) {
    const [convoy, floor] = [bestStep(results, 'api', transport), bestStep(results, 'baseline', transport)];
    const pass = !!convoy && sustained(convoy) >= TARGET.heartbeatsPerSecond;
    if (pass) passing.push(transport);
    console.log(`${transport}: best step that kept up, within p99 <= ${TARGET.p99Ms} ms and no failures: ${describeBest(convoy)}; target >= ${TARGET.heartbeatsPerSecond}/s: ${pass ? 'PASS' : 'FAIL'}`);
    if (baseline) console.log(`${transport}: the baseline's best step in the same run (what this machine allowed meanwhile): ${describeBest(floor)}`);
  }
  console.log(`target ${passing.length ? `reached over ${passing.join(' and ')}: PASS` : 'reached over no transport: FAIL'}`);
  const apiResults = results.filter((r) => r.target === 'api');
  if (profileDir) {
    // V8 writes the profile when the API exits.
    await api.stop();
    const main = (await readdir(profileDir)).filter((f) => f.endsWith('.cpuprofile')).map((f) => ({ f, thread: Number(f.split('.').at(-3)) })).sort((a, b) => a.thread - b.thread)[0];
    for (const [i, result] of main ? apiResults.entries() : []) {
      console.log('');
      console.log(`CPU profile of the API during the ${result.agents}-agent step over ${result.transport} (${join(profileDir, main!.f)}):`);
      await summariseProfile(join(profileDir, main!.f), result.window, result.ok, apiResults[i + 1]?.transport !== result.transport);
    }
  }
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await cleanup();
}
