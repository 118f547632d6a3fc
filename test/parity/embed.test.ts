// Sentence embeddings against sentence-transformers' own output on the real
// all-MiniLM-L6-v2 (test/fixtures/minilm-embeddings.json, from scripts/make_embed_fixtures.py):
// mean pooling over real tokens then L2 normalisation, truncated at max_seq_length 256;
// and CLS pooling against transformers' first-token hidden state.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { FIXTURES, requireMiniLM } from '../helpers/fixtures';

const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'minilm-embeddings.json'), 'utf8')) as {
  texts: string[]; tokens: number[]; mean: number[][]; cls: number[][]; maxSeqLength: number;
};
let enc: Encoder;
beforeAll(async () => { enc = await Encoder.load(requireMiniLM()); });
afterAll(() => enc.close());

function maxAbs(a: Float32Array, b: number[]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('encoder.embed matches sentence-transformers', () => {
  it('mean pooling + normalize, within 1e-5 of SentenceTransformer.encode (long texts truncated at 256 tokens)', async () => {
    expect(Math.max(...ref.tokens)).toBe(ref.maxSeqLength); // the fixture does exercise truncation
    const got = await enc.embed(ref.texts, { pooling: 'mean', normalize: true, batchSize: 2 });
    const errs = got.map((g, i) => maxAbs(g, ref.mean[i]));
    expect(Math.max(...errs)).toBeLessThan(1e-5);
    for (const g of got) expect(Math.abs(Math.hypot(...g) - 1)).toBeLessThan(1e-5);
  });

  it('cls pooling without normalisation, within 1e-4 of the first token of the last hidden state', async () => {
    const got = await enc.embed(ref.texts, { pooling: 'cls', normalize: false });
    const errs = got.map((g, i) => maxAbs(g, ref.cls[i]));
    expect(Math.max(...errs)).toBeLessThan(1e-4);
  });

  it('bad options are refused by name', async () => {
    await expect(enc.embed(['x'], { pooling: 'max' as never })).rejects.toThrow(/pooling must be 'mean' or 'cls'/);
    await expect(enc.embed('x' as never)).rejects.toThrow(/texts must be an array/);
    expect(await enc.embed([])).toEqual([]);
  });
});
