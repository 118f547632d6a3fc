// The GPU path on the emulated backend (build/er_emulated_cuda_backend.so: the real backend's
// host code, encoder, trainer and C table, on a stand-in CUDA runtime whose kernels are the
// CPU engine's), against the CPU engine on the same weights. Runs in a process of its own
// (the backend is opened once per process, from $ER_CUDA_BACKEND). Prints one JSON line.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const lib = require(path.resolve(__dirname, '..', '..', 'lib'));

const [kase, fixtures] = process.argv.slice(2);
const MODES = ['full', 'frozen-prefix', 'reduced', 'reduced-adapters', 'full-adapters'];

async function outcome(fn) {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return { error: e.message };
  }
}

// max |a - b| over max(|a|, |b|) of the two tensors, floored at `floor` (a gradient that is
// zero in exact arithmetic, as a key bias's, is rounding noise on both sides)
function relDiff(a, b, floor) {
  let d = 0, m = floor;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(a[i]), Math.abs(b[i]));
  }
  return d / m;
}

// The worst tensor of model b's gradients against model a's (relDiff per tensor, floored at
// 1e-3 of a's largest gradient: a key bias's gradient is zero but for rounding)
function gradientGap(a, b) {
  let top = 0, worst = 0, worstName = '';
  for (const n of a.parameterNames()) for (const x of a.gradient(n)) top = Math.max(top, Math.abs(x));
  for (const n of a.parameterNames()) {
    const d = relDiff(a.gradient(n), b.gradient(n), 1e-3 * top);
    if (!(d <= worst)) worst = d, worstName = n;
  }
  return { worst, worstName };
}

// the real tokens' values of two (B, T, H) outputs
function maskedDiff(a, b, mask, H) {
  let d = 0;
  for (let t = 0; t < mask.length; t++) {
    if (!mask[t]) continue;
    for (let j = 0; j < H; j++) d = Math.max(d, Math.abs(a[t * H + j] - b[t * H + j]));
  }
  return d;
}

function optionsFor(mode, kind) {
  return {
    mode, k: mode === 'full' || mode === 'full-adapters' ? undefined : 1, head: { kind, numLabels: kind === 'qa' ? undefined : 3 },
    adapter: mode.endsWith('adapters') ? { size: 4 } : undefined, seed: 4,
  };
}

function labelsFor(kind, batch) {
  if (kind === 'sequence') return Int32Array.from({ length: batch.batchSize }, (_, b) => (2 * b + 1) % 3);
  if (kind === 'qa') return Int32Array.from({ length: 2 * batch.batchSize }, (_, i) => 1 + (i % 3));
  return Int32Array.from(batch.attentionMask, (m, i) => (m ? i % 3 : -100));
}

const cases = {
  // the encoder (every layer) and an inference task model's logits
  async encoder() {
    const r = { layers: [], tasks: [] };
    for (const name of ['tiny-bert', 'tiny-mpnet', 'tiny-roberta']) {
      const cpu = await lib.Encoder.load(path.join(fixtures, name));
      const gpu = await lib.Encoder.load(path.join(fixtures, name), { device: 'cuda' });
      const batch = await cpu.tokenize(['a longer first text here, with more words in it', 'short', 'a middle one']);
      for (let l = 0; l <= cpu.numLayers; l++) {
        const a = await cpu.forward(batch, { toLayer: l }), b = await gpu.forward(batch, { toLayer: l });
        r.layers.push({ name, layer: l, diff: maskedDiff(a.data, b.data, batch.attentionMask, cpu.hidden) });
      }
      const hk = await cpu.forward(batch, { toLayer: 1 });
      const from = await gpu.forwardFrom(hk, batch.attentionMask, { fromLayer: 1, toLayer: cpu.numLayers });
      const whole = await cpu.forward(batch);
      r.layers.push({ name, layer: 'from 1', diff: maskedDiff(whole.data, from.data, batch.attentionMask, cpu.hidden) });
      for (const mode of ['full', 'reduced-adapters']) {
        const opts = { ...optionsFor(mode, 'sequence'), inference: true };
        const mc = lib.TaskModel.create(cpu, opts), mg = lib.TaskModel.create(cpu, { ...opts, device: 'cuda' });
        const input = mc.recycled ? { hidden: hk, attentionMask: batch.attentionMask } : { batch };
        const a = await mc.evalStep(input), b = await mg.evalStep(input);
        r.tasks.push({ name, mode, device: mg.device, diff: relDiff(a.logits, b.logits, 1e-6) });
      }
      gpu.close();
      cpu.close();
    }
    return r;
  },
  // a training step's loss and every gradient, in every mode and head, without dropout
  async gradients() {
    const r = [];
    for (const name of ['tiny-bert', 'tiny-mpnet']) {
      const enc = await lib.Encoder.load(path.join(fixtures, name));
      const batch = await enc.tokenize(['a longer first text here, with more words in it', 'short', 'a middle one']);
      const hk = await enc.forward(batch, { toLayer: 1 });
      for (const mode of MODES) {
        for (const kind of ['sequence', 'token', 'qa']) {
          const opts = { ...optionsFor(mode, kind), dropout: { hidden: 0, attention: 0, head: 0 } };
          const mc = lib.TaskModel.create(enc, opts), mg = lib.TaskModel.create(enc, { ...opts, device: 'cuda' });
          const labels = labelsFor(kind, batch);
          const input = mc.recycled ? { hidden: hk, attentionMask: batch.attentionMask } : { batch };
          const lc = await mc.computeGradients(input, labels), lg = await mg.computeGradients(input, labels);
          const { worst, worstName } = gradientGap(mc, mg);
          // a recycled mode on the GPU also takes the ids (its prefix there): the same gradients
          let fromIds = null;
          if (mc.recycled) {
            const mi = lib.TaskModel.create(enc, { ...opts, device: 'cuda' });
            await mi.computeGradients({ batch }, labels);
            fromIds = gradientGap(mc, mi).worst;
          }
          r.push({ name, mode, kind, device: mg.device, loss: [lc, lg], worst, worstName, fromIds, tensors: mc.parameterNames().length });
        }
      }
      enc.close();
    }
    return r;
  },
  // bf16 mixed precision (the linear layers' GEMM inputs rounded to bf16) against the CPU
  // trainer's bf16 mode: a step's loss and gradients, then 4 AdamW steps
  async bf16() {
    const r = [];
    for (const name of ['tiny-bert', 'tiny-mpnet']) {
      const enc = await lib.Encoder.load(path.join(fixtures, name));
      const batch = await enc.tokenize(['a longer first text here, with more words in it', 'short', 'a middle one']);
      const hk = await enc.forward(batch, { toLayer: 1 });
      for (const mode of MODES) {
        const opts = { ...optionsFor(mode, 'token'), dropout: { hidden: 0, attention: 0, head: 0 }, precision: 'bf16' };
        const mc = lib.TaskModel.create(enc, opts), mg = lib.TaskModel.create(enc, { ...opts, device: 'cuda' });
        const f32 = lib.TaskModel.create(enc, { ...opts, precision: 'fp32', device: 'cuda' });
        const labels = labelsFor('token', batch);
        const input = mc.recycled ? { hidden: hk, attentionMask: batch.attentionMask } : { batch };
        const lc = await mc.computeGradients(input, labels), lg = await mg.computeGradients(input, labels);
        const l32 = await f32.computeGradients(input, labels);
        const { worst, worstName } = gradientGap(mc, mg);
        const vs32 = gradientGap(mc, f32).worst;  // bf16 in use: its gradients are not fp32's
        const steps = [];
        for (let s = 0; s < 4; s++) steps.push([(await mc.trainStep(input, labels, 5e-3)).loss, (await mg.trainStep(input, labels, 5e-3)).loss]);
        r.push({ name, mode, loss: [lc, lg, l32], worst, worstName, vs32, steps });
      }
      enc.close();
    }
    return r;
  },
  // steps with AdamW: without dropout the trajectories agree; with hidden and head dropout
  // (the same masks on either device: the same generator, sites and streams) too; attention
  // dropout draws other masks on the GPU
  async steps() {
    const r = [];
    const enc = await lib.Encoder.load(path.join(fixtures, 'tiny-mpnet'));
    const batch = await enc.tokenize(['a longer first text here, with more words in it', 'short', 'a middle one']);
    for (const [what, dropout] of [['none', { hidden: 0, attention: 0, head: 0 }], ['hidden + head', { hidden: 0.2, attention: 0, head: 0.2 }], ['attention', { hidden: 0, attention: 0.3, head: 0 }]]) {
      for (const mode of ['full', 'reduced-adapters']) {
        const opts = { ...optionsFor(mode, 'token'), dropout };
        const mc = lib.TaskModel.create(enc, opts), mg = lib.TaskModel.create(enc, { ...opts, device: 'cuda' });
        const labels = labelsFor('token', batch);
        const input = mc.recycled ? { hidden: await enc.forward(batch, { toLayer: 1 }), attentionMask: batch.attentionMask } : { batch };
        const losses = [];
        for (let s = 0; s < 4; s++) {
          const a = await mc.trainStep(input, labels, 5e-3), b = await mg.trainStep(input, labels, 5e-3);
          losses.push([a.loss, b.loss, a.gradNorm, b.gradNorm]);
        }
        let worst = 0;
        for (const n of mc.parameterNames()) worst = Math.max(worst, relDiff(mc.parameter(n), mg.parameter(n), 1e-3));
        r.push({ what, mode, losses, worst, steps: mg.memory().steps });
      }
    }
    enc.close();
    return r;
  },
  // trainTask on the GPU against the CPU: the same losses, the same saved model; an
  // InferenceSession on the GPU predicts as on the CPU
  async fit() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'er-emulated-'));
    const train = path.join(dir, 'train.jsonl');
    fs.writeFileSync(train, ['good', 'bad', 'fine', 'awful', 'nice', 'grim', 'great', 'poor'].map((t, i) => JSON.stringify({ text: `a ${t} day today`, label: i % 2 ? 'neg' : 'pos' })).join('\n') + '\n');
    const tiny = path.join(fixtures, 'tiny-bert');
    const r = {};
    for (const mode of ['reduced', 'full-adapters']) {
      const run = async (device) => {
        const out = path.join(dir, `${mode}-${device}`);
        const { log } = await lib.trainTask({ task: 'classification', train, dev: train, mode, model: tiny, store: mode === 'reduced' ? path.join(dir, `store-${device}`) : undefined, layer: 1, adapterSize: 4, lr: 5e-3, epochs: 2, batchSize: 3, dropout: 0, out, device, seed: 3 });
        return { log: log.map((e) => [e.trainLoss, e.devLoss]), out };
      };
      const c = await run('cpu'), g = await run('cuda');
      const sc = await lib.InferenceSession.open(c.out), sg = await lib.InferenceSession.open(g.out, { device: 'cuda' });
      const texts = [{ text: 'a good day' }, { text: 'an awful day today' }];
      const pc = await sc.predict(texts), pg = await sg.predict(texts);
      r[mode] = { cpu: c.log, gpu: g.log, sessionDevice: sg.model.device, probs: [pc.map((p) => p.probabilities), pg.map((p) => p.probabilities)] };
      await sc.close();
      await sg.close();
    }
    fs.rmSync(dir, { recursive: true, force: true });
    return r;
  },
  // an fp16 store's records as they are (hidden16, cast on the GPU) against the CPU on the
  // same records decoded: a training step's gradients and an inference model's logits
  async fp16() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'er-emulated-f16-'));
    const enc = await lib.Encoder.load(path.join(fixtures, 'tiny-mpnet'));
    const store = await lib.ActivationStore.create(path.join(dir, 'store'), enc, { layer: 1, dtype: 'fp16', maxLength: 32, stride: 8 });
    const items = ['a longer first text here, with more words in it', 'short', 'a middle one'].map((text, i) => ({ id: `d${i}`, text }));
    await store.encode(items);
    const ids = items.map((i) => i.id);
    let h16, h32;
    for await (const b of store.batches(ids, { batchSize: 8, fp16: true, copy: true })) h16 = b;
    for await (const b of store.batches(ids, { batchSize: 8, copy: true })) h32 = b;
    const r = { rows: h16.hidden16.shape[0], modes: [] };
    for (const mode of ['reduced', 'reduced-adapters']) {
      const opts = { ...optionsFor(mode, 'token'), dropout: { hidden: 0, attention: 0, head: 0 } };
      const mc = lib.TaskModel.create(enc, opts), mg = lib.TaskModel.create(enc, { ...opts, device: 'cuda' });
      const labels = Int32Array.from(h32.attentionMask, (m, i) => (m ? i % 3 : -100));
      const lc = await mc.computeGradients({ hidden: h32.hidden, attentionMask: h32.attentionMask }, labels);
      const lg = await mg.computeGradients({ hidden16: h16.hidden16, attentionMask: h16.attentionMask }, labels);
      const { worst } = gradientGap(mc, mg);
      const ic = lib.TaskModel.create(enc, { ...opts, inference: true }), ig = lib.TaskModel.create(enc, { ...opts, inference: true, device: 'cuda' });
      const a = await ic.evalStep({ hidden: h32.hidden, attentionMask: h32.attentionMask });
      const b = await ig.evalStep({ hidden16: h16.hidden16, attentionMask: h16.attentionMask });
      // real tokens only: logits at padding are not meaningful (the GPU does not zero the padded rows' states)
      const real = (lg) => lg.filter((_, i) => h16.attentionMask[Math.floor(i / 3)] === 1);
      r.modes.push({ mode, loss: [lc, lg], worst, logits: relDiff(real(a.logits), real(b.logits), 1e-6) });
    }
    r.cpuRefused = await outcome(() => lib.TaskModel.create(enc, optionsFor('reduced', 'token')).evalStep({ hidden16: h16.hidden16, attentionMask: h16.attentionMask }));
    store.close();
    enc.close();
    fs.rmSync(dir, { recursive: true, force: true });
    return r;
  },
  // the GPU running out of memory: an error that says what to do, and the process lives on
  async oom() {
    const enc = await lib.Encoder.load(path.join(fixtures, 'tiny-bert'));
    const batch = await enc.tokenize(['a longer first text here, with more words in it', 'short']);
    const m = lib.TaskModel.create(enc, { ...optionsFor('full', 'sequence'), device: 'cuda' });
    const r = { step: await outcome(() => m.trainStep({ batch }, labelsFor('sequence', batch), 1e-3)) };
    const gpuEnc = await outcome(() => lib.Encoder.load(path.join(fixtures, 'tiny-bert'), { device: 'cuda' }));
    r.encoder = gpuEnc.error ? gpuEnc : { ok: true };
    r.after = (await enc.forward(batch)).shape;
    return r;
  },
};

(async () => {
  const fn = cases[kase];
  if (!fn) throw new Error(`unknown case ${kase}`);
  process.stdout.write(JSON.stringify(await fn()) + '\n');
})().catch((e) => {
  process.stdout.write(JSON.stringify({ crashed: e.message }) + '\n');
});
