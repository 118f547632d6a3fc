// Dropout against PyTorch in distribution (fixtures from scripts/make_dropout_fixtures.py):
// the engine's masks come from its own generator, so single steps cannot match, but the
// loss over many masks can. Tiny BERT and MPNet, mode full, dropout 0.3 in one place at a
// time (the hidden states, the attention probabilities, the head input): the mean and the
// spread of the loss over 1000 steps' masks agree with PyTorch's over 2000 (and without
// dropout the loss is PyTorch's to 1e-5, so the two sides run the same model). A place
// whose dropout were missing would show no spread at all.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { TaskModel } from '../../src/train/model';
import { FIXTURES, int32, loadTensors } from '../helpers/fixtures';

const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'dropout-stats.json'), 'utf8')) as {
  p: number; n: number; labels: number;
  families: Record<string, { headWeight: number[]; headBias: number[]; evalLoss: number; sites: Record<'hidden' | 'attention' | 'head', { mean: number; std: number }> }>;
};
const batches = loadTensors(path.join(FIXTURES, 'train-parity.safetensors'));
const N = 1000;
const encoders: Encoder[] = [];
afterAll(() => encoders.forEach((e) => e.close()));

describe('dropout: the loss over many masks, against PyTorch', () => {
  for (const [family, ref] of Object.entries(meta.families)) {
    for (const site of ['hidden', 'attention', 'head'] as const) {
      it(`${family}, dropout ${meta.p} on the ${site === 'head' ? 'head input' : site === 'hidden' ? 'hidden states' : 'attention probabilities'}: the mean and spread of the loss`, async () => {
        const enc = await Encoder.load(path.join(FIXTURES, `tiny-${family}`), { threads: 1 });
        encoders.push(enc);
        const ids = int32(batches, `${family}.batch.input_ids`);
        const [B, T] = batches.get(`${family}.batch.input_ids`)!.shape;
        const batch = {
          batchSize: B, seqLen: T, inputIds: ids, attentionMask: int32(batches, `${family}.batch.attention_mask`),
          tokenTypeIds: int32(batches, `${family}.batch.token_type_ids`), positionIds: enc.positionIdsFor(ids, B, T), encodings: [],
        };
        const labels = int32(batches, `${family}.batch.labels`);
        const dropout = { hidden: 0, attention: 0, head: 0, [site]: meta.p };
        const model = TaskModel.create(enc, { mode: 'full', head: { kind: 'sequence', numLabels: meta.labels }, dropout, seed: 1, threads: 1 });
        model.setParameter('head.weight', Float32Array.from(ref.headWeight));
        model.setParameter('head.bias', Float32Array.from(ref.headBias));
        expect(Math.abs((await model.computeGradients({ batch }, labels, false)) - ref.evalLoss)).toBeLessThan(1e-5);
        const xs: number[] = [];
        for (let i = 0; i < N; i++) xs.push(await model.computeGradients({ batch }, labels, true));
        const mean = xs.reduce((a, x) => a + x, 0) / N;
        const std = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (N - 1));
        const want = ref.sites[site];
        // the means within 4 standard errors; the spreads within 15% (about 6 standard
        // errors of a log standard deviation under normality; the loss is skewed)
        const se = Math.sqrt(std ** 2 / N + want.std ** 2 / meta.n);
        expect(Math.abs(mean - want.mean), `mean ${mean} vs PyTorch ${want.mean} (s.e. ${se})`).toBeLessThan(4 * se);
        expect(Math.abs(Math.log(std / want.std)), `std ${std} vs PyTorch ${want.std}`).toBeLessThan(0.15);
      }, 120_000);
    }
  }
});
