// Every layer of the tiny random BERT, RoBERTa and DistilBERT against Hugging Face
// transformers (fixtures from scripts/make_fixtures.py), and the recycling identity
// forwardFrom(forward(x, k), k) == forward(x) for every k.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { Encoder, Batch } from '../../src/model/encoder';
import { FIXTURES, f32, int32, loadTensors, maxAbsDiffMasked } from '../helpers/fixtures';

interface BatchSpec { texts: string[]; pairs: string[] | null; maxLength: number | null; padding: string | null }

for (const name of ['tiny-bert', 'tiny-roberta', 'tiny-distilbert', 'tiny-mpnet', 'tiny-deberta-v2', 'tiny-deberta-v2-b']) {
  describe(`${name} parity with transformers`, () => {
    const dir = path.join(FIXTURES, name);
    const expected = loadTensors(path.join(dir, 'expected.safetensors'));
    const specs = JSON.parse(fs.readFileSync(path.join(dir, 'batches.json'), 'utf8')) as BatchSpec[];
    let enc: Encoder;
    beforeAll(async () => { enc = await Encoder.load(dir); });
    afterAll(() => enc.close());

    specs.forEach((spec, i) => {
      const ids = int32(expected, `batch${i}.input_ids`);
      const mask = int32(expected, `batch${i}.attention_mask`);
      const shape = expected.get(`batch${i}.input_ids`)!.shape;
      const [B, T] = shape;

      it(`batch ${i}: our tokenization equals the fixture's ids, mask, types and positions`, async () => {
        const batch = await enc.tokenize(spec.texts, {
          pairs: spec.pairs ?? undefined,
          maxLength: spec.maxLength ?? undefined,
        });
        expect([batch.batchSize, batch.seqLen]).toEqual([B, T]);
        expect(Array.from(batch.inputIds)).toEqual(Array.from(ids));
        expect(Array.from(batch.attentionMask)).toEqual(Array.from(mask));
        expect(Array.from(batch.positionIds)).toEqual(Array.from(int32(expected, `batch${i}.position_ids`)));
        if (expected.has(`batch${i}.token_type_ids`)) {
          expect(Array.from(batch.tokenTypeIds)).toEqual(Array.from(int32(expected, `batch${i}.token_type_ids`)));
        }
      });

      it(`batch ${i}: every layer's hidden states within 1e-4 of transformers`, async () => {
        const batch: Batch = {
          batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask,
          tokenTypeIds: expected.has(`batch${i}.token_type_ids`) ? int32(expected, `batch${i}.token_type_ids`) : new Int32Array(B * T),
          positionIds: int32(expected, `batch${i}.position_ids`),
          encodings: [],
        };
        for (let l = 0; l <= enc.numLayers; l++) {
          const h = await enc.forward(batch, { toLayer: l });
          const err = maxAbsDiffMasked(h.data, f32(expected, `batch${i}.hidden.${l}`), mask, enc.hidden);
          expect(err, `layer ${l}`).toBeLessThan(1e-4);
        }
      });

      it(`batch ${i}: forwardFrom(forward(x, k), k) equals forward(x) bit for bit for every k`, async () => {
        const batch = await enc.tokenize(spec.texts, { pairs: spec.pairs ?? undefined, maxLength: spec.maxLength ?? undefined });
        const full = await enc.forward(batch);
        for (let k = 0; k <= enc.numLayers; k++) {
          const hk = await enc.forward(batch, { toLayer: k });
          const before = Buffer.from(hk.data.slice().buffer);
          const top = await enc.forwardFrom(hk, batch.attentionMask, { fromLayer: k });
          expect(Buffer.from(top.data.buffer).equals(Buffer.from(full.data.buffer)), `k = ${k}`).toBe(true);
          // the first suffix layer reads the caller's activations in place: they stay as they were
          expect(Buffer.from(hk.data.buffer).equals(before), `input unchanged, k = ${k}`).toBe(true);
        }
      });
    });
  });
}
