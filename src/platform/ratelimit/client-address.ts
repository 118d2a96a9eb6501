// Who a request came from, for per-address limits. X-Forwarded-For is anyone's to write, so it is read
// only when the peer is a proxy the operator listed (CONVOY_TRUSTED_PROXIES), and then from the right:
// each trusted proxy appends the address it received the request from.
import { BlockList, isIP } from 'node:net';

export type RequestLike = { socket?: { remoteAddress?: string }; headers: Record<string, string | string[] | undefined> };

const UNKNOWN = 'unknown';
const lists = new Map<string, BlockList>();

/** Entries are addresses or CIDR ranges (checked by the config). */
function trustedList(entries: readonly string[]): BlockList {
  const id = entries.join(',');
  let list = lists.get(id);
  if (!list) {
    list = new BlockList();
    for (const entry of entries) {
      const [address, prefix] = entry.split('/');
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (prefix === undefined) list.addAddress(address, family);
      else list.addSubnet(address, Number(prefix), family);
    }
    lists.set(id, list);
  }
  return list;
}

function normalize(address: string | undefined): string | null {
  if (!address) return null;
  const plain = address.trim().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  return isIP(plain) ? plain : null;
}

function isTrusted(list: BlockList, address: string): boolean {
  return list.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** Whether the socket's peer is a proxy the operator listed (whose forwarded headers may be believed). */
export function isTrustedProxy(peerAddress: string | undefined, trustedProxies: readonly string[]): boolean {
  const peer = normalize(peerAddress);
  return !!peer && trustedProxies.length > 0 && isTrusted(trustedList(trustedProxies), peer);
}

export function clientAddress(req: RequestLike | undefined, trustedProxies: readonly string[]): string {
  const peer = normalize(req?.socket?.remoteAddress);
  if (!peer) return UNKNOWN;
  if (trustedProxies.length === 0) return peer;
  const list = trustedList(trustedProxies);
  if (!isTrusted(list, peer)) return peer;
  const header = req!.headers['x-forwarded-for'];
  const hops = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').slice(-32);
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalize(hops[i]);
    // Anything unreadable left of a trusted hop was written by the client: stop at the last one we trust.
    if (!hop) break;
    client = hop;
    if (!isTrusted(list, hop)) break;
  }
  return client;
}

/** An IPv6 client controls at least a /64, so it counts as one address; IPv4 addresses count alone. */
export function addressLimitKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head, tail = ''] = address.toLowerCase().split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = address.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = [...headGroups, ...Array(Math.max(0, 8 - headGroups.length - tailGroups.length)).fill('0'), ...tailGroups];
  return `${groups.slice(0, 4).map((g) => g.padStart(4, '0')).join(':')}::/64`;
}
