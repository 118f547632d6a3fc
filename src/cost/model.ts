/**
 * The cost model of embedding recycling: when does a cache of layer-k activations
 * pay for itself?
 *
 * Storing the cache costs money every month; every reprocessing of the corpus saves
 * the compute of the layers below k. The answer is a minimum reprocessing frequency:
 * the corpus must be reprocessed at least once every T months for recycling to be
 * cheaper than recomputing.
 *
 * Everything here is pure arithmetic on plain numbers (no I/O), so it can be tested
 * by hand. The formulas, with B the batch size:
 *
 * - `bytesPerSequence = seqLen * hidden * bytesPerValue(dtype)`
 *   ` + (dtype == int8 ? seqLen * INT8_SCALE_BYTES_PER_TOKEN : 0) + RECORD_OVERHEAD_BYTES`
 * - `storageUsdPerSequenceMonth = bytesPerSequence / unitBytes * storageUsdPerUnitMonth`
 *   (unitBytes = 2^30 for GiB, 10^9 for GB)
 * - `savedUsdPerSequenceReprocess = (baselineMs - recycledMs) / B / 3.6e6 * hourUsd`
 * - `breakEvenMonths T = savedUsdPerSequenceReprocess / storageUsdPerSequenceMonth`
 *   (reprocess at least once every T months; equivalently at least 1/T times a month)
 * - at R reprocessings a month: `monthlySaving = R * savedUsdPerSequenceReprocess - storageUsdPerSequenceMonth`
 * - corpus totals multiply the per-sequence numbers by the number of sequences:
 *   `--corpus-docs` (one sequence per document) or `ceil(corpusTokens / seqLen)`.
 *
 * Assumptions (printed by the CLI): the cache is written during a pass that runs
 * anyway (layer k's output is a by-product of the full encoder), so writing it costs
 * no extra compute; transfer between storage and compute is free; the recycled time
 * given (or measured) already includes reading and decoding the cache.
 */

/** Storage formats of cached activations. */
export type Dtype = 'fp32' | 'fp16' | 'int8';
export const DTYPES: readonly Dtype[] = ['fp32', 'fp16', 'int8'];

/** Bytes of one stored activation value. */
export const BYTES_PER_VALUE: Readonly<Record<Dtype, number>> = { fp32: 4, fp16: 2, int8: 1 };

/** int8 caches keep one float32 scale per token (per-token absmax quantization). */
export const INT8_SCALE_BYTES_PER_TOKEN = 4;

/**
 * Fixed bytes stored with every cached sequence besides its activations: a record
 * header (key hash, shape, dtype), a checksum and its index entry. An estimate (64
 * bytes); it is negligible next to the activations (0.008% of a 512 x 768 FP16 record).
 */
export const RECORD_OVERHEAD_BYTES = 64;

/** Milliseconds in an hour. */
export const MS_PER_HOUR = 3.6e6;

/** Binary (GiB, TiB: powers of 2^10) or decimal (GB, TB: powers of 10^3) storage units. */
export type UnitSystem = 'binary' | 'decimal';

export interface Units {
  system: UnitSystem;
  /** the unit prices are quoted per, per month: 'GiB' or 'GB' */
  unit: 'GiB' | 'GB';
  /** the large unit drive prices are quoted per: 'TiB' or 'TB' */
  bigUnit: 'TiB' | 'TB';
  /** bytes in `unit`: 2^30 or 1e9 */
  unitBytes: number;
  /** bytes in `bigUnit`: 2^40 or 1e12 */
  bigUnitBytes: number;
}

export const GIB = 2 ** 30;
export const TIB = 2 ** 40;
export const GB = 1e9;
export const TB = 1e12;

export function units(system: UnitSystem): Units {
  return system === 'binary'
    ? { system, unit: 'GiB', bigUnit: 'TiB', unitBytes: GIB, bigUnitBytes: TIB }
    : { system, unit: 'GB', bigUnit: 'TB', unitBytes: GB, bigUnitBytes: TB };
}

/** Storage price presets of the original analysis. */
export type StoragePreset = 'cloud' | 'local';
export const STORAGE_PRESETS: readonly StoragePreset[] = ['cloud', 'local'];

/** Consumer hard drives: price per TiB (TB with decimal units) and write-off period. */
export const LOCAL_DRIVE_USD_PER_BIG_UNIT = 16.9;
export const LOCAL_DRIVE_LIFETIME_MONTHS = 6 * 12;
/** Cloud object storage for infrequent access, per GiB-month (GB-month with decimal units). */
export const CLOUD_USD_PER_UNIT_MONTH = 0.01;

/** A storage price, normalised to USD per `unit` per month. */
export interface StoragePrice {
  /** the preset name, or 'custom' for a price given by the user */
  source: StoragePreset | 'custom';
  /** USD per GiB-month (binary) or GB-month (decimal), in the units below */
  usdPerUnitMonth: number;
  unit: 'GiB' | 'GB';
  units: UnitSystem;
  /** how the price was reached, for people */
  description: string;
}

/**
 * A preset's price in the given unit system:
 * - `cloud`: $0.01 per GiB-month (per GB-month with decimal units);
 * - `local`: $16.9 per TiB written off over 6 years = 16.9 / 1024 / 72 per GiB-month
 *   (16.9 / 1000 / 72 per GB-month with decimal units).
 */
export function presetPrice(preset: StoragePreset, system: UnitSystem = 'binary'): StoragePrice {
  const u = units(system);
  if (preset === 'cloud') {
    return {
      source: 'cloud',
      usdPerUnitMonth: CLOUD_USD_PER_UNIT_MONTH,
      unit: u.unit,
      units: system,
      description: `cloud object storage for infrequent access: $${CLOUD_USD_PER_UNIT_MONTH} per ${u.unit}-month`,
    };
  }
  if (preset === 'local') {
    const perUnit = u.unitBytes / u.bigUnitBytes; // 1/1024 or 1/1000
    return {
      source: 'local',
      usdPerUnitMonth: (LOCAL_DRIVE_USD_PER_BIG_UNIT * perUnit) / LOCAL_DRIVE_LIFETIME_MONTHS,
      unit: u.unit,
      units: system,
      description:
        `local consumer hard drives: $${LOCAL_DRIVE_USD_PER_BIG_UNIT} per ${u.bigUnit} written off over ` +
        `${LOCAL_DRIVE_LIFETIME_MONTHS / 12} years = ${LOCAL_DRIVE_USD_PER_BIG_UNIT} / ${u.bigUnitBytes / u.unitBytes} / ${LOCAL_DRIVE_LIFETIME_MONTHS} per ${u.unit}-month`,
    };
  }
  throw new Error(`unknown storage preset ${JSON.stringify(preset)}; expected one of ${STORAGE_PRESETS.join(', ')}`);
}

/**
 * A user's own price, given per GiB-month (`per: 'GiB'`) or per GB-month (`per: 'GB'`),
 * expressed in the unit system used for display.
 */
export function customPrice(usd: number, per: 'GiB' | 'GB', system: UnitSystem = 'binary'): StoragePrice {
  const u = units(system);
  const perByte = usd / (per === 'GiB' ? GIB : GB);
  return {
    source: 'custom',
    usdPerUnitMonth: perByte * u.unitBytes,
    unit: u.unit,
    units: system,
    description: `custom: $${usd} per ${per}-month`,
  };
}

/** Bytes per value of a dtype, with an error naming the accepted values. */
export function bytesPerValue(dtype: Dtype): number {
  const b = BYTES_PER_VALUE[dtype];
  if (b === undefined) throw new Error(`unknown dtype ${JSON.stringify(dtype)}; expected one of ${DTYPES.join(', ')}`);
  return b;
}

/**
 * Bytes stored for one cached sequence:
 * `seqLen * hidden * bytesPerValue(dtype) + (int8 ? 4 * seqLen : 0) + RECORD_OVERHEAD_BYTES`.
 * Example: 512 tokens x 768 hidden in FP16 = 786432 + 64 = 786496 bytes.
 */
export function bytesPerSequence(hidden: number, seqLen: number, dtype: Dtype): number {
  const values = seqLen * hidden * bytesPerValue(dtype);
  const scales = dtype === 'int8' ? seqLen * INT8_SCALE_BYTES_PER_TOKEN : 0;
  return values + scales + RECORD_OVERHEAD_BYTES;
}

/** Sequences needed for a corpus of `tokens` tokens at `seqLen` tokens a sequence: ceil(tokens / seqLen). */
export function sequencesForTokens(tokens: number, seqLen: number): number {
  return Math.ceil(tokens / seqLen);
}

/** What {@link computeCost} needs. Times are per batch of `batchSize` sequences. */
export interface CostInputs {
  hidden: number;
  seqLen: number;
  dtype: Dtype;
  batchSize: number;
  /** ms per batch of the plain encoder (all N layers) */
  baselineMs: number;
  /** ms per batch with recycling (reading the cache + layers k+1..N) */
  recycledMs: number;
  /** USD per hour of the machine that runs the encoder */
  hourUsd: number;
  storage: StoragePrice;
  /** reprocessings of the corpus per month, for the monthly saving */
  reprocessPerMonth?: number;
  /** corpus size in sequences (documents of at most seqLen tokens) */
  corpusDocs?: number;
  /** corpus size in tokens (split into ceil(tokens / seqLen) sequences) */
  corpusTokens?: number;
}

/** Totals for a whole corpus. */
export interface CorpusTotals {
  sequences: number;
  /** where `sequences` came from */
  from: 'docs' | 'tokens';
  tokens?: number;
  bytes: number;
  storageUsdPerMonth: number;
  /** one full pass of the plain encoder over the corpus */
  baselineUsdPerReprocess: number;
  savedUsdPerReprocess: number;
  computeHoursSavedPerReprocess: number;
  /** at `reprocessPerMonth`, when given */
  monthlySavingUsd?: number;
}

/** The model's answer. Money in USD; `breakEvenMonths` is null when recycling never pays. */
export interface CostResult {
  bytesPerSequence: number;
  storageUsdPerSequenceMonth: number;
  /** compute of one sequence on the plain encoder: baselineMs / B / 3.6e6 * hourUsd */
  baselineUsdPerSequence: number;
  /** compute of one sequence with recycling: recycledMs / B / 3.6e6 * hourUsd */
  recycledUsdPerSequence: number;
  /** (baselineMs - recycledMs) / B: ms saved per sequence per reprocessing (negative if recycling is slower) */
  savedMsPerSequence: number;
  /** (baselineMs - recycledMs) / B / 3.6e6 * hourUsd (negative if recycling is slower) */
  savedUsdPerSequenceReprocess: number;
  /** baselineMs / recycledMs - 1, e.g. 0.886 for +88.6% throughput */
  speedup: number;
  /** T: reprocess at least once every T months for recycling to pay; null if it never pays */
  breakEvenMonths: number | null;
  /** 1 / T: the least reprocessings a month for recycling to pay; null if it never pays */
  minReprocessPerMonth: number | null;
  /** why there is no break-even (only when breakEvenMonths is null) */
  reason?: string;
  /** at `reprocessPerMonth` R, when given: R * saved - storage, per sequence */
  atRate?: { reprocessPerMonth: number; monthlySavingUsdPerSequence: number; pays: boolean };
  corpus?: CorpusTotals;
}

function requirePositive(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, got ${String(v)}`);
}

function requirePositiveInt(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer, got ${String(v)}`);
}

/** Checks inputs; throws naming the field. */
export function validateInputs(i: CostInputs): void {
  requirePositiveInt('hidden', i.hidden);
  requirePositiveInt('seqLen', i.seqLen);
  bytesPerValue(i.dtype);
  requirePositiveInt('batchSize', i.batchSize);
  requirePositive('baselineMs', i.baselineMs);
  requirePositive('recycledMs', i.recycledMs);
  requirePositive('hourUsd', i.hourUsd);
  if (typeof i.storage !== 'object' || i.storage === null) throw new Error('storage price is missing');
  requirePositive('storage price (USD per unit-month)', i.storage.usdPerUnitMonth);
  if (i.reprocessPerMonth !== undefined) requirePositive('reprocessPerMonth', i.reprocessPerMonth);
  if (i.corpusDocs !== undefined && i.corpusTokens !== undefined) throw new Error('give corpusDocs or corpusTokens, not both');
  if (i.corpusDocs !== undefined) requirePositiveInt('corpusDocs', i.corpusDocs);
  if (i.corpusTokens !== undefined) requirePositiveInt('corpusTokens', i.corpusTokens);
}

/** USD per hour -> USD for `ms` milliseconds of one batch, per sequence. */
function usdPerSequence(ms: number, batchSize: number, hourUsd: number): number {
  return (ms / batchSize / MS_PER_HOUR) * hourUsd;
}

/** Runs the model (see the formulas at the top of this file). Throws on bad input. */
export function computeCost(i: CostInputs): CostResult {
  validateInputs(i);
  const u = units(i.storage.units);
  const bytes = bytesPerSequence(i.hidden, i.seqLen, i.dtype);
  const storage = (bytes / u.unitBytes) * i.storage.usdPerUnitMonth;
  const baselineUsd = usdPerSequence(i.baselineMs, i.batchSize, i.hourUsd);
  const recycledUsd = usdPerSequence(i.recycledMs, i.batchSize, i.hourUsd);
  const savedMs = (i.baselineMs - i.recycledMs) / i.batchSize;
  const saved = usdPerSequence(i.baselineMs - i.recycledMs, i.batchSize, i.hourUsd);
  const pays = i.recycledMs < i.baselineMs;
  const result: CostResult = {
    bytesPerSequence: bytes,
    storageUsdPerSequenceMonth: storage,
    baselineUsdPerSequence: baselineUsd,
    recycledUsdPerSequence: recycledUsd,
    savedMsPerSequence: savedMs,
    savedUsdPerSequenceReprocess: saved,
    speedup: i.baselineMs / i.recycledMs - 1,
    breakEvenMonths: pays ? saved / storage : null,
    minReprocessPerMonth: pays ? storage / saved : null,
  };
  if (!pays) {
    result.reason =
      `the recycled time (${i.recycledMs} ms per batch) is not smaller than the baseline (${i.baselineMs} ms per batch): ` +
      'recycling saves no compute, so storing the cache never pays, however often the corpus is reprocessed';
  }
  if (i.reprocessPerMonth !== undefined) {
    const m = i.reprocessPerMonth * saved - storage;
    result.atRate = { reprocessPerMonth: i.reprocessPerMonth, monthlySavingUsdPerSequence: m, pays: m > 0 };
  }
  if (i.corpusDocs !== undefined || i.corpusTokens !== undefined) {
    const sequences = i.corpusDocs ?? sequencesForTokens(i.corpusTokens as number, i.seqLen);
    const c: CorpusTotals = {
      sequences,
      from: i.corpusDocs !== undefined ? 'docs' : 'tokens',
      bytes: bytes * sequences,
      storageUsdPerMonth: storage * sequences,
      baselineUsdPerReprocess: baselineUsd * sequences,
      savedUsdPerReprocess: saved * sequences,
      computeHoursSavedPerReprocess: (savedMs * sequences) / MS_PER_HOUR,
    };
    if (i.corpusTokens !== undefined) c.tokens = i.corpusTokens;
    if (result.atRate) c.monthlySavingUsd = result.atRate.monthlySavingUsdPerSequence * sequences;
    result.corpus = c;
  }
  return result;
}

/**
 * Monthly cost of the two strategies at `r` reprocessings a month, per sequence:
 * recompute = r * baselineUsdPerSequence; store + recycle = storage + r * recycledUsdPerSequence.
 * They cross at r = 1 / T (the break-even).
 */
export function monthlyCosts(r: CostResult, reprocessPerMonth: number): { recompute: number; recycle: number } {
  return {
    recompute: reprocessPerMonth * r.baselineUsdPerSequence,
    recycle: r.storageUsdPerSequenceMonth + reprocessPerMonth * r.recycledUsdPerSequence,
  };
}
