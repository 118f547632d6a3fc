#!/usr/bin/env node
// Full-encoder inference benchmark (issue 2, "Performance"): this engine vs PyTorch vs onnxruntime-node,
// at the MiniLM-L6-H384 and BERT-base shapes, batch 32 x 128 and 8 x 512, plus the GEMM ceiling.
// See bench/README.md. Usage: npm run bench -- [--quick] [--precision fp32|bf16] [--threads N] ...
import { mkdirSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';

import { MODELS, WORKLOADS, QUICK_WORKLOADS, makeBatch, modelFlops } from './lib/workload.mjs';
import { summarize, sleep, fmtMs } from './lib/stats.mjs';
import { PythonWorker, runPythonJson, PYTHON } from './lib/python.mjs';
import { OrtEngine, ortVersion } from './lib/ort.mjs';
import { cpuDescription, nproc, loadAverage, gitInfo, localDate, cpuSnapshot, cpuContention } from './lib/system.mjs';
import { renderMarkdown } from './lib/report.mjs';
import { checkTree, DirtyTreeError, writeResults } from './lib/cli.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const require = createRequire(import.meta.url);

const USAGE = `usage: node bench/encoder.mjs [options]

  --quick                 smoke test: MiniLM shape only, batches 4x32 and 2x64, 1 warm-up + 1 rep,
                          results to bench/.work/results (not bench/results)
  --precision fp32|bf16   compute precision requested from our engine (default fp32)
  --threads N             threads for every engine (default 2)
  --models a,b            subset of: ${Object.keys(MODELS).join(', ')} (default: all)
  --engines a,b           subset of: ours, torch, ort, ort-fused (default: all)
  --reps N                timed reps per engine and workload (default: 10 for MiniLM, 5 for BERT-base)
  --warmup N              untimed runs per engine and workload first (default: 2 for MiniLM, 1 for BERT-base)
  --gemm-reps N           reps per GEMM shape (default 10)
  --gap-ms N              pause between two timed runs, so spinning thread pools go idle (default 100)
  --torch-grad-mode M     inference_mode (default) or no_grad
  --torch-mkldnn          PyTorch's linear layers on its oneDNN path (torch.utils.mkldnn.to_mkldnn)
                          instead of MKL's sgemm (see bench/peers/torch_encoder.py)
  --out DIR               where to write the .md and .json (default bench/results)
  --no-write              print only
  --allow-dirty           write results from a tree with uncommitted changes, marked DIRTY TREE
                          (otherwise results outside bench/.work are written only from a clean commit)
  -h, --help`;

class UsageError extends Error {}

function parseCli() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        precision: { type: 'string', default: 'fp32' },
        threads: { type: 'string', default: '2' },
        models: { type: 'string' },
        engines: { type: 'string' },
        reps: { type: 'string' },
        warmup: { type: 'string' },
        'gemm-reps': { type: 'string' },
        'gap-ms': { type: 'string', default: '100' },
        'torch-grad-mode': { type: 'string', default: 'inference_mode' },
        'torch-mkldnn': { type: 'boolean', default: false },
        out: { type: 'string' },
        'no-write': { type: 'boolean', default: false },
        'allow-dirty': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    });
  } catch (e) {
    throw new UsageError(e.message);
  }
  const { values } = parsed;
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name, v, lo) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo) throw new UsageError(`--${name} must be an integer >= ${lo}, got ${v}`);
    return n;
  };
  if (!['fp32', 'bf16'].includes(values.precision)) throw new UsageError(`--precision must be fp32 or bf16, got ${values.precision}`);
  if (!['inference_mode', 'no_grad'].includes(values['torch-grad-mode'])) throw new UsageError('--torch-grad-mode must be inference_mode or no_grad');
  const list = (v, all, what, dflt = all) => {
    if (!v) return dflt;
    const xs = v.split(',').map((s) => s.trim()).filter(Boolean);
    for (const x of xs) if (!all.includes(x)) throw new UsageError(`unknown ${what} ${x}; choose from ${all.join(', ')}`);
    return all.filter((a) => xs.includes(a)); // canonical order
  };
  const allEngines = ['ours', 'torch', 'ort', 'ort-fused'];
  const quick = values.quick;
  return {
    quick,
    precision: values.precision,
    threads: int('threads', values.threads, 1),
    models: list(values.models, Object.keys(MODELS), 'model', quick ? ['minilm'] : Object.keys(MODELS)),
    engines: list(values.engines, allEngines, 'engine'),
    reps: values.reps !== undefined ? int('reps', values.reps, 1) : quick ? 1 : null,
    warmup: values.warmup !== undefined ? int('warmup', values.warmup, 0) : quick ? 1 : null,
    gemmReps: values['gemm-reps'] !== undefined ? int('gemm-reps', values['gemm-reps'], 1) : quick ? 2 : 10,
    gapMs: int('gap-ms', values['gap-ms'], 0),
    torchGradMode: values['torch-grad-mode'],
    torchMkldnn: values['torch-mkldnn'],
    outDir: values.out ? resolve(values.out) : join(ROOT, 'bench', quick ? '.work/results' : 'results'),
    write: !values['no-write'],
    allowDirty: values['allow-dirty'],
  };
}

// chosen so the full run (both models, both workloads, four engines) takes an estimated ~6 minutes on 2 cores
const DEFAULT_REPS = { minilm: { warmup: 2, reps: 10 }, 'bert-base': { warmup: 1, reps: 5 } };

const log = (...a) => console.error('[bench]', ...a);

function maxAbsDiff(a, b) {
  if (!a || !b || a.length !== b.length) return NaN;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > m || Number.isNaN(d)) m = d;
  }
  return m;
}

/** The best fp32 (or bf16) layer-mix GEMM rate over the libraries measured at this M. */
function peakOf(gemm, dtype) {
  let best = null;
  for (const [lib, label] of [['onednn', 'oneDNN'], ['torch', 'PyTorch']]) {
    const g = gemm?.[lib]?.[dtype];
    if (g && Number.isFinite(g.layerMixGflops) && (!best || g.layerMixGflops > best.gflops)) {
      best = { gflops: g.layerMixGflops, source: label };
    }
  }
  return best;
}

async function main() {
  const opt = parseCli();
  // refuse before the run, not after it: results are written only from a clean commit
  const tree = checkTree(ROOT, { allowDirty: opt.allowDirty, write: opt.write, dest: join(opt.outDir, 'x') });
  const t0 = performance.now();
  const startedAt = new Date();
  const workloads = opt.quick ? QUICK_WORKLOADS : WORKLOADS;
  const { Encoder, cpuInfo } = require('../lib');
  const info = cpuInfo();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const cpu = cpuDescription();
  const loadStart = loadAverage();
  log(`CPU ${cpu.model}, nproc ${nproc()}, threads ${opt.threads}, precision ${opt.precision}, load average ${loadStart.join(' ')}`);
  if (loadStart[0] > 0.5 * nproc() && !opt.quick) log('WARNING: the machine is busy (load average above half the cores); numbers will be noisy');

  // 1. models (idempotent: only builds what is missing)
  const modelRoot = join(ROOT, 'bench', '.work', 'models');
  const dirs = opt.models.map((k) => MODELS[k].dir);
  log(`preparing models ${dirs.join(', ')} in ${modelRoot} (first time: a minute or two)`);
  await runPythonJson(join(HERE, 'peers', 'make_models.py'), dirs.flatMap((d) => ['--only', d]).concat(['--out', modelRoot]), {
    threads: opt.threads,
    inheritStderr: true,
  });

  // 2. the PyTorch worker
  const useTorch = opt.engines.includes('torch');
  const worker = new PythonWorker(join(HERE, 'peers', 'torch_encoder.py'), ['serve'], { threads: opt.threads });
  const torchInfo = await worker.request({ cmd: 'info' });
  let torchAttn = null;

  const runSnap0 = cpuSnapshot([worker.proc.pid]);
  const result = {
    meta: {
      date: localDate(startedAt),
      startedAt: startedAt.toISOString(),
      quick: opt.quick,
      threads: opt.threads,
      nproc: nproc(),
      cpu,
      loadAverage: { start: loadStart, end: null },
      engines: opt.engines,
      precision: { requested: opt.precision, reported: null },
      gapMs: opt.gapMs,
      torch: { gradMode: opt.torchGradMode, attn: null, mkldnn: opt.torchMkldnn },
      ort: { intraOpNumThreads: opt.threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' },
      versions: {
        package: pkg.version,
        git: gitInfo(ROOT),
        cpuInfo: info,
        node: process.version,
        onnxruntimeNode: ortVersion(),
        torch: torchInfo.torch,
        transformers: torchInfo.transformers,
        torchCpuCapability: torchInfo.cpuCapability,
        python: torchInfo.python,
        pythonExecutable: PYTHON,
      },
      repsText: '',
      durationS: null,
    },
    models: [],
  };

  try {
    for (const key of opt.models) {
      const spec = MODELS[key];
      const dir = join(modelRoot, spec.dir);
      const reps = opt.reps ?? DEFAULT_REPS[key].reps;
      const warmup = opt.warmup ?? DEFAULT_REPS[key].warmup;
      let build = null;
      try {
        build = JSON.parse(readFileSync(join(dir, 'bench-model.json'), 'utf8'));
      } catch {
        /* reported as null */
      }
      const mres = { key, label: spec.label, dir, shape: spec, build, reps, warmup, gemm: [], loadMs: {}, workloads: [] };
      result.models.push(mres);

      // 3. GEMM ceiling at this model's shapes, before any engine holds memory or threads
      for (const M of [...new Set(workloads.map((w) => w.batch * w.seq))]) {
        log(`${spec.label}: GEMM rates at M=${M} (${opt.gemmReps} reps per shape)`);
        const g = { m: M };
        const gs0 = cpuSnapshot([worker.proc.pid]);
        try {
          g.onednn = await runPythonJson(join(HERE, 'peers', 'onednn_gemm.py'), [
            '--m', String(M), '--hidden', String(spec.hidden), '--intermediate', String(spec.intermediate),
            '--threads', String(opt.threads), '--reps', String(opt.gemmReps),
          ], { threads: opt.threads });
        } catch (e) {
          log(`oneDNN GEMM timing failed: ${e.message}`);
          g.onednnError = e.message;
        }
        g.torch = await worker.request({ cmd: 'gemm', m: M, hidden: spec.hidden, intermediate: spec.intermediate, reps: opt.gemmReps, threads: opt.threads });
        g.contention = cpuContention(gs0, cpuSnapshot([worker.proc.pid]), nproc());
        if (g.contention && g.contention.foreign + g.contention.steal > 0.05) {
          log(`WARNING: other processes used ${(100 * g.contention.foreign).toFixed(0)}% of the CPU time while timing GEMMs at M=${M}; the peak is not clean`);
        }
        mres.gemm.push(g);
      }

      // 4. engines
      const engines = {};
      const timeLoad = async (name, fn) => {
        const s = performance.now();
        const r = await fn();
        mres.loadMs[name] = performance.now() - s;
        return r;
      };
      if (opt.engines.includes('ours')) {
        const enc = await timeLoad('ours', () => Encoder.load(dir, { threads: opt.threads, precision: opt.precision }));
        enc.setThreads(opt.threads);
        const reported = enc.precision ?? enc.options?.precision ?? null;
        if (reported != null) result.meta.precision.reported = String(reported);
        engines.ours = {
          run: async (batch) => {
            const s = performance.now();
            const out = await enc.forward(batch);
            return { ms: performance.now() - s, out: out.data };
          },
          close: async () => enc.close(),
        };
      }
      if (useTorch) {
        const r = await timeLoad('torch', () => worker.request({ cmd: 'load', model: dir, threads: opt.threads, gradMode: opt.torchGradMode, mkldnn: opt.torchMkldnn }));
        torchAttn = r.attn;
        engines.torch = {
          run: async (batch) => {
            const r2 = await worker.request({ cmd: 'run', batch: batch.batchSize, seq: batch.seqLen, reps: 1 });
            return { ms: r2.ms[0], out: null };
          },
          close: async () => worker.request({ cmd: 'unload' }),
        };
      }
      for (const [name, file] of [['ort', 'model.onnx'], ['ort-fused', 'model.fused.onnx']]) {
        if (!opt.engines.includes(name)) continue;
        const sess = await timeLoad(name, () => OrtEngine.load(join(dir, file), opt.threads));
        engines[name] = {
          run: async (batch) => {
            const s = performance.now();
            const out = await sess.run(batch);
            return { ms: performance.now() - s, out: out.data };
          },
          close: async () => sess.close(),
        };
      }
      const names = opt.engines.filter((e) => engines[e]);

      // 5. workloads: warm-up, then reps interleaved across engines (order rotated every rep)
      for (const w of workloads) {
        const batch = makeBatch(w.batch, w.seq);
        const flops = modelFlops(spec, w.batch, w.seq);
        const wres = { batch: w.batch, seq: w.seq, flops, engines: {}, check: {}, warmupMs: {} };
        mres.workloads.push(wres);
        const times = Object.fromEntries(names.map((n) => [n, []]));
        const snap0 = cpuSnapshot([worker.proc.pid]);
        let oursOut = null;
        const outs = {};
        for (const n of names) {
          wres.warmupMs[n] = [];
          for (let i = 0; i < Math.max(1, warmup); i++) {
            const r = await engines[n].run(batch);
            if (i === 0 && r.out) {
              if (n === 'ours') oursOut = r.out.slice(); // the engine may reuse its output buffer
              else outs[n] = r.out;
            }
            // with --warmup 0 the single run above is timed, not a warm-up
            if (warmup === 0) times[n].push(r.ms);
            else wres.warmupMs[n].push(r.ms);
            await sleep(opt.gapMs);
          }
        }
        for (const [n, o] of Object.entries(outs)) wres.check[n] = maxAbsDiff(oursOut, o);
        const perRep = names.reduce((s, n) => s + (wres.warmupMs[n].at(-1) ?? times[n].at(-1) ?? 0) + opt.gapMs, 0);
        const todo = warmup === 0 ? reps - 1 : reps;
        log(`${spec.label} ${w.batch}x${w.seq}: warm-up done (${names.map((n) => `${n} ${fmtMs(wres.warmupMs[n].at(-1) ?? times[n].at(-1))} ms`).join(', ')}); ${todo} reps, about ${Math.round((todo * perRep) / 1000)} s`);
        for (let r = 0; r < todo; r++) {
          const order = names.map((_, i) => names[(i + r) % names.length]);
          for (const n of order) {
            const x = await engines[n].run(batch);
            times[n].push(x.ms);
            await sleep(opt.gapMs);
          }
        }
        wres.contention = cpuContention(snap0, cpuSnapshot([worker.proc.pid]), nproc());
        if (wres.contention && wres.contention.foreign + wres.contention.steal > 0.05) {
          log(`WARNING: other processes used ${(100 * wres.contention.foreign).toFixed(0)}% and the hypervisor stole ${(100 * wres.contention.steal).toFixed(0)}% of the CPU time during ${spec.label} ${w.batch}x${w.seq}; its numbers are not clean`);
        }
        for (const n of names) {
          const s = summarize(times[n]);
          const gflops = flops.total / (s.medianMs * 1e-3) / 1e9;
          wres.engines[n] = { ...s, gflops };
        }
        // peaks at this M
        const g = mres.gemm.find((x) => x.m === w.batch * w.seq);
        wres.peakFp32 = peakOf(g, 'fp32');
        wres.peakBf16 = peakOf(g, 'bf16');
        for (const n of names) {
          const e = wres.engines[n];
          e.fractionOfFp32Peak = wres.peakFp32 ? e.gflops / wres.peakFp32.gflops : NaN;
          if (n === 'ours' && wres.peakBf16) e.fractionOfBf16Peak = e.gflops / wres.peakBf16.gflops;
        }
        log(`${spec.label} ${w.batch}x${w.seq}: ` + names.map((n) => `${n} ${fmtMs(wres.engines[n].medianMs)} ms`).join(', '));
      }
      for (const n of names) await engines[n].close();
    }
  } finally {
    await worker.close();
  }

  result.meta.torch.attn = torchAttn;
  result.meta.contention = cpuContention(runSnap0, cpuSnapshot(), nproc());
  result.meta.repsText = result.models.map((m) => `${m.label} ${m.reps} after ${m.warmup} warm-up`).join(', ');
  result.meta.loadAverage.end = loadAverage();
  result.meta.finishedAt = new Date().toISOString();
  result.meta.durationS = (performance.now() - t0) / 1000;

  const md = renderMarkdown(result);
  process.stdout.write(md + '\n');
  if (opt.write) {
    mkdirSync(opt.outDir, { recursive: true });
    const base = `encoder-${result.meta.date}${opt.precision === 'fp32' ? '' : `-${opt.precision}`}${opt.quick ? '-quick' : ''}`;
    const mdPath = join(opt.outDir, `${base}.md`);
    if (existsSync(mdPath)) log(`overwriting ${mdPath}`);
    writeResults(join(opt.outDir, base), md + '\n', result, 'encoder', { root: ROOT, allowDirty: opt.allowDirty, start: tree });
  }
}

main().catch((e) => {
  if (e instanceof DirtyTreeError) {
    console.error(`bench/encoder.mjs: ${e.message}`);
    process.exit(3);
  }
  if (e instanceof UsageError) {
    console.error(`bench/encoder.mjs: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
