import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts', 'worker-agent/**/*.test.ts'],
    // Most suites wait on Docker, Nix and the network rather than the CPU, so files run in parallel
    // even on two cores; every file makes its own database, Redis prefix and Swarm objects.
    pool: 'forks',
    maxWorkers: 4,
    fileParallelism: true,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default'],
  },
});
