import { defineConfig } from 'vitest/config';

// Native-heavy tests run in forked processes (an addon crash must not take the runner down).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
