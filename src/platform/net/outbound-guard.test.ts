// The outbound guard: every way of writing an internal address is refused, public hosts pass, the
// operator's allowlist lets chosen internal hosts through, and DNS answers are checked one by one.
import { describe, expect, it } from 'vitest';
import { checkHostLiteral, classifyAddress, isValidAllowlistEntry, parseHostList, resolveAndCheck, type HostResolver } from './outbound-guard.js';

/** A resolver answering from a table, as DNS would (there is no DNS on the test machines). */
function fakeDns(table: Record<string, string[]>): HostResolver {
  return async (host) => {
    const answers = table[host];
    if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
}

describe('classifyAddress', () => {
  it.each([
    ['127.0.0.1', 'a loopback address'],
    ['127.255.0.9', 'a loopback address'],
    ['0.0.0.0', 'a "this network" address'],
    ['10.0.0.5', 'a private address'],
    ['172.16.0.1', 'a private address'],
    ['172.31.255.255', 'a private address'],
    ['192.168.1.1', 'a private address'],
    ['100.64.0.1', 'a carrier-grade NAT address'],
    ['169.254.169.254', 'the cloud metadata address'],
    ['169.254.170.2', 'the cloud metadata address'],
    ['169.254.1.1', 'a link-local address'],
    ['192.0.0.170', 'an IETF protocol address'],
    ['198.18.0.1', 'a benchmarking address'],
    ['198.19.255.255', 'a benchmarking address'],
    ['224.0.0.251', 'a multicast address'],
    ['240.0.0.1', 'a reserved address'],
    ['255.255.255.255', 'the broadcast address'],
    ['::1', 'a loopback address'],
    ['::', 'the unspecified address'],
    ['::ffff:127.0.0.1', 'a loopback address'],
    ['::ffff:7f00:1', 'a loopback address'],
    ['::ffff:169.254.169.254', 'the cloud metadata address'],
    ['64:ff9b::10.0.0.1', 'a private address'],
    ['64:ff9b::a9fe:a9fe', 'the cloud metadata address'],
    ['64:ff9b:1::1', 'a local-use NAT64 address'],
    ['2002:7f00:1::', 'a loopback address'],
    ['::127.0.0.1', 'a loopback address'],
    ['fd00:ec2::254', 'the cloud metadata address'],
    ['fc00::1', 'a private (unique local) address'],
    ['fd12:3456::1', 'a private (unique local) address'],
    ['fe80::1', 'a link-local address'],
    ['fe80::1%eth0', 'a link-local address'],
    ['ff02::1', 'a multicast address'],
    ['2001:db8::1', 'a documentation address'],
    ['2001::1', 'an IETF protocol address'],
    ['1::1', 'a reserved address'],
  ])('%s is %s', (address, label) => {
    expect(classifyAddress(address)).toBe(label);
  });

  it.each(['1.1.1.1', '140.82.112.3', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e', '64:ff9b::140.82.112.3'])('%s is public', (address) => {
    expect(classifyAddress(address)).toBeNull();
  });
});

describe('checkHostLiteral', () => {
  it.each([
    ['2130706433', '2130706433 (127.0.0.1) is a loopback address'],
    ['0x7f000001', '0x7f000001 (127.0.0.1) is a loopback address'],
    ['0x7f.1', '0x7f.1 (127.0.0.1) is a loopback address'],
    ['0177.0.0.1', '0177.0.0.1 (127.0.0.1) is a loopback address'],
    ['127.1', '127.1 (127.0.0.1) is a loopback address'],
    ['127.0.0.1.', '127.0.0.1 is a loopback address'],
    ['0', '0 (0.0.0.0) is a "this network" address'],
    ['0.0.0.0', '0.0.0.0 is a "this network" address'],
    ['[::ffff:127.0.0.1]', '::ffff:127.0.0.1 is a loopback address'],
    ['[::1]', '::1 is a loopback address'],
    ['::1', '::1 is a loopback address'],
    ['fe80::1%eth0', 'fe80::1 is a link-local address'],
    ['[fe80::1%25eth0]', 'fe80::1 is a link-local address'],
    ['169.254.169.254', '169.254.169.254 is the cloud metadata address'],
    ['0xa9.0xfe.0xa9.0xfe', '0xa9.0xfe.0xa9.0xfe (169.254.169.254) is the cloud metadata address'],
    ['[fd00:ec2::254]', 'fd00:ec2::254 is the cloud metadata address'],
    ['100.64.0.1', '100.64.0.1 is a carrier-grade NAT address'],
    ['10.0.0.5', '10.0.0.5 is a private address'],
    ['localhost', 'localhost is a local host name'],
    ['localhost.', 'localhost is a local host name'],
    ['LOCALHOST', 'localhost is a local host name'],
    ['LocalHost.', 'localhost is a local host name'],
    ['api.localhost', 'api.localhost is a local host name'],
    ['metadata.google.internal', 'metadata.google.internal is an internal host name'],
    ['Metadata.Google.Internal.', 'metadata.google.internal is an internal host name'],
    ['gitlab', 'gitlab is not a fully qualified host name (it has no dot)'],
    ['1.2.3.256', '"1.2.3.256" is not a valid host name or IP address'],
    ['1.2.3.4.5', '"1.2.3.4.5" is not a valid host name or IP address'],
    ['089.1.1.1', '"089.1.1.1" is not a valid host name or IP address'],
    ['example.com..', '"example.com.." is not a valid host name'],
    ['exa mple.com', '"exa?mple.com" is not a valid host name'], // control and space characters are masked
    ['', '"" is not a valid host name'],
    ['[::1', '"[::1" is not a valid host name'],
  ])('refuses %j: %s', (host, reason) => {
    expect(checkHostLiteral(host)).toEqual({ ok: false, reason });
  });

  it('refuses every IP literal when asked, public ones too', () => {
    expect(checkHostLiteral('140.82.112.3', {}, { refuseIpLiterals: true })).toEqual({ ok: false, reason: '140.82.112.3 is an IP address: use a host name' });
    expect(checkHostLiteral('[2606:4700::1111]', {}, { refuseIpLiterals: true })).toEqual({ ok: false, reason: '2606:4700::1111 is an IP address: use a host name' });
    expect(checkHostLiteral('2130706433', {}, { refuseIpLiterals: true })).toEqual({ ok: false, reason: '2130706433 (127.0.0.1) is an IP address: use a host name' });
    expect(checkHostLiteral('140.82.112.3')).toEqual({ ok: true, host: '140.82.112.3', ip: { address: '140.82.112.3', family: 4 } });
  });

  it('accepts public host names, normalised', () => {
    expect(checkHostLiteral('github.com')).toEqual({ ok: true, host: 'github.com', ip: null });
    expect(checkHostLiteral('GitLab.Example.com.')).toEqual({ ok: true, host: 'gitlab.example.com', ip: null });
    // Names that merely contain digits or hex are names, not addresses.
    expect(checkHostLiteral('0x7f.example.com')).toMatchObject({ ok: true });
    expect(checkHostLiteral('deadbeef.io')).toMatchObject({ ok: true });
  });

  it("refuses the platform's own hosts, by name and by address", () => {
    const policy = { platformHosts: ['convoy.example.com', 'api.convoy.example.com', '203.0.114.7'] };
    expect(checkHostLiteral('Convoy.Example.com.', policy)).toEqual({ ok: false, reason: "convoy.example.com is one of this installation's own hosts" });
    expect(checkHostLiteral('api.convoy.example.com', policy)).toMatchObject({ ok: false });
    expect(checkHostLiteral('203.0.114.7', policy)).toEqual({ ok: false, reason: "203.0.114.7 is one of this installation's own addresses" });
    expect(checkHostLiteral('app.example.com', policy)).toMatchObject({ ok: true });
  });

  it('lets allowlisted names and CIDRs through, and nothing more', () => {
    const policy = { allowedHosts: ['gitserver', 'git.corp.internal', '10.20.0.0/16', '127.0.0.1'] };
    expect(checkHostLiteral('gitserver', policy)).toMatchObject({ ok: true, host: 'gitserver' });
    expect(checkHostLiteral('GIT.corp.internal.', policy)).toMatchObject({ ok: true });
    expect(checkHostLiteral('10.20.3.4', policy, { refuseIpLiterals: true })).toMatchObject({ ok: true, ip: { address: '10.20.3.4' } });
    expect(checkHostLiteral('127.0.0.1', policy, { refuseIpLiterals: true })).toMatchObject({ ok: true });
    expect(checkHostLiteral('[::ffff:127.0.0.1]', policy)).toMatchObject({ ok: true });
    expect(checkHostLiteral('127.0.0.2', policy)).toMatchObject({ ok: false });
    expect(checkHostLiteral('10.21.0.1', policy)).toMatchObject({ ok: false });
    expect(checkHostLiteral('other.corp.internal', policy)).toMatchObject({ ok: true }); // a public-looking name: DNS decides
    expect(checkHostLiteral('localhost', policy)).toMatchObject({ ok: false });
  });

  it('never throws on hostile input', () => {
    for (const host of [null, undefined, 42, {}, 'a'.repeat(100_000), '\u0000', '[', ']', '%', '::::', '1..1', '0x', '.', '..']) {
      expect(() => checkHostLiteral(host as string)).not.toThrow();
      expect(checkHostLiteral(host as string).ok).toBe(false);
    }
  });
});

describe('resolveAndCheck', () => {
  const dns = fakeDns({
    'github.com': ['140.82.112.3'],
    'dual.example.com': ['2606:4700::1111', '140.82.112.4'],
    'rebind.example.com': ['140.82.112.5', '10.0.0.5'],
    'metadata.example.com': ['169.254.169.254'],
    'mapped.example.com': ['::ffff:127.0.0.1'],
    'loop.example.com': ['127.0.0.1'],
    'git.corp.example': ['10.20.1.2'],
    'garbage.example.com': ['not-an-address'],
  });

  it('returns the vetted addresses of a public host', async () => {
    expect(await resolveAndCheck('github.com', {}, { resolve: dns })).toEqual({ ok: true, host: 'github.com', addresses: [{ address: '140.82.112.3', family: 4 }] });
    expect(await resolveAndCheck('Dual.Example.com.', {}, { resolve: dns })).toEqual({
      ok: true,
      host: 'dual.example.com',
      addresses: [
        { address: '2606:4700::1111', family: 6 },
        { address: '140.82.112.4', family: 4 },
      ],
    });
  });

  it('refuses a name when any of its addresses is internal', async () => {
    expect(await resolveAndCheck('rebind.example.com', {}, { resolve: dns })).toEqual({ ok: false, reason: 'rebind.example.com resolves to a private address 10.0.0.5' });
    expect(await resolveAndCheck('metadata.example.com', {}, { resolve: dns })).toEqual({ ok: false, reason: 'metadata.example.com resolves to the cloud metadata address 169.254.169.254' });
    expect(await resolveAndCheck('mapped.example.com', {}, { resolve: dns })).toEqual({ ok: false, reason: 'mapped.example.com resolves to a loopback address ::ffff:7f00:1' });
    expect(await resolveAndCheck('loop.example.com', {}, { resolve: dns })).toEqual({ ok: false, reason: 'loop.example.com resolves to a loopback address 127.0.0.1' });
  });

  it('refuses internal names before asking DNS', async () => {
    let asked = 0;
    const counting: HostResolver = async (host) => {
      asked++;
      return dns(host);
    };
    expect(await resolveAndCheck('localhost', {}, { resolve: counting })).toEqual({ ok: false, reason: 'localhost is a local host name' });
    expect(await resolveAndCheck('2130706433', {}, { resolve: counting })).toEqual({ ok: false, reason: '2130706433 (127.0.0.1) is a loopback address' });
    expect(asked).toBe(0);
  });

  it('lets allowlisted names and ranges resolve to internal addresses', async () => {
    expect(await resolveAndCheck('git.corp.example', { allowedHosts: ['git.corp.example'] }, { resolve: dns })).toMatchObject({ ok: true, addresses: [{ address: '10.20.1.2' }] });
    expect(await resolveAndCheck('git.corp.example', { allowedHosts: ['10.20.0.0/16'] }, { resolve: dns })).toMatchObject({ ok: true });
    expect(await resolveAndCheck('git.corp.example', { allowedHosts: ['10.30.0.0/16'] }, { resolve: dns })).toMatchObject({ ok: false });
    // A range covers only its own addresses: the private one still fails the name.
    expect(await resolveAndCheck('rebind.example.com', { allowedHosts: ['140.82.112.0/24'] }, { resolve: dns })).toMatchObject({ ok: false });
  });

  it('answers with a reason when DNS fails, stalls or returns garbage', async () => {
    expect(await resolveAndCheck('nowhere.example.com', {}, { resolve: dns })).toEqual({ ok: false, reason: 'nowhere.example.com could not be resolved' });
    expect(await resolveAndCheck('garbage.example.com', {}, { resolve: dns })).toEqual({ ok: false, reason: 'garbage.example.com could not be resolved' });
    expect(await resolveAndCheck('empty.example.com', {}, { resolve: async () => [] })).toMatchObject({ ok: false });
    const stalled: HostResolver = () => new Promise(() => {});
    const started = Date.now();
    expect(await resolveAndCheck('slow.example.com', {}, { resolve: stalled, timeoutMs: 200 })).toEqual({ ok: false, reason: 'slow.example.com could not be resolved (DNS timed out)' });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('resolves with the system resolver by default', async () => {
    // localhost is in /etc/hosts; allowlisting it shows the lookup ran and what it found.
    const result = await resolveAndCheck('localhost', { allowedHosts: ['localhost'] });
    expect(result.ok).toBe(true);
    expect(result.ok && result.addresses.every((a) => classifyAddress(a.address) === 'a loopback address')).toBe(true);
  });
});

describe('allowlist entries', () => {
  it('splits on commas and spaces and validates each entry', () => {
    expect(parseHostList(' git.corp.example, 10.0.0.0/8  127.0.0.1,,fd00::/8 ')).toEqual(['git.corp.example', '10.0.0.0/8', '127.0.0.1', 'fd00::/8']);
    for (const entry of ['git.corp.example', 'gitserver', '10.0.0.0/8', '127.0.0.1', 'fd00::/8', '[::1]']) expect(isValidAllowlistEntry(entry)).toBe(true);
    for (const entry of ['10.0.0.0/33', '10.0.0.0/', 'fd00::/129', 'a/b', 'exa mple', '*.corp.example', '10.0.0.0/8/8']) expect(isValidAllowlistEntry(entry)).toBe(false);
  });
});
