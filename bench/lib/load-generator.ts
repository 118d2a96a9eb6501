// A load-generator process of bench/heartbeats.ts (started with fork, driven over IPC): runs its share
// of the simulated agents, so the clients' CPU is spread over processes of their own and never shares
// an event loop with the API or with each other. Each agent has its own credential and its own client,
// the worker agent's real ones: GraphQLClient (fetch POSTs, keep-alive) or GraphQLWsClient (one
// graphql-ws connection per agent, authenticated once in connection_init).
import { GraphQLClient, GraphQLRequestError } from '../../worker-agent/src/graphql-client.js';
import { GraphQLWsClient } from '../../worker-agent/src/graphql-ws-client.js';
import { WORKER_HEARTBEAT } from '../../worker-agent/src/agent.js';
import { randomBytes } from 'node:crypto';

export type Transport = 'http' | 'ws';
/** Convoy's API, or the bench's baseline server (bench/lib/baseline-server.ts). */
export type Target = 'api' | 'baseline';
export type SimulatedAgent = { index: number; hostname: string; credential: string };
export type GeneratorRequest =
  /** Opens every agent's connection to `url`, replacing those it had to the same target. */
  | { type: 'connect'; target: Target; url: string; transport: Transport; agents: SimulatedAgent[] }
  /** Agents with an index below `agents` take part; the step starts at `startAtEpochMs` in every process. */
  | { type: 'run'; target: Target; agents: number; seconds: number; intervalMs: number; startAtEpochMs: number }
  | { type: 'close' };
export type StepOutcome = { ok: number; failed: number; errors: [string, number][]; latencies: number[]; cpuMs: number };
export type GeneratorReply = { type: 'connected' } | { type: 'result'; outcome: StepOutcome } | { type: 'closed' } | { type: 'error'; message: string };

type Client = { request<T>(query: string, variables: Record<string, unknown>): Promise<T>; close?(): Promise<void> };
type Running = SimulatedAgent & { client: Client; input: ReturnType<typeof heartbeatInput> };

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

function describe(error: unknown): string {
  return error instanceof GraphQLRequestError ? `${error.code}: ${error.message.slice(0, 80)}` : `${(error as Error).name}: ${(error as Error).message.slice(0, 80)}`;
}

// Each target keeps its own connections, so steps can alternate between them without reconnecting.
const fleets = new Map<Target, Running[]>();

async function close(target: Target) {
  await Promise.allSettled((fleets.get(target) ?? []).map((a) => a.client.close?.()));
  fleets.delete(target);
}

async function closeAll() {
  await Promise.all([...fleets.keys()].map(close));
}

/**
 * Opens every agent's connection with one uncounted heartbeat (sixteen at a time), so a step measures
 * heartbeats, not WebSocket handshakes or new TCP connections.
 */
async function connect({ target, url, transport, agents: fleet }: Extract<GeneratorRequest, { type: 'connect' }>) {
  await close(target);
  const agents = fleet.map((agent) => {
    const options = { url, timeoutMs: 30_000, headers: { authorization: `Bearer ${agent.credential}` } };
    return { ...agent, client: transport === 'ws' ? new GraphQLWsClient(options) : new GraphQLClient(options), input: heartbeatInput(agent.index) };
  });
  fleets.set(target, agents);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(16, agents.length) }, async () => {
      while (next < agents.length) {
        const agent = agents[next++]!;
        await agent.client.request(WORKER_HEARTBEAT, { input: agent.input });
      }
    }),
  );
}

/**
 * Each agent keeps its schedule (one heartbeat every interval, start times spread over the first) and
 * never has two in flight: when an answer is late, the next heartbeat goes out as soon as it arrives.
 */
async function run({ target, agents: count, seconds, intervalMs, startAtEpochMs }: Extract<GeneratorRequest, { type: 'run' }>): Promise<StepOutcome> {
  const agents = fleets.get(target);
  if (!agents) throw new Error(`no connections to the ${target} yet`);
  const latencies: number[] = [];
  const errors = new Map<string, number>();
  let ok = 0;
  let failed = 0;
  const start = performance.now() + (startAtEpochMs - Date.now());
  const end = start + seconds * 1000;
  await new Promise((r) => setTimeout(r, Math.max(0, start - performance.now())));
  const cpuBefore = process.cpuUsage();
  await Promise.all(
    agents
      .filter((agent) => agent.index < count)
      .map(async (agent) => {
        let nextAt = start + Math.random() * intervalMs;
        for (;;) {
          const wait = nextAt - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          const sentAt = performance.now();
          if (sentAt >= end) return;
          try {
            await agent.client.request(WORKER_HEARTBEAT, { input: agent.input });
            const answeredAt = performance.now();
            // Only answers inside the window count, so the rate is a rate over `seconds`.
            if (answeredAt <= end) {
              ok++;
              latencies.push(answeredAt - sentAt);
            }
          } catch (error) {
            failed++;
            const key = describe(error);
            errors.set(key, (errors.get(key) ?? 0) + 1);
          }
          nextAt += intervalMs;
        }
      }),
  );
  const cpu = process.cpuUsage(cpuBefore);
  return { ok, failed, errors: [...errors], latencies, cpuMs: (cpu.user + cpu.system) / 1000 };
}

function reply(message: GeneratorReply) {
  process.send!(message);
}

process.on('message', (message: GeneratorRequest) => {
  const work =
    message.type === 'connect'
      ? connect(message).then(() => reply({ type: 'connected' }))
      : message.type === 'run'
        ? run(message).then((outcome) => reply({ type: 'result', outcome }))
        : closeAll().then(() => {
            reply({ type: 'closed' });
            process.disconnect();
          });
  work.catch((error: unknown) => reply({ type: 'error', message: describe(error) }));
});
// The parent's end is ours: no orphaned load generators after a crash or Ctrl-C.
process.on('disconnect', () => void closeAll().finally(() => process.exit(0)));
