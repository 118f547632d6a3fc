// The forward-only path of inference task models (no gradients, no saved activations,
// prepacked linear layers) against a training model's evaluation step on the same
// weights: every mode x head, on trained (not freshly initialised) weights.
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Batch, Encoder } from '../../src/model/encoder';
import { HeadKind, TaskModel, TaskModelOptions, TRAIN_MODES } from '../../src/train/model';
import { FIXTURES, requireMiniLM } from '../helpers/fixtures';

let tiny: Encoder;
let mini: Encoder;
beforeAll(async () => {
  tiny = await Encoder.load(path.join(FIXTURES, 'tiny-bert'), { threads: 2 });
  mini = await Encoder.load(requireMiniLM(), { threads: 2 });
});
afterAll(() => {
  tiny.close();
  mini.close();
});

const TEXTS = ['the enzyme binds the inhibitor', 'patients received a lower dose of the drug than planned', 'tumour growth slowed', 'insulin'];

function labelsFor(head: HeadKind, b: Batch): Int32Array {
  if (head === 'sequence') return Int32Array.from({ length: b.batchSize }, (_, i) => i % 2);
  if (head === 'qa') return Int32Array.from({ length: 2 * b.batchSize }, (_, i) => (i % 2 === 0 ? 1 : 2));
  return Int32Array.from({ length: b.batchSize * b.seqLen }, (_, i) => (b.attentionMask[i] ? i % 3 : -100));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/**
 * The logits that mean something: every row of a sequence head; for token and QA heads the
 * real tokens only (forward-only runs skip the padding, whose logits are not defined).
 */
function realLogits(logits: Float32Array, head: HeadKind, b: Batch): Float32Array {
  if (head === 'sequence') return logits;
  const per = logits.length / (b.batchSize * b.seqLen);
  return logits.filter((_, i) => b.attentionMask[Math.floor(i / per)] === 1);
}

/** A training model stepped a few times (so every trained weight moved), and an inference twin with its weights. */
async function twins(enc: Encoder, opts: TaskModelOptions, b: Batch) {
  const train = TaskModel.create(enc, { ...opts, dropout: { hidden: 0.1, attention: 0.1, head: 0.1 }, seed: 5 });
  const input = train.recycled ? { hidden: await enc.forward(b, { toLayer: train.k }), attentionMask: b.attentionMask } : { batch: b };
  const y = labelsFor(opts.head.kind, b);
  for (let s = 0; s < 3; s++) await train.trainStep(input, y, 5e-3);
  const infer = TaskModel.create(enc, { ...opts, inference: true, dropout: { hidden: 0, attention: 0, head: 0 }, seed: 9 });
  // one forward before the weights arrive: the prepacked layers must follow later changes
  await infer.evalStep(input);
  for (const name of train.parameterNames()) infer.setParameter(name, train.parameter(name));
  return { train, infer, input, y };
}

describe('forward-only inference models', () => {
  for (const mode of TRAIN_MODES) {
    for (const head of ['sequence', 'token', 'qa'] as HeadKind[]) {
      it(`${mode} / ${head}: logits and loss equal the training model's evaluation within 1e-5`, async () => {
        const b = await tiny.tokenize(TEXTS, {});
        const opts: TaskModelOptions = {
          mode, k: 1, head: { kind: head, numLabels: head === 'qa' ? undefined : 3 },
          adapter: mode.endsWith('adapters') ? { size: 8 } : undefined,
        };
        const { train, infer, input, y } = await twins(tiny, opts, b);
        const ref = await train.evalStep(input, y);
        const got = await infer.evalStep(input, y);
        const d = maxDiff(realLogits(got.logits, head, b), realLogits(ref.logits, head, b));
        expect(d).toBeLessThan(1e-5);
        expect(Math.abs(got.loss! - ref.loss!)).toBeLessThan(1e-5);
        // and it is not trivially equal: the trained weights changed the logits
        const fresh = TaskModel.create(tiny, { ...opts, inference: true, seed: 9 });
        expect(maxDiff(realLogits((await fresh.evalStep(input)).logits, head, b), realLogits(ref.logits, head, b))).toBeGreaterThan(1e-4);
      });
    }
  }

  it('the real MiniLM, reduced at k = 3 with a batch of mixed lengths: within 1e-5, and far less memory', async () => {
    const texts = Array.from({ length: 8 }, (_, i) => `sentence ${i} about kinase activity measured ${'in vitro '.repeat(i * 4)}with inhibitors`);
    const b = await mini.tokenize(texts, {});
    const { train, infer, input, y } = await twins(mini, { mode: 'reduced', k: 3, head: { kind: 'sequence', numLabels: 2 } }, b);
    const ref = await train.evalStep(input, y);
    const got = await infer.evalStep(input, y);
    const d = maxDiff(got.logits, ref.logits);
    console.log(`MiniLM reduced k=3: forward-only vs evaluation max |logit difference| ${d.toExponential(2)}; activation bytes ${infer.memory().activationBytes} vs ${train.memory().activationBytes}`);
    expect(d).toBeLessThan(1e-5);
    expect(infer.memory().paramBytes).toBeLessThan(train.memory().paramBytes / 3);
    expect(infer.memory().activationBytes).toBeLessThan(train.memory().activationBytes / 3);
  });

  it('refuses training steps', async () => {
    const b = await tiny.tokenize(TEXTS, {});
    const m = TaskModel.create(tiny, { mode: 'full', head: { kind: 'sequence', numLabels: 2 }, inference: true });
    await expect(m.trainStep({ batch: b }, Int32Array.from([0, 1, 0, 1]), 1e-3)).rejects.toThrow(/inference only/);
  });
});

describe('padding is skipped (rows run packed)', () => {
  it("the encoder: each row's real tokens equal the row run alone, and the padding comes out as zeros", async () => {
    const texts = ['a short one', 'a much longer sentence about the enzyme that binds the inhibitor in vitro', 'mid length text here'];
    const b = await mini.tokenize(texts, {});
    const all = await mini.forward(b, { toLayer: 4 });
    const H = mini.shape.hidden;
    let worst = 0, padNonZero = 0;
    for (let r = 0; r < texts.length; r++) {
      const one = await mini.forward(await mini.tokenize([texts[r]], {}), { toLayer: 4 });
      const len = one.shape[1];
      for (let t = 0; t < b.seqLen; t++) {
        for (let j = 0; j < H; j++) {
          const v = all.data[(r * b.seqLen + t) * H + j];
          if (t < len) worst = Math.max(worst, Math.abs(v - one.data[t * H + j]));
          else if (v !== 0) padNonZero++;
        }
      }
    }
    expect(b.attentionMask.includes(0)).toBe(true);
    expect(worst).toBeLessThan(1e-5);
    expect(padNonZero).toBe(0);
    // forwardFrom continues a packed forward bit for bit
    const top = await mini.forward(b);
    const cont = await mini.forwardFrom(await mini.forward(b, { toLayer: 2 }), b.attentionMask, { fromLayer: 2 });
    expect(maxDiff(cont.data, top.data)).toBe(0);
  });
});

describe('relative positions (MPNet, DeBERTa-v2) in the task models', () => {
  it.each(['tiny-mpnet', 'tiny-deberta-v2', 'tiny-deberta-v2-b'])('every mode trains on %s, and forward-only logits equal evaluation within 1e-5', async (name) => {
    const mp = await Encoder.load(path.join(FIXTURES, name), { threads: 2 });
    try {
      const b = await mp.tokenize(TEXTS, {});
      for (const mode of TRAIN_MODES) {
        const opts: TaskModelOptions = { mode, k: 1, head: { kind: 'sequence', numLabels: 3 }, adapter: mode.endsWith('adapters') ? { size: 8 } : undefined };
        const { train, infer, input, y } = await twins(mp, opts, b);
        const first = (await train.evalStep(input, y)).loss!;
        for (let s = 0; s < 20; s++) await train.trainStep(input, y, 5e-3);
        const ref = await train.evalStep(input, y);
        expect(ref.loss!, mode).toBeLessThan(first);
        for (const name of train.parameterNames()) infer.setParameter(name, train.parameter(name));
        expect(maxDiff((await infer.evalStep(input, y)).logits, ref.logits), mode).toBeLessThan(1e-5);
      }
    } finally {
      mp.close();
    }
  });
});
