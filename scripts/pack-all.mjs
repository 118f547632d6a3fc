#!/usr/bin/env node
// npm run pack:all: builds the addon and the TypeScript, assembles the platform package
// @embedding-recycler/<platform>-<arch> (the addon and every shared library a bare
// machine lacks, found through the addon's RPATH $ORIGIN) and the main package (its
// package.json naming the platform package as an optional dependency), and writes both
// tarballs to dist/. Prints what each holds, its size and the platform package's
// glibc / libstdc++ floors (measured with objdump -T over every binary it ships).
//   node scripts/pack-all.mjs [--no-build] [--out dist] [--cuda]
// --cuda also assembles @embedding-recycler/<platform>-<arch>-cuda (the addon, the GPU backend
// and cuBLAS; not an optional dependency of the main package: installed by hand on GPU machines).
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { fileURLToPath } from 'url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const out = path.resolve(root, args.includes('--out') ? args[args.indexOf('--out') + 1] : 'dist');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const platform = `${process.platform}-${process.arch}`;
const platformName = `@embedding-recycler/${platform}`;

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (exit ${r.status ?? r.signal})`);
}
const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;

if (process.platform !== 'linux') throw new Error(`pack:all assembles Linux platform packages; this is ${process.platform}`);
if (!args.includes('--no-build')) {
  run('npm', ['run', 'build:native']);
  run('npm', ['run', 'build:ts']);
}
const addon = path.join(root, 'build', 'Release', 'embedding_recycler.node');
if (!fs.existsSync(addon)) throw new Error(`${addon} is missing: run npm run build:native`);

fs.rmSync(out, { recursive: true, force: true });
const stage = path.join(out, 'stage');
fs.mkdirSync(stage, { recursive: true });

// ---------------------------------------------------------------- platform package
// Libraries every glibc system has (the C library, the math library, the loader) and
// the C++ runtime Node itself links against stay the system's; everything else the
// addon needs, directly or through oneDNN, is shipped under its SONAME.
const SYSTEM = /^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux-x86-64\.so\.2|libstdc\+\+\.so\.6|libgcc_s\.so\.1)$/;
function needed(file) {
  const d = execFileSync('readelf', ['-d', file], { encoding: 'utf8' });
  return [...d.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}
function resolveLib(name, from) {
  const l = execFileSync('ldd', [from], { encoding: 'utf8' });
  const m = l.match(new RegExp(`^\\s*${name.replace(/[.+]/g, '\\$&')} => (\\S+)`, 'm'));
  if (!m || m[1] === 'not') throw new Error(`${name} (needed by ${path.basename(from)}) is not found on this machine`);
  return fs.realpathSync(m[1]);
}
/**
 * Assembles one platform package in stage/<dirName>: `roots` (files copied as they are) and
 * every shared library they need that a bare machine lacks, found through their RPATH
 * ($ORIGIN, or where the build found them), shipped under its SONAME; platform.json with the
 * glibc / libstdc++ floors measured over every shipped binary.
 */
function assemblePlatform(name, dirName, roots, extra = {}) {
  const pdir = path.join(stage, dirName);
  fs.mkdirSync(pdir);
  for (const f of roots) fs.copyFileSync(f, path.join(pdir, path.basename(f)));
  const bundled = new Map();
  const queue = [...roots];
  while (queue.length) {
    const file = queue.shift();
    for (const lib of needed(file)) {
      if (SYSTEM.test(lib) || bundled.has(lib)) continue;
      const src = resolveLib(lib, file);
      bundled.set(lib, src);
      fs.copyFileSync(src, path.join(pdir, lib));
      queue.push(src);
    }
  }
  // the floors: the newest symbol version any shipped binary asks of glibc and libstdc++
  const shipped = [...roots.map((f) => path.basename(f)), ...bundled.keys()];
  const floors = { GLIBC: '0', GLIBCXX: '0', CXXABI: '0' };
  const newer = (a, b) => {
    const x = a.split('.').map(Number), y = b.split('.').map(Number);
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
    return false;
  };
  for (const f of shipped) {
    const t = execFileSync('objdump', ['-T', path.join(pdir, f)], { encoding: 'utf8', maxBuffer: 256 << 20 });
    for (const m of t.matchAll(/\b(GLIBC|GLIBCXX|CXXABI)_(\d+(?:\.\d+)*)\b/g)) if (newer(m[2], floors[m[1]])) floors[m[1]] = m[2];
  }
  const platformJson = {
    name,
    version: pkg.version,
    // built on
    builtWith: { node: process.version, napi: pkg.binary?.napi_versions ?? [8] },
    requires: { glibc: floors.GLIBC, glibcxx: floors.GLIBCXX, cxxabi: floors.CXXABI, ...(extra.requires ?? {}) },
    files: shipped,
    bundled: Object.fromEntries([...bundled].map(([k, v]) => [k, v])),
  };
  fs.writeFileSync(path.join(pdir, 'platform.json'), JSON.stringify(platformJson, null, 2) + '\n');
  fs.writeFileSync(path.join(pdir, 'package.json'), JSON.stringify({
    name,
    version: pkg.version,
    description: `embedding-recycler's native addon for ${platform}${extra.what ?? ''} (glibc ${floors.GLIBC}+), with the shared libraries it needs`,
    license: pkg.license,
    os: [process.platform],
    cpu: [process.arch],
    libc: ['glibc'],
    files: [...shipped, 'platform.json'],
    main: 'platform.json',
  }, null, 2) + '\n');
  fs.writeFileSync(path.join(pdir, 'README.md'),
    `# ${name}\n\nThe prebuilt native addon of [embedding-recycler](https://www.npmjs.com/package/embedding-recycler) ` +
    `for ${platform}${extra.what ?? ''}, ${extra.how ?? 'installed by it as an optional dependency; nothing to use directly'}.\n\n` +
    `Requires glibc ${floors.GLIBC} or newer and libstdc++ with GLIBCXX_${floors.GLIBCXX}${extra.needs ?? ''}. Ships: ${shipped.join(', ')}.\n`);
  return { pdir, platformJson, floors, bundled };
}

const { pdir, platformJson, floors, bundled } = assemblePlatform(platformName, platform, [addon]);
// --cuda: the -cuda variant as well, which the loader prefers where an NVIDIA driver is
// present: the same addon plus the GPU backend (embedding_recycler_cuda.so) and cuBLAS /
// cuBLASLt beside it (about 0.6 GiB: cuBLASLt's kernels for every GPU generation)
const withCuda = args.includes('--cuda');
let cudaPkg = null;
if (withCuda) {
  const backend = path.join(root, 'build', 'Release', 'embedding_recycler_cuda.so');
  if (!fs.existsSync(backend)) throw new Error(`--cuda: ${backend} is missing: build where nvcc and cuBLAS are found (see README, GPU)`);
  cudaPkg = assemblePlatform(`${platformName}-cuda`, `${platform}-cuda`, [addon, backend], {
    what: ' with the CUDA backend',
    how: 'installed by hand next to it (npm install ' + `${platformName}-cuda` + '); the addon loader prefers it where an NVIDIA driver is present',
    needs: ', and for the GPU an NVIDIA driver for CUDA 13 (R580 or newer)',
    requires: { cudaDriver: '13.0' },
  });
}

// ---------------------------------------------------------------- main package
const mdir = path.join(stage, 'main');
fs.mkdirSync(mdir);
for (const f of pkg.files.filter((f) => !f.startsWith('!'))) {
  const src = path.join(root, f.replace(/\/$/, ''));
  if (!fs.existsSync(src)) throw new Error(`${f} (package.json files) is missing`);
  fs.cpSync(src, path.join(mdir, f.replace(/\/$/, '')), { recursive: true, filter: (s) => !/\/native\/tests(\/|$)/.test(s) });
}
for (const f of ['README.md', 'LICENSE']) if (fs.existsSync(path.join(root, f))) fs.copyFileSync(path.join(root, f), path.join(mdir, f));
const published = { ...pkg };
delete published.devDependencies;
delete published.allowScripts;
published.scripts = { install: pkg.scripts.install };
published.optionalDependencies = { ...(pkg.optionalDependencies ?? {}), [platformName]: pkg.version };
fs.writeFileSync(path.join(mdir, 'package.json'), JSON.stringify(published, null, 2) + '\n');

const tarballs = [];
for (const dir of [pdir, ...(cudaPkg ? [cudaPkg.pdir] : []), mdir]) {
  const r = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' }))[0];
  tarballs.push({ name: r.name, file: path.join(out, r.filename), size: r.size, unpackedSize: r.unpackedSize, entries: r.entryCount });
}
fs.rmSync(stage, { recursive: true, force: true });
const summary = { platform, requires: platformJson.requires, bundled: platformJson.bundled, tarballs };
fs.writeFileSync(path.join(out, 'pack.json'), JSON.stringify(summary, null, 2) + '\n');
for (const t of tarballs) console.log(`${t.name}: ${path.relative(root, t.file)}, ${mib(t.size)} (${mib(t.unpackedSize)} unpacked, ${t.entries} files)`);
console.log(`${platformName} requires glibc >= ${floors.GLIBC}, GLIBCXX_${floors.GLIBCXX}, CXXABI_${floors.CXXABI}; bundles ${[...bundled.keys()].join(', ')}`);
