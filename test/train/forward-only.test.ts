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
        const d = maxDiff(got.logits, ref.logits);
        expect(d).toBeLessThan(1e-5);
        expect(Math.abs(got.loss! - ref.loss!)).toBeLessThan(1e-5);
        // and it is not trivially equal: the trained weights changed the logits
        const fresh = TaskModel.create(tiny, { ...opts, inference: true, seed: 9 });
        expect(maxDiff((await fresh.evalStep(input)).logits, ref.logits)).toBeGreaterThan(1e-4);
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
