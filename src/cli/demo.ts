import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Command } from 'commander';
import { Encoder } from '../model/encoder';
import { ActivationStore } from '../store/store';
import { classificationRows, LabelMap } from '../tasks/features';
import { classificationMetrics } from '../tasks/metrics';
import { argmax } from '../tasks/predict';
import { evaluate, fit } from '../train/loop';
import { TaskModel } from '../train/model';

/** Where `npm run fetch-model` puts the real MiniLM. */
export const DEFAULT_MODEL_DIR = path.resolve(__dirname, '..', '..', 'models', 'all-MiniLM-L6-v2');

const DEMO_TEXTS = [
  'Embedding recycling runs the lower layers of an encoder once and keeps their activations.',
  'The upper layers then train and serve task models at about half the cost.',
  'Aspirin inhibits cyclooxygenase, reducing prostaglandin synthesis.',
  'The cat sat on the mat.',
];

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

/** `er demo`: the real MiniLM split at its middle layer, with no arguments needed. */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the encoder on a few sentences, split at layer k, and show that recycling layer k reproduces the full pass')
    .option('--model <dir>', 'Hugging Face model directory', DEFAULT_MODEL_DIR)
    .option('--layer <k>', 'layer to split at (default: the middle)')
    .action(async (opts: { model: string; layer?: string }) => {
      if (!fs.existsSync(opts.model)) {
        throw new Error(`model directory ${opts.model} does not exist; run \`npm run fetch-model\` first (or pass --model DIR)`);
      }
      const t0 = performance.now();
      const enc = await Encoder.load(opts.model);
      const k = opts.layer === undefined ? Math.floor(enc.numLayers / 2) : Number(opts.layer);
      const s = enc.shape;
      process.stdout.write(`model: ${opts.model}\n  ${s.family}, ${s.layers} layers, hidden ${s.hidden}, ${s.heads} heads (loaded in ${(performance.now() - t0).toFixed(0)} ms)\n`);
      const batch = await enc.tokenize(DEMO_TEXTS);
      process.stdout.write(`batch: ${batch.batchSize} texts, padded to ${batch.seqLen} tokens\n`);
      let t = performance.now();
      const full = await enc.forward(batch);
      const tFull = performance.now() - t;
      t = performance.now();
      const hk = await enc.forward(batch, { toLayer: k });
      const tPrefix = performance.now() - t;
      t = performance.now();
      const top = await enc.forwardFrom(hk, batch.attentionMask, { fromLayer: k });
      const tSuffix = performance.now() - t;
      let identical = true;
      for (let i = 0; i < full.data.length; i++) if (full.data[i] !== top.data[i]) { identical = false; break; }
      process.stdout.write(
        `full encoder (layers 1..${s.layers}):      ${tFull.toFixed(1)} ms\n` +
          `prefix (layers 1..${k}, cached once):     ${tPrefix.toFixed(1)} ms\n` +
          `suffix from the cache (layers ${k + 1}..${s.layers}): ${tSuffix.toFixed(1)} ms\n` +
          `suffix output equals the full pass bit for bit: ${identical}\n`,
      );
      // mean-pooled sentence embeddings (what all-MiniLM-L6-v2 was trained for)
      const H = enc.hidden, T = batch.seqLen;
      const pooled = DEMO_TEXTS.map((_, b) => {
        const v = new Float32Array(H);
        let n = 0;
        for (let p = 0; p < T; p++) {
          if (!batch.attentionMask[b * T + p]) continue;
          n++;
          for (let j = 0; j < H; j++) v[j] += full.data[(b * T + p) * H + j];
        }
        return v.map((x) => x / n);
      });
      process.stdout.write('cosine similarity of mean-pooled embeddings:\n');
      for (let i = 0; i < DEMO_TEXTS.length; i++) {
        const row = DEMO_TEXTS.map((_, j) => cosine(pooled[i], pooled[j]).toFixed(2).padStart(6)).join('');
        process.stdout.write(`  ${row}   ${DEMO_TEXTS[i].slice(0, 50)}\n`);
      }
      await recyclingDemo(enc, k);
      enc.close();
    });
}

/** A small built-in task: sentences about three topics (kidney, metabolism, heart). */
function demoTask(): { text: string; label: string }[] {
  const topics: Record<string, string[]> = {
    renal: ['kidney function', 'renal failure', 'dialysis', 'nephropathy', 'glomerular filtration'],
    metabolic: ['insulin resistance', 'blood glucose', 'type 2 diabetes', 'obesity', 'lipid metabolism'],
    cardiac: ['heart failure', 'cardiac arrest', 'arrhythmia', 'myocardial infarction', 'blood pressure'],
  };
  const frames = ['We measured {} in the cohort.', 'Patients with {} were enrolled.', 'The drug changed {} after six weeks.',
    'No effect on {} was seen.', '{} improved in the treated group.', 'Our study links {} to age.'];
  const out: { text: string; label: string }[] = [];
  for (const [label, terms] of Object.entries(topics)) {
    terms.forEach((t, i) => frames.forEach((f, j) => { if ((i + j) % 2 === 0) out.push({ text: f.replace('{}', t).replace(/^./, (c) => c.toUpperCase()), label }); }));
  }
  return out;
}

/** Encode a small corpus into a store, train a task model on the recycled layer, predict. */
async function recyclingDemo(enc: Encoder, k: number): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'er-demo-'));
  try {
    const data = demoTask();
    const train = data.filter((_, i) => i % 4 !== 0), test = data.filter((_, i) => i % 4 === 0);
    process.stdout.write(`\nrecycling: a built-in 3-topic task (${train.length} training and ${test.length} test sentences)\n`);
    let t = performance.now();
    const store = await ActivationStore.create(path.join(dir, 'store'), enc, { layer: k, dtype: 'fp16', maxLength: 64 });
    await store.encode(train.map((x, i) => ({ id: `t${i}`, text: x.text })));
    const st = store.stats();
    process.stdout.write(`  er encode: layer ${k} of ${st.docs} sentences stored in ${(performance.now() - t).toFixed(0)} ms (${st.tokens} tokens, ${(st.bytes / 1024).toFixed(0)} KiB fp16)\n`);
    const labels = LabelMap.fromTraining('classification', train.map((x) => x.label), 'demo');
    const rows = (await classificationRows(enc, train.map((x, i) => ({ id: `t${i}`, ...x, line: i + 1 })), labels, 64)).rows;
    const testRows = (await classificationRows(enc, test.map((x, i) => ({ id: `e${i}`, ...x, line: i + 1 })), labels, 64)).rows;
    const model = TaskModel.create(enc, { mode: 'reduced-adapters', k, head: { kind: 'sequence', numLabels: labels.size }, adapter: { size: 32 }, seed: 1 });
    t = performance.now();
    const { log } = await fit({ model, train: rows, store, epochs: 8, batchSize: 16, lr: 3e-3, seed: 1 });
    process.stdout.write(`  er train (reduced-adapters, ${model.parameterCount().toLocaleString('en-US')} trained parameters): ${log.length} epochs in ${(performance.now() - t).toFixed(0)} ms, loss ${log[0].trainLoss.toFixed(3)} -> ${log[log.length - 1].trainLoss.toFixed(3)}\n`);
    const ev = await evaluate(model, testRows, { store });
    const pred = ev.logits.map((z) => labels.labels[argmax(z)]);
    const m = classificationMetrics(test.map((x) => x.label), pred);
    process.stdout.write(`  er eval on unseen sentences: accuracy ${m.accuracy.toFixed(2)}, macro-F1 ${m.macroF1.toFixed(2)}\n`);
    for (const i of [0, Math.floor(test.length / 2), test.length - 1]) process.stdout.write(`    ${JSON.stringify(test[i].text)} -> ${pred[i]}\n`);
    store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
