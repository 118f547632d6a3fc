// The native kernel tests (native/tests/kernels_test.cpp): every SIMD level of every
// kernel against its plain reference, and the oneDNN GEMM wrapper against a naive product.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/fixtures';

describe('native kernels', () => {
  it('every SIMD level matches the reference kernels', () => {
    const bin = path.join(ROOT, 'build', 'er_native_tests');
    expect(fs.existsSync(bin), `${bin} is built by npm install / npm run build:native`).toBe(true);
    const r = spawnSync(bin, { encoding: 'utf8' });
    const out = `${r.stdout}${r.stderr}`;
    expect(out, out).toMatch(/\d+ passed, 0 failed/);
    expect(r.status, out).toBe(0);
  });
});
