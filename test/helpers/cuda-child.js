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
