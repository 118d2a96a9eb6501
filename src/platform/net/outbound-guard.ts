// The one guard for every outbound connection Convoy makes on a tenant's behalf (Git clones, and later
// webhooks, notifications, provider APIs). A tenant names a host; Convoy must not become their way into
// the node's loopback, the cluster's private network or the cloud's metadata service.
//
// Two checks, both returning typed results and never throwing on hostile input:
// - checkHostLiteral(host): at validation time, without DNS. Refuses internal names (localhost, names
//   without a dot, metadata.google.internal, Convoy's own hosts) and non-public IP literals, written
//   in any form a resolver accepts (2130706433, 0x7f.1, 0177.0.0.1, [::ffff:127.0.0.1]).
// - resolveAndCheck(host): at connect time. Resolves the name and refuses it when ANY address is not
//   public; the vetted addresses are returned so the caller connects to exactly those (DNS rebinding
//   cannot swap them between the check and the connect).
// An operator's allowlist (CONVOY_OUTBOUND_ALLOWED_HOSTS: host names and CIDRs) lets chosen internal
// hosts through, e.g. a company Git server on 10.0.0.0/8.
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

export interface OutboundPolicy {
  /** Host names (exact, case-insensitive) and IP addresses or CIDRs allowed even when internal. */
  allowedHosts?: readonly string[];
  /** Convoy's own hosts (BASE_DOMAIN, the public URL's, the database's, Redis'): never a tenant's target. */
  platformHosts?: readonly string[];
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** How a name becomes addresses; dns.lookup by default, a fake in tests (there is no DNS here). */
export type HostResolver = (host: string) => Promise<ResolvedAddress[]>;

export type HostCheck = { ok: true; host: string; ip: ResolvedAddress | null } | { ok: false; reason: string };
export type ResolvedCheck = { ok: true; host: string; addresses: ResolvedAddress[] } | { ok: false; reason: string };

export interface HostLiteralOptions {
  /** Refuse every IP literal, public ones too (Git URLs must name a host). Allowlisted addresses pass. */
  refuseIpLiterals?: boolean;
}

export interface ResolveOptions {
  resolve?: HostResolver;
  /** A resolver that does not answer in this time counts as a failure. Default 10 s. */
  timeoutMs?: number;
}

// Non-public ranges, most specific first: the first match names the address in messages.
const IPV4_RANGES: Array<[label: string, cidrs: string[]]> = [
  ['the cloud metadata address', ['169.254.169.254/32', '169.254.170.2/32']],
  ['a "this network" address', ['0.0.0.0/8']],
  ['a loopback address', ['127.0.0.0/8']],
  ['a private address', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']],
  ['a carrier-grade NAT address', ['100.64.0.0/10']],
  ['a link-local address', ['169.254.0.0/16']],
  ['an IETF protocol address', ['192.0.0.0/24']],
  ['a documentation address', ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24']],
  ['a 6to4 relay address', ['192.88.99.0/24']],
  ['a benchmarking address', ['198.18.0.0/15']],
  ['a multicast address', ['224.0.0.0/4']],
  ['the broadcast address', ['255.255.255.255/32']],
  ['a reserved address', ['240.0.0.0/4']],
];

const IPV6_RANGES: Array<[label: string, cidrs: string[]]> = [
  ['the cloud metadata address', ['fd00:ec2::254/128']],
  ['the unspecified address', ['::/128']],
  ['a loopback address', ['::1/128']],
  ['a private (unique local) address', ['fc00::/7']],
  ['a link-local address', ['fe80::/10']],
  ['a site-local address', ['fec0::/10']],
  ['a multicast address', ['ff00::/8']],
  ['a documentation address', ['2001:db8::/32', '3fff::/20']],
  ['a discard-only address', ['100::/64']],
  ['a local-use NAT64 address', ['64:ff9b:1::/48']],
  ['an IETF protocol address', ['2001::/23']],
];

const GLOBAL_UNICAST_V6 = blockListOf([['2000::/3']], 'ipv6');
const V4_BLOCKS = IPV4_RANGES.map(([label, cidrs]) => ({ label, list: blockListOf([cidrs], 'ipv4') }));
const V6_BLOCKS = IPV6_RANGES.map(([label, cidrs]) => ({ label, list: blockListOf([cidrs], 'ipv6') }));

// Cloud metadata services' names (AWS's and Azure's are addresses, refused as such).
const INTERNAL_NAMES = new Set(['metadata.google.internal', 'metadata.goog']);
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

function blockListOf(groups: string[][], type: 'ipv4' | 'ipv6'): BlockList {
  const list = new BlockList();
  for (const cidr of groups.flat()) {
    const [network, prefix] = cidr.split('/');
    list.addSubnet(network, Number(prefix), type);
  }
  return list;
}

/**
 * What kind of address this is: null for a public one, else a label such as "a private address".
 * IPv6 forms that carry an IPv4 address (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4, the old
 * IPv4-compatible ::a.b.c.d) are judged by the IPv4 address inside.
 */
export function classifyAddress(address: string): string | null {
  const ip = parseIpAddress(address);
  if (!ip) return 'not an IP address';
  if (ip.family === 4) return V4_BLOCKS.find((b) => b.list.check(ip.address, 'ipv4'))?.label ?? null;
  const embedded = embeddedIPv4(ip.bytes);
  if (embedded) return classifyAddress(embedded);
  const block = V6_BLOCKS.find((b) => b.list.check(ip.address, 'ipv6'));
  if (block) return block.label;
  return GLOBAL_UNICAST_V6.check(ip.address, 'ipv6') ? null : 'a reserved address';
}

export function isPublicAddress(address: string): boolean {
  return classifyAddress(address) === null;
}

/** Validation time: the host as written in a URL, with no DNS. */
export function checkHostLiteral(host: string, policy: OutboundPolicy = {}, options: HostLiteralOptions = {}): HostCheck {
  try {
    return checkHost(host, compile(policy), options);
  } catch {
    return { ok: false, reason: 'the host is not a valid host name' };
  }
}

function checkHost(rawHost: string, policy: CompiledPolicy, options: HostLiteralOptions): HostCheck {
  const host = normalizeHost(rawHost);
  if (host === null) return { ok: false, reason: `${describe(rawHost)} is not a valid host name` };
  const ip = parseHostAddress(host);
  if (ip === 'invalid') return { ok: false, reason: `${describe(rawHost)} is not a valid host name or IP address` };
  if (ip) {
    // Loose IPv4 forms (2130706433, 0x7f.1) are shown with the address they stand for.
    const shown = ip.family === 6 || ip.address === host ? host : `${host} (${ip.address})`;
    if (policy.allowsAddress(ip.address)) return { ok: true, host, ip: { address: ip.address, family: ip.family } };
    if (options.refuseIpLiterals) return { ok: false, reason: `${shown} is an IP address: use a host name` };
    const problem = addressProblem(ip.address, policy);
    if (problem) return { ok: false, reason: `${shown} is ${problem}` };
    return { ok: true, host, ip: { address: ip.address, family: ip.family } };
  }
  if (!HOST_NAME.test(host)) return { ok: false, reason: `${describe(rawHost)} is not a valid host name` };
  if (policy.allowsName(host)) return { ok: true, host, ip: null };
  if (host === 'localhost' || host.endsWith('.localhost')) return { ok: false, reason: `${host} is a local host name` };
  if (INTERNAL_NAMES.has(host)) return { ok: false, reason: `${host} is an internal host name` };
  if (!host.includes('.')) return { ok: false, reason: `${host} is not a fully qualified host name (it has no dot)` };
  if (policy.platformNames.has(host)) return { ok: false, reason: `${host} is one of this installation's own hosts` };
  return { ok: true, host, ip: null };
}

/**
 * Connect time: resolves the host and refuses it when any of its addresses is not public (unless
 * allowlisted). On success, connect to the returned addresses only.
 */
export async function resolveAndCheck(host: string, policy: OutboundPolicy = {}, options: ResolveOptions = {}): Promise<ResolvedCheck> {
  try {
    const compiled = compile(policy);
    const literal = checkHost(host, compiled, {});
    if (!literal.ok) return literal;
    if (literal.ip) return { ok: true, host: literal.host, addresses: [literal.ip] };
    const name = literal.host;
    const resolved = await withTimeout((options.resolve ?? systemResolver)(name), options.timeoutMs ?? 10_000);
    if (!resolved.ok) return { ok: false, reason: `${name} could not be resolved${resolved.timedOut ? ' (DNS timed out)' : ''}` };
    const addresses: ResolvedAddress[] = [];
    for (const entry of resolved.value) {
      const ip = parseIpAddress(entry?.address);
      if (!ip) return { ok: false, reason: `${name} could not be resolved` };
      addresses.push({ address: ip.address, family: ip.family });
    }
    if (addresses.length === 0) return { ok: false, reason: `${name} could not be resolved` };
    // An allowlisted name may point anywhere: the operator vouched for it.
    if (compiled.allowsName(name)) return { ok: true, host: name, addresses };
    for (const { address } of addresses) {
      if (compiled.allowsAddress(address)) continue;
      const problem = addressProblem(address, compiled);
      if (problem) return { ok: false, reason: `${name} resolves to ${problem} ${address}` };
    }
    return { ok: true, host: name, addresses };
  } catch {
    return { ok: false, reason: 'the host could not be resolved' };
  }
}

const systemResolver: HostResolver = async (host) => {
  const answers = await lookup(host, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<{ ok: true; value: T } | { ok: false; timedOut: boolean }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<{ ok: false; timedOut: boolean }>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, timedOut: true }), ms);
  });
  try {
    return await Promise.race([promise.then((value) => ({ ok: true as const, value }), () => ({ ok: false as const, timedOut: false })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function addressProblem(address: string, policy: CompiledPolicy): string | null {
  if (policy.platformAddresses.has(address)) return "one of this installation's own addresses";
  return classifyAddress(address);
}

/** Is this allowlist entry a host name, an IP address or a CIDR? (config validation) */
export function isValidAllowlistEntry(entry: string): boolean {
  return parseAllowlistEntry(entry) !== null;
}

/** Splits a comma- or space-separated list (the env var form). */
export function parseHostList(text: string | undefined): string[] {
  return (text ?? '').split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

type AllowlistEntry = { kind: 'name'; name: string } | { kind: 'subnet'; network: string; prefix: number; family: 4 | 6 };

function parseAllowlistEntry(entry: string): AllowlistEntry | null {
  const [address, prefixText, ...rest] = entry.trim().split('/');
  if (rest.length > 0 || !address) return null;
  const ip = parseIpAddress(address.replace(/^\[(.*)\]$/, '$1'));
  if (ip) {
    const max = ip.family === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? max : /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!(prefix >= 0 && prefix <= max)) return null;
    return { kind: 'subnet', network: ip.address, prefix, family: ip.family };
  }
  if (prefixText !== undefined) return null;
  const name = normalizeHost(address);
  return name && HOST_NAME.test(name) ? { kind: 'name', name } : null;
}

interface CompiledPolicy {
  allowsName(host: string): boolean;
  allowsAddress(address: string): boolean;
  platformNames: Set<string>;
  platformAddresses: Set<string>;
}

// Policies come from configuration and are few: compile each once.
const compiled = new WeakMap<OutboundPolicy, CompiledPolicy>();

function compile(policy: OutboundPolicy): CompiledPolicy {
  const cached = compiled.get(policy);
  if (cached) return cached;
  const names = new Set<string>();
  const allowed = new BlockList();
  for (const entry of policy.allowedHosts ?? []) {
    const parsed = parseAllowlistEntry(entry);
    if (parsed?.kind === 'name') names.add(parsed.name);
    if (parsed?.kind === 'subnet') allowed.addSubnet(parsed.network, parsed.prefix, parsed.family === 4 ? 'ipv4' : 'ipv6');
  }
  const platformNames = new Set<string>();
  const platformAddresses = new Set<string>();
  for (const entry of policy.platformHosts ?? []) {
    const host = normalizeHost(entry);
    if (!host) continue;
    const ip = parseHostAddress(host);
    if (ip && ip !== 'invalid') platformAddresses.add(ip.address);
    else platformNames.add(host);
  }
  const result: CompiledPolicy = {
    allowsName: (host) => names.has(host),
    allowsAddress: (address) => {
      const ip = parseIpAddress(address);
      if (!ip) return false;
      if (allowed.check(ip.address, ip.family === 4 ? 'ipv4' : 'ipv6')) return true;
      // "127.0.0.1" in the allowlist also covers ::ffff:127.0.0.1.
      const embedded = ip.family === 6 ? embeddedIPv4(ip.bytes) : null;
      return embedded !== null && allowed.check(embedded, 'ipv4');
    },
    platformNames,
    platformAddresses,
  };
  compiled.set(policy, result);
  return result;
}

/** Lower case, without one trailing dot, IPv6 brackets or a zone id; null when not a plausible host. */
function normalizeHost(raw: unknown): string | null {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 300) return null;
  let host = raw.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.includes(':')) {
    // An IPv6 literal; a zone id (fe80::1%eth0) does not change what the address is.
    host = host.replace(/%.*$/, '');
    return isIP(host) === 6 ? host : null;
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0 || host.includes('..') || host.startsWith('.')) return null;
  return host;
}

type ParsedIp = { family: 4; address: string; bytes: number[] } | { family: 6; address: string; bytes: number[] };

/**
 * The host as an IP address, reading IPv4 the way resolvers and curl do (inet_aton): 1 to 4 parts,
 * each decimal, octal (leading 0) or hex (0x). A host whose last label is numeric is an address or
 * invalid, never a name (no top-level domain is numeric).
 */
function parseHostAddress(host: string): ParsedIp | 'invalid' | null {
  if (host.includes(':')) return parseIpAddress(host) ?? 'invalid';
  const parts = host.split('.');
  if (!/^(0x[0-9a-f]*|[0-9]+)$/.test(parts[parts.length - 1])) return null;
  if (parts.length > 4) return 'invalid';
  const numbers: number[] = [];
  for (const part of parts) {
    let value: number;
    if (/^0x[0-9a-f]*$/.test(part)) value = part.length === 2 ? 0 : Number.parseInt(part.slice(2), 16);
    else if (/^0[0-7]+$/.test(part)) value = Number.parseInt(part.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(part)) value = Number(part);
    else return 'invalid';
    if (!Number.isSafeInteger(value)) return 'invalid';
    numbers.push(value);
  }
  const last = numbers.pop()!;
  if (numbers.some((n) => n > 255) || last >= 256 ** (4 - numbers.length)) return 'invalid';
  let value = last;
  numbers.forEach((n, i) => {
    value += n * 256 ** (3 - i);
  });
  const bytes = [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
  return { family: 4, address: bytes.join('.'), bytes };
}

/** A strict IPv4 dotted quad or IPv6 address (as DNS answers give them), canonicalised. */
function parseIpAddress(text: unknown): ParsedIp | null {
  if (typeof text !== 'string') return null;
  const address = text.toLowerCase().replace(/%.*$/, '');
  const family = isIP(address);
  if (family === 4) {
    const bytes = address.split('.').map(Number);
    return { family: 4, address: bytes.join('.'), bytes };
  }
  if (family !== 6) return null;
  const bytes = ipv6Bytes(address);
  return bytes ? { family: 6, address: formatIPv6(bytes), bytes } : null;
}

function ipv6Bytes(address: string): number[] | null {
  let text = address;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    tail.push(...dotted[1].split('.').map(Number));
    text = `${text.slice(0, dotted.index)}0:0`;
  }
  const [head, rest] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const restGroups = rest === undefined ? [] : rest ? rest.split(':') : [];
  const missing = 8 - headGroups.length - restGroups.length;
  if (rest === undefined ? missing !== 0 : missing < 0) return null;
  const groups = [...headGroups, ...Array<string>(rest === undefined ? 0 : missing).fill('0'), ...restGroups].map((g) => Number.parseInt(g, 16));
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) return null;
  const bytes = groups.flatMap((g) => [g >> 8, g & 255]);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

function formatIPv6(bytes: number[]): string {
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] << 8) | bytes[2 * i + 1]).toString(16));
  // RFC 5952: the longest run of two or more zero groups becomes "::".
  let best = { start: -1, length: 1 };
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j;
  }
  if (best.start < 0) return groups.join(':');
  return `${groups.slice(0, best.start).join(':')}::${groups.slice(best.start + best.length).join(':')}`;
}

/** The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one. */
function embeddedIPv4(bytes: number[]): string | null {
  const zero = (from: number, to: number) => bytes.slice(from, to).every((b) => b === 0);
  const v4 = (offset: number) => bytes.slice(offset, offset + 4).join('.');
  if (zero(0, 10) && bytes[10] === 0xff && bytes[11] === 0xff) return v4(12); // ::ffff:a.b.c.d (mapped)
  if (zero(0, 8) && bytes[8] === 0xff && bytes[9] === 0xff && zero(10, 12)) return v4(12); // ::ffff:0:a.b.c.d (SIIT)
  if (bytes[0] === 0x00 && bytes[1] === 0x64 && bytes[2] === 0xff && bytes[3] === 0x9b && zero(4, 12)) return v4(12); // 64:ff9b::/96 (NAT64)
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return v4(2); // 2002::/16 (6to4)
  if (zero(0, 12) && !zero(12, 15)) return v4(12); // ::a.b.c.d (IPv4-compatible, deprecated)
  return null;
}

/** A hostile host string, shortened and stripped of control characters for a message. */
function describe(raw: unknown): string {
  const text = typeof raw === 'string' ? raw : String(raw);
  const clean = text.replace(/[^\x21-\x7e]/g, '?');
  return JSON.stringify(clean.length > 80 ? `${clean.slice(0, 80)}...` : clean);
}
