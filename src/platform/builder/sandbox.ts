// Isolation of tenant Nix code (builds and evaluations): every step that runs it is wrapped as
//
//   /bin/sh -c <fixed script> convoy-cgroup <cgroup dirs...> -- unshare --net <nix tool> <args...>
//
// Design:
// - Nix's own sandbox (`sandbox = true`, no fallback) gives each build a private root holding only its
//   input closure, a private /tmp and /build, its own pid/ipc/uts/mount namespaces, a network namespace
//   with loopback alone, and a free nixbld user from build-users-group (one per concurrent build).
// - Fixed-output derivations keep the *calling* process's network inside Nix's sandbox. So the nix
//   process itself runs in a fresh, empty network namespace (`unshare --net`: not even loopback is up):
//   an FOD reaches nothing of the host (PostgreSQL, Redis, the API, Swarm, other host addresses, the
//   cloud metadata address). Evaluation (nix-instantiate, flakes) runs there too, with
//   import-from-derivation off and restricted evaluation, so it can neither build nor fetch: template
//   saves evaluate in the API process, under this same isolation. NIX_PATH entries and flake inputs
//   must therefore be local paths or already in the store.
// - Substitution from binary caches (the operator's, signed) needs the network: the builder asks
//   Nix in the host namespace which paths would be fetched (`--dry-run`) and realises those *output
//   paths* there, which only substitutes (Nix never builds a path that is not a .drv); then it
//   realises the derivation in the empty namespace with substituters off.
// - CONVOY_BUILD_ALLOWED_HOSTS (egress for FODs to listed hosts only, see egress.ts): the realise step
//   then runs `unshare --net node -e <relay> ... -- nix-store ...`; the relay brings up loopback and
//   hands 127.0.0.1:3128 to a per-build proxy of Convoy's on a unix socket, and nix-store gets
//   http(s)_proxy. The host's firewall is not touched. With an empty list FODs get no network at all.
// - Each step's process tree goes into a cgroup of its own (memory incl. swap, CPU quota, pids) before
//   anything runs: the fixed shell script writes its own pid into cgroup.procs and execs the argument
//   array (its arguments are never interpreted by the shell). Afterwards every process left in it is
//   killed and the cgroup removed. The cgroups nest under this process's own cgroup (v1 hierarchies,
//   or v2 where a controller is only there; v2 is not exercised by the tests on the v1 machines).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execa } from 'execa';

export type BuildSandboxMode = 'enforced' | 'off';

export interface BuildLimits {
  memoryMb: number;
  cpus: number;
  pids: number;
}

export interface BuildSandboxOptions {
  /** 'off' is for single-tenant installations only: builds run without namespaces or cgroups. */
  mode: BuildSandboxMode;
  limits: BuildLimits;
}

export const DEFAULT_BUILD_LIMITS: BuildLimits = { memoryMb: 4096, cpus: 2, pids: 4096 };

const CONTROLLERS = ['memory', 'cpu', 'pids'] as const;
type Controller = (typeof CONTROLLERS)[number];
/** Where each controller's cgroups for builds are created, and which cgroup version it is. */
type Hierarchy = { version: 1 | 2; dir: string };
export type SandboxProbe = { available: true; hierarchies: Record<Controller, Hierarchy> } | { available: false; reason: string };

/** Joins the cgroups named before `--`, then runs the rest as an argument array (never parsed). */
const JOIN_CGROUPS_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; done; shift; exec "$@"';
const CGROUP_PARENT = 'convoy-builds';

let probed: Promise<SandboxProbe> | undefined;

/** Detects once whether namespaces and cgroups are usable here. */
export function probeSandbox(): Promise<SandboxProbe> {
  probed ??= runProbe();
  return probed;
}

async function runProbe(): Promise<SandboxProbe> {
  // The namespaces Nix's sandbox needs, plus the empty network namespace we wrap it in.
  const unshare = await execa('unshare', ['--net', '--mount', '--pid', '--ipc', '--uts', '--fork', 'true'], { reject: false, extendEnv: false, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  if (unshare.exitCode !== 0) return { available: false, reason: `no namespaces (unshare: ${String(unshare.stderr || unshare.shortMessage || '').trim().slice(0, 200)})` };
  try {
    const hierarchies = await findHierarchies();
    // Creating and removing a cgroup proves we may.
    const probe = await BuildCgroup.create(hierarchies, DEFAULT_BUILD_LIMITS);
    await probe.destroy();
    return { available: true, hierarchies };
  } catch (error) {
    return { available: false, reason: `no usable cgroups: ${(error as Error).message}` };
  }
}

async function findHierarchies(): Promise<Record<Controller, Hierarchy>> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' '));
  const own = (await readFile('/proc/self/cgroup', 'utf8')).split('\n').filter(Boolean).map((l) => {
    const [, list, path] = l.match(/^\d+:([^:]*):(.*)$/) ?? [];
    return { controllers: (list ?? '').split(','), path: path ?? '/' };
  });
  const v2Mount = mounts.find((m) => m[2] === 'cgroup2')?.[1];
  const v2Path = own.find((c) => c.controllers.length === 1 && c.controllers[0] === '')?.path ?? '/';
  const v2Controllers = v2Mount ? (await readFile(join(v2Mount, v2Path, 'cgroup.controllers'), 'utf8').catch(() => '')).split(/\s+/) : [];
  const result = {} as Record<Controller, Hierarchy>;
  for (const controller of CONTROLLERS) {
    const v1Mount = mounts.find((m) => m[2] === 'cgroup' && (m[3] ?? '').split(',').includes(controller))?.[1];
    const v1Path = own.find((c) => c.controllers.includes(controller))?.path;
    if (v1Mount && v1Path !== undefined) result[controller] = { version: 1, dir: join(v1Mount, v1Path, CGROUP_PARENT) };
    else if (v2Mount && v2Controllers.includes(controller)) result[controller] = { version: 2, dir: join(v2Mount, v2Path, CGROUP_PARENT) };
    else throw new Error(`the ${controller} controller is not mounted`);
  }
  for (const hierarchy of new Set(Object.values(result).map((h) => JSON.stringify(h)))) {
    const { version, dir } = JSON.parse(hierarchy) as Hierarchy;
    await mkdir(dir, { recursive: true });
    if (version === 2) await delegateV2Controllers(dir, CONTROLLERS.filter((c) => result[c].version === 2));
  }
  return result;
}

/**
 * cgroup v2 hands controllers down explicitly, and a cgroup with processes in it cannot hand them to
 * children ("no internal processes"). So this process's own cgroup (e.g. a systemd service with
 * Delegate=yes) gets a leaf, convoy-main, for the processes in it, and then delegates to
 * convoy-builds, which delegates to each build's cgroup.
 */
async function delegateV2Controllers(buildsDir: string, controllers: Controller[]): Promise<void> {
  const own = dirname(buildsDir);
  const enable = controllers.map((c) => `+${c}`).join(' ');
  try {
    await writeFile(join(own, 'cgroup.subtree_control'), enable);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EBUSY') throw error;
    const leaf = join(own, 'convoy-main');
    await mkdir(leaf, { recursive: true });
    for (const pid of (await readFile(join(own, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean)) {
      await writeFile(join(leaf, 'cgroup.procs'), pid).catch(() => {});
    }
    await writeFile(join(own, 'cgroup.subtree_control'), enable);
  }
  await writeFile(join(buildsDir, 'cgroup.subtree_control'), enable);
}

/** One step's cgroup (one directory per hierarchy). */
export class BuildCgroup {
  private constructor(
    readonly name: string,
    private readonly dirs: Map<Controller, Hierarchy>,
    readonly limits: BuildLimits,
  ) {}

  static async create(hierarchies: Record<Controller, Hierarchy>, limits: BuildLimits): Promise<BuildCgroup> {
    const name = `build-${randomBytes(6).toString('hex')}`;
    const dirs = new Map<Controller, Hierarchy>(CONTROLLERS.map((c) => [c, { version: hierarchies[c].version, dir: join(hierarchies[c].dir, name) }]));
    const cgroup = new BuildCgroup(name, dirs, limits);
    try {
      for (const dir of cgroup.uniqueDirs()) await mkdir(dir);
      await cgroup.applyLimits();
    } catch (error) {
      await cgroup.destroy();
      throw error;
    }
    return cgroup;
  }

  /** The argument array that runs `argv` inside this cgroup. */
  wrap(argv: readonly string[]): { file: string; args: string[] } {
    return { file: '/bin/sh', args: ['-c', JOIN_CGROUPS_SCRIPT, 'convoy-cgroup', ...this.uniqueDirs(), '--', ...argv] };
  }

  /** True when the kernel killed a process of this cgroup for going over the memory limit. */
  async memoryLimitReached(): Promise<boolean> {
    const { version, dir } = this.dirs.get('memory')!;
    const text = await readFile(join(dir, version === 1 ? 'memory.oom_control' : 'memory.events'), 'utf8').catch(() => '');
    const kills = Number(text.match(/^oom_kill (\d+)$/m)?.[1] ?? 0);
    return kills > 0;
  }

  /** Kills whatever is left in the cgroup and removes it. */
  async destroy(): Promise<void> {
    for (const dir of this.uniqueDirs().reverse()) {
      if (!existsSync(dir)) continue;
      for (let attempt = 0; attempt < 50; attempt++) {
        const pids = (await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Gone already.
          }
        }
        try {
          await rmdir(dir);
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    }
  }

  private uniqueDirs(): string[] {
    return [...new Set([...this.dirs.values()].map((h) => h.dir))];
  }

  private async applyLimits(): Promise<void> {
    const memoryBytes = String(this.limits.memoryMb * 1024 * 1024);
    const periodUs = 100_000;
    const quotaUs = String(Math.max(1_000, Math.round(this.limits.cpus * periodUs)));
    const memory = this.dirs.get('memory')!;
    const cpu = this.dirs.get('cpu')!;
    const pids = this.dirs.get('pids')!;
    if (memory.version === 1) {
      await writeFile(join(memory.dir, 'memory.limit_in_bytes'), memoryBytes);
      // Swap counts too (where swap accounting exists), so a build cannot swap its way past the limit.
      if (existsSync(join(memory.dir, 'memory.memsw.limit_in_bytes'))) await writeFile(join(memory.dir, 'memory.memsw.limit_in_bytes'), memoryBytes);
    } else {
      await writeFile(join(memory.dir, 'memory.max'), memoryBytes);
      if (existsSync(join(memory.dir, 'memory.swap.max'))) await writeFile(join(memory.dir, 'memory.swap.max'), '0');
    }
    if (cpu.version === 1) {
      await writeFile(join(cpu.dir, 'cpu.cfs_period_us'), String(periodUs));
      await writeFile(join(cpu.dir, 'cpu.cfs_quota_us'), quotaUs);
    } else {
      await writeFile(join(cpu.dir, 'cpu.max'), `${quotaUs} ${periodUs}`);
    }
    await writeFile(join(pids.dir, 'pids.max'), String(this.limits.pids));
  }
}
