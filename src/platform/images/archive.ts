// Writes a docker-archive (the `docker save` format: manifest.json, a config JSON and layer tars)
// straight from a Nix closure, in one pass. Everything that reaches the bytes is fixed or sorted,
// so the same closure and config give the same layers, the same config and the same image id.
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { arch } from 'node:process';
import { baseLayerEntries, HTTP_PROBE_PATH, IMAGE_USER } from './base-layer.js';
import { binDirectories, findCaBundle, planLayers, readStorePath, type StorePathContents } from './layers.js';
import { tarSize, TarWriter, type Sink, type TarEntry } from './tar.js';

export const DEFAULT_MAX_LAYERS = 20;
/**
 * The creation time of images built from a source with no time of its own (a Nix expression, a template):
 * fixed, so identical inputs give identical config bytes, hence identical image ids, and recent enough that
 * `docker images` does not say "56 years ago" (the Unix epoch did).
 */
export const REPRODUCIBLE_CREATED = new Date('2026-01-01T00:00:00Z');

export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  /** Added after PATH (and SSL_CERT_FILE when the closure has CA certificates); may override them. */
  env?: Record<string, string>;
  /** TCP ports. */
  exposedPorts?: number[];
  /** Default: the image user's home. */
  workingDir?: string;
  /** Default: the non-root image user, "1000:1000". */
  user?: string;
  labels?: Record<string, string>;
  /**
   * What `docker images` shows as the creation time; part of the image id, so it must come from the inputs:
   * the commit's time for Git builds. Default: REPRODUCIBLE_CREATED. Whole seconds only.
   */
  created?: Date;
  /** A HEALTHCHECK running the built-in HTTP probe. */
  healthCheck?: { port: number; path?: string; intervalSeconds?: number; timeoutSeconds?: number; retries?: number; startPeriodSeconds?: number };
  /** The built output: its bin/ comes first in PATH. */
  primaryPath?: string;
  /** Layers in all, the base layer included (default 20). */
  maxLayers?: number;
  /** Static busybox copied in for the HTTP probe (default /bin/busybox); null: no probe. */
  probeBusybox?: string | null;
}

export interface ImageArchive {
  archivePath: string;
  /** "sha256:<hex>" of the config: the id Docker gives the image once loaded. */
  imageId: string;
  /** "sha256:<hex>" per layer, base layer first. */
  diffIds: string[];
  archiveSizeBytes: number;
}

export async function writeImageArchive(closure: string[], config: ImageConfig, archivePath: string): Promise<ImageArchive> {
  const maxLayers = config.maxLayers ?? DEFAULT_MAX_LAYERS;
  if (maxLayers < 2) throw new Error('an image needs at least 2 layers: the base layer and the closure');
  const contents = await Promise.all([...new Set(closure)].sort().map(readStorePath));
  const caBundle = findCaBundle(contents);
  const probeBusybox = config.probeBusybox === undefined ? '/bin/busybox' : config.probeBusybox;
  const layers: TarEntry[][] = [
    await baseLayerEntries({ probeBusybox, caBundle }),
    ...planLayers(contents, maxLayers - 1).map((group) => group.flatMap((path) => path.entries)),
  ];

  const file = await open(archivePath, 'w');
  try {
    const sink = bufferedSink(file);
    const archive = new TarWriter(sink.write);
    await archive.add({ kind: 'directory', path: 'layers', mode: 0o755 });
    const diffIds: string[] = [];
    for (const [index, entries] of layers.entries()) diffIds.push(await writeLayer(archive, `layers/${String(index).padStart(3, '0')}.tar`, entries));

    const configBytes = Buffer.from(JSON.stringify(imageConfigJson(config, contents, caBundle, diffIds)), 'utf8');
    const manifest = [{ Config: 'config.json', RepoTags: null, Layers: diffIds.map((_, i) => `layers/${String(i).padStart(3, '0')}.tar`) }];
    const manifestBytes = Buffer.from(JSON.stringify(manifest), 'utf8');
    await archive.add({ kind: 'file', path: 'config.json', mode: 0o644, size: configBytes.length, content: { data: configBytes } });
    await archive.add({ kind: 'file', path: 'manifest.json', mode: 0o644, size: manifestBytes.length, content: { data: manifestBytes } });
    await archive.finish();
    await sink.flush();
    return { archivePath, imageId: `sha256:${sha256(configBytes)}`, diffIds, archiveSizeBytes: sink.bytesWritten() };
  } finally {
    await file.close();
  }
}

/** Streams one layer tar into the archive and returns its diff id (the digest of the layer tar). */
async function writeLayer(archive: TarWriter, path: string, entries: TarEntry[]): Promise<string> {
  const hash = createHash('sha256');
  const writeToArchive = await archive.beginFile({ path, mode: 0o644, size: tarSize(entries) });
  const layer = new TarWriter(async (chunk) => {
    hash.update(chunk);
    await writeToArchive(chunk);
  });
  for (const entry of entries) await layer.add(entry);
  await layer.finish();
  await archive.endFile();
  return `sha256:${hash.digest('hex')}`;
}

function imageConfigJson(config: ImageConfig, contents: StorePathContents[], caBundle: string | undefined, diffIds: string[]) {
  const givenTime = config.created?.getTime();
  const createdMs = givenTime !== undefined && Number.isFinite(givenTime) ? givenTime : REPRODUCIBLE_CREATED.getTime();
  const created = new Date(Math.floor(createdMs / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  const env: Record<string, string> = {
    PATH: [...binDirectories(contents, config.primaryPath), '/convoy/bin'].join(':'),
    ...(caBundle ? { SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt', NIX_SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt' } : {}),
    ...sortedRecord(config.env ?? {}),
  };
  return {
    architecture: dockerArchitecture(),
    os: 'linux',
    created,
    config: {
      User: config.user ?? `${IMAGE_USER.uid}:${IMAGE_USER.gid}`,
      Env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
      ...(config.entrypoint ? { Entrypoint: config.entrypoint } : {}),
      ...(config.cmd ? { Cmd: config.cmd } : {}),
      ExposedPorts: Object.fromEntries([...new Set(config.exposedPorts ?? [])].sort((a, b) => a - b).map((port) => [`${port}/tcp`, {}])),
      WorkingDir: config.workingDir ?? IMAGE_USER.home,
      Labels: sortedRecord(config.labels ?? {}),
      ...(config.healthCheck ? { Healthcheck: healthcheckJson(config.healthCheck) } : {}),
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, index) => ({ created, created_by: index === 0 ? 'convoy: base layer' : 'convoy: nix store paths' })),
  };
}

function healthcheckJson(check: NonNullable<ImageConfig['healthCheck']>) {
  const seconds = (value: number | undefined, fallback: number) => (value ?? fallback) * 1e9;
  return {
    Test: ['CMD', HTTP_PROBE_PATH, String(check.port), check.path ?? '/'],
    Interval: seconds(check.intervalSeconds, 10),
    Timeout: seconds(check.timeoutSeconds, 6),
    StartPeriod: seconds(check.startPeriodSeconds, 5),
    Retries: check.retries ?? 3,
  };
}

function sortedRecord(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function dockerArchitecture(): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[arch] ?? arch;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Collects small tar writes into large file writes. */
function bufferedSink(file: FileHandle): { write: Sink; flush: () => Promise<void>; bytesWritten: () => number } {
  const limit = 1 << 20;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let written = 0;
  const flush = async () => {
    if (pendingBytes === 0) return;
    const data = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    await file.write(data);
    written += data.length;
  };
  return {
    write: async (chunk) => {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= limit) await flush();
    },
    flush,
    bytesWritten: () => written,
  };
}
