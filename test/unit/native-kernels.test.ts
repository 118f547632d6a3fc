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

/** nvcc is on PATH and the build was not told ER_CUDA=off: the CUDA kernels are then built. */
function cudaBuilt(): boolean {
  if ((process.env.ER_CUDA ?? '').toLowerCase() === 'off') return false;
  return spawnSync('nvcc', ['--version'], { encoding: 'utf8' }).status === 0;
}

describe.skipIf(!cudaBuilt())('CUDA kernels (built where nvcc is found)', () => {
  it('compile and link, and their test runs: every kernel against its CPU reference on a GPU, else SKIP', () => {
    const bin = path.join(ROOT, 'build', 'er_cuda_kernels_test');
    expect(fs.existsSync(bin), `${bin} is built by npm run build:native when nvcc is found`).toBe(true);
    const r = spawnSync(bin, { encoding: 'utf8', timeout: 300_000 });
    const out = `${r.stdout}${r.stderr}`;
    console.log(out.split('\n').filter((l) => /^(SKIP|device|\d+ of)/.test(l)).join('\n'));
    expect(out, out).toMatch(/^SKIP: no CUDA device|\n0 of \d+ checks failed/);
    expect(r.status, out).toBe(0);
  });
});
