// Store paths as tar entries, and how a closure is split into a bounded number of layers.
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { TarEntry } from './tar.js';

export interface StorePathContents {
  storePath: string;
  /** Entries in archive order (each directory before its contents), paths without a leading slash. */
  entries: TarEntry[];
  /** Bytes of file content: what decides which paths get a layer of their own. */
  sizeBytes: number;
}

export async function readStorePath(storePath: string): Promise<StorePathContents> {
  if (!storePath.startsWith('/nix/store/')) throw new Error(`not a store path: ${storePath}`);
  const entries: TarEntry[] = [];
  const sizeBytes = await walk(storePath, storePath.slice(1), entries);
  return { storePath, entries, sizeBytes };
}

/** Appends `source` (and, for a directory, its contents in name order) to `entries`; returns file bytes. */
async function walk(source: string, archivePath: string, entries: TarEntry[]): Promise<number> {
  const stat = await lstat(source);
  if (stat.isSymbolicLink()) {
    entries.push({ kind: 'symlink', path: archivePath, mode: 0o777, target: await readlink(source) });
    return 0;
  }
  if (stat.isFile()) {
    // The store is normalised to read-only 0444/0555; keep only whether a file is executable.
    const mode = stat.mode & 0o111 ? 0o555 : 0o444;
    entries.push({ kind: 'file', path: archivePath, mode, size: stat.size, content: { file: source } });
    return stat.size;
  }
  if (!stat.isDirectory()) throw new Error(`unsupported file type in the store: ${source}`);
  entries.push({ kind: 'directory', path: archivePath, mode: 0o555 });
  let total = 0;
  for (const name of (await readdir(source)).sort()) total += await walk(join(source, name), `${archivePath}/${name}`, entries);
  return total;
}

/**
 * Groups store paths into at most `maxLayers` layers: the biggest paths get a layer each (so an app
 * change does not re-ship its runtime, and images share them), the rest share the last layer.
 * The result is deterministic: ties in size are broken by path.
 */
export function planLayers<T extends { storePath: string; sizeBytes: number }>(paths: T[], maxLayers: number): T[][] {
  if (maxLayers < 1) throw new Error('maxLayers must be at least 1');
  const bySize = [...paths].sort((a, b) => b.sizeBytes - a.sizeBytes || a.storePath.localeCompare(b.storePath));
  if (bySize.length <= maxLayers) return bySize.map((p) => [p]);
  const own = bySize.slice(0, maxLayers - 1).map((p) => [p]);
  const rest = bySize.slice(maxLayers - 1).sort((a, b) => a.storePath.localeCompare(b.storePath));
  return [...own, rest];
}

/** Where a closure provides a CA bundle (nixpkgs' cacert), as an absolute path. */
export function findCaBundle(contents: StorePathContents[]): string | undefined {
  const suffixes = ['/etc/ssl/certs/ca-bundle.crt', '/etc/ssl/certs/ca-certificates.crt'];
  for (const path of contents) {
    for (const entry of path.entries) {
      if (suffixes.some((s) => entry.path === `${path.storePath.slice(1)}${s}`)) return `/${entry.path}`;
    }
  }
  return undefined;
}

/** Store paths whose bin/ belongs on PATH, `primary` first. */
export function binDirectories(contents: StorePathContents[], primary?: string): string[] {
  const dirs = contents
    .filter((path) => path.entries.some((e) => e.kind !== 'file' && e.path === `${path.storePath.slice(1)}/bin`))
    .map((path) => path.storePath)
    .sort((a, b) => Number(b === primary) - Number(a === primary) || a.localeCompare(b));
  return dirs.map((dir) => `${dir}/bin`);
}
