// CI's share of the fuzzing (scripts/fuzz.sh): every fuzz target runs a short, fixed
// number of inputs from a fixed seed, and every input that once crashed a target
// (test/fixtures/fuzz-regressions/<target>-*.bin) is replayed through it. The long
// campaigns are `npm run fuzz -- --runs 1000000` (bench/results/fuzz-2026-12-01.md).
// Needs clang-14 + libclang-rt-14-dev and the @jazzer.js/core devDependency, which
// scripts/setup.sh installs.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..', '..');
const REGRESSIONS = path.join(ROOT, 'test', 'fixtures', 'fuzz-regressions');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'er-fuzz-smoke-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

// The fuzzers bring their own sanitizer runtimes: under scripts/test-asan.sh the
// preloaded gcc ASan runtime and its options must not reach them.
function env(): NodeJS.ProcessEnv {
  const e = { ...process.env };
  for (const k of ['LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'ER_ADDON_PATH']) delete e[k];
  return e;
}

function fuzz(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'fuzz.sh'), ...args], { cwd: ROOT, env: env(), encoding: 'utf8', timeout: 900_000 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

const RUNS: Record<string, number> = { segment: 20_000, safetensors: 20_000, manifest: 5_000, tokenizer: 5_000 };

describe('fuzz targets (short fixed runs)', () => {
  for (const [target, runs] of Object.entries(RUNS)) {
    it(`${target}: ${runs} inputs, no crash`, { timeout: 900_000 }, () => {
      const { status, out } = fuzz(['--runs', String(runs), '--seed', '1', '--work', work, target]);
      const line = out.split('\n').find((l) => l.startsWith(`${target} `));
      expect(line, out).toBeDefined();
      const [, execs, , cov, , , crashes] = line!.trim().split(/\s+/);
      if (status !== 0) {
        const log = path.join(work, 'logs', `${target}.log`);
        throw new Error(`${target} failed (exit ${status}):\n${out}\n${fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-4000) : ''}`);
      }
      expect(Number(execs)).toBeGreaterThanOrEqual(runs);
      expect(Number(cov)).toBeGreaterThan(10); // coverage feedback is really there
      expect(crashes).toBe('0');
    });
  }
});

describe('fuzz regressions', () => {
  const files = fs.readdirSync(REGRESSIONS).filter((f) => f.endsWith('.bin')).sort();
  it('has the inputs the fuzzers found', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  for (const f of files) {
    it(`${f} is handled (a library error, no crash)`, { timeout: 600_000 }, () => {
      const { status, out } = fuzz(['--replay', path.join(REGRESSIONS, f)]);
      expect(status, out).toBe(0);
      expect(out).toContain(`ok   ${f.split('-')[0]}`);
    });
  }
});

// Findings whose fix is outside the fuzzing work (test/fixtures/fuzz-regressions/open/README.md):
// each still fails in the way written there; once it is fixed this test fails, and the
// input moves up to fuzz-regressions/ where it must pass.
const OPEN: Record<string, string> = {};

describe.runIf(Object.keys(OPEN).length > 0)('open fuzz findings (fixes belong elsewhere)', () => {
  for (const [f, failure] of Object.entries(OPEN)) {
    it(`${f} still fails with ${failure}`, { timeout: 600_000 }, () => {
      const { status, out } = fuzz(['--replay', path.join(REGRESSIONS, 'open', f)]);
      if (status === 0) throw new Error(`${f} is handled now: move it to test/fixtures/fuzz-regressions/ and drop it from OPEN`);
      expect(out).toContain(failure);
    });
  }
});
