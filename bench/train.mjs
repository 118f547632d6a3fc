#!/usr/bin/env node
// Training benchmark: ms per training step (forward + backward + clipping + AdamW) of a
// sequence-classification model, for the modes full, frozen-prefix, reduced and
// reduced-adapters: this engine in fp32 and bf16 mixed precision, and PyTorch fp32, on the
// same machine and threads.
// Shapes: MiniLM-L6-H384 and BERT-base (random weights, bench/.work/models), k = N/2,
// batch 16 x 128 tokens. Then fit() end to end (section "fit"): the real MiniLM and the
// BERT-base shape, one epoch of `reduced` on SciCite sentences read from a layer-k fp16
// store through the native prefetch thread, with the page cache cold and warm, and the
// share of step time spent waiting for input. Writes bench/results/train-<date>.md and .json.
//
//   node bench/train.mjs [--quick] [--threads 2] [--models minilm-l6-h384,bert-base] [--no-torch]
//                        [--sections steps,fit] [--fit-rows 512] [--allow-dirty]
// Results are written only from a clean committed tree unless --allow-dirty (then marked DIRTY TREE).
import { createRequire } from 'module';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { fileURLToPath } from 'url';
import { checkTree, cpuText, DirtyTreeError, flagReader, writeResults } from './lib/cli.mjs';
import { cpuDescription,  gitInfo, loadAverage, localDate, nproc } from './lib/system.mjs';
import { makeBatch } from './lib/workload.mjs';
import { median, sleep } from './lib/stats.mjs';
import { runPythonJson } from './lib/python.mjs';
import { fitBench, fitTable } from './lib/fit-bench.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const { Encoder, cpuInfo } = require(path.join(root, 'lib', 'index.js'));
const { TaskModel } = require(path.join(root, 'lib', 'train', 'model.js'));

const args = process.argv.slice(2);
const flag = flagReader(args);
const quick = args.includes('--quick');
const allowDirty = args.includes('--allow-dirty');
const threads = Number(flag('threads', '2'));
const models = flag('models', quick ? 'minilm-l6-h384' : 'minilm-l6-h384,bert-base').split(',');
const B = quick ? 4 : 16, T = quick ? 32 : 128;
const withTorch = !args.includes('--no-torch');
const workDir = path.join(root, 'bench', '.work', 'models');
const MODES = ['full', 'frozen-prefix', 'reduced', 'reduced-adapters'];
const sections = flag('sections', 'steps,fit').split(',');
const fitRows = Number(flag('fit-rows', quick ? '64' : '512'));
const FIT_MODELS = { 'minilm-l6-h384': path.join(root, 'models', 'all-MiniLM-L6-v2'), 'bert-base': path.join(workDir, 'bert-base') };

function ensureModels() {
  if (models.every((m) => fs.existsSync(path.join(workDir, m, 'model.safetensors')))) return;
  process.stderr.write('[train] building the random-weight models (bench/peers/make_models.py)\n');
  execFileSync('python3', [path.join(here, 'peers', 'make_models.py')], { stdio: 'inherit' });
}

async function timeOurs(enc, mode, k, reps, warmup, precision = 'fp32') {
  const model = TaskModel.create(enc, {
    mode, k, head: { kind: 'sequence', numLabels: 2 }, seed: 1, threads, precision,
    adapter: mode.endsWith('adapters') ? { size: 64 } : undefined,
  });
  const batch = makeBatch(B, T);
  const labels = Int32Array.from({ length: B }, (_, i) => i % 2);
  // the recycled modes read layer-k activations, as the store hands them over
  const input = model.recycled ? { hidden: await enc.forward(batch, { toLayer: k }), attentionMask: batch.attentionMask } : { batch };
  const ms = [];
  for (let r = 0; r < warmup + reps; r++) {
    const t0 = performance.now();
    await model.trainStep(input, labels, { lr: 1e-5 });
    if (r >= warmup) ms.push(performance.now() - t0);
    await sleep(50);
  }
  const mem = model.memory();
  return { ms, median: median(ms), params: model.parameterCount(), memoryMiB: (mem.paramBytes + mem.activationBytes) / 2 ** 20 };
}

async function main() {
  const tree = checkTree(root, { allowDirty, write: !quick });
  if (sections.includes('steps') || models.includes('bert-base')) ensureModels();
  const info = cpuInfo();
  const results = { date: new Date().toISOString(), cpu: cpuDescription(), nproc: nproc(), threads, batch: B, seq: T, git: gitInfo(root), kernels: info.kernels, gemm: info.gemm, loadStart: loadAverage(), models: [] };
  for (const name of sections.includes('steps') ? models : []) {
    const dir = path.join(workDir, name);
    const enc = await Encoder.load(dir, { threads });
    const N = enc.numLayers, k = Math.floor(N / 2);
    const reps = quick ? 1 : name === 'bert-base' ? 3 : 5;
    const row = { name, layers: N, hidden: enc.hidden, k, ours: {}, bf16: {}, torch: {} };
    for (const mode of MODES) {
      process.stderr.write(`[train] ${name} ours ${mode} ...\n`);
      row.ours[mode] = await timeOurs(enc, mode, k, reps, 1);
      row.bf16[mode] = await timeOurs(enc, mode, k, reps, 1, 'bf16');
      process.stderr.write(`[train] ${name} ours ${mode}: fp32 ${row.ours[mode].median.toFixed(0)} ms/step, bf16 ${row.bf16[mode].median.toFixed(0)}\n`);
    }
    if (withTorch) {
      for (const mode of MODES) {
        process.stderr.write(`[train] ${name} PyTorch ${mode} ...\n`);
        const r = await runPythonJson(path.join(here, 'peers', 'torch_train.py'), ['--model', dir, '--mode', mode, '--k', String(k), '--batch', String(B), '--seq', String(T), '--threads', String(threads), '--reps', String(reps), '--warmup', '1'], { threads });
        row.torch[mode] = { ms: r.ms, median: median(r.ms) };
        results.torchVersion = r.torch;
        results.torchAttn = r.attn ?? null;
        process.stderr.write(`[train] ${name} PyTorch ${mode}: ${row.torch[mode].median.toFixed(0)} ms/step\n`);
      }
    }
    enc.close();
    results.models.push(row);
  }
  results.fit = [];
  for (const name of sections.includes('fit') ? models : []) {
    const rows = await fitBench({
      root, name: name === 'minilm-l6-h384' ? 'all-MiniLM-L6-v2' : `${name} (random weights)`, modelDir: FIT_MODELS[name], threads,
      rows: name === 'bert-base' ? Math.min(fitRows, 256) : fitRows, batchSize: 32, maxLength: 128,
      workDir: path.join(root, 'bench', '.work'), log: (m) => process.stderr.write(m + '\n'),
    });
    results.fit.push(...rows);
  }
  results.loadEnd = loadAverage();
  const pct = (a, b) => `${a >= b ? '+' : ''}${((a / b - 1) * 100).toFixed(0)}%`;
  const lines = [
    `# Training benchmark, ${localDate()}`, '',
    `- **CPU**: ${cpuText(results.cpu)}; ${results.nproc} logical CPUs; ${threads} threads per engine; load average at start ${results.loadStart.join(' / ')}, at end ${results.loadEnd.join(' / ')}`,
    `- **Versions**: embedding-recycler (git ${results.git?.commit ?? '?'}), oneDNN ${info.gemm}, kernels ${info.kernels}; PyTorch ${results.torchVersion ?? 'not run'}${results.torchAttn ? ` (attention \`${results.torchAttn}\`, as in the encoder benchmark)` : ''}`,
  ];
  if (results.models.length > 0) {
    lines.push(
      `- **Workload**: sequence classification, batch ${B} x ${T} tokens (no padding), k = N/2, dropout 0.1, AdamW with clipping; median ms per step (${quick ? 1 : '3-5'} steps after 1 warm-up). Recycled modes read layer-k activations already in memory (what the store's prefetcher hands over).`,
      '',
      '| Model | mode | ours fp32 ms/step | ours bf16 ms/step | trained params | memory MiB | PyTorch fp32 ms/step | PyTorch / ours fp32 | PyTorch / ours bf16 |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
  }
  for (const m of results.models) {
    for (const mode of MODES) {
      const o = m.ours[mode], h = m.bf16[mode], t = m.torch[mode];
      lines.push(`| ${m.name} | ${mode} | ${o.median.toFixed(0)} | ${h.median.toFixed(0)} | ${o.params.toLocaleString('en-US')} | ${o.memoryMiB.toFixed(0)} | ${t ? t.median.toFixed(0) : '-'} | ${t ? (t.median / o.median).toFixed(2) + 'x' : '-'} | ${t ? (t.median / h.median).toFixed(2) + 'x' : '-'} |`);
    }
  }
  if (results.models.length > 0) lines.push('', '## Speed-ups like the original study', '', '| Model | engine | NR vs R (full / reduced) | F vs R (frozen-prefix / reduced) | NR vs R-adapters |', '| --- | --- | ---: | ---: | ---: |');
  for (const m of results.models) {
    for (const [label, o] of [['ours fp32', m.ours], ['ours bf16', m.bf16], ['PyTorch fp32', m.torch]]) {
      if (!o.full) continue;
      lines.push(`| ${m.name} | ${label} | ${pct(o.full.median, o.reduced.median)} | ${pct(o['frozen-prefix'].median, o.reduced.median)} | ${pct(o.full.median, o['reduced-adapters'].median)} |`);
    }
  }
  if (results.fit.length > 0) {
    lines.push('', '## fit() end to end: store -> prefetch thread -> step', '',
      'One epoch of `reduced` (`fit()`, batch 32, seeded shuffle) on SciCite training sentences (max 128 tokens) whose layer-k activations are read from an fp16 store on disk. ' +
      'The epoch\'s shuffled schedule runs through the native prefetch thread; each batch\'s hidden states go to the native step in place. ' +
      '"Input wait" is the time the loop spent awaiting its next batch (JavaScript side); "prefetch thread count" is the prefetcher\'s own count of the time the consumer waited for data. ' +
      'Cold: the segment files evicted with posix_fadvise(DONTNEED) just before the epoch (share still resident in brackets). The epoch time also includes saving the best checkpoint.', '',
      fitTable(results.fit));
  }
  const md = lines.join('\n') + '\n';
  process.stdout.write(md);
  if (!quick) {
    const out = path.join(root, 'bench', 'results', `train-${localDate()}${sections.includes('steps') ? '' : '-fit'}`);
    writeResults(out, md, results, 'train', { root, allowDirty, start: tree });
  }
}

main().catch((e) => {
  if (e instanceof DirtyTreeError) {
    console.error(`bench/train.mjs: ${e.message}`);
    process.exit(3);
  }
  console.error(e);
  process.exit(1);
});
