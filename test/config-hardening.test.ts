// Configuration that would leave an installation open: weak secret keys, CORS origins, introspection.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, secretKeyWeakness } from '../src/config.js';

const PRODUCTION = { NODE_ENV: 'production', CONVOY_PUBLIC_URL: 'https://convoy.example.com' };

function refusal(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('the configuration was accepted');
}

describe('CONVOY_SECRET_KEY', () => {
  it('refuses guessable keys, explaining the rule without repeating the key', () => {
    for (const key of [
      'a'.repeat(32),
      'ab'.repeat(16),
      'password'.repeat(4),
      '0123456789abcdef'.repeat(4),
      'abcdefghijklmnopqrstuvwxyz012345',
      `${'1234567890'.repeat(2)}${randomBytes(8).toString('hex')}`,
      'aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbcccc',
    ]) {
      const message = refusal({ ...PRODUCTION, CONVOY_SECRET_KEY: key });
      expect(message, key).toContain('CONVOY_SECRET_KEY is too weak');
      expect(message).toContain('openssl rand -hex 32');
      expect(message).not.toContain(key);
    }
    expect(refusal({ ...PRODUCTION, CONVOY_SECRET_KEY: randomBytes(8).toString('hex') })).toContain('fewer than 32');
  });

  it('accepts random keys as the docs and the test helpers make them', () => {
    for (let i = 0; i < 2000; i++) {
      for (const key of [randomBytes(32).toString('hex'), randomBytes(16).toString('hex'), randomBytes(32).toString('base64')]) {
        expect(secretKeyWeakness(key), key).toBeNull();
      }
    }
    expect(loadConfig({ ...PRODUCTION, CONVOY_SECRET_KEY: randomBytes(32).toString('hex') }).secretKey).toHaveLength(64);
  });
});

describe('HTTP settings', () => {
  const key = { CONVOY_SECRET_KEY: randomBytes(32).toString('hex') };

  it('allows no CORS origin in production and localhost elsewhere, unless listed', () => {
    expect(loadConfig({ ...PRODUCTION, ...key }).http.corsOrigins).toEqual([]);
    expect(loadConfig({ NODE_ENV: 'development' }).http.corsOrigins).toBe('localhost');
    expect(loadConfig({ ...PRODUCTION, ...key, CONVOY_CORS_ORIGINS: 'https://a.example.com, http://b.example.com:8080' }).http.corsOrigins).toEqual(['https://a.example.com', 'http://b.example.com:8080']);
    for (const bad of ['null', '*', 'https://a.example.com/', 'https://a.example.com/path', 'a.example.com', 'file://x']) {
      expect(refusal({ ...PRODUCTION, ...key, CONVOY_CORS_ORIGINS: bad }), bad).toContain('CONVOY_CORS_ORIGINS');
    }
  });

  it('limits introspection to authenticated callers in production by default', () => {
    expect(loadConfig({ ...PRODUCTION, ...key }).http.introspection).toBe('authenticated');
    expect(loadConfig({ NODE_ENV: 'development' }).http.introspection).toBe('anonymous');
    expect(loadConfig({ ...PRODUCTION, ...key, CONVOY_INTROSPECTION: 'off' }).http.introspection).toBe('off');
    expect(refusal({ ...PRODUCTION, ...key, CONVOY_INTROSPECTION: 'everyone' })).toContain('CONVOY_INTROSPECTION');
  });
});
