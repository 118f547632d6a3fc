/**
 * The measured mode of the cost model: time the plain encoder against the recycled
 * path (reading the cache + layers k+1..N) with this engine on this machine.
 *
 * A short, bounded benchmark: a warm-up, then up to `reps` repetitions (stopping
 * early, after at least one, when `maxSeconds` have passed), and the median of each
 * part. What is measured and what is not is stated in the result.
 *
 * Reading the cache is modelled by decoding the stored activations in memory over
 * B x T x H values: FP16 -> FP32 and FP32 copies with the store's native kernels,
 * int8 x per-token scale (not written by the store yet) in JavaScript. Reading the bytes from disk is not
 * measured: it depends on the storage device and the page cache.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Batch, Encoder } from '../model/encoder';
import { cpuInfo } from '../native/info';
import { decodeCache, encodeCache } from './codec';
import { native } from '../native/binding';
import { Dtype } from './model';
import { removeSyntheticBert, writeSyntheticBert } from './synthetic';

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---------------------------------------------------------------- batches

const TEXT = [
  'Embedding recycling runs the lower layers of a pretrained encoder once over a corpus and keeps their activations on fast storage.',
  'Later training and inference on the same documents load the cached activations and run only the upper layers and a task head.',
  'Aspirin irreversibly inhibits cyclooxygenase, which reduces the synthesis of prostaglandins and thromboxanes in platelets.',
  'The survey covered 1,204 households in three districts between March and October, with a response rate of 71 percent.',
  'We fine-tune the model for named-entity recognition, topic classification, relation extraction and question answering.',
];

/** B rows of real-looking text, each long enough to fill `seqLen` tokens; tokenized and padded/truncated to seqLen. */
export async function textBatch(enc: Encoder, batchSize: number, seqLen: number): Promise<Batch> {
  const words = Math.max(16, seqLen * 2);
  const texts: string[] = [];
  for (let b = 0; b < batchSize; b++) {
    let t = '';
    for (let i = 0; t.split(' ').length < words; i++) t += (t ? ' ' : '') + TEXT[(b + i) % TEXT.length];
    texts.push(t);
  }
  return enc.tokenize(texts, { maxLength: seqLen, padding: 'max_length' });
}

/** B rows of `seqLen` random token ids in [lo, vocab), all real (mask 1); BERT positions. */
export function randomBatch(batchSize: number, seqLen: number, vocab: number, lo = 5, seed = 1): Batch {
  const n = batchSize * seqLen;
  const inputIds = new Int32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    inputIds[i] = lo + (s % (vocab - lo));
  }
  const positionIds = new Int32Array(n);
  for (let i = 0; i < n; i++) positionIds[i] = i % seqLen;
  return {
    batchSize,
    seqLen,
    inputIds,
    attentionMask: new Int32Array(n).fill(1),
    tokenTypeIds: new Int32Array(n),
    positionIds,
    encodings: [],
  };
}

// ---------------------------------------------------------------- bounded repetitions

export interface BenchBounds {
  /** untimed runs first (default 1) */
  warmup?: number;
  /** timed repetitions at most (default 5) */
  reps?: number;
  /** stop after the repetition that passes this many seconds, counting the warm-up (default 30); at least one repetition always runs */
  maxSeconds?: number;
}

function checkBounds(b: BenchBounds): Required<BenchBounds> {
  const warmup = b.warmup ?? 1;
  const reps = b.reps ?? 5;
  const maxSeconds = b.maxSeconds ?? 30;
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`warm-up runs must be an integer >= 0, got ${warmup}`);
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`repetitions must be a positive integer, got ${reps}`);
  if (!Number.isFinite(maxSeconds) || maxSeconds <= 0) throw new Error(`max seconds must be a positive number, got ${maxSeconds}`);
  return { warmup, reps, maxSeconds };
}

/**
 * Runs `step` (which returns the named parts' durations in ms) `warmup` times
 * untimed, then up to `reps` times, stopping early once `maxSeconds` have passed.
 */
async function repeat(
  bounds: Required<BenchBounds>,
  step: () => Promise<Record<string, number>>,
): Promise<{ samples: Record<string, number[]>; repetitions: number; stoppedBy: 'repetitions' | 'max-seconds' }> {
  const start = performance.now();
  const deadline = start + bounds.maxSeconds * 1000;
  for (let i = 0; i < bounds.warmup; i++) {
    await step();
    if (performance.now() > deadline) break;
  }
  const samples: Record<string, number[]> = {};
  let repetitions = 0;
  let stoppedBy: 'repetitions' | 'max-seconds' = 'repetitions';
  while (repetitions < bounds.reps) {
    if (repetitions > 0 && performance.now() > deadline) {
      stoppedBy = 'max-seconds';
      break;
    }
    const parts = await step();
    for (const [k, v] of Object.entries(parts)) (samples[k] ??= []).push(v);
    repetitions++;
  }
  return { samples, repetitions, stoppedBy };
}

async function timed<T>(f: () => Promise<T> | T): Promise<[T, number]> {
  const t = performance.now();
  const r = await f();
  return [r, performance.now() - t];
}

/**
 * Encodes the activations once per dtype; the returned function times decoding
 * each into `out` (which holds the last dtype's decoded values afterwards).
 */
function decodeTimer(hidden: Float32Array, H: number, dtypes: readonly Dtype[]): { time: () => Record<string, number>; out: Float32Array } {
  const caches = dtypes.map((d) => encodeCache(hidden, H, d));
  const out = new Float32Array(hidden.length);
  const time = (): Record<string, number> => {
    const r: Record<string, number> = {};
    for (const c of caches) {
      const t = performance.now();
      // fp16 and fp32 through the store's own native decode (fp16 -> fp32 kernel, memcpy);
      // int8 (which the store does not write yet) through the JS codec
      if (c.dtype === 'fp16') native().f16ToF32(c.values, out, 1);
      else if (c.dtype === 'fp32') native().copyF32(c.values, out, 1);
      else decodeCache(c, out);
      r[`decode.${c.dtype}`] = performance.now() - t;
    }
    return r;
  };
  return { time, out };
}

const DECODE_NOTE =
  'cache read: in-memory decode of the stored activations to float32 with the store\'s native kernels (fp16: the F16C / AVX-512 conversion; fp32: memcpy; ' +
  'int8: a JS loop, value x per-token scale), B x T x H values; reading from disk is not included';
const NOT_MEASURED = ['reading the cache from disk or NVMe (depends on the device and the page cache)', 'the task head'];

// ---------------------------------------------------------------- a real model, split at layer k

export interface MeasureOptions extends BenchBounds {
  /** Hugging Face model directory */
  model: string;
  /** layer whose output is cached; default: the middle, floor(N / 2) */
  layer?: number;
  batchSize: number;
  seqLen: number;
  /** cache dtypes whose decode is timed (default ['fp16']) */
  dtypes?: readonly Dtype[];
  /** native threads; default: every core */
  threads?: number;
}

/** What {@link measureRecycling} timed. All times are medians over `repetitions`, in ms per batch. */
export interface RecyclingMeasurement {
  kind: 'model';
  model: string;
  layers: number;
  layer: number;
  hidden: number;
  threads: number;
  batchSize: number;
  seqLen: number;
  warmup: number;
  repetitions: number;
  maxSeconds: number;
  stoppedBy: 'repetitions' | 'max-seconds';
  /** full forward: embeddings + layers 1..N */
  baselineMs: number;
  /** forwardFrom(layer k): layers k+1..N */
  suffixMs: number;
  /** decoding the cache, per dtype */
  cacheDecodeMs: Partial<Record<Dtype, number>>;
  samplesMs: Record<string, number[]>;
  measured: string[];
  notMeasured: string[];
}

/** Recycled time for a dtype: suffix + decode. */
export function recycledMs(m: { suffixMs: number; cacheDecodeMs: Partial<Record<Dtype, number>> }, dtype: Dtype): number {
  const d = m.cacheDecodeMs[dtype];
  if (d === undefined) throw new Error(`the measurement did not time decoding a ${dtype} cache`);
  return m.suffixMs + d;
}

/**
 * Times the plain encoder (`forward`) against the recycled path
 * (decode the cache + `forwardFrom(layer k)`) on a batch of `batchSize` rows of
 * `seqLen` tokens of real-looking text.
 */
export async function measureRecycling(opts: MeasureOptions): Promise<RecyclingMeasurement> {
  const bounds = checkBounds(opts);
  const dtypes = opts.dtypes ?? ['fp16'];
  if (!fs.existsSync(opts.model)) throw new Error(`model directory ${opts.model} does not exist`);
  const enc = await Encoder.load(opts.model, opts.threads === undefined ? {} : { threads: opts.threads });
  try {
    const N = enc.numLayers;
    const k = opts.layer ?? Math.floor(N / 2);
    if (!Number.isInteger(k) || k < 0 || k > N) throw new Error(`layer must be an integer in 0..${N} for this ${N}-layer model, got ${k}`);
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`batch size must be a positive integer, got ${opts.batchSize}`);
    if (!Number.isInteger(opts.seqLen) || opts.seqLen < 1 || opts.seqLen > enc.maxLength) {
      throw new Error(`sequence length must be an integer in 1..${enc.maxLength} (this model's limit), got ${opts.seqLen}`);
    }
    const batch = await textBatch(enc, opts.batchSize, opts.seqLen);
    const cached = await enc.forward(batch, { toLayer: k });
    const decode = decodeTimer(cached.data, enc.hidden, dtypes);
    const shape = cached.shape;
    const run = await repeat(bounds, async () => {
      const [, full] = await timed(() => enc.forward(batch));
      // the suffix runs on activations that went through a cache codec and were decoded
      const parts = decode.time();
      const [, suffix] = await timed(() => enc.forwardFrom({ data: decode.out, shape }, batch.attentionMask, { fromLayer: k }));
      return { baseline: full, suffix, ...parts };
    });
    const cacheDecodeMs: Partial<Record<Dtype, number>> = {};
    for (const d of dtypes) cacheDecodeMs[d] = median(run.samples[`decode.${d}`]);
    return {
      kind: 'model',
      model: path.resolve(opts.model),
      layers: N,
      layer: k,
      hidden: enc.hidden,
      threads: opts.threads ?? cpuInfo().defaultThreads,
      batchSize: opts.batchSize,
      seqLen: opts.seqLen,
      warmup: bounds.warmup,
      repetitions: run.repetitions,
      maxSeconds: bounds.maxSeconds,
      stoppedBy: run.stoppedBy,
      baselineMs: median(run.samples.baseline),
      suffixMs: median(run.samples.suffix),
      cacheDecodeMs,
      samplesMs: run.samples,
      measured: [
        `baseline: full forward of this engine, embeddings + layers 1..${N}`,
        `suffix: forwardFrom layer ${k}, layers ${k + 1}..${N}, of this engine`,
        DECODE_NOTE,
      ],
      notMeasured: NOT_MEASURED,
    };
  } finally {
    enc.close();
  }
}

// ---------------------------------------------------------------- one layer of a shape, extrapolated

/** The dimensions of one transformer layer. */
export interface LayerShape {
  hidden: number;
  heads: number;
  intermediate: number;
}

export interface LayerMeasureOptions extends BenchBounds {
  batchSize: number;
  seqLen: number;
  dtypes?: readonly Dtype[];
  threads?: number;
}

/** What {@link measureLayerShape} timed, medians in ms per batch. */
export interface LayerMeasurement extends LayerShape {
  kind: 'layer';
  threads: number;
  batchSize: number;
  seqLen: number;
  warmup: number;
  repetitions: number;
  maxSeconds: number;
  stoppedBy: 'repetitions' | 'max-seconds';
  /** forward(toLayer 0): embeddings + their LayerNorm */
  embeddingsMs: number;
  /** forwardFrom(layer 0, toLayer 1): one transformer layer */
  layerMs: number;
  cacheDecodeMs: Partial<Record<Dtype, number>>;
  samplesMs: Record<string, number[]>;
  measured: string[];
  notMeasured: string[];
}

/**
 * Times the embeddings and one transformer layer of the given shape with this
 * engine, on a one-layer checkpoint of random (synthetic) weights written to a
 * temporary directory, for shapes whose weights are not at hand. Compute time does
 * not depend on the weights' values. An N-layer encoder split at k is then
 * `baseline = embeddings + N x layer`, `recycled = (N - k) x layer + decode`
 * (see {@link extrapolate}).
 */
export async function measureLayerShape(shape: LayerShape, opts: LayerMeasureOptions): Promise<LayerMeasurement> {
  const bounds = checkBounds(opts);
  const dtypes = opts.dtypes ?? ['fp16'];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'er-cost-'));
  try {
    const vocab = writeSyntheticBert(dir, { ...shape, layers: 1, maxPositions: Math.max(opts.seqLen, 8) });
    const enc = await Encoder.load(dir, opts.threads === undefined ? {} : { threads: opts.threads });
    try {
      const batch = randomBatch(opts.batchSize, opts.seqLen, vocab);
      const emb = await enc.forward(batch, { toLayer: 0 });
      const decode = decodeTimer(emb.data, shape.hidden, dtypes);
      const run = await repeat(bounds, async () => {
        const [e, embeddings] = await timed(() => enc.forward(batch, { toLayer: 0 }));
        const [, layer] = await timed(() => enc.forwardFrom(e, batch.attentionMask, { fromLayer: 0, toLayer: 1 }));
        return { embeddings, layer, ...decode.time() };
      });
      const cacheDecodeMs: Partial<Record<Dtype, number>> = {};
      for (const d of dtypes) cacheDecodeMs[d] = median(run.samples[`decode.${d}`]);
      return {
        kind: 'layer',
        ...shape,
        threads: opts.threads ?? cpuInfo().defaultThreads,
        batchSize: opts.batchSize,
        seqLen: opts.seqLen,
        warmup: bounds.warmup,
        repetitions: run.repetitions,
        maxSeconds: bounds.maxSeconds,
        stoppedBy: run.stoppedBy,
        embeddingsMs: median(run.samples.embeddings),
        layerMs: median(run.samples.layer),
        cacheDecodeMs,
        samplesMs: run.samples,
        measured: [
          'embeddings: forward(toLayer 0) of this engine on synthetic weights of this shape',
          'layer: one transformer layer (forwardFrom layer 0 to 1) of this engine on synthetic weights of this shape',
          DECODE_NOTE,
        ],
        notMeasured: [...NOT_MEASURED, 'the full N-layer model: its times are extrapolated from one layer'],
      };
    } finally {
      enc.close();
    }
  } finally {
    removeSyntheticBert(dir);
  }
}

/** An N-layer encoder split at k, from one layer's times: baseline = emb + N x layer, recycled = (N - k) x layer + decode. */
export function extrapolate(m: LayerMeasurement, layers: number, k: number, dtype: Dtype): { baselineMs: number; recycledMs: number } {
  const d = m.cacheDecodeMs[dtype];
  if (d === undefined) throw new Error(`the measurement did not time decoding a ${dtype} cache`);
  return { baselineMs: m.embeddingsMs + layers * m.layerMs, recycledMs: (layers - k) * m.layerMs + d };
}
