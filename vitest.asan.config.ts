import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config';

// scripts/test-asan.sh: the same suite, with test workers that exit normally on SIGTERM
// (test/asan/exit-on-sigterm.ts) and are given time to finish LeakSanitizer's check at
// exit before vitest's SIGKILL (test/asan/global-setup.ts). A Debug + ASan addon runs the
// real-MiniLM end-to-end tests several times slower, hence the longer test timeout.
export default mergeConfig(base, defineConfig({
  test: { testTimeout: 600_000, setupFiles: ['test/asan/exit-on-sigterm.ts'], globalSetup: ['test/asan/global-setup.ts'] },
}));
