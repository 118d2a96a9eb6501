// Real Nix fixtures: a builder that never waits on a binary cache (there is no network), and
// self-contained expressions built from the static busybox, with a nonce wherever a cold build matters.
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { NixBuilder, type NixBuilderOptions } from '../../src/platform/builder/nix.js';

export const NIX_LIB_DIR = fileURLToPath(new URL('../../nix/lib', import.meta.url));

/** A NixBuilder for tests: no substituters (an offline node would otherwise retry cache.nixos.org). */
export function testNixBuilder(options: NixBuilderOptions = {}): NixBuilder {
  return new NixBuilder({ substituters: [], stopGraceMs: 3_000, ...options });
}

export function nonce(): string {
  return randomBytes(6).toString('hex');
}

/** A Nix string literal for any text. */
export function nixString(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$\{/g, '\\${')}"`;
}

/**
 * An expression whose build runs `script` in busybox sh (applets on PATH, $out to create), using
 * Convoy's bootstrap library and the busybox the builder passes as `convoyBusybox`.
 */
export function busyboxExpression(name: string, script: string): string {
  return `{ convoyBusybox }:
(import ${nixString(NIX_LIB_DIR)}).bootstrap.runBusybox {
  name = ${nixString(name)};
  busybox = convoyBusybox;
  script = ${nixString(script)};
}`;
}

/** Processes whose command line contains `marker` (e.g. a build's nonce), this one excluded. */
export async function processesMentioning(marker: string): Promise<Array<{ pid: number; cmdline: string }>> {
  const found: Array<{ pid: number; cmdline: string }> = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(marker)) found.push({ pid: Number(name), cmdline: cmdline.replace(/\0/g, ' ').trim() });
  }
  return found;
}

/**
 * A repository's default.nix for an HTTP app: busybox httpd serving `content` on port 8080 (and
 * "ok" at /healthz), started by the `bin/convoy-start` that Convoy runs. `extraScript` runs first.
 */
export function httpAppExpression(content: string, extraScript = ''): string {
  return `{ convoyBusybox }:
(import ${nixString(NIX_LIB_DIR)}).bootstrap.runBusybox {
  name = "repo-app";
  busybox = convoyBusybox;
  env = { content = ${nixString(content)}; };
  script = ''
    ${extraScript}
    mkdir -p $out/bin $out/www
    printf '%s' "$content" > $out/www/index.html
    printf 'ok' > $out/www/healthz
    printf '#!%s sh\\nexec %s httpd -f -v -p 8080 -h %s\\n' "$busybox/busybox" "$busybox/busybox" "$out/www" > $out/bin/convoy-start
    chmod 0555 $out/bin/convoy-start
  '';
}
`;
}
