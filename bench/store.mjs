#!/usr/bin/env node
// Activation-store benchmark (issue 3, "Performance"): read throughput against the plain fs read
// ceiling (warm and cold page cache), fp16 -> fp32 decode against memcpy, prefetch on vs off with the
// real suffix layers as the consumer, and encode throughput / bytes per token.
// See bench/README.md ("Store benchmark"). Usage: node bench/store.mjs [--quick] [options]
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';

import { median } from './lib/stats.mjs';
import { cpuDescription, nproc, loadAverage, gitInfo, localDate, cpuSnapshot, cpuContention } from './lib/system.mjs';
import { makeDocs, DEFAULT_DATA_DIR } from './lib/corpus.mjs';
import { evict, resident, warm } from './lib/pagecache.mjs';
import { renderStoreMarkdown } from './lib/store-report.mjs';
import { checkTree, DirtyTreeError, writeResults } from './lib/cli.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const require = createRequire(import.meta.url);
const WORKER = join(HERE, 'lib', 'store-worker.mjs');

const USAGE = `usage: node bench/store.mjs [options]

  --quick               smoke test: a ~100-record store, 1 warm pass, prefetch depths 0 and 2 on fp16 only,
                        small decode sizes; results to bench/.work/results (not bench/results); < 30 s
  --docs N              documents in the benchmark store (default 850: ~3000 records of <= 128 tokens,
                        ~270 MB fp16 / ~540 MB fp32); built once into bench/.work/store/ and reused
  --model DIR           the encoder (default models/all-MiniLM-L6-v2)
  --layer K             stored layer (default 3)
  --max-length N        window length in tokens (default 128)
  --stride N            tokens shared by consecutive windows (default 32)
  --threads N           encoder threads (default: nproc)
  --batch-size N        rows per batch, reading and encoding (default 32)
  --reps N              timed warm passes per read configuration, after one untimed (default 5)
  --consume-records N   records the prefetch consumer runs through per configuration (default 1536)
  --depths a,b          prefetch depths to compare, 0 = off (default 0,1,2,4)
  --encode-docs N       documents for the encode-throughput section (default 96)
  --sections a,b        subset of: decode, read, prefetch, encode (default: all)
  --data DIR            sentences from this folder (default ${DEFAULT_DATA_DIR}); synthetic text if missing
  --synthetic           synthetic text even where the data folder exists
  --rebuild             re-encode the cached benchmark stores
  --out DIR             where to write the .md and .json (default bench/results)
  --no-write            print only
  --allow-dirty         write results from a tree with uncommitted changes, marked DIRTY TREE
                        (otherwise results outside bench/.work are written only from a clean commit)
  -h, --help`;

class UsageError extends Error {}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        docs: { type: 'string' },
        model: { type: 'string', default: join(ROOT, 'models', 'all-MiniLM-L6-v2') },
        layer: { type: 'string', default: '3' },
        'max-length': { type: 'string', default: '128' },
        stride: { type: 'string', default: '32' },
        threads: { type: 'string' },
        'batch-size': { type: 'string', default: '32' },
        reps: { type: 'string' },
        'consume-records': { type: 'string' },
        depths: { type: 'string' },
        'encode-docs': { type: 'string' },
        sections: { type: 'string' },
        data: { type: 'string', default: DEFAULT_DATA_DIR },
        synthetic: { type: 'boolean', default: false },
        rebuild: { type: 'boolean', default: false },
        out: { type: 'string' },
        'no-write': { type: 'boolean', default: false },
        'allow-dirty': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(e.message);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name, v, lo) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo) throw new UsageError(`--${name} must be an integer >= ${lo}, got ${v}`);
    return n;
  };
  const q = values.quick;
  const allSections = ['decode', 'read', 'prefetch', 'encode'];
  let sections = allSections;
  if (values.sections) {
    const xs = values.sections.split(',').map((s) => s.trim()).filter(Boolean);
    for (const x of xs) if (!allSections.includes(x)) throw new UsageError(`unknown section ${x}; choose from ${allSections.join(', ')}`);
    sections = allSections.filter((s) => xs.includes(s));
  }
  const depths = (values.depths ?? (q ? '0,2' : '0,1,2,4')).split(',').map((d) => int('depths', d.trim(), 0));
  return {
    quick: q,
    docs: values.docs !== undefined ? int('docs', values.docs, 1) : q ? 28 : 850,
    model: resolve(values.model),
    layer: int('layer', values.layer, 0),
    maxLength: int('max-length', values['max-length'], 8),
    stride: int('stride', values.stride, 0),
    threads: values.threads !== undefined ? int('threads', values.threads, 1) : nproc(),
    batchSize: int('batch-size', values['batch-size'], 1),
    reps: values.reps !== undefined ? int('reps', values.reps, 1) : q ? 1 : 5,
    consumeRecords: values['consume-records'] !== undefined ? int('consume-records', values['consume-records'], 1) : q ? 64 : 1536,
    depths,
    consumeDtypes: q ? ['fp16'] : ['fp16', 'fp32'],
    encodeDocs: values['encode-docs'] !== undefined ? int('encode-docs', values['encode-docs'], 1) : q ? 8 : 96,
    sections,
    dataDir: resolve(values.data),
    synthetic: values.synthetic,
    rebuild: values.rebuild,
    decodeTargetMs: q ? 15 : 150,
    decodeTrials: q ? 2 : 5,
    outDir: values.out ? resolve(values.out) : join(ROOT, 'bench', q ? '.work/results' : 'results'),
    write: !values['no-write'],
    allowDirty: values['allow-dirty'],
  };
}

const log = (...a) => console.error('[bench:store]', ...a);
const GB = 1e9;
const DTYPES = ['fp16', 'fp32'];

/** Runs bench/lib/store-worker.mjs with these tasks in a fresh process; resolves to its results. */
function runWorker(tasks) {
  return new Promise((resolveP, reject) => {
    const child = spawn(process.execPath, [WORKER, JSON.stringify({ tasks })], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`store worker failed (code ${code}, signal ${signal}):\n${err.slice(-4000)}`));
        return;
      }
      try {
        resolveP(JSON.parse(out.trim().split('\n').pop()).results);
      } catch {
        reject(new Error(`store worker printed no JSON:\n${out.slice(-2000)}\n${err.slice(-2000)}`));
      }
    });
  });
}

function segmentFiles(dir) {
  const d = join(dir, 'segments');
  return readdirSync(d)
    .filter((f) => f.endsWith('.ers'))
    .sort()
    .map((f) => join(d, f));
}

function dirBytes(dir, re) {
  return readdirSync(dir)
    .filter((f) => re.test(f))
    .reduce((a, f) => a + statSync(join(dir, f)).size, 0);
}

// ---- the benchmark stores (built once, cached in bench/.work/store) ----------------------------------

async function prepareStores(opt, enc, corpus) {
  const { ActivationStore, StoreError } = require('../lib/index.js');
  const tag = `${corpus.synthetic ? 'synth' : 'real'}-l${opt.layer}-t${opt.maxLength}-s${opt.stride}-${opt.docs}docs`;
  const stores = {};
  for (const dtype of DTYPES) {
    const dir = join(ROOT, 'bench', '.work', 'store', `${tag}-${dtype}`);
    let built = null;
    if (opt.rebuild) rmSync(dir, { recursive: true, force: true });
    let ok = false;
    if (existsSync(join(dir, 'manifest.json'))) {
      try {
        const s = await ActivationStore.open(dir, { encoder: enc, layer: opt.layer, dtype });
        ok = s.stats().docs === opt.docs && s.identity.maxLength === opt.maxLength && s.identity.stride === opt.stride;
        s.close();
      } catch (e) {
        if (!(e instanceof StoreError)) throw e;
        log(`cached store ${dir} is not usable (${e.message.split('\n')[0]}); rebuilding`);
        rmSync(dir, { recursive: true, force: true });
      }
    }
    if (!ok) {
      log(`encoding the ${dtype} benchmark store: ${opt.docs} documents -> ${dir} (once; reused by later runs)`);
      const s0 = performance.now();
      const s = await ActivationStore.create(dir, enc, { layer: opt.layer, dtype, maxLength: opt.maxLength, stride: opt.stride });
      let next = 0;
      const p = await s.encode(corpus.docs, {
        batchSize: opt.batchSize,
        onProgress: (pr) => {
          if (pr.textsDone >= next) {
            log(`  ${dtype}: ${pr.textsDone}/${opt.docs} documents, ${pr.recordsWritten} records, ${(pr.bytesWritten / 1e6).toFixed(0)} MB, ${(pr.elapsedMs / 1000).toFixed(1)} s`);
            next += Math.max(1, Math.ceil(opt.docs / 5));
          }
        },
      });
      s.close();
      built = { ms: performance.now() - s0, progress: p };
    }
    const s = await ActivationStore.open(dir);
    const stats = s.stats();
    s.close();
    const files = segmentFiles(dir);
    stores[dtype] = {
      dtype,
      dir,
      files,
      fileBytes: files.reduce((a, f) => a + statSync(f).size, 0),
      indexBytes: dirBytes(dir, /^index\.sqlite/),
      stats,
      built,
    };
    log(`${dtype} store: ${stats.records} records, ${stats.docs} documents, ${stats.tokens} tokens, ${(stats.bytes / 1e6).toFixed(1)} MB in ${files.length} segment file(s)`);
  }
  return stores;
}

// ---- 2. fp16 -> fp32 decode vs memcpy ------------------------------------------------------------------

function f16bits(x, f32, u32) {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const e = ((b >>> 23) & 0xff) - 127 + 15;
  const m = b & 0x7fffff;
  if (e <= 0) return sign; // tiny: flushed to zero (none in this data)
  if (e >= 31) return sign | 0x7c00;
  let h = sign | (e << 10) | (m >>> 13);
  const rest = m & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return h;
}

function benchDecode(opt, H) {
  const addon = require('../lib/native/binding').native();
  const T = opt.maxLength;
  const sizes = [
    { label: `1 record (${T} x ${H})`, n: T * H },
    { label: `1 batch (${opt.batchSize} x ${T} x ${H})`, n: opt.batchSize * T * H },
    { label: '64 MiB of fp32 output', n: (64 << 20) / 4 },
  ];
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const out = [];
  for (const sz of sizes) {
    const n = sz.n;
    // activation-like values: roughly normal, scale ~1, no denormals
    const ref = new Float32Array(n);
    let seed = 12345;
    for (let i = 0; i < n; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const u = (seed >>> 8) / 16777216;
      ref[i] = (u - 0.5) * 6 + (i % 7) * 0.01 + 0.001;
    }
    const src16 = new Uint16Array(n);
    for (let i = 0; i < n; i++) src16[i] = f16bits(ref[i], f32, u32);
    const dst = new Float32Array(n);
    const dstCopy = new Float32Array(n);
    // correctness spot check
    addon.f16ToF32(src16, dst, 1);
    let maxRel = 0;
    for (let i = 0; i < n; i += Math.max(1, n >> 12)) maxRel = Math.max(maxRel, Math.abs(dst[i] - ref[i]) / Math.max(1e-3, Math.abs(ref[i])));
    // reps so that one timing lasts ~decodeTargetMs
    const once = Math.max(1e-7, addon.copyF32(ref, dstCopy, 3) / 3, addon.f16ToF32(src16, dst, 3) / 3);
    const reps = Math.max(1, Math.ceil(opt.decodeTargetMs / 1000 / once));
    const dec = [];
    const cpy = [];
    for (let t = 0; t < opt.decodeTrials; t++) {
      // alternate, so drift hits both alike
      dec.push(addon.f16ToF32(src16, dst, reps));
      cpy.push(addon.copyF32(ref, dstCopy, reps));
    }
    const outBytes = n * 4 * reps;
    const decGBs = outBytes / median(dec) / GB;
    const cpyGBs = outBytes / median(cpy) / GB;
    out.push({
      label: sz.label,
      values: n,
      outBytes: n * 4,
      reps,
      decodeSeconds: dec,
      memcpySeconds: cpy,
      decodeGBs: decGBs,
      memcpyGBs: cpyGBs,
      decodeBestGBs: outBytes / Math.min(...dec) / GB,
      memcpyBestGBs: outBytes / Math.min(...cpy) / GB,
      ratio: decGBs / cpyGBs,
      maxRelError: maxRel,
    });
    log(`decode ${sz.label}: f16->f32 ${decGBs.toFixed(2)} GB/s, memcpy ${cpyGBs.toFixed(2)} GB/s (${((100 * decGBs) / cpyGBs).toFixed(0)}%)`);
  }
  return out;
}

// ---- 1. read throughput ------------------------------------------------------------------------------

const READ_CONFIGS = [
  { id: 'batches-pf0', method: 'batches', prefetch: false, verify: true, label: '`batches()`, prefetch off' },
  { id: 'batches-pf2', method: 'batches', prefetch: 2, verify: true, label: '`batches()`, prefetch 2' },
  { id: 'read', method: 'read', verify: true, label: '`read(ref)` per record' },
];
const READ_EXTRA_WARM = [
  { id: 'batches-pf0-nocrc', method: 'batches', prefetch: false, verify: false, order: 'seq', label: '`batches()`, prefetch off, CRC off' },
  { id: 'read-nocrc', method: 'read', verify: false, order: 'seq', label: '`read(ref, false)`, CRC off' },
];
const FS_CHUNKS = [1 << 20, 4 << 20];

function summarizePasses(passes, skipFirst) {
  const timed = skipFirst && passes.length > 1 ? passes.slice(1) : passes;
  const ms = median(timed.map((p) => p.ms));
  const bytes = timed[0].bytes;
  return { ms, bytes, gbs: bytes / (ms / 1000) / GB, firstPass: passes[0], passes };
}

async function benchRead(opt, store) {
  const res = { dtype: store.dtype, warm: {}, cold: {}, eviction: [] };
  const seed = 20240611;
  const storeTask = (c, order, passes) => ({
    kind: 'store', dir: store.dir, docs: opt.docs, method: c.method, order, seed, prefetch: c.prefetch ?? false,
    verify: c.verify, batchSize: opt.batchSize, passes,
  });
  const fsTask = (chunk, passes) => ({ kind: 'fsread', files: store.files, chunkBytes: chunk, passes });

  // warm: the files in the page cache, every configuration in one process, 1 + reps passes each
  warm(store.files);
  res.warmResidentBefore = await resident(store.files);
  const warmTasks = [];
  const warmKeys = [];
  for (const ch of FS_CHUNKS) {
    warmTasks.push(fsTask(ch, 1 + opt.reps));
    warmKeys.push(`fs-${ch >> 20}MiB`);
  }
  for (const c of READ_CONFIGS) {
    for (const order of ['seq', 'rand']) {
      warmTasks.push(storeTask(c, order, 1 + opt.reps));
      warmKeys.push(`${c.id}-${order}`);
    }
  }
  for (const c of READ_EXTRA_WARM) {
    warmTasks.push(storeTask(c, c.order, 1 + opt.reps));
    warmKeys.push(`${c.id}-${c.order}`);
  }
  log(`${store.dtype}: warm reads (${warmTasks.length} configurations x ${1 + opt.reps} passes)`);
  const warmRes = await runWorker(warmTasks);
  warmKeys.forEach((k, i) => {
    const r = warmRes[i];
    res.warm[k] = { ...summarizePasses(r.passes, true), records: r.records, tokens: r.tokens };
  });

  // cold: evict the segment files, then one pass in a fresh process, per configuration
  const coldRuns = [...FS_CHUNKS.map((ch) => [`fs-${ch >> 20}MiB`, fsTask(ch, 1)])];
  for (const c of READ_CONFIGS) for (const order of ['seq', 'rand']) coldRuns.push([`${c.id}-${order}`, storeTask(c, order, 1)]);
  log(`${store.dtype}: cold reads (${coldRuns.length} configurations, segment pages evicted before each)`);
  for (const [k, task] of coldRuns) {
    const ev = await evict(store.files);
    res.eviction.push({ run: k, residentBefore: ev.residentBefore, residentAfter: ev.residentAfter });
    const [r] = await runWorker([task]);
    res.cold[k] = { ...summarizePasses(r.passes, false), records: r.records, tokens: r.tokens, residentAfterEvict: ev.residentAfter };
  }
  const ceil = (m) => Math.max(...FS_CHUNKS.map((ch) => m[`fs-${ch >> 20}MiB`].gbs));
  res.ceilingWarmGBs = ceil(res.warm);
  res.ceilingColdGBs = ceil(res.cold);
  for (const [state, ceiling] of [['warm', res.ceilingWarmGBs], ['cold', res.ceilingColdGBs]]) {
    for (const r of Object.values(res[state])) r.ofCeiling = r.gbs / ceiling;
  }
  const evictedMax = Math.max(...res.eviction.map((e) => e.residentAfter ?? 0));
  res.evictionWorked = {
    maxResidentAfterEvict: evictedMax,
    coldOverWarmFs: res.ceilingColdGBs / res.ceilingWarmGBs,
    verdict: evictedMax < 0.01 && res.ceilingColdGBs < 0.8 * res.ceilingWarmGBs,
  };
  log(
    `${store.dtype}: fs ceiling warm ${res.ceilingWarmGBs.toFixed(2)} GB/s, cold ${res.ceilingColdGBs.toFixed(2)} GB/s; ` +
      `store batches(pf2, seq) warm ${res.warm['batches-pf2-seq'].gbs.toFixed(2)}, cold ${res.cold['batches-pf2-seq'].gbs.toFixed(2)} GB/s; ` +
      `resident after eviction <= ${(100 * evictedMax).toFixed(1)}%`,
  );
  return res;
}

// ---- 3. prefetch on vs off with the suffix layers as the consumer ------------------------------------------

async function benchPrefetch(opt, store) {
  const out = { dtype: store.dtype, runs: [] };
  const task = (depth) => ({
    kind: 'consume', dir: store.dir, docs: opt.docs, model: opt.model, threads: opt.threads, layer: opt.layer,
    limit: opt.consumeRecords, seed: 99, prefetch: depth === 0 ? false : depth, batchSize: opt.batchSize,
  });
  for (const cache of ['warm', 'cold']) {
    if (cache === 'warm') warm(store.files);
    for (const depth of opt.depths) {
      let residentAfterEvict = null;
      if (cache === 'cold') residentAfterEvict = (await evict(store.files)).residentAfter;
      const [r] = await runWorker([task(depth)]);
      const run = { cache, depth, residentAfterEvict, ...r, waitShare: r.consumerWaitMs / r.ms, jsWaitShare: r.jsWaitMs / r.ms };
      out.runs.push(run);
      log(`${store.dtype} ${cache} prefetch ${depth || 'off'}: ${(r.ms / 1000).toFixed(2)} s for ${r.batches} batches, consumer waited ${r.consumerWaitMs.toFixed(1)} ms (${(100 * run.waitShare).toFixed(2)}%), decode ${r.decodeMs.toFixed(0)} ms`);
    }
  }
  return out;
}

// ---- 4. encode throughput and bytes per token ------------------------------------------------------------

async function benchEncode(opt, enc, corpus) {
  const { ActivationStore } = require('../lib/index.js');
  const docs = corpus.docs.slice(0, opt.encodeDocs);
  const tmpRoot = join(ROOT, 'bench', '.work', 'tmp');
  mkdirSync(tmpRoot, { recursive: true });

  // the plain prefix pass over the same windows, in the same fixed batch sequence store.encode uses
  const plain = async () => {
    const t0 = performance.now();
    const wins = [];
    for (const d of docs) wins.push(...(await enc.tokenizer.encodeWindows(d.text, opt.maxLength, opt.stride)).windows);
    const tokenizeMs = performance.now() - t0;
    let forwardMs = 0;
    let tokens = 0;
    for (let i = 0; i < wins.length; i += opt.batchSize) {
      const b = enc.batchFromEncodings(wins.slice(i, i + opt.batchSize));
      const s = performance.now();
      await enc.forward(b, { toLayer: opt.layer });
      forwardMs += performance.now() - s;
      tokens += b.encodings.reduce((a, e) => a + e.ids.length, 0);
    }
    return { tokenizeMs, forwardMs, totalMs: performance.now() - t0, windows: wins.length, tokens };
  };
  const encodeOnce = async (dtype) => {
    const dir = join(tmpRoot, `encode-${dtype}`);
    rmSync(dir, { recursive: true, force: true });
    const c0 = performance.now();
    const s = await ActivationStore.create(dir, enc, { layer: opt.layer, dtype, maxLength: opt.maxLength, stride: opt.stride });
    const createMs = performance.now() - c0;
    const e0 = performance.now();
    const p = await s.encode(docs, { batchSize: opt.batchSize });
    const encodeMs = performance.now() - e0;
    const stats = s.stats();
    s.close();
    const indexBytes = dirBytes(dir, /^index\.sqlite/);
    rmSync(dir, { recursive: true, force: true });
    return { dtype, createMs, encodeMs, progress: p, stats, indexBytes };
  };

  // warm-up: one prefix forward (thread pool, kernels), untimed
  {
    const w = (await enc.tokenizer.encodeWindows(docs[0].text, opt.maxLength, opt.stride)).windows;
    await enc.forward(enc.batchFromEncodings(w), { toLayer: opt.layer });
  }
  log(`encode: ${docs.length} documents, plain prefix pass, store.encode fp16 and fp32, plain again`);
  const plainA = await plain();
  const runs = [];
  for (const dtype of DTYPES) runs.push(await encodeOnce(dtype));
  const plainB = await plain();
  const plainForwardMs = (plainA.forwardMs + plainB.forwardMs) / 2;
  const plainTokenizeMs = (plainA.tokenizeMs + plainB.tokenizeMs) / 2;
  for (const r of runs) {
    const p = r.progress;
    r.textsPerS = p.textsDone / (r.encodeMs / 1000);
    r.windowsPerS = p.windowsDone / (r.encodeMs / 1000);
    r.tokensPerS = p.tokensDone / (r.encodeMs / 1000);
    r.bytesPerToken = r.stats.bytes / r.stats.tokens;
    r.indexBytesPerRecord = r.indexBytes / r.stats.records;
    r.plainForwardMs = plainForwardMs;
    r.plainTokenizeMs = plainTokenizeMs;
    r.overheadMs = r.encodeMs - plainForwardMs - plainTokenizeMs;
    r.overheadShare = r.overheadMs / r.encodeMs;
    r.overForward = r.encodeMs / plainForwardMs;
    log(`encode ${r.dtype}: ${r.textsPerS.toFixed(1)} texts/s, ${r.tokensPerS.toFixed(0)} tokens/s, ${r.bytesPerToken.toFixed(1)} B/token, ${(r.encodeMs / 1000).toFixed(2)} s vs plain forward ${(plainForwardMs / 1000).toFixed(2)} s + tokenize ${(plainTokenizeMs / 1000).toFixed(2)} s`);
  }
  return { docs: docs.length, plain: [plainA, plainB], runs };
}

// ---- main ----------------------------------------------------------------------------------------------

async function main() {
  const opt = parseCli();
  // refuse before the run, not after it: results are written only from a clean commit
  const tree = checkTree(ROOT, { allowDirty: opt.allowDirty, write: opt.write, dest: join(opt.outDir, 'x') });
  const t0 = performance.now();
  const startedAt = new Date();
  const { Encoder, cpuInfo } = require('../lib/index.js');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const cpu = cpuDescription();
  const loadStart = loadAverage();
  log(`CPU ${cpu.model}, nproc ${nproc()}, encoder threads ${opt.threads}, load average ${loadStart.join(' ')}`);
  if (loadStart[0] > 0.5 * nproc() && !opt.quick) log('WARNING: the machine is busy (load average above half the cores); numbers will be noisy');
  if (!existsSync(join(opt.model, 'config.json'))) throw new UsageError(`no model at ${opt.model} (npm run fetch-model)`);

  const corpus = makeDocs(Math.max(opt.docs, opt.encodeDocs), { dataDir: opt.dataDir, synthetic: opt.synthetic });
  corpus.synthetic = corpus.realSentences === 0;
  const storeCorpus = { ...corpus, docs: corpus.docs.slice(0, opt.docs) };
  const enc = await Encoder.load(opt.model, { threads: opt.threads });
  const snap0 = cpuSnapshot();
  const result = {
    meta: {
      date: localDate(startedAt),
      startedAt: startedAt.toISOString(),
      quick: opt.quick,
      nproc: nproc(),
      cpu,
      threads: { encoder: opt.threads, prefetcher: 1, decodeKernel: 1, fsRead: 1 },
      loadAverage: { start: loadStart, end: null },
      model: opt.model,
      layer: opt.layer,
      maxLength: opt.maxLength,
      stride: opt.stride,
      batchSize: opt.batchSize,
      reps: opt.reps,
      corpus: { source: corpus.source, realSentences: corpus.realSentences, syntheticSentences: corpus.syntheticSentences },
      versions: { package: pkg.version, git: gitInfo(ROOT), cpuInfo: cpuInfo(), node: process.version },
      durationS: null,
    },
    stores: null,
    sections: {},
  };
  const section = async (name, fn) => {
    if (!opt.sections.includes(name)) return;
    const s = cpuSnapshot();
    const st = performance.now();
    const r = await fn();
    const contention = cpuContention(s, cpuSnapshot(), nproc());
    if (contention && contention.foreign + contention.steal > 0.05) {
      log(`WARNING: other processes used ${(100 * contention.foreign).toFixed(0)}% (steal ${(100 * contention.steal).toFixed(0)}%) of the CPU time during the ${name} section; its numbers are not clean`);
    }
    result.sections[name] = { ...r, contention, seconds: (performance.now() - st) / 1000 };
  };

  try {
    const needStores = opt.sections.some((s) => s === 'read' || s === 'prefetch');
    if (needStores) {
      const ps = performance.now();
      result.stores = await prepareStores(opt, enc, storeCorpus);
      result.meta.storePrepareS = (performance.now() - ps) / 1000;
    }
    await section('decode', async () => ({ sizes: benchDecode(opt, enc.hidden) }));
    await section('read', async () => {
      const r = {};
      for (const d of DTYPES) r[d] = await benchRead(opt, result.stores[d]);
      return { byDtype: r };
    });
    await section('prefetch', async () => {
      const r = {};
      for (const d of opt.consumeDtypes) r[d] = await benchPrefetch(opt, result.stores[d]);
      return { consumeRecords: opt.consumeRecords, depths: opt.depths, byDtype: r };
    });
    await section('encode', () => benchEncode(opt, enc, corpus));
  } finally {
    enc.close();
  }

  result.meta.contention = cpuContention(snap0, cpuSnapshot(), nproc());
  result.meta.loadAverage.end = loadAverage();
  result.meta.finishedAt = new Date().toISOString();
  result.meta.durationS = (performance.now() - t0) / 1000;

  const md = renderStoreMarkdown(result);
  process.stdout.write(md + '\n');
  if (opt.write) {
    mkdirSync(opt.outDir, { recursive: true });
    const base = `store-${result.meta.date}${opt.quick ? '-quick' : ''}`;
    const mdPath = join(opt.outDir, `${base}.md`);
    if (existsSync(mdPath)) log(`overwriting ${mdPath}`);
    writeResults(join(opt.outDir, base), md + '\n', result, 'store', { root: ROOT, allowDirty: opt.allowDirty, start: tree });
  }
}

main().catch((e) => {
  if (e instanceof DirtyTreeError) {
    console.error(`bench/store.mjs: ${e.message}`);
    process.exit(3);
  }
  if (e instanceof UsageError) {
    console.error(`bench/store.mjs: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
