// Round trips through the store: fp32 exact; fp16 within half-precision rounding of
// the encoder's output; the suffix layers on fp16 input close to the fp32 path.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { ActivationStore } from '../../src/store/store';
import { native } from '../../src/native/binding';
import { makeCorpus } from '../helpers/corpus';
import { FIXTURES, requireMiniLM } from '../helpers/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-store-rt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/**
 * The encoder's layer-k output for every window of a corpus, computed directly in the
 * same batches `encode` forms (consecutive windows, batchSize at a time): a GEMM's
 * rounding may depend on the batch's shape, so exact equality is checked batch for batch.
 */
async function direct(enc: Encoder, store: ActivationStore, texts: string[], k: number, batchSize: number): Promise<Float32Array[][]> {
  const all: { doc: number; enc: Awaited<ReturnType<ActivationStore['windows']>>['encodings'][number] }[] = [];
  for (let d = 0; d < texts.length; d++) for (const e of (await store.windows(texts[d])).encodings) all.push({ doc: d, enc: e });
  const out: Float32Array[][] = texts.map(() => []);
  for (let i = 0; i < all.length; i += batchSize) {
    const chunk = all.slice(i, i + batchSize);
    const batch = enc.batchFromEncodings(chunk.map((c) => c.enc));
    const h = await enc.forward(batch, { toLayer: k });
    const [, T, H] = h.shape;
    chunk.forEach((c, r) => out[c.doc].push(h.data.slice(r * T * H, r * T * H + c.enc.ids.length * H)));
  }
  return out;
}

describe('store round trip (tiny BERT)', () => {
  let enc: Encoder;
  const corpus = makeCorpus(60);
  beforeAll(async () => { enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert')); });
  afterAll(() => enc.close());

  it('fp32: every window reads back bit for bit, long texts are windowed with the stride', async () => {
    const store = await ActivationStore.create(path.join(tmp, 'f32'), enc, { layer: 2, dtype: 'fp32', maxLength: 24, stride: 6 });
    const p = await store.encode(corpus, { batchSize: 7 });
    expect(p.textsDone).toBe(corpus.length);
    let multi = 0;
    const wanted = await direct(enc, store, corpus.map((c) => c.text), 2, 7);
    for (const [d, item] of corpus.entries()) {
      const refs = store.document(item.id)!;
      const want = wanted[d];
      expect(refs.length).toBe(want.length);
      if (refs.length > 1) multi++;
      refs.forEach((r, i) => {
        const got = store.read(r).data;
        expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want[i].buffer))).toBe(true);
      });
    }
    expect(multi).toBeGreaterThan(0);
    // the text can be found again from its content alone
    expect((await store.find(corpus[3].text))!.map((r) => r.key.toString('hex'))).toEqual(store.document(corpus[3].id)!.map((r) => r.key.toString('hex')));
    expect(await store.find('a text that was never stored')).toBeUndefined();
    store.close();
  });

  it('fp16: within half-precision rounding of the encoder output; the same text is stored once', async () => {
    const store = await ActivationStore.create(path.join(tmp, 'f16'), enc, { layer: 1, dtype: 'fp16', maxLength: 32, stride: 8 });
    const dup = [...corpus.slice(0, 10), { id: 'copy-of-0', text: corpus[0].text }];
    const p = await store.encode(dup, { batchSize: 4 });
    expect(store.stats().docs).toBe(11);
    expect(p.recordsWritten).toBe(store.stats().records);
    expect(store.document('copy-of-0')!.map((r) => r.key.toString('hex'))).toEqual(store.document(corpus[0].id)!.map((r) => r.key.toString('hex')));
    let worst = 0;
    const wanted = await direct(enc, store, dup.map((c) => c.text), 1, 4);
    for (const [d, item] of dup.entries()) {
      const want = wanted[d];
      store.document(item.id)!.forEach((r, i) => {
        const got = store.read(r).data;
        for (let j = 0; j < got.length; j++) {
          const w = want[i][j];
          // binary16 has 11 significant bits: relative rounding error <= 2^-11 for normal values
          const tol = Math.max(Math.abs(w) * 2 ** -11, 2 ** -25);
          const e = Math.abs(got[j] - w);
          worst = Math.max(worst, e / tol);
          expect(e).toBeLessThanOrEqual(tol);
        }
      });
    }
    console.log(`fp16 store: worst error / half-precision rounding bound = ${worst.toFixed(3)}`);
    store.close();
  });
});

describe('store round trip (real MiniLM, k = 3)', () => {
  it('layers 4..6 on fp16-stored activations stay within 1e-2 of the fp32 path', async () => {
    const enc = await Encoder.load(requireMiniLM());
    const corpus = makeCorpus(24, 3);
    const s16 = await ActivationStore.create(path.join(tmp, 'minilm16'), enc, { layer: 3, dtype: 'fp16', maxLength: 128 });
    const s32 = await ActivationStore.create(path.join(tmp, 'minilm32'), enc, { layer: 3, dtype: 'fp32', maxLength: 128 });
    await s16.encode(corpus, { batchSize: 8 });
    await s32.encode(corpus, { batchSize: 8 });
    const ids = corpus.map((c) => c.id);
    let worst = 0;
    const it32 = s32.batches(ids, { batchSize: 8, copy: true });
    for await (const b16 of s16.batches(ids, { batchSize: 8 })) {
      const b32 = (await it32.next()).value!;
      expect(b32.entries).toEqual(b16.entries);
      const o16 = await enc.forwardFrom(b16.hidden, b16.attentionMask, { fromLayer: 3 });
      const o32 = await enc.forwardFrom(b32.hidden, b32.attentionMask, { fromLayer: 3 });
      for (let i = 0; i < o16.data.length; i++) {
        if (!b16.attentionMask[Math.floor(i / enc.hidden)]) continue;
        worst = Math.max(worst, Math.abs(o16.data[i] - o32.data[i]));
      }
    }
    console.log(`MiniLM layers 4..6 on an fp16 store vs fp32: max abs difference ${worst.toExponential(3)}`);
    expect(worst).toBeLessThan(1e-2);
    s16.close();
    s32.close();
    enc.close();
  });
});

describe('batches along a schedule', () => {
  it('prefetch on and off give the same batches; stopping early and bounding memory work', async () => {
    const enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
    const store = await ActivationStore.create(path.join(tmp, 'sched'), enc, { layer: 3, dtype: 'fp16', maxLength: 24, stride: 6 });
    const corpus = makeCorpus(50, 11);
    await store.encode(corpus, { batchSize: 16 });
    const order = corpus.map((c) => c.id).reverse();
    // every batch whole: its keys, shape, every hidden value's bits and every mask value (copied:
    // a batch's buffers may be reused once the next one is asked for)
    const collect = async (opts: object) => {
      const out: { keys: string[]; shape: number[]; hidden: Buffer; mask: Buffer }[] = [];
      for await (const b of store.batches(order, { batchSize: 5, ...opts })) {
        expect(b.entries.length).toBe(b.hidden.shape[0]);
        const bytes = (a: ArrayBufferView) => Buffer.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
        out.push({ keys: b.keys.map((k) => k.toString('hex')), shape: [...b.hidden.shape], hidden: bytes(b.hidden.data), mask: bytes(b.attentionMask) });
      }
      return out;
    };
    const on = await collect({ prefetch: 3 });
    const off = await collect({ prefetch: false });
    expect(on.length).toBeGreaterThan(5);
    expect(on.length).toBe(off.length);
    on.forEach((x, i) => {
      const y = off[i];
      expect(x.keys, `batch ${i}`).toEqual(y.keys);
      expect(x.shape, `batch ${i}`).toEqual(y.shape);
      expect(x.hidden.length, `batch ${i}`).toBe(4 * x.shape.reduce((p, q) => p * q, 1));
      expect(x.hidden.equals(y.hidden), `batch ${i}: hidden states differ`).toBe(true);
      expect(x.mask.equals(y.mask), `batch ${i}: attention masks differ`).toBe(true);
    });
    // rows equal single reads, padded with zeros and masked
    for await (const b of store.batches(order.slice(0, 4), { batchSize: 4 })) {
      const [, T, H] = b.hidden.shape;
      b.keys.forEach((k, r) => {
        const one = store.read(k).data;
        const row = b.hidden.data.subarray(r * T * H, (r + 1) * T * H);
        expect(Array.from(row.subarray(0, one.length))).toEqual(Array.from(one));
        expect(row.subarray(one.length).every((v) => v === 0)).toBe(true);
      });
    }
    // fp16 batches (what a GPU model reads): the records' own codes, which decode to the fp32
    // batch bit for bit, zero codes on padding, the same masks; prefetched or not
    for (const prefetch of [3, false] as const) {
      let i = 0;
      for await (const b of store.batches(order, { batchSize: 5, prefetch, fp16: true, copy: true })) {
        const want = off[i++];
        expect(b.hidden16.data).toBeInstanceOf(Uint16Array);
        expect(b.hidden16.shape).toEqual(want.shape);
        expect(b.keys.map((k) => k.toString('hex'))).toEqual(want.keys);
        const decoded = new Float32Array(b.hidden16.data.length);
        native().f16ToF32(b.hidden16.data, decoded);
        expect(Buffer.from(decoded.buffer).equals(want.hidden), `fp16 batch ${i - 1}`).toBe(true);
        expect(Buffer.from(b.attentionMask.buffer, b.attentionMask.byteOffset, b.attentionMask.byteLength).equals(want.mask)).toBe(true);
      }
      expect(i).toBe(off.length);
    }
    // stop early
    let seen = 0;
    for await (const b of store.batches(order, { batchSize: 5, prefetch: 4 })) {
      seen += b.hidden.shape[0];
      if (seen >= 10) break;
    }
    expect(seen).toBe(10);
    // a memory bound too small for one batch is refused
    await expect(store.batches(order, { batchSize: 5, maxBytes: 100 }).next()).rejects.toThrow(/maxBytes 100 is too small for one batch/);
    // unknown ids are named
    await expect(store.batches(['nope'], {}).next()).rejects.toThrow(/document "nope" is not in the store/);
    store.close();
    // an fp32 store has no fp16 batches
    const f32 = await ActivationStore.create(path.join(tmp, 'sched32'), enc, { layer: 3, dtype: 'fp32', maxLength: 24, stride: 6 });
    await f32.encode(corpus.slice(0, 3), { batchSize: 16 });
    await expect(f32.batches([corpus[0].id], { fp16: true }).next()).rejects.toThrow(/fp16 batches need an fp16 store; this one holds fp32 values/);
    f32.close();
    enc.close();
  });
});
