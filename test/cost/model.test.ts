// The cost model computed by hand on a few cases, with the arithmetic written out,
// and its boundary cases (no break-even, bad input).
import { describe, expect, it } from 'vitest';
import {
  bytesPerSequence,
  computeCost,
  CostInputs,
  customPrice,
  monthlyCosts,
  presetPrice,
  sequencesForTokens,
  RECORD_OVERHEAD_BYTES,
} from '../../src/cost/model';

const GiB = 2 ** 30;

/** The example: BERT-base-sized, 512 tokens, FP16, A10G times of the original analysis. */
const bertBase = (over: Partial<CostInputs> = {}): CostInputs => ({
  hidden: 768,
  seqLen: 512,
  dtype: 'fp16',
  batchSize: 128,
  baselineMs: 647,
  recycledMs: 343,
  hourUsd: 1.4175, // 4 x A10G at $5.67 an hour, one GPU
  storage: presetPrice('cloud'),
  ...over,
});

describe('bytes per sequence', () => {
  it('fp16: 512 x 768 x 2 = 786,432 bytes + 64 of record overhead = 786,496', () => {
    expect(RECORD_OVERHEAD_BYTES).toBe(64);
    expect(bytesPerSequence(768, 512, 'fp16')).toBe(786_496);
  });
  it('fp32: 512 x 1024 x 4 = 2,097,152 + 64 = 2,097,216', () => {
    expect(bytesPerSequence(1024, 512, 'fp32')).toBe(2_097_216);
  });
  it('int8: 128 x 384 x 1 = 49,152 + 128 tokens x 4 bytes of scale = 512, + 64 -> 49,728', () => {
    expect(bytesPerSequence(384, 128, 'int8')).toBe(49_728);
  });
  it('the brief: 512 x 768 in FP32 is about 1.6 MB, in FP16 about 0.8 MB', () => {
    expect(bytesPerSequence(768, 512, 'fp32') / 1e6).toBeCloseTo(1.57, 2);
    expect(bytesPerSequence(768, 512, 'fp16') / 1e6).toBeCloseTo(0.79, 2);
  });
  it('rejects an unknown dtype by name', () => {
    expect(() => bytesPerSequence(768, 512, 'bf16' as never)).toThrow(/unknown dtype "bf16"; expected one of fp32, fp16, int8/);
  });
});

describe('storage prices', () => {
  it('cloud is $0.01 per GiB-month; local is $16.9 per TiB over 72 months = 16.9 / 1024 / 72 = $0.000229220920 per GiB-month', () => {
    expect(presetPrice('cloud').usdPerUnitMonth).toBe(0.01);
    expect(presetPrice('cloud').unit).toBe('GiB');
    expect(presetPrice('local').usdPerUnitMonth).toBeCloseTo(0.00022922092013888886, 18);
  });
  it('decimal units quote the presets per GB / TB: local = 16.9 / 1000 / 72 = $0.000234722 per GB-month', () => {
    expect(presetPrice('local', 'decimal').usdPerUnitMonth).toBeCloseTo(0.0002347222222222222, 18);
    expect(presetPrice('local', 'decimal').unit).toBe('GB');
  });
  it('a custom price per GB-month, shown per GiB-month: x 2^30 / 1e9', () => {
    expect(customPrice(0.01, 'GB', 'binary').usdPerUnitMonth).toBeCloseTo(0.01 * GiB / 1e9, 15);
    expect(customPrice(0.01, 'GiB', 'binary').usdPerUnitMonth).toBe(0.01);
  });
  it('rejects an unknown preset by name', () => {
    expect(() => presetPrice('s3' as never)).toThrow(/unknown storage preset "s3"; expected one of cloud, local/);
  });
});

describe('the break-even, by hand', () => {
  it('BERT-base fp16, cloud', () => {
    const r = computeCost(bertBase());
    // storage: 786,496 / 2^30 GiB = 0.000732481479644775 GiB x $0.01 = $7.324814796447754e-6 a month
    expect(r.storageUsdPerSequenceMonth).toBeCloseTo(7.324814796447754e-6, 18);
    // saved: (647 - 343) = 304 ms a batch / 128 = 2.375 ms a sequence; / 3.6e6 ms an hour x $1.4175
    //      = 2.375 x 1.4175 / 3.6e6 = 3.3665625 / 3.6e6 = $9.3515625e-7 per reprocessing
    expect(r.savedMsPerSequence).toBe(2.375);
    expect(r.savedUsdPerSequenceReprocess).toBeCloseTo(9.3515625e-7, 18);
    // T = 9.3515625e-7 / 7.324814796447754e-6 = 0.12766961 months (about 3.9 days):
    // in the cloud the corpus must be reprocessed 7.83 times a month (the brief: "several times a month")
    expect(r.breakEvenMonths).toBeCloseTo(0.12766961022052242, 12);
    expect(r.minReprocessPerMonth).toBeCloseTo(7.832717576819654, 10);
    // 647 / 343 - 1 = +88.6%
    expect(r.speedup).toBeCloseTo(0.8863, 4);
    expect(r.reason).toBeUndefined();
  });

  it('BERT-base fp16, local drives', () => {
    const r = computeCost(bertBase({ storage: presetPrice('local') }));
    // storage: 0.000732481479644775 GiB x 0.00022922092013888886 = $1.679000787488702e-7 a month
    expect(r.storageUsdPerSequenceMonth).toBeCloseTo(1.679000787488702e-7, 20);
    // T = 9.3515625e-7 / 1.679000787488702e-7 = 5.5697 months
    expect(r.breakEvenMonths).toBeCloseTo(5.569718948129395, 10);
  });

  it('decimal units change the storage price, not the bytes', () => {
    const r = computeCost(bertBase({ storage: presetPrice('local', 'decimal') }));
    // 786,496 / 1e9 GB x (16.9 / 1000 / 72) = 7.86496e-4 x 2.347222e-4 = $1.8460808888888888e-7; T = 5.0656 months
    expect(r.bytesPerSequence).toBe(786_496);
    expect(r.storageUsdPerSequenceMonth).toBeCloseTo(1.8460808888888888e-7, 20);
    expect(r.breakEvenMonths).toBeCloseTo(5.065629873687971, 10);
  });

  it('monthly saving at R reprocessings and corpus totals', () => {
    const r = computeCost(bertBase({ reprocessPerMonth: 10, corpusDocs: 1_000_000 }));
    // 10 x 9.3515625e-7 - 7.324814796447754e-6 = 9.3515625e-6 - 7.3248148e-6 = $2.0267477e-6 per sequence-month
    expect(r.atRate?.monthlySavingUsdPerSequence).toBeCloseTo(2.0267477035522455e-6, 18);
    expect(r.atRate?.pays).toBe(true);
    // x 1,000,000 sequences = $2.03 a month; storage 786,496 x 1e6 bytes = $7.32 a month
    expect(r.corpus?.sequences).toBe(1_000_000);
    expect(r.corpus?.bytes).toBe(786_496_000_000);
    expect(r.corpus?.storageUsdPerMonth).toBeCloseTo(7.324814796447754, 10);
    expect(r.corpus?.monthlySavingUsd).toBeCloseTo(2.0267477035522456, 10);
    // 2.375 ms x 1e6 / 3.6e6 = 0.6597 compute-hours saved per pass; x $1.4175 = $0.935
    expect(r.corpus?.computeHoursSavedPerReprocess).toBeCloseTo(0.659722, 6);
    expect(r.corpus?.savedUsdPerReprocess).toBeCloseTo(0.93515625, 10);
  });

  it('below the break-even rate, the monthly saving is a loss', () => {
    // 1 x 9.3515625e-7 - 7.3248148e-6 = -$6.3896585e-6
    const r = computeCost(bertBase({ reprocessPerMonth: 1 }));
    expect(r.atRate?.monthlySavingUsdPerSequence).toBeCloseTo(-6.389658546447754e-6, 18);
    expect(r.atRate?.pays).toBe(false);
  });

  it('exactly at 1/T reprocessings a month, the two strategies cost the same', () => {
    const r = computeCost(bertBase());
    const c = monthlyCosts(r, r.minReprocessPerMonth as number);
    expect(c.recycle).toBeCloseTo(c.recompute, 15);
  });

  it('--corpus-tokens: a 4,900-token paper at 512 tokens a sequence is ceil(9.57) = 10 sequences', () => {
    expect(sequencesForTokens(4900, 512)).toBe(10);
    expect(sequencesForTokens(1024, 512)).toBe(2);
    const r = computeCost(bertBase({ corpusTokens: 4900 }));
    expect(r.corpus).toMatchObject({ sequences: 10, from: 'tokens', tokens: 4900, bytes: 7_864_960 });
  });
});

describe('boundary cases', () => {
  it('recycled == baseline: no break-even, null with a reason, never a number', () => {
    const r = computeCost(bertBase({ recycledMs: 647 }));
    expect(r.breakEvenMonths).toBeNull();
    expect(r.minReprocessPerMonth).toBeNull();
    expect(r.savedUsdPerSequenceReprocess).toBe(0);
    expect(r.reason).toMatch(/not smaller than the baseline.*never pays/);
  });
  it('recycled > baseline: no break-even (no negative T)', () => {
    const r = computeCost(bertBase({ recycledMs: 700, reprocessPerMonth: 5 }));
    expect(r.breakEvenMonths).toBeNull();
    expect(r.reason).toMatch(/700 ms per batch.*647 ms per batch/);
    expect(r.atRate?.pays).toBe(false);
  });
  it('recycled just below baseline: a long but finite, positive T', () => {
    const r = computeCost(bertBase({ recycledMs: 646.999 }));
    expect(r.breakEvenMonths).toBeGreaterThan(0);
    expect(Number.isFinite(r.breakEvenMonths)).toBe(true);
  });
  it.each([
    ['baselineMs', { baselineMs: 0 }],
    ['baselineMs', { baselineMs: -1 }],
    ['recycledMs', { recycledMs: 0 }],
    ['recycledMs', { recycledMs: NaN }],
    ['recycledMs', { recycledMs: Infinity }],
    ['hourUsd', { hourUsd: 0 }],
    ['batchSize', { batchSize: 1.5 }],
    ['hidden', { hidden: 0 }],
    ['seqLen', { seqLen: -512 }],
    ['reprocessPerMonth', { reprocessPerMonth: 0 }],
    ['corpusDocs', { corpusDocs: 0.5 }],
  ] as [string, Partial<CostInputs>][])('rejects a bad %s, naming it', (name, over) => {
    expect(() => computeCost(bertBase(over))).toThrow(new RegExp(`^${name}`));
  });
  it('rejects corpusDocs with corpusTokens', () => {
    expect(() => computeCost(bertBase({ corpusDocs: 1, corpusTokens: 1 }))).toThrow(/corpusDocs or corpusTokens, not both/);
  });
  it('rejects a storage price of zero', () => {
    expect(() => computeCost(bertBase({ storage: customPrice(0, 'GiB') }))).toThrow(/storage price/);
  });
});
