// The measured mode on a tiny model: a short, bounded benchmark that must give sane,
// positive values; the cache codecs it times; the table's one-layer measurement.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { runCost } from '../../src/cli/cost';
import { decodeCache, encodeCache, floatToHalf, halfToFloat } from '../../src/cost/codec';
import { extrapolate, measureLayerShape, measureRecycling, median } from '../../src/cost/measure';

const ROOT = path.resolve(__dirname, '..', '..');
const TINY = path.join(ROOT, 'test', 'fixtures', 'tiny-bert');
const MINILM = path.join(ROOT, 'models', 'all-MiniLM-L6-v2');
const has = (d: string): boolean => fs.existsSync(path.join(d, 'model.safetensors')) && fs.existsSync(path.join(d, 'config.json'));
const MODEL = has(TINY) ? TINY : has(MINILM) ? MINILM : undefined;
const why = 'neither test/fixtures/tiny-bert nor models/all-MiniLM-L6-v2 is present (run scripts/make_fixtures.py or npm run fetch-model)';

const positiveFinite = (x: unknown): void => {
  expect(typeof x).toBe('number');
  expect(Number.isFinite(x)).toBe(true);
  expect(x as number).toBeGreaterThan(0);
};

describe('cache codecs', () => {
  it('half floats round-trip exactly representable values, and within 2^-11 relative otherwise', () => {
    for (const x of [0, 1, -2, 0.5, 65504, 2 ** -24]) expect(halfToFloat(floatToHalf(x))).toBe(x);
    for (const x of [0.1, -3.14159, 1234.567, 1e-3]) expect(Math.abs(halfToFloat(floatToHalf(x)) - x) / Math.abs(x)).toBeLessThan(2 ** -11);
    expect(halfToFloat(floatToHalf(1e6))).toBe(Infinity);
  });
  it('fp32, fp16 and int8 caches decode back to the activations', () => {
    const H = 8, data = Float32Array.from({ length: 4 * H }, (_, i) => Math.sin(i) * (1 + (i % 3)));
    const out = new Float32Array(data.length);
    decodeCache(encodeCache(data, H, 'fp32'), out);
    expect(Array.from(out)).toEqual(Array.from(data));
    decodeCache(encodeCache(data, H, 'fp16'), out);
    out.forEach((v, i) => expect(Math.abs(v - data[i])).toBeLessThan(3 * 2 ** -11));
    decodeCache(encodeCache(data, H, 'int8'), out);
    // per-token absmax / 127 scale: error at most half a step
    for (let t = 0; t < 4; t++) {
      const max = Math.max(...Array.from(data.subarray(t * H, (t + 1) * H), Math.abs));
      for (let j = 0; j < H; j++) expect(Math.abs(out[t * H + j] - data[t * H + j])).toBeLessThanOrEqual(max / 127 / 2 + 1e-6);
    }
  });
  it('median', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

describe.skipIf(!MODEL)(`measured mode (${MODEL ? path.basename(MODEL) : why})`, () => {
  it('measureRecycling: positive, finite times, bounded repetitions, and says what it measured', async () => {
    const m = await measureRecycling({ model: MODEL as string, layer: 1, batchSize: 2, seqLen: 16, dtypes: ['fp32', 'fp16'], reps: 3, maxSeconds: 20 });
    positiveFinite(m.baselineMs);
    positiveFinite(m.suffixMs);
    positiveFinite(m.cacheDecodeMs.fp16);
    positiveFinite(m.cacheDecodeMs.fp32);
    expect(m.repetitions).toBeGreaterThanOrEqual(1);
    expect(m.repetitions).toBeLessThanOrEqual(3);
    expect(m.samplesMs.baseline).toHaveLength(m.repetitions);
    expect(m.layer).toBe(1);
    expect(m.measured.join(' ')).toMatch(/full forward.*forwardFrom layer 1.*decode/);
    expect(m.notMeasured.join(' ')).toMatch(/disk/);
  });

  it('er cost --measure --json: sane values, with the measurement in the output', async () => {
    const j = JSON.parse(
      await runCost({
        measure: true, model: MODEL, layer: '1', dtype: 'fp16', seqLen: '16', batchSize: '2', reps: '3', maxSeconds: '20',
        cpuHourUsd: '0.10', storage: 'local', corpusDocs: '1000', json: true,
      }),
    );
    expect(j.mode).toBe('measured');
    positiveFinite(j.inputs.baselineMs);
    positiveFinite(j.inputs.recycledMs);
    positiveFinite(j.bytesPerSequence);
    positiveFinite(j.storageUsdPerSequenceMonth);
    expect(j.inputs.recycledMs).toBeCloseTo(j.measurement.suffixMs + j.measurement.cacheDecodeMs.fp16, 9);
    expect(j.inputs.hourPriceOf).toBe('cpu');
    // a tiny model's timings are noisy: either a positive, finite break-even or an explained null
    if (j.breakEvenMonths === null) expect(j.reason).toMatch(/never pays/);
    else positiveFinite(j.breakEvenMonths);
    expect(j.corpus.sequences).toBe(1000);
  });

  it('er cost --measure: a bad --layer or --seq-len names the flag', async () => {
    const base = { measure: true, model: MODEL, cpuHourUsd: '1', storage: 'cloud', reps: '1', batchSize: '1', seqLen: '8' };
    await expect(runCost({ ...base, layer: '99' })).rejects.toThrow(/^--layer: must be an integer in 0\.\./);
    await expect(runCost({ ...base, seqLen: '100000' })).rejects.toThrow(/^--seq-len: must be an integer in 1\.\./);
    await expect(runCost({ ...base, baselineMs: '5' })).rejects.toThrow(/--baseline-ms: not used with --measure/);
  });
});

describe('one layer of a shape on synthetic weights', () => {
  it('measureLayerShape and the extrapolation to N layers', async () => {
    const m = await measureLayerShape({ hidden: 32, heads: 4, intermediate: 64 }, { batchSize: 2, seqLen: 16, dtypes: ['fp32', 'fp16'], reps: 3, maxSeconds: 20 });
    positiveFinite(m.embeddingsMs);
    positiveFinite(m.layerMs);
    positiveFinite(m.cacheDecodeMs.fp16);
    // baseline = emb + 6 x layer; recycled = 3 x layer + decode
    const t = extrapolate(m, 6, 3, 'fp16');
    expect(t.baselineMs).toBeCloseTo(m.embeddingsMs + 6 * m.layerMs, 9);
    expect(t.recycledMs).toBeCloseTo(3 * m.layerMs + (m.cacheDecodeMs.fp16 as number), 9);
  });

  it('er cost --preset-table, measured small and fast: every row gets measured times', async () => {
    const j = JSON.parse(await runCost({ presetTable: true, seqLen: '16', batchSize: '1', reps: '1', maxSeconds: '20', cpuHourUsd: '0.1', json: true, model: MODEL ?? '/nonexistent' }));
    expect(j.rows).toHaveLength(8);
    for (const r of j.rows) {
      expect(r.timeSource).toMatch(/^measured/);
      positiveFinite(r.baselineMs);
      positiveFinite(r.recycledMs);
      expect(Object.keys(r.breakEvenMonths)).toEqual(['cloud', 'local']);
    }
    expect(j.measurements.length).toBeGreaterThanOrEqual(2);
  });
});
