// Drives the addon's GPU path in a process of its own (the backend is opened once per
// process, from $ER_CUDA_BACKEND when set: the tests point it at build/er_fake_cuda_backend.so,
// which fills outputs with values made from its inputs). Prints one JSON line of results.
'use strict';
const path = require('path');
const lib = require(path.resolve(__dirname, '..', '..', 'lib'));
const { native } = require(path.resolve(__dirname, '..', '..', 'lib', 'native', 'binding'));

const [kase, fixtures] = process.argv.slice(2);
const tiny = path.join(fixtures, 'tiny-bert');

async function outcome(fn) {
  try {
    const v = await fn();
    return { ok: true, value: v };
  } catch (e) {
    return { error: e.message, name: e.name };
  }
}

const cases = {
  async plumbing() {
    const r = { info: native().cudaInfo() };
    const enc = await lib.Encoder.load(tiny, { device: 'cuda', gpu: 1, precision: 'fp16' });
    r.device = enc.device;
    r.memory = enc.memory();
    const batch = await enc.tokenize(['a longer first text here', 'short'], { pairs: ['one', 'two'] });
    const H = enc.hidden, T = batch.seqLen;
    const out = await enc.forward(batch, { toLayer: 1 });
    // what the fake computes at each position, and whether the addon zeroed the padding
    let wrong = 0, padZero = 0, pads = 0;
    for (let i = 0; i < batch.batchSize * T; i++) {
      for (let j = 0; j < H; j++) {
        const v = out.data[i * H + j];
        if (batch.attentionMask[i] === 0) {
          pads++;
          if (v === 0) padZero++;
          continue;
        }
        const want = Math.fround(1000 + batch.inputIds[i] + batch.positionIds[i] / 1000 + batch.tokenTypeIds[i] / 10 + j / 1e6);
        if (Math.abs(v - want) > 1e-3 * Math.max(1, Math.abs(want))) wrong++;
      }
    }
    r.forward = { wrong, pads, padZero, shape: out.shape, typesUsed: batch.tokenTypeIds.some((t) => t > 0) };
    const from = await enc.forwardFrom({ data: new Float32Array(out.data.length).fill(0.5), shape: out.shape }, batch.attentionMask, { fromLayer: 1, toLayer: 2 });
    let fromWrong = 0;
    for (let i = 0; i < batch.batchSize * T; i++) {
      for (let j = 0; j < H; j++) {
        const want = batch.attentionMask[i] ? 1.5 : 0;
        if (from.data[i * H + j] !== want) fromWrong++;
      }
    }
    r.forwardFrom = { fromWrong };
    const seven = await enc.tokenize(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    r.kernelError = await outcome(() => enc.forward(seven));
    r.taskModel = await outcome(() => lib.TaskModel.create(enc, { mode: 'reduced', k: 1, head: { kind: 'sequence', numLabels: 2 } }));
    r.nativeTaskModel = await outcome(() => new (native().TaskModel)(enc.nativeHandle(), {}));
    r.noSuchGpu = await outcome(() => lib.Encoder.load(tiny, { device: 'cuda', gpu: 2 }));
    // MPNet goes to the GPU (its relative bias table with it); DeBERTa-v2 does not yet
    const mpnet = await lib.Encoder.load(path.join(fixtures, 'tiny-mpnet'), { device: 'cuda' });
    r.mpnetDevice = mpnet.device;
    mpnet.close();
    r.deberta = await outcome(() => lib.Encoder.load(path.join(fixtures, 'tiny-deberta-v2'), { device: 'cuda' }));
    const auto = await lib.Encoder.load(path.join(fixtures, 'tiny-deberta-v2'), { device: 'auto' });
    r.debertaAuto = { device: auto.device, reason: auto.deviceReason };
    auto.close();
    enc.close();
    r.closed = await outcome(() => enc.forward(batch));
    return r;
  },
  // training on the GPU (the fake: the task_forward formula, + 0.25 with dropout, its exact
  // head gradient, AdamW on its own copies of the trainable tensors)
  async train() {
    const fs = require('fs');
    const os = require('os');
    const r = {};
    const enc = await lib.Encoder.load(tiny);
    const H = enc.hidden, N = enc.numLayers;
    const m = lib.TaskModel.create(enc, { mode: 'reduced-adapters', k: 1, head: { kind: 'sequence', numLabels: 3 }, adapter: { size: 4 }, device: 'cuda', gpu: 1, seed: 5 });
    r.device = m.device;
    const w = new Float32Array(3 * H).map((_, i) => (i % H === 0 ? 0.25 * (1 + i / H) : 0.5));
    m.setParameter('head.weight', w);
    m.setParameter('head.bias', Float32Array.from([1, 2, 3]));
    const batch = await enc.tokenize(['a longer first text here', 'short']);
    const hidden = await enc.forward(batch, { toLayer: 1 });
    const T = batch.seqLen;
    const input = { hidden, attentionMask: batch.attentionMask };
    const labels = Int32Array.from([2, 0]);
    const v = [hidden.data[0], hidden.data[T * H]];
    const logitsOf = (bias, wt) => v.flatMap((x) => [0, 1, 2].map((j) => bias[j] + wt[j * H] * x + 100 + 0.5 * 2 * (N - 1)));
    const ev = await m.evalStep(input, labels);
    r.eval = { got: Array.from(ev.logits), want: logitsOf([1, 2, 3], w) };
    // the gradient the host sends down is (softmax - onehot) / B; the fake's chain rule takes it to the head
    const softmax = (lg) => { const mx = Math.max(...lg); const e = lg.map((x) => Math.exp(x - mx)); const z = e.reduce((a, b) => a + b); return e.map((x) => x / z); };
    const lg = logitsOf([1, 2, 3], w);
    const dl = [0, 1].flatMap((b) => softmax(lg.slice(3 * b, 3 * b + 3)).map((p, j) => (p - (labels[b] === j ? 1 : 0)) / 2));
    const gb = [0, 1, 2].map((j) => dl[j] + dl[3 + j]);
    const gw = [0, 1, 2].map((j) => dl[j] * v[0] + dl[3 + j] * v[1]);
    r.loss = await m.computeGradients(input, labels);
    r.gradBias = { got: Array.from(m.gradient('head.bias')), want: gb };
    const gW = m.gradient('head.weight');
    r.gradWeight = { got: [0, 1, 2].map((j) => gW[j * H]), want: gw, restNonZero: gW.filter((x, i) => i % H !== 0 && x !== 0).length };
    // one AdamW step (its first: each trained value moves by lr against its gradient's sign;
    // weights decay, biases do not); the host reads the new values back
    const lr = 0.01, wd = 0.01;
    const st = await m.trainStep(input, labels, { lr, weightDecay: wd, clip: 0 });
    r.gradNorm = { got: st.gradNorm, want: Math.hypot(...gb, ...gw) };
    r.stepBias = { got: Array.from(m.parameter('head.bias')), want: [1, 2, 3].map((b, j) => b - lr * Math.sign(gb[j])) };
    const W1 = m.parameter('head.weight');
    r.stepWeight = { got: [W1[0], W1[1], W1[H + 1]], want: [w[0] * (1 - lr * wd) - lr * Math.sign(gw[0]), w[1] * (1 - lr * wd), w[H + 1] * (1 - lr * wd)] };
    r.steps = m.memory().steps;
    r.memory = m.memory();
    // a value set on the host goes to the GPU before the next step
    m.setParameter('head.bias', Float32Array.from([7, 8, 9]));
    const ev2 = await m.evalStep(input);
    r.afterSet = { got: Array.from(ev2.logits.slice(0, 3)), want: logitsOf([7, 8, 9], m.parameter('head.weight')).slice(0, 3) };
    // a recycled mode also trains from the ids (its prefix on the GPU)
    r.fromIds = await outcome(() => m.trainStep({ batch }, labels, 1e-3));
    const seven = await enc.tokenize(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    r.kernelError = await outcome(() => m.trainStep({ batch: seven }, Int32Array.from([0, 1, 2, 0, 1, 2, 0]), 1e-3));
    // trainTask / er train --device cuda: the trained values reach the task directory
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'er-cuda-train-'));
    const train = path.join(dir, 'train.jsonl');
    fs.writeFileSync(train, ['good', 'bad', 'fine', 'awful', 'nice', 'grim'].map((t, i) => JSON.stringify({ text: `a ${t} day`, label: i % 2 ? 'neg' : 'pos' })).join('\n') + '\n');
    const { log } = await lib.trainTask({ task: 'classification', train, mode: 'reduced', model: tiny, store: path.join(dir, 'store'), layer: 1, lr: 0.05, epochs: 3, batchSize: 2, out: path.join(dir, 'task'), device: 'cuda', gpu: 1, seed: 2 });
    r.log = log.map((e) => e.trainLoss);
    const init = lib.TaskModel.create(enc, { mode: 'reduced', k: 1, head: { kind: 'sequence', numLabels: 2 }, seed: 2 });
    const s = await lib.InferenceSession.open(path.join(dir, 'task'));
    const saved = s.model.parameter('head.bias'), first = init.parameter('head.bias');
    r.saved = { device: s.model.device, moved: Array.from(saved).map((x, j) => Math.abs(x - first[j])), decay: (() => { const a = s.model.parameter('layer.2.ffn.out.weight'), b = init.parameter('layer.2.ffn.out.weight'); const q = Array.from(a).map((x, i) => x / b[i]).filter(Number.isFinite); return { min: Math.min(...q), max: Math.max(...q) }; })() };
    await s.close();
    const cli = path.resolve(__dirname, '..', '..', 'lib', 'cli', 'main.js');
    const run = (...args) => require('child_process').spawnSync(process.execPath, [cli, 'train', '--task', 'classification', '--train', train, '--mode', 'reduced', '--model', tiny, '--store', path.join(dir, 'store'), '--layer', '1', '--epochs', '1', '--quiet', ...args], { encoding: 'utf8', env: process.env });
    const c = run('--out', path.join(dir, 'cli'), '--device', 'cuda', '--gpu', '1');
    r.cli = { status: c.status, stderr: c.stderr, task: c.status === 0 ? JSON.parse(fs.readFileSync(path.join(dir, 'cli', 'task.json'), 'utf8')).mode : null };
    const b16 = run('--out', path.join(dir, 'cli2'), '--device', 'cuda', '--precision', 'bf16');
    r.cliBf16 = { status: b16.status, stderr: b16.stderr };
    fs.rmSync(dir, { recursive: true, force: true });
    enc.close();
    return r;
  },
  // an inference task model on the GPU (the fake: logits[r][j] = head_b[j] + head_w[j][0] * v_r
  // + 100 * (hidden ? fromLayer : -1) + 0.5 * adapters, v_r the row's first input value)
  async task() {
    const fs = require('fs');
    const os = require('os');
    const r = {};
    const enc = await lib.Encoder.load(tiny);
    const H = enc.hidden, N = enc.numLayers;
    const opts = { mode: 'reduced-adapters', k: 1, head: { kind: 'sequence', numLabels: 3 }, adapter: { size: 4 }, inference: true, device: 'cuda', gpu: 1 };
    const m = await lib.TaskModel.createAsync(enc, opts);
    r.device = m.device;
    r.reason = m.deviceReason;
    const w = new Float32Array(3 * H).map((_, i) => (i % H === 0 ? 0.25 * (1 + i / H) : 9));
    m.setParameter('head.weight', w);
    m.setParameter('head.bias', Float32Array.from([1, 2, 3]));
    const batch = await enc.tokenize(['a longer first text here', 'short']);
    const hidden = await enc.forward(batch, { toLayer: 1 });
    const T = batch.seqLen;
    const expectSeq = (bias, v, marker) => [0, 1, 2].map((j) => bias[j] + w[j * H] * v + marker + 0.5 * 2 * (N - 1));
    const labels = Int32Array.from([2, 0]);
    const ev = await m.evalStep({ hidden, attentionMask: batch.attentionMask }, labels);
    const want = [0, 1].flatMap((b) => expectSeq([1, 2, 3], hidden.data[b * T * H], 100));
    r.seq = { got: Array.from(ev.logits), want };
    // the loss is the host's cross-entropy of those logits
    const ce = (lg, y) => { const mx = Math.max(...lg); const z = lg.reduce((a, x) => a + Math.exp(x - mx), 0); return Math.log(z) + mx - lg[y]; };
    r.loss = { got: ev.loss, want: (ce(want.slice(0, 3), 2) + ce(want.slice(3, 6), 0)) / 2 };
    // a parameter change is uploaded again before the next step
    m.setParameter('head.bias', Float32Array.from([10, 20, 30]));
    const ev2 = await m.evalStep({ hidden, attentionMask: batch.attentionMask });
    r.reuploaded = { got: Array.from(ev2.logits.slice(0, 3)), want: expectSeq([10, 20, 30], hidden.data[0], 100) };
    // fp16 states (as an fp16 store holds them) go down as they are: 1.5 and -2 as half codes
    const h16 = new Uint16Array(hidden.data.length);
    h16[0] = 0x3e00;
    h16[T * H] = 0xc000;
    const evh = await m.evalStep({ hidden16: { data: h16, shape: hidden.shape }, attentionMask: batch.attentionMask });
    r.half = { got: Array.from(evh.logits), want: [...expectSeq([10, 20, 30], 1.5, 100), ...expectSeq([10, 20, 30], -2, 100)] };
    // a recycled model on the GPU also runs from the ids (its prefix there)
    const ev3 = await m.evalStep({ batch });
    r.fromIds = { got: Array.from(ev3.logits.slice(0, 3)), want: expectSeq([10, 20, 30], batch.inputIds[0], -100) };
    r.memory = m.memory();
    r.train = await outcome(() => m.trainStep({ hidden, attentionMask: batch.attentionMask }, labels, 1e-3));
    const seven = await enc.tokenize(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    r.kernelError = await outcome(() => m.evalStep({ batch: seven }));
    // a token head in mode full, from the ids
    const tok = lib.TaskModel.create(enc, { mode: 'full', head: { kind: 'token', numLabels: 2 }, inference: true, device: 'cuda' });
    const tw = tok.parameter('head.weight'), tb = tok.parameter('head.bias');
    const ev4 = await tok.evalStep({ batch });
    let wrongTok = 0;
    for (let i = 0; i < batch.batchSize * T; i++)
      for (let j = 0; j < 2; j++) if (Math.abs(ev4.logits[i * 2 + j] - (tb[j] + tw[j * H] * batch.inputIds[i] - 100)) > 1e-4 * Math.max(1, Math.abs(ev4.logits[i * 2 + j]))) wrongTok++;
    r.token = { wrongTok, n: ev4.logits.length };
    const bf16 = lib.TaskModel.create(enc, { ...opts, inference: false, precision: 'bf16' });
    r.trainBf16 = { device: bf16.device };
    r.trainGpuPrecision = await outcome(() => lib.TaskModel.create(enc, { ...opts, inference: false, gpuPrecision: 'fp16' }));
    const deb = await lib.Encoder.load(path.join(fixtures, 'tiny-deberta-v2'));
    r.deberta = await outcome(() => lib.TaskModel.create(deb, { ...opts, k: 1 }));
    const debAuto = lib.TaskModel.create(deb, { ...opts, k: 1, device: 'auto' });
    r.debertaAuto = { device: debAuto.device, reason: debAuto.deviceReason };
    r.nativeDeberta = await outcome(() => new (native().TaskModel)(deb.nativeHandle(), { mode: 3, k: 1, head: 0, numLabels: 3, adapterSize: 4, inference: true, device: 'cuda' }));
    deb.close();
    // an inference session on the GPU: a recycled task without a store runs from the ids there
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'er-cuda-task-'));
    const train = path.join(dir, 'train.jsonl');
    fs.writeFileSync(train, ['good', 'bad', 'fine', 'awful'].map((t, i) => JSON.stringify({ text: `a ${t} day`, label: i % 2 ? 'neg' : 'pos' })).join('\n') + '\n');
    await lib.trainTask({ task: 'classification', train, mode: 'reduced-adapters', model: tiny, store: path.join(dir, 'store'), layer: 1, adapterSize: 4, lr: 1e-3, epochs: 1, out: path.join(dir, 'task') });
    // opened without its store (a directory with none), so every text runs from its ids
    const s = await lib.InferenceSession.open(path.join(dir, 'task'), { device: 'cuda', gpu: 1, store: path.join(dir, 'no-store') });
    const [p] = await s.predict([{ text: 'a good day' }]);
    const sw = s.model.parameter('head.weight'), sb = s.model.parameter('head.bias');
    const one = await enc.tokenize(['a good day']);
    const lg = [0, 1].map((j) => sb[j] + sw[j * H] * one.inputIds[0] - 100 + 0.5 * 2 * (N - 1));
    const e0 = Math.exp(lg[0] - Math.max(...lg)), e1 = Math.exp(lg[1] - Math.max(...lg));
    r.session = { device: s.model.device, probabilities: p.probabilities, want: { neg: e0 / (e0 + e1), pos: e1 / (e0 + e1) }, labels: s.labels.labels ?? null };
    await s.close();
    // er predict --device cuda: the same logits through the CLI
    const input = path.join(dir, 'in.jsonl');
    fs.writeFileSync(input, JSON.stringify({ text: 'a good day' }) + '\n');
    const cli = path.resolve(__dirname, '..', '..', 'lib', 'cli', 'main.js');
    const run = (...args) => require('child_process').spawnSync(process.execPath, [cli, 'predict', '--task', path.join(dir, 'task'), '--input', input, '--store', path.join(dir, 'no-store'), ...args], { encoding: 'utf8' });
    const pc = run('--device', 'cuda', '--gpu', '1');
    r.cli = { status: pc.status, stderr: pc.stderr, line: pc.status === 0 ? JSON.parse(pc.stdout.trim()) : null };
    const bad = run('--device', 'gpu');
    r.cliBad = { status: bad.status, stderr: bad.stderr };
    fs.rmSync(dir, { recursive: true, force: true });
    enc.close();
    return r;
  },
  // device 'cuda' or 'auto' when the backend cannot serve: the reason, and the CPU for 'auto'
  async refused() {
    const r = { info: native().cudaInfo() };
    r.cuda = await outcome(() => lib.Encoder.load(tiny, { device: 'cuda' }));
    const auto = await lib.Encoder.load(tiny, { device: 'auto' });
    r.auto = { device: auto.device, reason: auto.deviceReason };
    const cpu = await lib.Encoder.load(tiny);
    const batch = await cpu.tokenize(['the same text on both', 'x']);
    const a = await auto.forward(batch), c = await cpu.forward(batch);
    r.autoEqualsCpu = Buffer.compare(Buffer.from(a.data.buffer), Buffer.from(c.data.buffer)) === 0;
    r.fp16Auto = await outcome(() => lib.Encoder.load(tiny, { device: 'auto', precision: 'fp16' }));
    const taskOpts = { mode: 'reduced', k: 1, head: { kind: 'sequence', numLabels: 2 }, inference: true };
    r.taskCuda = await outcome(() => lib.TaskModel.create(cpu, { ...taskOpts, device: 'cuda' }));
    const ta = lib.TaskModel.create(cpu, { ...taskOpts, device: 'auto' });
    r.taskAuto = { device: ta.device, reason: ta.deviceReason };
    auto.close();
    cpu.close();
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
