// The real all-MiniLM-L6-v2 against Hugging Face transformers on a dozen real sentences.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { FIXTURES, f32, int32, loadTensors, maxAbsDiffMasked, requireMiniLM } from '../helpers/fixtures';

describe('all-MiniLM-L6-v2 parity with transformers', () => {
  it('tokenizes the sentences as transformers did and matches every layer within 1e-4', async () => {
    const enc = await Encoder.load(requireMiniLM());
    const ref = loadTensors(path.join(FIXTURES, 'minilm-reference.safetensors'));
    const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'minilm-reference.json'), 'utf8')) as { sentences: string[]; maxLength: number };
    const batch = await enc.tokenize(meta.sentences, { maxLength: meta.maxLength });
    expect(Array.from(batch.inputIds)).toEqual(Array.from(int32(ref, 'input_ids')));
    expect(Array.from(batch.attentionMask)).toEqual(Array.from(int32(ref, 'attention_mask')));
    const worst: number[] = [];
    for (let l = 0; l <= enc.numLayers; l++) {
      const h = await enc.forward(batch, { toLayer: l });
      const err = maxAbsDiffMasked(h.data, f32(ref, `hidden.${l}`), batch.attentionMask, enc.hidden);
      worst.push(err);
      expect(err, `layer ${l}`).toBeLessThan(1e-4);
    }
    console.log(`all-MiniLM-L6-v2 max abs error per layer: ${worst.map((e) => e.toExponential(2)).join(', ')}`);
    enc.close();
  });
});
