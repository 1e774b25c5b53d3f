import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores on the reference machines: keep parallel test files to what they can run.
    maxWorkers: 2,
  },
});
