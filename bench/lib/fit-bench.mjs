// fit() end to end, the path `er train` runs: the store on disk -> the native prefetch
// thread (reading, checking CRCs, decoding fp16 to fp32 into its ring along the epoch's
// shuffled schedule) -> the native training step reading the ring slot in place. Timed
// with the segment files evicted from the page cache (posix_fadvise DONTNEED) and warm,
// against the steps' own time: the share of step time the loop spent waiting for input.
import * as fs from 'fs';
import * as path from 'path';
import { createRequire } from 'module';
import { evict } from './pagecache.mjs';
import { DEFAULT_DATA_DIR } from './corpus.mjs';

const require = createRequire(import.meta.url);

/** SciCite training sentences (real text), the first n, with their labels. */
function examples(n) {
  const file = path.join(DEFAULT_DATA_DIR, 'scicite', 'train.jsonl');
  const out = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const o = JSON.parse(line);
    out.push({ id: `ex-${out.length}`, text: o.text, label: o.label });
    if (out.length >= n) break;
  }
  return out;
}

/**
 * One model: builds (or reuses) a layer-k fp16 store of the rows, then runs fit() for one
 * epoch of `reduced` twice cold and once warm. Returns the rows of the table.
 */
export async function fitBench({ root, name, modelDir, threads, rows: nRows, batchSize, maxLength, workDir, log }) {
  const lib = require(path.join(root, 'lib', 'index.js'));
  const { classificationRows, LabelMap: LM } = require(path.join(root, 'lib', 'tasks', 'features.js'));
  const enc = await lib.Encoder.load(modelDir, { threads });
  const k = Math.floor(enc.numLayers / 2);
  const ex = examples(nRows);
  const labels = LM.fromTraining('classification', ex.map((e) => e.label), 'scicite/train.jsonl');
  const { rows } = await classificationRows(enc, ex, labels, maxLength);
  const storeDir = path.join(workDir, `fit-${name}-k${k}-L${maxLength}-n${nRows}`);
  if (!fs.existsSync(path.join(storeDir, 'manifest.json'))) {
    log(`[fit] ${name}: encoding ${rows.length} rows into ${storeDir}`);
    fs.rmSync(storeDir, { recursive: true, force: true });
    const w = await lib.ActivationStore.create(storeDir, enc, { layer: k, dtype: 'fp16', maxLength });
    await w.encode(rows.map((r, i) => ({ id: `row-${i}`, text: ex[i].text, encodings: [r.encoding] })), { batchSize: 32 });
    w.close();
  }
  const segs = fs.readdirSync(path.join(storeDir, 'segments')).map((f) => path.join(storeDir, 'segments', f));
  const segBytes = segs.reduce((a, f) => a + fs.statSync(f).size, 0);
  const tokens = rows.reduce((a, r) => a + r.encoding.ids.length, 0);
  const out = [];
  for (const cache of ['cold', 'cold', 'warm']) {
    // a fresh store per run: a live mapping would keep the pages from being evicted
    const store = await lib.ActivationStore.open(storeDir, { encoder: enc, layer: k });
    let residentAfter = null;
    if (cache === 'cold') residentAfter = (await evict(segs)).residentAfter;
    const model = lib.TaskModel.create(enc, { mode: 'reduced', k, head: { kind: 'sequence', numLabels: labels.size }, seed: 1, threads });
    const t0 = performance.now();
    const { log: epochs } = await lib.fit({ model, train: rows, store, epochs: 1, batchSize, lr: 1e-4, seed: 1 });
    const wall = (performance.now() - t0) / 1000;
    const e = epochs[0];
    const row = {
      name, cache, k, layers: enc.numLayers, hidden: enc.hidden, rows: rows.length, tokens, batchSize, maxLength,
      segmentBytes: segBytes, residentAfterEvict: residentAfter, fitSeconds: wall, epochSeconds: e.seconds,
      stepSeconds: e.stepSeconds, inputWaitSeconds: e.inputWaitSeconds, prefetchWaitSeconds: e.prefetchWaitSeconds,
      rowsFromStore: e.rowsFromStore, waitShare: e.inputWaitSeconds / e.stepSeconds, prefetchWaitShare: e.prefetchWaitSeconds / e.stepSeconds,
    };
    log(`[fit] ${name} ${cache}: epoch ${e.seconds.toFixed(2)} s, steps ${e.stepSeconds.toFixed(2)} s, input wait ${(e.inputWaitSeconds * 1000).toFixed(1)} ms (${(row.waitShare * 100).toFixed(2)}% of step time; prefetch thread's count ${(e.prefetchWaitSeconds * 1000).toFixed(1)} ms), rows from store ${e.rowsFromStore}/${rows.length}`);
    out.push(row);
    store.close();
  }
  enc.close();
  return out;
}

export function fitTable(rows) {
  const L = [
    '| Model | k | rows x max tokens | page cache | epoch s | steps s | input wait ms | wait, of step time | prefetch thread count ms | rows from store |',
    '| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const cache = r.cache === 'cold' ? `cold (${r.residentAfterEvict === null ? '?' : (r.residentAfterEvict * 100).toFixed(1) + '%'} resident)` : 'warm';
    L.push(`| ${r.name} | ${r.k} | ${r.rows} x ${r.maxLength} | ${cache} | ${r.epochSeconds.toFixed(2)} | ${r.stepSeconds.toFixed(2)} | ${(r.inputWaitSeconds * 1000).toFixed(1)} | ${(r.waitShare * 100).toFixed(2)}% | ${(r.prefetchWaitSeconds * 1000).toFixed(1)} | ${r.rowsFromStore} |`);
  }
  return L.join('\n');
}
