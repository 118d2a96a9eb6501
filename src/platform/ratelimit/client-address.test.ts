import { describe, expect, it } from 'vitest';
import { addressLimitKey, clientAddress } from './client-address.js';

const req = (remoteAddress: string, xff?: string | string[]) => ({ socket: { remoteAddress }, headers: { 'x-forwarded-for': xff } });

describe('clientAddress', () => {
  it('is the peer unless the peer is a trusted proxy', () => {
    expect(clientAddress(req('203.0.113.7', '198.51.100.1'), [])).toBe('203.0.113.7');
    expect(clientAddress(req('203.0.113.7', '198.51.100.1'), ['10.0.0.0/8'])).toBe('203.0.113.7');
    expect(clientAddress(req('::ffff:10.1.2.3', '198.51.100.1'), ['10.0.0.0/8'])).toBe('198.51.100.1');
  });

  it('reads X-Forwarded-For from the right, skipping trusted proxies, and ignores what the client wrote before', () => {
    const trusted = ['10.0.0.0/8', '::1'];
    // The client claims 1.1.1.1; the edge proxy appended the real address, an inner proxy its own.
    expect(clientAddress(req('::1', '1.1.1.1, 198.51.100.9, 10.0.0.5'), trusted)).toBe('198.51.100.9');
    expect(clientAddress(req('10.0.0.1', ['1.1.1.1', '198.51.100.9']), trusted)).toBe('198.51.100.9');
    // Garbage left of a trusted hop: the last trusted hop is all that is known.
    expect(clientAddress(req('10.0.0.1', "x'; DROP, 10.0.0.7"), trusted)).toBe('10.0.0.7');
    expect(clientAddress(req('10.0.0.1'), trusted)).toBe('10.0.0.1');
  });

  it('says unknown without a peer address', () => {
    expect(clientAddress(undefined, [])).toBe('unknown');
    expect(clientAddress({ socket: {}, headers: {} }, [])).toBe('unknown');
  });
});

describe('addressLimitKey', () => {
  it('counts an IPv6 /64 as one client and IPv4 addresses alone', () => {
    expect(addressLimitKey('2001:db8:1:2:aaaa::1')).toBe(addressLimitKey('2001:db8:1:2:ffff:1:2:3'));
    expect(addressLimitKey('2001:db8:1:2::1')).toBe('2001:0db8:0001:0002::/64');
    expect(addressLimitKey('2001:db8::1')).toBe('2001:0db8:0000:0000::/64');
    expect(addressLimitKey('::1')).toBe('0000:0000:0000:0000::/64');
    expect(addressLimitKey('2001:db8:1:3::1')).not.toBe(addressLimitKey('2001:db8:1:2::1'));
    expect(addressLimitKey('198.51.100.9')).toBe('198.51.100.9');
  });
});
