// What a checked-out repository is: its own Nix expression, or an app in a language Convoy has a
// template for.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

export type SourceKind = 'nix' | 'node' | 'python' | 'go' | 'static';

/** The built-in template (nix/templates/<name>) for each detected language. */
export const TEMPLATE_FOR_SOURCE: Record<Exclude<SourceKind, 'nix'>, string> = {
  node: 'nodejs',
  python: 'python',
  go: 'go',
  static: 'static',
};

/** Directories the static template serves from, in order (kept in step with nix/templates/static). */
export const STATIC_SITE_DIRS = ['.', 'public', 'dist', 'build', 'site', '_site'];

// First match wins: a repository with its own default.nix knows best, and a package.json next to
// an index.html is an app, not a static site.
const MARKERS: Array<[SourceKind, string[]]> = [
  ['nix', ['default.nix', 'flake.nix']],
  ['node', ['package.json']],
  ['python', ['requirements.txt', 'pyproject.toml']],
  ['go', ['go.mod']],
  ['static', STATIC_SITE_DIRS.map((dir) => join(dir, 'index.html'))],
];

export async function detectSource(dir: string): Promise<SourceKind | null> {
  for (const [kind, files] of MARKERS) {
    for (const file of files) if (await isRegularFile(join(dir, file))) return kind;
  }
  return null;
}

// Symlinks count (default.nix -> nix/default.nix is common); only existence is checked here.
async function isRegularFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
