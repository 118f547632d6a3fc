// EmbeddingSession: batched sentence embeddings on the real MiniLM, equal to
// sentence-transformers without a store; with an fp16 store, a hit equals a miss and
// both stay close to the fp32 embedding.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { EmbeddingSession } from '../../src/infer/embed';
import { Encoder } from '../../src/model/encoder';
import { ActivationStore } from '../../src/store/store';
import { FIXTURES, requireMiniLM } from '../helpers/fixtures';

const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'minilm-embeddings.json'), 'utf8')) as { texts: string[]; mean: number[][] };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-embed-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function maxAbs(a: Float32Array, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('EmbeddingSession', () => {
  it('concurrent requests are batched and equal sentence-transformers within 1e-5', async () => {
    const s = await EmbeddingSession.open(requireMiniLM(), { maxDelayMs: 5 });
    const got = (await Promise.all(ref.texts.map((t) => s.embed([t])))).flat();
    expect(Math.max(...got.map((g, i) => maxAbs(g, ref.mean[i])))).toBeLessThan(1e-5);
    expect(s.metrics().batches).toBeLessThan(ref.texts.length);
    const raw = await s.embed([ref.texts[0]], { normalize: false });
    expect(Math.abs(Math.hypot(...raw[0]) - 1)).toBeGreaterThan(1e-3);
    await expect(s.embed([ref.texts[4]], { refuseLong: true })).rejects.toThrow(/inputs\[0\]: \d+ tokens, more than the 256/);
    await expect(s.embed([3 as never])).rejects.toThrow(/inputs\[0\] must be a string/);
    await s.close();
  });

  it('with an fp16 store: a cached text runs only the layers above k and embeds as it did uncached', async () => {
    const enc = await Encoder.load(requireMiniLM());
    const dir = path.join(tmp, 'store');
    const texts = ref.texts.slice(0, 4);
    const w = await ActivationStore.create(dir, enc, { layer: 3, dtype: 'fp16', maxLength: 256 });
    w.close();
    const cold = await EmbeddingSession.open(requireMiniLM(), { store: dir });
    const miss = await cold.embed(texts);
    expect(cold.metrics()).toMatchObject({ cacheMisses: texts.length, cacheHits: 0 });
    await cold.close();
    const w2 = await ActivationStore.open(dir, { encoder: enc, write: true });
    await w2.encode(texts.map((text, i) => ({ id: `t${i}`, text })));
    w2.close();
    enc.close();
    const warm = await EmbeddingSession.open(requireMiniLM(), { store: dir });
    const hit = await warm.embed(texts);
    expect(warm.metrics()).toMatchObject({ cacheHits: texts.length, cacheMisses: 0 });
    await warm.close();
    // a hit equals a miss (both use the fp16 layer-3 values; the prefix ran in other batches)
    expect(Math.max(...hit.map((h, i) => maxAbs(h, miss[i])))).toBeLessThan(1e-5);
    // and fp16 caching costs little against the fp32 embedding (cosine similarity)
    for (let i = 0; i < texts.length; i++) {
      let dot = 0;
      for (let j = 0; j < hit[i].length; j++) dot += hit[i][j] * ref.mean[i][j];
      expect(dot).toBeGreaterThan(0.9999);
    }
  });
});
