// A real multi-node Docker Swarm on this one machine, for node-loss tests: every node is its own dockerd
// (with its own containerd) in its own network namespace, on a private /24 that exists only inside the
// lab's namespaces. The switch (a bridge) sits in a namespace of its own, so the host's firewall never
// sees lab traffic. Names, subnet and directories are unique per lab, so labs of parallel test files
// never meet, and nothing here touches the default daemon.
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { execa, type ResultPromise } from 'execa';
import { dockerFromHost } from '../../src/platform/orchestrator/swarm.js';
import { importTestImage, type TestImageOptions } from './images.js';

export type SwarmLabOptions = {
  /** Default 3; node 1 is the manager, the others workers. */
  nodes?: number;
  /** Swarm's dispatcher heartbeat. Below 1 s Swarm marks healthy nodes Down, so 1 is the floor. */
  heartbeatSeconds?: number;
  /** Imported on every node: there is no registry to pull from. */
  images?: ({ tag: string } & TestImageOptions)[];
};

type LabState = { id: string; nodes: number; subnet: string; ownerPid: number };

const DIR_PREFIX = 'convoy-lab-';
const STATE_FILE = 'lab.json';
const CGROUP_ROOT = '/sys/fs/cgroup';
const SYSTEM_CONTAINERD = '/run/containerd/containerd.sock';
// Shim sockets live here whatever containerd's own directories are.
const SHIM_SOCKETS = '/run/containerd/s/';

// Runs inside the node's namespaces, before dockerd: `ip netns exec` gives the command a fresh /sys
// without the cgroup hierarchies, so they are mounted again (the host's own, passed as
// type:path:options: cgroup v2 right on /sys/fs/cgroup, v1 hierarchies on a tmpfs there), and the UTS
// namespace gets the node's host name. Values come in as arguments, never interpolated.
const NODE_SCRIPT = `set -e
hostname "$1"; shift
root=
while [ "$1" != -- ]; do
  type=\${1%%:*}; rest=\${1#*:}; dir=\${rest%%:*}; opts=\${rest#*:}
  if [ "$dir" != /sys/fs/cgroup ] && [ -z "$root" ]; then mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup; root=1; fi
  mkdir -p "$dir"; mount -t "$type" -o "$opts" cgroup "$dir"
  shift
done
shift
exec "$@"`;

export class SwarmLab {
  readonly id: string;
  readonly dir: string;
  readonly nodes: number;
  /** The first three octets of the lab's /24, chosen by up(). */
  private subnetPrefix: string;
  private readonly heartbeatSeconds: number;
  private readonly images: NonNullable<SwarmLabOptions['images']>;
  private readonly daemons = new Map<number, ResultPromise>();
  private readonly clients = new Map<number, Docker>();
  private readonly nodeIds = new Map<number, string>();

  constructor(options: SwarmLabOptions = {}, state?: LabState) {
    this.nodes = state?.nodes ?? options.nodes ?? 3;
    this.heartbeatSeconds = Math.max(1, options.heartbeatSeconds ?? 1);
    this.images = options.images ?? [];
    this.id = state?.id ?? `cv${randomBytes(3).toString('hex')}`;
    this.dir = join(tmpdir(), `${DIR_PREFIX}${this.id}`);
    this.subnetPrefix = state?.subnet ?? '';
  }

  get subnet(): string {
    return this.subnetPrefix;
  }

  /** Network, daemons, swarm (node 1 initialises, the others join), images on every node. */
  async up(): Promise<void> {
    if (existsSync(SYSTEM_CONTAINERD)) throw new Error(`a system containerd answers at ${SYSTEM_CONTAINERD}: every lab dockerd would share it`);
    await reapAbandonedLabs();
    this.subnetPrefix = await pickSubnet();
    await mkdir(this.dir, { recursive: true });
    await this.saveState();
    try {
      await this.createNetwork();
      await Promise.all(this.nodeNumbers().map((n) => this.startDaemon(n)));
      await this.formSwarm();
      await Promise.all(this.images.flatMap(({ tag, ...image }) => this.nodeNumbers().map((n) => importTestImage(this.dockerFor(n), tag, image))));
    } catch (error) {
      await this.down().catch(() => {});
      throw error;
    }
  }

  socketPath(n: number): string {
    return join(this.nodeDir(n), 'docker.sock');
  }

  /** What DOCKER_HOST is for a client of node n. */
  dockerHost(n: number): string {
    return `unix://${this.socketPath(n)}`;
  }

  dockerFor(n: number): Docker {
    let client = this.clients.get(n);
    if (!client) {
      client = dockerFromHost(this.dockerHost(n));
      this.clients.set(n, client);
    }
    return client;
  }

  address(n: number): string {
    return `${this.subnet}.${n}`;
  }

  hostname(n: number): string {
    return `${this.id}-n${n}`;
  }

  swarmNodeId(n: number): string {
    const id = this.nodeIds.get(n);
    if (!id) throw new Error(`node ${n} has not joined the swarm`);
    return id;
  }

  /** Node n for a Swarm node id (null for none of ours). */
  nodeNumberOf(swarmNodeId: string | null): number | null {
    for (const [n, id] of this.nodeIds) if (id === swarmNodeId) return n;
    return null;
  }

  /** A node loss: dockerd and its containerd get SIGKILL. Their containers keep running, unmanaged, as on a real node whose engine died. */
  async killNode(n: number): Promise<void> {
    await killAndWait(await this.daemonPids(n));
    await this.daemons.get(n);
    this.daemons.delete(n);
  }

  /** Starts node n's dockerd again (after killNode); it rejoins the swarm from its own state. Resolves once the manager sees it Ready. */
  async startNode(n: number): Promise<void> {
    await this.startDaemon(n);
    const nodeId = this.swarmNodeId(n);
    await waitUntil(`node ${n} to be Ready again`, 60_000, async () => {
      const node = (await this.dockerFor(1).getNode(nodeId).inspect()) as { Status?: { State?: string } };
      return node.Status?.State === 'ready';
    });
  }

  /** Removes everything the lab made: processes, cgroups, namespaces, mounts, shim sockets, files. */
  async down(): Promise<void> {
    const shimSockets = await this.shimSockets();
    for (let round = 0; round < 20; round++) {
      const pids = await this.labPids();
      if (pids.length === 0) break;
      await killAndWait(pids, 5000);
    }
    await Promise.allSettled([...this.daemons.values()]);
    this.daemons.clear();
    await Promise.all(shimSockets.map((socket) => rm(socket, { force: true })));
    await this.removeCgroups();
    for (const ns of this.namespaces()) {
      if (existsSync(join('/run/netns', ns))) await execa('ip', ['netns', 'del', ns], { reject: false });
    }
    // Daemons mount inside their own mount namespaces; anything that leaked into the host's goes too.
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    const leaked = mountinfo.split('\n').map((line) => line.split(' ')[4]).filter((m): m is string => !!m && m.startsWith(`${this.dir}/`));
    for (const mount of leaked.sort().reverse()) await execa('umount', ['-l', mount], { reject: false });
    await rm(this.dir, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------------------------------------

  private nodeNumbers(): number[] {
    return Array.from({ length: this.nodes }, (_, i) => i + 1);
  }

  private nodeDir(n: number): string {
    return join(this.dir, `n${n}`);
  }

  private containerdPidFile(n: number): string {
    return join(this.nodeDir(n), 'exec', 'containerd', 'containerd.pid');
  }

  private switchNs(): string {
    return `${this.id}-sw`;
  }

  private nodeNs(n: number): string {
    return `${this.id}-n${n}`;
  }

  private namespaces(): string[] {
    return [...this.nodeNumbers().map((n) => this.nodeNs(n)), this.switchNs()];
  }

  private cgroupParent(n: number): string {
    return `${this.id}-n${n}`;
  }

  private async saveState(): Promise<void> {
    const state: LabState = { id: this.id, nodes: this.nodes, subnet: this.subnet, ownerPid: process.pid };
    await writeFile(join(this.dir, STATE_FILE), JSON.stringify(state));
  }

  private async createNetwork(): Promise<void> {
    const ip = (...args: string[]) => execa('ip', args);
    const sw = this.switchNs();
    await ip('netns', 'add', sw);
    await ip('-n', sw, 'link', 'set', 'lo', 'up');
    await ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', sw, 'link', 'set', 'br0', 'up');
    for (const n of this.nodeNumbers()) {
      const ns = this.nodeNs(n);
      await ip('netns', 'add', ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', sw, 'link', 'add', `n${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await ip('-n', sw, 'link', 'set', `n${n}`, 'master', 'br0', 'up');
      await ip('-n', ns, 'addr', 'add', `${this.address(n)}/24`, 'dev', 'eth0');
      await ip('-n', ns, 'link', 'set', 'eth0', 'up');
    }
  }

  private async startDaemon(n: number): Promise<void> {
    const dir = this.nodeDir(n);
    await mkdir(dir, { recursive: true });
    const log = join(dir, 'dockerd.log');
    const dockerd = [
      'dockerd',
      '--data-root', join(dir, 'data'),
      '--exec-root', join(dir, 'exec'),
      '--pidfile', join(dir, 'docker.pid'),
      '-H', this.dockerHost(n),
      // vfs keeps no mounts: a node killed and started again (in a new mount namespace) finds its
      // containers' files where it left them. Test images are a few MB.
      '--storage-driver', 'vfs',
      '--bridge', 'none',
      '--cgroup-parent', `/${this.cgroupParent(n)}`,
      '--log-level', 'warn',
    ];
    const daemon = execa('ip', ['netns', 'exec', this.nodeNs(n), 'unshare', '--uts', '--', 'sh', '-c', NODE_SCRIPT, 'convoy-lab-node', this.hostname(n), ...(await hostCgroupMounts()), '--', ...dockerd], {
      stdin: 'ignore',
      stdout: { file: log, append: true },
      stderr: { file: log, append: true },
      reject: false,
    });
    this.daemons.set(n, daemon);
    const client = this.dockerFor(n);
    try {
      await waitUntil(
        `dockerd of node ${n}`,
        60_000,
        async () => !!(await client.ping()),
        () => (daemon.exitCode !== null ? `it exited with ${daemon.exitCode}` : null),
      );
    } catch (error) {
      const tail = (await readFile(log, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
      throw new Error(`${(error as Error).message}\n${tail}`, { cause: error });
    }
  }

  private async formSwarm(): Promise<void> {
    const manager = this.dockerFor(1);
    await manager.swarmInit({
      ListenAddr: `${this.address(1)}:2377`,
      AdvertiseAddr: this.address(1),
      Spec: { Dispatcher: { HeartbeatPeriod: this.heartbeatSeconds * 1e9 } },
    });
    const { JoinTokens } = (await manager.swarmInspect()) as { JoinTokens: { Worker: string } };
    await Promise.all(
      this.nodeNumbers()
        .filter((n) => n !== 1)
        .map((n) =>
          this.dockerFor(n).swarmJoin({ ListenAddr: `${this.address(n)}:2377`, AdvertiseAddr: this.address(n), RemoteAddrs: [`${this.address(1)}:2377`], JoinToken: JoinTokens.Worker }),
        ),
    );
    for (const n of this.nodeNumbers()) {
      const info = (await this.dockerFor(n).info()) as { Swarm: { NodeID: string } };
      this.nodeIds.set(n, info.Swarm.NodeID);
    }
    await waitUntil('every node to be Ready', 60_000, async () => {
      const nodes = (await manager.listNodes()) as { Status?: { State?: string } }[];
      return nodes.length === this.nodes && nodes.every((node) => node.Status?.State === 'ready');
    });
  }

  /** Every process of the lab: daemons, shims and proxies (in the lab's namespaces), containers (in its cgroups). */
  private async labPids(): Promise<number[]> {
    const pids = new Set<number>();
    for (const n of this.nodeNumbers()) {
      for (const pid of await this.daemonPids(n)) pids.add(pid);
      for (const file of await cgroupFiles(this.cgroupParent(n), 'cgroup.procs')) {
        for (const pid of (await readFile(file, 'utf8').catch(() => '')).split('\n').map(Number)) if (pid > 0) pids.add(pid);
      }
    }
    for (const ns of this.namespaces()) {
      if (!existsSync(join('/run/netns', ns))) continue;
      const { stdout } = await execa('ip', ['netns', 'pids', ns], { reject: false });
      for (const pid of stdout.split('\n').map(Number)) if (pid > 0) pids.add(pid);
    }
    pids.delete(process.pid);
    return [...pids];
  }

  /**
   * Node n's dockerd and containerd. A pid file can outlive its process (and its pid be reused by
   * anything, the default daemon included): only a process whose command line names this lab counts.
   */
  private async daemonPids(n: number): Promise<number[]> {
    const candidates = [this.daemons.get(n)?.pid, await readPid(join(this.nodeDir(n), 'docker.pid')), await readPid(this.containerdPidFile(n))];
    return [...new Set(candidates)].filter((pid): pid is number => !!pid && isAlive(pid) && readFileSyncOrEmpty(`/proc/${pid}/cmdline`).includes(this.dir));
  }

  private async shimSockets(): Promise<string[]> {
    const sockets: string[] = [];
    for (const n of this.nodeNumbers()) {
      const tasks = join(this.nodeDir(n), 'exec', 'containerd', 'daemon', 'io.containerd.runtime.v2.task');
      for (const namespace of await readdir(tasks).catch(() => [])) {
        for (const container of await readdir(join(tasks, namespace)).catch(() => [])) {
          const address = (await readFile(join(tasks, namespace, container, 'address'), 'utf8').catch(() => '')).trim().replace(/^unix:\/\//, '');
          if (address.startsWith(SHIM_SOCKETS)) sockets.push(address);
        }
      }
    }
    return sockets;
  }

  private async removeCgroups(): Promise<void> {
    for (const n of this.nodeNumbers()) {
      const dirs = (await cgroupFiles(this.cgroupParent(n), '')).map((file) => file.replace(/\/$/, ''));
      // Deepest first: a cgroup can only go once its children have.
      for (const dir of dirs.sort((a, b) => b.length - a.length)) {
        for (let attempt = 0; attempt < 20; attempt++) {
          try {
            await rmdir(dir);
            break;
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code === 'ENOENT') break;
            await sleep(100);
          }
        }
      }
    }
  }
}

/** Starts a lab and brings it up. */
export async function startSwarmLab(options: SwarmLabOptions = {}): Promise<SwarmLab> {
  const lab = new SwarmLab(options);
  await lab.up();
  return lab;
}

/** Labs whose test process died without taking them down (a killed run) are removed by the next one. */
async function reapAbandonedLabs(): Promise<void> {
  for (const entry of await readdir(tmpdir()).catch(() => [])) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const state = JSON.parse(await readFile(join(tmpdir(), entry, STATE_FILE), 'utf8').catch(() => 'null')) as LabState | null;
    if (!state || !/^cv[a-z0-9]{6}$/.test(state.id) || isAlive(state.ownerPid)) continue;
    await new SwarmLab({}, state).down().catch(() => {});
  }
}

/** A random 10.x.y.0/24 that no host route or address covers (and outside 10.0/16, Swarm's overlay pool). */
async function pickSubnet(): Promise<string> {
  const { stdout } = await execa('ip', ['-4', '-o', 'route', 'show', 'table', 'all']);
  const routes = stdout.split('\n').map((line) => line.split(' ').find((word) => /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(word))).filter((r): r is string => !!r);
  for (let attempt = 0; attempt < 100; attempt++) {
    const subnet = `10.${randomInt(64, 255)}.${randomInt(0, 256)}`;
    if (!routes.some((route) => overlaps(route, `${subnet}.0/24`))) return subnet;
  }
  throw new Error('no free 10.x.y.0/24 found');
}

function overlaps(a: string, b: string): boolean {
  const parse = (cidr: string) => {
    const [address, bits = '32'] = cidr.split('/');
    return { value: address!.split('.').reduce((n, octet) => n * 256 + Number(octet), 0), prefix: Number(bits) };
  };
  const x = parse(a);
  const y = parse(b);
  // Same network under the shorter of the two prefixes.
  const block = 2 ** (32 - Math.min(x.prefix, y.prefix));
  return Math.floor(x.value / block) === Math.floor(y.value / block);
}

/** The host's cgroup hierarchies as type:path:options, for NODE_SCRIPT. */
async function hostCgroupMounts(): Promise<string[]> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  return mounts
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[2]?.startsWith('cgroup') && (fields[1] === CGROUP_ROOT || fields[1]?.startsWith(`${CGROUP_ROOT}/`)))
    .map(([, path, type, options]) => `${type}:${path}:${options}`)
    // A cgroup v2 root first, so hierarchies beneath it are not hidden by a tmpfs.
    .sort((a, b) => Number(b.split(':')[1] === CGROUP_ROOT) - Number(a.split(':')[1] === CGROUP_ROOT));
}

/** `name` under every cgroup hierarchy's lab parent, recursively ('' lists the directories themselves). */
async function cgroupFiles(parent: string, name: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => null);
    if (!entries) return;
    found.push(name ? join(dir, name) : `${dir}/`);
    for (const entry of entries) if (entry.isDirectory()) await walk(join(dir, entry.name));
  };
  // cgroup v2: the lab's parent sits right under the root; v1: under every hierarchy.
  await walk(join(CGROUP_ROOT, parent));
  for (const hierarchy of await readdir(CGROUP_ROOT).catch(() => [])) await walk(join(CGROUP_ROOT, hierarchy, parent));
  return found;
}

async function readPid(file: string): Promise<number | null> {
  const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  return pid > 0 ? pid : null;
}

/** Zombies count as gone: an orphan's parent may never reap it. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSyncOrEmpty(`/proc/${pid}/stat`);
  return !/^\d+ \(.*\) Z/.test(stat);
}

function readFileSyncOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function killAndWait(pids: number[], timeoutMs = 10_000): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(50);
}

/** Polls `check` (errors count as not yet) until it holds; `giveUp` names a reason to stop early. */
async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>, giveUp: () => string | null = () => null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    const reason = giveUp();
    if (reason) throw new Error(`gave up waiting for ${what}: ${reason}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
