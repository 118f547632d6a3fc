// The addon loader: the order it tries (ER_ADDON_PATH alone when set), the glibc floor
// of a platform package checked before the dynamic linker is asked, and linker errors
// made readable. Load attempts run in child processes: a process loads one addon.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { explainLoadError, platformMismatch, platformPackages, runtimeGlibc } from '../../src/native/binding';
import { ROOT } from '../helpers/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-loader-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function load(env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const code = "try { const i = require('./lib').cpuInfo(); console.log('loaded ' + i.addon); } catch (e) { console.log(e.message); process.exit(3); }";
  return spawnSync(process.execPath, ['-e', code], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
}

describe('the addon loader', () => {
  it('loads the local build when nothing else is asked, and says which file it loaded', () => {
    const r = load({ ER_ADDON_PATH: '' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`loaded ${path.join(ROOT, 'build', 'Release', 'embedding_recycler.node')}`);
  });

  it('ER_ADDON_PATH is the only attempt when set: a bad file there is an error naming it, not a quiet fallback', () => {
    const bad = path.join(tmp, 'not-an-addon.node');
    fs.writeFileSync(bad, 'this is not an ELF file');
    const r = load({ ER_ADDON_PATH: bad });
    expect(r.status).toBe(3);
    expect(r.stdout).toMatch(/could not load the native addon\. Tried:\n {2}ER_ADDON_PATH: .*not-an-addon\.node: .*(invalid ELF header|too short)/);
    expect(r.stdout).not.toMatch(/local build/);
    expect(r.stdout).toMatch(/--build-from-source/);
    const missing = load({ ER_ADDON_PATH: path.join(tmp, 'missing.node') });
    expect(missing.stdout).toMatch(/ER_ADDON_PATH: .*missing\.node: not found/);
  });

  it('a platform package built for a newer glibc is refused before loading, with both versions named', () => {
    const have = runtimeGlibc();
    expect(have).toMatch(/^2\.\d+$/);
    const dir = path.join(tmp, 'pkg');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'platform.json'), JSON.stringify({ requires: { glibc: '2.99' } }));
    expect(platformMismatch(dir, '@embedding-recycler/linux-x64')).toBe(
      `@embedding-recycler/linux-x64 needs glibc 2.99 or newer and this machine has glibc ${have}; upgrade the system or build from source (npm rebuild embedding-recycler --build-from-source)`,
    );
    fs.writeFileSync(path.join(dir, 'platform.json'), JSON.stringify({ requires: { glibc: '2.17' } }));
    expect(platformMismatch(dir, 'p')).toBe('');
    fs.writeFileSync(path.join(dir, 'platform.json'), '{ not json');
    expect(platformMismatch(dir, 'p')).toMatch(/p\/platform\.json is unreadable/);
  });

  it('dynamic-linker errors say what is missing', () => {
    expect(explainLoadError("/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by x.node)"))
      .toMatch(/this machine's libstdc\+\+ is older than the build needs: it lacks GLIBCXX_3\.4\.32/);
    expect(explainLoadError("libdnnl.so.2: cannot open shared object file: No such file or directory"))
      .toMatch(/libdnnl\.so\.2 is not installed and not bundled beside the addon/);
  });

  it('the platform package names: the CUDA build first only where an NVIDIA driver is present', () => {
    const names = platformPackages();
    expect(names.at(-1)).toBe(`@embedding-recycler/${process.platform}-${process.arch}`);
    expect(names.length === 2).toBe(fs.existsSync('/proc/driver/nvidia/version') && process.env.ER_CUDA !== 'off');
  });
});
