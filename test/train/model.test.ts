// The TaskModel API: determinism, memory by mode, export/import, adapter initialisation,
// bad arguments, and learning a small task.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Batch, Encoder } from '../../src/model/encoder';
import { linearSchedule, TaskModel, TRAIN_MODES } from '../../src/train/model';
import { FIXTURES, requireMiniLM } from '../helpers/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-train-'));
let enc: Encoder;
let batch: Batch;
beforeAll(async () => {
  enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert'), { threads: 2 });
  batch = await enc.tokenize(['the enzyme binds the inhibitor', 'patients received a lower dose', 'tumour growth slowed', 'insulin resistance'], {});
});
afterAll(() => {
  enc.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const labels = Int32Array.from([0, 1, 1, 0]);
async function inputFor(m: TaskModel) {
  return m.recycled ? { hidden: await enc.forward(batch, { toLayer: m.k }), attentionMask: batch.attentionMask } : { batch };
}

describe('TaskModel', () => {
  it('is deterministic: same seed, same threads, same losses (dropout on)', async () => {
    const run = async () => {
      const m = TaskModel.create(enc, { mode: 'full', head: { kind: 'sequence', numLabels: 2 }, seed: 42 });
      const losses: number[] = [];
      for (let s = 0; s < 4; s++) losses.push((await m.trainStep({ batch }, labels, 1e-3)).loss);
      return losses;
    };
    const [a, b] = [await run(), await run()];
    expect(a).toEqual(b);
    const m2 = TaskModel.create(enc, { mode: 'full', head: { kind: 'sequence', numLabels: 2 }, seed: 43 });
    expect((await m2.trainStep({ batch }, labels, 1e-3)).loss).not.toEqual(a[0]);
  });

  it('every mode trains and lowers the loss on a small task', async () => {
    for (const mode of TRAIN_MODES) {
      const m = TaskModel.create(enc, { mode, k: 1, head: { kind: 'sequence', numLabels: 2 }, adapter: mode.endsWith('adapters') ? { size: 8 } : undefined, seed: 3, dropout: { hidden: 0, attention: 0, head: 0 } });
      const input = await inputFor(m);
      const lr = linearSchedule(mode.endsWith('adapters') ? 1e-2 : 3e-3, 2, 30);
      const first = (await m.evalStep(input, labels)).loss!;
      for (let s = 0; s < 30; s++) await m.trainStep(input, labels, lr(s));
      const last = (await m.evalStep(input, labels)).loss!;
      expect(last, mode).toBeLessThan(first * 0.5);
    }
  });

  it('a reduced step needs far less memory than a full step on the same batch', async () => {
    const mini = await Encoder.load(requireMiniLM(), { threads: 2 });
    const b = await mini.tokenize(Array.from({ length: 8 }, (_, i) => `sentence ${i} about kinase activity measured in vitro with several inhibitors`), { padding: 'max_length', maxLength: 64 });
    const y = Int32Array.from({ length: 8 }, (_, i) => i % 2);
    const full = TaskModel.create(mini, { mode: 'full', head: { kind: 'sequence', numLabels: 2 } });
    await full.trainStep({ batch: b }, y, 1e-5);
    const reduced = TaskModel.create(mini, { mode: 'reduced', k: 3, head: { kind: 'sequence', numLabels: 2 } });
    await reduced.trainStep({ hidden: await mini.forward(b, { toLayer: 3 }), attentionMask: b.attentionMask }, y, 1e-5);
    const fm = full.memory(), rm = reduced.memory();
    const ft = fm.paramBytes + fm.activationBytes, rt = rm.paramBytes + rm.activationBytes;
    console.log(`MiniLM, batch 8 x 64: full step ${(ft / 2 ** 20).toFixed(1)} MiB (params+grads+moments ${(fm.paramBytes / 2 ** 20).toFixed(1)}, activations ${(fm.activationBytes / 2 ** 20).toFixed(1)}); reduced step ${(rt / 2 ** 20).toFixed(1)} MiB (${(rm.paramBytes / 2 ** 20).toFixed(1)} + ${(rm.activationBytes / 2 ** 20).toFixed(1)})`);
    expect(rm.activationBytes).toBeLessThan(0.6 * fm.activationBytes);
    expect(rt).toBeLessThan(0.4 * ft);
    mini.close();
  });

  it('adapters start close to the identity: a fresh adapter model matches the frozen encoder', async () => {
    const m = TaskModel.create(enc, { mode: 'full-adapters', head: { kind: 'token', numLabels: 3 }, adapter: { size: 16 }, dropout: { hidden: 0, attention: 0, head: 0 } });
    const up = m.parameter('layer.0.adapter.attn.up.weight');
    expect(Math.max(...Array.from(up, Math.abs))).toBeLessThan(1e-2);
    // a plain head on the encoder's output, with the same head weights, gives the same logits
    const { logits } = await m.evalStep({ batch });
    const H = enc.hidden;
    const h = await enc.forward(batch);
    const W = m.parameter('head.weight'), bias = m.parameter('head.bias');
    let worst = 0;
    for (let r = 0; r < batch.batchSize * batch.seqLen; r++) {
      if (!batch.attentionMask[r]) continue;
      for (let j = 0; j < 3; j++) {
        let z = bias[j];
        for (let c = 0; c < H; c++) z += W[j * H + c] * h.data[r * H + c];
        worst = Math.max(worst, Math.abs(z - logits[r * 3 + j]));
      }
    }
    expect(worst).toBeLessThan(5e-3);
    expect(m.parameterNames().filter((n) => n.includes('.adapter.'))).toHaveLength(3 * 2 * 4);
    expect(m.parameterNames().some((n) => n.includes('attn.q'))).toBe(false);
  });

  it('exports the trained parameters with a manifest and imports them back; refuses a mismatch', async () => {
    const m = TaskModel.create(enc, { mode: 'reduced-adapters', k: 1, head: { kind: 'sequence', numLabels: 2 }, adapter: { size: 8 }, seed: 5 });
    await m.trainStep(await inputFor(m), labels, 1e-2);
    const file = path.join(tmp, 'task.safetensors');
    m.exportSafetensors(file);
    const m2 = TaskModel.create(enc, { mode: 'reduced-adapters', k: 1, head: { kind: 'sequence', numLabels: 2 }, adapter: { size: 8 }, seed: 9 });
    m2.importSafetensors(file);
    for (const n of m.parameterNames()) expect(Array.from(m2.parameter(n))).toEqual(Array.from(m.parameter(n)));
    const input = await inputFor(m);
    expect(Array.from((await m2.evalStep(input)).logits)).toEqual(Array.from((await m.evalStep(input)).logits));
    const other = TaskModel.create(enc, { mode: 'reduced-adapters', k: 2, head: { kind: 'sequence', numLabels: 2 }, adapter: { size: 8 } });
    expect(() => other.importSafetensors(file)).toThrow(/was trained with k 1, this model has 2/);
    const roberta = await Encoder.load(path.join(FIXTURES, 'tiny-roberta'));
    const r = TaskModel.create(roberta, { mode: 'reduced-adapters', k: 1, head: { kind: 'sequence', numLabels: 2 }, adapter: { size: 8 } });
    expect(() => r.importSafetensors(file)).toThrow(/was trained with baseModelFingerprint/);
    roberta.close();
  });

  it('bf16 mixed precision: the loss curve stays within the seed-to-seed noise of fp32', async () => {
    const { makeCorpus } = await import('../helpers/corpus');
    const texts = makeCorpus(64, 17).map((c) => c.text);
    const y = Int32Array.from(texts.map((t) => (t.includes('kidney') ? 1 : 0)));
    const b = await enc.tokenize(texts, {});
    const hidden = await enc.forward(b, { toLayer: 1 });
    const curve = async (precision: 'fp32' | 'bf16', seed: number) => {
      const m = TaskModel.create(enc, { mode: 'reduced', k: 1, head: { kind: 'sequence', numLabels: 2 }, seed, precision });
      const lr = linearSchedule(3e-3, 3, 25);
      const out: number[] = [];
      for (let s = 0; s < 25; s++) out.push((await m.trainStep({ hidden, attentionMask: b.attentionMask }, y, lr(s))).loss);
      return out;
    };
    const a = await curve('fp32', 1), a2 = await curve('fp32', 2), h = await curve('bf16', 1);
    const gap = (u: number[], v: number[]) => u.reduce((acc, x, i) => acc + Math.abs(x - v[i]), 0) / u.length;
    console.log(`loss curves over 25 steps: |bf16 - fp32| = ${gap(h, a).toFixed(4)} on average; fp32 seed 1 vs seed 2: ${gap(a2, a).toFixed(4)}; fp32 ${a[0].toFixed(3)} -> ${a[24].toFixed(3)}, bf16 ${h[0].toFixed(3)} -> ${h[24].toFixed(3)}`);
    expect(gap(h, a)).toBeGreaterThan(0);
    expect(gap(h, a)).toBeLessThan(gap(a2, a));
    expect(h[24]).toBeLessThan(h[0] * 0.8);
  });

  it('bad arguments name what is wrong', async () => {
    expect(() => TaskModel.create(enc, { mode: 'half' as 'full', head: { kind: 'sequence', numLabels: 2 } })).toThrow(/mode must be one of full, frozen-prefix/);
    expect(() => TaskModel.create(enc, { mode: 'reduced', k: 3, head: { kind: 'sequence', numLabels: 2 } })).toThrow(/k must be an integer in 1\.\.2, got 3/);
    expect(() => TaskModel.create(enc, { mode: 'reduced', head: { kind: 'sequence', numLabels: 1 } })).toThrow(/head\.numLabels must be an integer in 2\.\./);
    expect(() => TaskModel.create(enc, { mode: 'reduced', head: { kind: 'sequence', numLabels: 2 }, adapter: { size: 8 } })).toThrow(/mode reduced has no adapters/);
    expect(() => TaskModel.create(enc, { mode: 'reduced-adapters', k: 1, head: { kind: 'sequence', numLabels: 2 }, adapter: { layers: [1] } })).toThrow(/adapter\.layers: layer 1 is not one this mode runs with adapters \(2\.\.3\)/);
    expect(() => TaskModel.create(enc, { mode: 'full', head: { kind: 'sequence', numLabels: 2 }, classWeights: [1] })).toThrow(/classWeights must be 2/);
    expect(() => TaskModel.create(enc, { mode: 'full', head: { kind: 'sequence', numLabels: 2 }, dropout: { hidden: 1 } })).toThrow(/dropout\.hidden must be a probability/);
    const m = TaskModel.create(enc, { mode: 'reduced', k: 1, head: { kind: 'sequence', numLabels: 2 } });
    await expect(m.trainStep({ batch }, labels, 1e-3)).rejects.toThrow(/mode reduced takes layer-1 activations/);
    const input = await inputFor(m);
    await expect(m.trainStep(input, Int32Array.from([0, 1]), 1e-3)).rejects.toThrow(/labels must be an Int32Array of 4 values/);
    await expect(m.trainStep(input, Int32Array.from([0, 1, 2, 0]), 1e-3)).rejects.toThrow(/labels\[2\] = 2 is out of range/);
    await expect(m.trainStep(input, labels, Number.NaN)).rejects.toThrow(/lr must be a non-negative number/);
  });
});
