// The real all-mpnet-base-v2 (MPNet, 12 layers, hidden 768) against transformers' MPNetModel:
// our tokenization of a dozen real sentences, then every layer's hidden states projected on
// 16 fixed random directions (the fixture from scripts/make_mpnet_fixtures.py; the full states
// would be 15 MB). Needs `npm run fetch-model -- all-mpnet-base-v2`; skipped without it.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { FIXTURES, ROOT, f32, int32, loadTensors } from '../helpers/fixtures';

const MODEL = path.join(ROOT, 'models', 'all-mpnet-base-v2');
const have = fs.existsSync(path.join(MODEL, 'model.safetensors'));

describe.skipIf(!have)('all-mpnet-base-v2 parity with transformers', () => {
  const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'mpnet-reference.json'), 'utf8')) as { sentences: string[]; maxLength: number; numLayers: number };
  const ref = loadTensors(path.join(FIXTURES, 'mpnet-reference.safetensors'));
  let enc: Encoder;
  beforeAll(async () => { enc = await Encoder.load(MODEL, { threads: 2 }); }, 120_000);
  afterAll(() => enc?.close());

  it('tokenizes as transformers did and matches every layer within 1e-4 (projected)', async () => {
    const b = await enc.tokenize(meta.sentences, { maxLength: meta.maxLength });
    expect(Array.from(b.inputIds)).toEqual(Array.from(int32(ref, 'input_ids')));
    expect(Array.from(b.attentionMask)).toEqual(Array.from(int32(ref, 'attention_mask')));
    expect(Array.from(b.positionIds!)).toEqual(Array.from(int32(ref, 'position_ids')));
    const P = f32(ref, 'projection');
    const H = enc.hidden, D = P.length / H, N = b.batchSize * b.seqLen;
    expect(enc.numLayers).toBe(meta.numLayers);
    const errors: number[] = [];
    for (let l = 0; l <= enc.numLayers; l++) {
      const h = (await enc.forward(b, { toLayer: l })).data;
      const want = f32(ref, `projected.${l}`);
      let worst = 0, scale = 0;
      for (let t = 0; t < N; t++) {
        if (!b.attentionMask[t]) continue;
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let j = 0; j < H; j++) s += h[t * H + j] * P[j * D + d];
          worst = Math.max(worst, Math.abs(s - want[t * D + d]));
          scale = Math.max(scale, Math.abs(want[t * D + d]));
        }
      }
      expect(scale).toBeGreaterThan(0.01);
      errors.push(worst);
    }
    console.log(`all-mpnet-base-v2 max abs error of the projected states per layer: ${errors.map((e) => e.toExponential(1)).join(', ')}`);
    errors.forEach((e, l) => expect(e, `layer ${l}`).toBeLessThan(1e-4));
  }, 120_000);
});
