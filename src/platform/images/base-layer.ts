// The first layer of every image: what a Nix closure lacks to run as a container. A /tmp, a
// non-root user, a writable home and /data, CA certificates when the closure has them, and an HTTP
// probe for health checks (images built from a closure have no curl or wget).
import { stat } from 'node:fs/promises';
import type { TarEntry } from './tar.js';

export const IMAGE_USER = { name: 'convoy', uid: 1000, gid: 1000, home: '/home/convoy' } as const;
export const PROBE_BUSYBOX_PATH = '/convoy/bin/busybox';
export const HTTP_PROBE_PATH = '/convoy/bin/http-probe';
/** Where images expect a volume for persistent data (owned by the image user). */
export const DATA_DIR = '/data';

/** The health-check command for a service listening on `port`, e.g. for a Swarm HealthConfig. */
export function httpProbeCommand(port: number, path = '/'): string[] {
  return ['CMD', HTTP_PROBE_PATH, String(port), path];
}

// busybox nc speaks plain HTTP/1.0; `timeout` bounds a server that accepts but never answers.
const HTTP_PROBE_SCRIPT = `#!${PROBE_BUSYBOX_PATH} sh
# Convoy's health probe: http-probe PORT [PATH] [HOST] exits 0 on a 2xx or 3xx answer within 5 s.
bb=${PROBE_BUSYBOX_PATH}
port="\${1:?usage: http-probe PORT [PATH] [HOST]}"
path="\${2:-/}"
host="\${3:-127.0.0.1}"
status="$(printf 'GET %s HTTP/1.0\\r\\nHost: %s\\r\\nUser-Agent: convoy-probe\\r\\n\\r\\n' "$path" "$host" | $bb timeout 5 $bb nc "$host" "$port" | $bb head -n 1)"
case "$status" in
  "HTTP/1."[01]" "[23]??*) exit 0 ;;
esac
echo "http-probe: \${status:-no answer} from $host:$port$path" >&2
exit 1
`;

export interface BaseLayerOptions {
  /** A static busybox to copy in as the probe's tool; null leaves the probe out. */
  probeBusybox: string | null;
  /** Absolute path of a CA bundle inside the closure, linked from the usual /etc/ssl locations. */
  caBundle?: string;
}

export async function baseLayerEntries(options: BaseLayerOptions): Promise<TarEntry[]> {
  const { uid, gid, name, home } = IMAGE_USER;
  const imageUser = { uid, gid };
  const dir = (path: string, mode = 0o755, owner = { uid: 0, gid: 0 }): TarEntry => ({ kind: 'directory', path, mode, ...owner });
  const text = (path: string, content: string, mode = 0o644): TarEntry => {
    const data = Buffer.from(content, 'utf8');
    return { kind: 'file', path, mode, size: data.length, content: { data } };
  };
  const entries: TarEntry[] = [];
  if (options.probeBusybox !== null) {
    const size = (await stat(options.probeBusybox)).size;
    entries.push(
      dir('convoy'),
      dir('convoy/bin'),
      { kind: 'file', path: PROBE_BUSYBOX_PATH.slice(1), mode: 0o555, size, content: { file: options.probeBusybox } },
      text(HTTP_PROBE_PATH.slice(1), HTTP_PROBE_SCRIPT, 0o555),
    );
  }
  entries.push(
    dir(DATA_DIR.slice(1), 0o755, imageUser),
    dir('etc'),
    text('etc/group', `root:x:0:\n${name}:x:${gid}:\nnogroup:x:65534:\n`),
    // glibc resolves names through nsswitch; without it /etc/hosts is ignored.
    text('etc/nsswitch.conf', 'hosts: files dns\n'),
    text('etc/passwd', `root:x:0:0:root:/root:/sbin/nologin\n${name}:x:${uid}:${gid}:${name}:${home}:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n`),
  );
  if (options.caBundle) {
    entries.push(
      dir('etc/ssl'),
      dir('etc/ssl/certs'),
      { kind: 'symlink', path: 'etc/ssl/certs/ca-bundle.crt', mode: 0o777, target: options.caBundle },
      { kind: 'symlink', path: 'etc/ssl/certs/ca-certificates.crt', mode: 0o777, target: options.caBundle },
    );
  }
  entries.push(
    dir('home'),
    dir(home.slice(1), 0o755, imageUser),
    dir('nix'),
    dir('nix/store'),
    dir('root', 0o700),
    dir('tmp', 0o1777),
  );
  return entries;
}
