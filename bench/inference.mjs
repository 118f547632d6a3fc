#!/usr/bin/env node
// The original study's inference table on this machine: ms per batch for the plain encoder
// (all N layers from token ids) against recycling (layer-k activations read from the store,
// then layers k+1..N) from an fp32 and an fp16 store, with the store's prefetcher on and off.
// Models: the real all-MiniLM-L6-v2 and BERT-base shapes (random weights, bench/.work/models),
// k = N/2, batch 32 x 128 tokens: windows of exactly 128 tokens cut from long real documents
// (../shared/data, several sentences joined). Writes bench/results/inference-<date>.md/.json.
//
//   node bench/inference.mjs [--quick] [--batches 6] [--passes 3] [--threads 2] [--models minilm,bert-base] [--allow-dirty]
// Results are written only from a clean committed tree unless --allow-dirty (then marked DIRTY TREE).
import { createRequire } from 'module';
import * as fs from 'fs';
import * as path from 'path';
import { fileURLToPath } from 'url';
import { checkTree, cpuText, DirtyTreeError, flagReader, writeResults } from './lib/cli.mjs';
import { cpuDescription, gitInfo, localDate, loadAverage, nproc } from './lib/system.mjs';
import { median, sleep } from './lib/stats.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const { Encoder, ActivationStore, cpuInfo } = require(path.join(root, 'lib', 'index.js'));

const args = process.argv.slice(2);
const flag = flagReader(args);
const quick = args.includes('--quick');
const allowDirty = args.includes('--allow-dirty');
const threads = Number(flag('threads', '2'));
const nBatches = Number(flag('batches', quick ? '2' : '6'));
const B = quick ? 8 : 32, T = quick ? 64 : 128;
const MODELS = {
  minilm: { dir: path.join(root, 'models', 'all-MiniLM-L6-v2'), label: 'all-MiniLM-L6-v2 (real)' },
  'bert-base': { dir: path.join(root, 'bench', '.work', 'models', 'bert-base'), label: 'BERT-base shape (random weights)' },
};
const models = flag('models', quick ? 'minilm' : 'minilm,bert-base').split(',');
const work = path.join(root, 'bench', '.work', 'inference');
const dataDir = path.join(root, '..', 'shared', 'data');

/** Long documents: consecutive SciCite sentences joined (read in place, never copied). */
function documents(n) {
  const lines = fs.readFileSync(path.join(dataDir, 'scicite', 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).text);
  const docs = [];
  for (let i = 0; docs.length < n && i + 12 <= lines.length; i += 12) docs.push({ id: `doc-${docs.length}`, text: lines.slice(i, i + 12).join(' ') });
  return docs;
}

async function main() {
  const tree = checkTree(root, { allowDirty, write: !quick });
  fs.mkdirSync(work, { recursive: true });
  const info = cpuInfo();
  const results = { date: new Date().toISOString(), cpu: cpuDescription(), nproc: nproc(), threads, batch: B, seq: T, batches: nBatches, git: gitInfo(root), gemm: info.gemm, loadStart: loadAverage(), models: [] };
  for (const name of models) {
    const m = MODELS[name];
    if (!fs.existsSync(path.join(m.dir, 'model.safetensors'))) throw new Error(`${m.dir} is missing (npm run fetch-model, or python3 bench/peers/make_models.py)`);
    const enc = await Encoder.load(m.dir, { threads });
    const k = Math.floor(enc.numLayers / 2);
    // windows of exactly T tokens: the full windows of long documents
    const stores = {};
    for (const dtype of ['fp32', 'fp16']) {
      const dir = path.join(work, `${name}-l${k}-t${T}-${dtype}`);
      fs.rmSync(dir, { recursive: true, force: true });
      const store = await ActivationStore.create(dir, enc, { layer: k, dtype, maxLength: T, stride: 0 });
      const docs = documents(nBatches * B);
      await store.encode(docs, { batchSize: B });
      // the same windows in both stores (keys differ: they include the store's identity)
      let keys = [];
      for (const d of docs) for (const ref of store.document(d.id)) if (ref.tokens === T) keys.push(ref.key);
      keys = keys.slice(0, nBatches * B);
      if (keys.length < nBatches * B) throw new Error(`only ${keys.length} full windows; raise the document count`);
      stores[dtype] = { store, keys };
    }
    // the same windows as token ids, for the plain encoder
    const docEncodings = new Map();
    for (const d of documents(nBatches * B)) {
      const { encodings, keys } = await stores.fp16.store.windows(d.text);
      keys.forEach((k16, i) => docEncodings.set(k16.toString('hex'), encodings[i]));
    }
    const batchesIds = [];
    for (let b = 0; b < nBatches; b++) {
      const es = stores.fp16.keys.slice(b * B, (b + 1) * B).map((k16) => docEncodings.get(k16.toString('hex')));
      batchesIds.push(enc.batchFromEncodings(es));
    }
    const row = { name, label: m.label, layers: enc.numLayers, hidden: enc.hidden, k, results: {} };
    const runs = {
      plain: async () => {
        const ms = [];
        for (const batch of batchesIds) {
          const t0 = performance.now();
          await enc.forward(batch);
          ms.push(performance.now() - t0);
        }
        return ms;
      },
    };
    // the ceiling: layers k+1..N on activations already in memory (no store read at all)
    const inMemory = [];
    for await (const b of stores.fp32.store.batches(stores.fp32.keys, { batchSize: B, prefetch: false, copy: true })) inMemory.push(b);
    runs['suffix-only'] = async () => {
      const ms = [];
      for (const b of inMemory) {
        const t0 = performance.now();
        await enc.forwardFrom(b.hidden, b.attentionMask, { fromLayer: k });
        ms.push(performance.now() - t0);
      }
      return ms;
    };
    for (const dtype of ['fp32', 'fp16']) {
      for (const prefetch of [false, 2]) {
        runs[`${dtype}-${prefetch ? 'prefetch' : 'no-prefetch'}`] = async () => {
          const { store, keys } = stores[dtype];
          const ms = [];
          let t0 = performance.now();
          for await (const b of store.batches(keys, { batchSize: B, prefetch })) {
            await enc.forwardFrom(b.hidden, b.attentionMask, { fromLayer: k });
            const t1 = performance.now();
            ms.push(t1 - t0); // reading this batch (or waiting for it) + layers k+1..N
            t0 = t1;
          }
          return ms;
        };
      }
    }
    const reps = Number(flag('passes', quick ? '1' : '3'));
    results.passes = reps;
    const all = Object.fromEntries(Object.keys(runs).map((r) => [r, []]));
    await runs.plain(); // warm-up
    for (let rep = 0; rep < reps; rep++) {
      const order = Object.keys(runs);
      for (let i = 0; i < order.length; i++) {
        const key = order[(i + rep) % order.length];
        all[key].push(...(await runs[key]()));
        await sleep(100);
      }
    }
    for (const [key, ms] of Object.entries(all)) row.results[key] = { median: median(ms), n: ms.length };
    process.stderr.write(`[inference] ${name}: ${Object.entries(row.results).map(([k2, v]) => `${k2} ${v.median.toFixed(0)} ms`).join(', ')}\n`);
    for (const s of Object.values(stores)) s.store.close();
    enc.close();
    results.models.push(row);
  }
  results.loadEnd = loadAverage();
  const lines = [
    `# Inference with recycled activations, ${localDate()}`, '',
    `- **CPU**: ${cpuText(results.cpu)}; ${results.nproc} logical CPUs; ${threads} threads; load average at start ${results.loadStart.join(' / ')}, at end ${results.loadEnd.join(' / ')}`,
    `- **Engine**: git ${results.git?.commit ?? '?'}, ${results.gemm}, fp32 compute`,
    `- **Workload**: batches of ${B} windows of exactly ${T} tokens cut from long documents (12 SciCite sentences joined); ${nBatches} batches, ${results.passes} passes, engines interleaved; median ms per batch. Plain: all N layers from token ids. Recycled: the batch read from the store (page cache warm: the store was just written) and decoded to fp32, then layers k+1..N; the time per batch includes waiting for the read. Suffix only: layers k+1..N on activations already in memory, the ceiling of any store. k = N/2.`,
    '',
    '| Model | plain ms | suffix only (no store) | fp32 store, no prefetch | fp32 store, prefetch | fp16 store, no prefetch | fp16 store, prefetch |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results.models) {
    const p = r.results.plain.median;
    const cell = (key) => (r.results[key] ? `${r.results[key].median.toFixed(0)} ms (+${((p / r.results[key].median - 1) * 100).toFixed(1)}%)` : 'not run');
    lines.push(`| ${r.label}, ${r.layers} layers, k = ${r.k} | ${p.toFixed(0)} | ${cell('suffix-only')} | ${cell('fp32-no-prefetch')} | ${cell('fp32-prefetch')} | ${cell('fp16-no-prefetch')} | ${cell('fp16-prefetch')} |`);
  }
  lines.push('', '+X% = plain time / recycled time - 1 (the theoretical gain for k = N/2 is +100%).');
  const md = lines.join('\n') + '\n';
  process.stdout.write(md);
  if (!quick) {
    const out = path.join(root, 'bench', 'results', `inference-${localDate()}`);
    writeResults(out, md, results, 'inference', { root, allowDirty, start: tree });
  }
}

main().catch((e) => {
  if (e instanceof DirtyTreeError) {
    console.error(`bench/inference.mjs: ${e.message}`);
    process.exit(3);
  }
  console.error(e);
  process.exit(1);
});
