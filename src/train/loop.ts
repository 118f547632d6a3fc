/**
 * The training loop: epochs over shuffled rows, a linear warm-up / decay schedule,
 * evaluation on dev after every epoch, early stopping on dev loss with patience, the
 * best checkpoint kept. Recycled modes read layer-k activations from the store; when
 * the store is still empty (the "SR" setting) the first epoch runs the prefix and
 * writes the store as it trains, and later epochs recycle.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { ActivationStore } from '../store/store';
import type { Tensor } from '../tensor/tensor';
import { IGNORE, Row } from './rows';
import { linearSchedule, TaskModel, TrainInput } from './model';
import { makeDir } from '../util/fs';

/** A seeded generator (mulberry32), so shuffles repeat. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(xs: readonly T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/**
 * The inputs a model needs for some rows: token ids, or layer-k activations read
 * from the store (rows not in it run the encoder's prefix; with `writeThrough` they
 * are appended to the store as well).
 */
/** Whether a model reads the store's fp16 records as they are: on the GPU, from an fp16 store. */
function halfFor(model: TaskModel, store: ActivationStore): boolean {
  return model.device === 'cuda' && store.identity.dtype === 'fp16';
}

export async function inputsFor(
  model: TaskModel, rows: readonly Row[], store?: ActivationStore, writeThrough = false,
  onComputed?: (rows: readonly Row[], hidden: Tensor) => void,
): Promise<{ input: TrainInput; T: number; fromStore: number }> {
  const enc = model.encoder;
  // not recycled, or on the GPU with no store to agree with: token ids (a GPU model runs its
  // prefix there too)
  if (!model.recycled || (model.device === 'cuda' && !store)) {
    const batch = enc.batchFromEncodings(rows.map((r) => r.encoding));
    return { input: { batch }, T: batch.seqLen, fromStore: 0 };
  }
  if (store) {
    const keys = rows.map((r) => store.keyOf(r.encoding));
    const missing = new Map<string, Row>();
    rows.forEach((r, i) => {
      if (!store.lookup(keys[i])) missing.set(keys[i].toString('hex'), r);
    });
    if (missing.size > 0 && writeThrough && !store.readOnly) {
      // documents are the windows themselves, named by their keys
      const items = [...missing].map(([hex, r]) => ({ id: `window:${hex}`, text: hex, encodings: [r.encoding] }));
      await store.encode(items, { batchSize: items.length });
    }
    if (keys.every((k) => store.lookup(k))) {
      // rows written through just now count as computed, not as found in the store
      let found = 0;
      for (const k of keys) if (!missing.has(k.toString('hex'))) found++;
      // a GPU model takes an fp16 store's records as they are (cast on the device)
      if (halfFor(model, store)) {
        for await (const b of store.batches(keys, { batchSize: keys.length, prefetch: false, copy: true, fp16: true })) {
          return { input: { hidden16: b.hidden16, attentionMask: b.attentionMask }, T: b.hidden16.shape[1], fromStore: found };
        }
      }
      for await (const b of store.batches(keys, { batchSize: keys.length, prefetch: false, copy: true })) {
        return { input: { hidden: b.hidden, attentionMask: b.attentionMask }, T: b.hidden.shape[1], fromStore: found };
      }
    }
  }
  const batch = enc.batchFromEncodings(rows.map((r) => r.encoding));
  // A text that is not in an fp16 store gets the values the store would have given it:
  // its layer-k activations rounded to fp16 (on the compute thread), as the writer rounds
  // them. So a cache miss and a later hit of the same text see the same activations (and
  // the same logits), and both match what the task was trained on from the store.
  const hidden: Tensor = await enc.forward(batch, { toLayer: model.k, roundF16: store?.identity.dtype === 'fp16' });
  onComputed?.(rows, hidden);
  return { input: { hidden, attentionMask: batch.attentionMask }, T: batch.seqLen, fromStore: 0 };
}

/** The label array of a batch of rows for the model's head (padded with IGNORE to T). */
export function labelsFor(model: TaskModel, rows: readonly Row[], T: number): Int32Array {
  if (model.head.kind === 'sequence') return Int32Array.from(rows, (r) => r.labels[0]);
  const y = new Int32Array(rows.length * T).fill(IGNORE);
  rows.forEach((r, i) => y.set(r.labels.subarray(0, Math.min(T, r.labels.length)), i * T));
  return y;
}

export interface EvalResult {
  /** mean loss over the scored rows (sequence) or tokens (token head) */
  loss: number;
  /** per row: logits (sequence: [L]; token: [T_row, L]) */
  logits: Float32Array[];
  /** rows whose activations came from the store */
  fromStore: number;
}

/** One batch of rows with the model's inputs for it. */
export interface RowBatch {
  rows: readonly Row[];
  input: TrainInput;
  T: number;
  /** rows whose activations came from the store */
  fromStore: number;
}

/** Time spent waiting for inputs, for the epoch log and the benchmarks. */
export interface InputWait {
  /** time the loop spent awaiting its next batch (reading, decoding, the prefix pass when not recycled) */
  waitMs: number;
  /** of which the store's prefetch thread made the consumer wait (its own count), when the store was read */
  prefetchWaitMs: number;
}

/**
 * The batches of `rows`, in that order, with the model's inputs. When the model recycles
 * and every row is in the store, the whole schedule is read through the store's native
 * prefetch thread and its ring: a batch's hidden states are decoded ahead of the consumer
 * and handed to the native step in place (no copy; the ring slot stays pinned until the
 * step that reads it has finished). Otherwise each batch is prepared on demand (the prefix
 * pass, written through to the store when asked: the SR setting's first epoch).
 */
export async function* rowBatches(
  model: TaskModel, rows: readonly Row[], batchSize: number,
  opts: {
    store?: ActivationStore; writeThrough?: boolean; prefetch?: number; wait?: InputWait;
    /** rows whose layer-k activations were computed (not found in the store), with them */
    onComputed?: (rows: readonly Row[], hidden: Tensor) => void;
  } = {},
): AsyncGenerator<RowBatch> {
  const { store } = opts;
  const wait = opts.wait ?? { waitMs: 0, prefetchWaitMs: 0 };
  if (model.recycled && store && rows.length > 0) {
    const keys = rows.map((r) => store.keyOf(r.encoding));
    if (keys.every((k) => store.lookup(k) !== undefined)) {
      let first = 0;
      let t = performance.now();
      // one batch (a request being served) has nothing to read ahead: no thread then
      const prefetch = opts.prefetch ?? (rows.length > batchSize ? 2 : 0);
      const half = halfFor(model, store);
      const source = half ? store.batches(keys, { batchSize, prefetch, fp16: true }) : store.batches(keys, { batchSize, prefetch });
      for await (const b of source) {
        wait.waitMs += performance.now() - t;
        const part = rows.slice(first, first + b.keys.length);
        first += b.keys.length;
        const input: TrainInput = 'hidden16' in b ? { hidden16: b.hidden16, attentionMask: b.attentionMask } : { hidden: b.hidden, attentionMask: b.attentionMask };
        const T = 'hidden16' in b ? b.hidden16.shape[1] : b.hidden.shape[1];
        yield { rows: part, input, T, fromStore: part.length };
        t = performance.now();
      }
      wait.prefetchWaitMs += store.lastPrefetcher?.stats().consumerWaitMs ?? 0;
      return;
    }
  }
  for (let i = 0; i < rows.length; i += batchSize) {
    const part = rows.slice(i, i + batchSize);
    const t = performance.now();
    const { input, T, fromStore } = await inputsFor(model, part, store, opts.writeThrough ?? false, opts.onComputed);
    wait.waitMs += performance.now() - t;
    yield { rows: part, input, T, fromStore };
  }
}

/** Runs the model without dropout over rows (in batches) and collects logits and the loss. */
export async function evaluate(
  model: TaskModel, rows: readonly Row[],
  opts: { batchSize?: number; store?: ActivationStore; writeThrough?: boolean; onComputed?: (rows: readonly Row[], hidden: Tensor) => void } = {},
): Promise<EvalResult> {
  const bs = opts.batchSize ?? 32;
  const L = model.head.numLabels;
  let lossSum = 0, count = 0, fromStore = 0;
  const logits: Float32Array[] = [];
  for await (const { rows: part, input, T, fromStore: f } of rowBatches(model, rows, bs, { store: opts.store, writeThrough: opts.writeThrough, onComputed: opts.onComputed })) {
    fromStore += f;
    const y = labelsFor(model, part, T);
    let scored = 0;
    for (let i = 0; i < y.length; i++) if (y[i] >= 0) scored++;
    const canScore = model.head.kind === 'sequence' ? scored === part.length : scored > 0;
    const r = await model.evalStep(input, canScore ? y : undefined);
    if (canScore && r.loss !== undefined) {
      lossSum += r.loss * scored;
      count += scored;
    }
    part.forEach((row, j) => {
      if (model.head.kind === 'sequence') logits.push(r.logits.slice(j * L, (j + 1) * L));
      else logits.push(r.logits.slice(j * T * L, (j * T + row.encoding.ids.length) * L));
    });
  }
  return { loss: count > 0 ? lossSum / count : NaN, logits, fromStore };
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  devLoss: number | null;
  devMetrics: Record<string, unknown> | null;
  seconds: number;
  examplesPerSecond: number;
  /** rows whose activations came from the store this epoch */
  rowsFromStore: number;
  /** training batches only: time awaiting inputs, and the part the prefetch thread's own count attributes to it */
  inputWaitSeconds: number;
  prefetchWaitSeconds: number;
  /** training batches only: time in training steps */
  stepSeconds: number;
  best: boolean;
}

export interface FitOptions {
  model: TaskModel;
  train: readonly Row[];
  dev?: readonly Row[];
  store?: ActivationStore;
  epochs: number;
  batchSize?: number;
  lr: number;
  /** fraction of the steps used for warm-up; default 0.1 */
  warmupRatio?: number;
  /** epochs without a better dev loss before stopping; default 10 */
  patience?: number;
  seed?: number;
  /** dev metrics from the dev rows' logits, for the log */
  metrics?: (logits: Float32Array[]) => Record<string, unknown>;
  /** where the best checkpoint goes (model.safetensors) */
  outDir?: string;
  /** after each step: the epoch's running mean loss, and this step's own loss and gradient norm (before clipping) */
  onStep?: (p: { epoch: number; step: number; steps: number; loss: number; stepLoss: number; gradNorm: number; rowsPerSecond: number }) => void;
  onEpoch?: (r: EpochRecord) => void;
}

/** Trains the model; returns every epoch's record and the best one (restored into the model). */
export async function fit(o: FitOptions): Promise<{ log: EpochRecord[]; best: EpochRecord }> {
  const { model } = o;
  if (o.train.length === 0) throw new Error('the training set is empty');
  if (!Number.isInteger(o.epochs) || o.epochs < 1) throw new RangeError(`epochs must be a positive integer, got ${o.epochs}`);
  const bs = o.batchSize ?? 32;
  const perEpoch = Math.ceil(o.train.length / bs);
  const total = perEpoch * o.epochs;
  const schedule = linearSchedule(o.lr, Math.max(1, Math.round((o.warmupRatio ?? 0.1) * total)), total);
  const patience = o.patience ?? 10;
  const rand = seededRandom(o.seed ?? 0);
  const log: EpochRecord[] = [];
  let best: EpochRecord | null = null;
  let bestFile: string | null = null;
  if (o.outDir) {
    makeDir(o.outDir);
    bestFile = path.join(o.outDir, 'model.safetensors');
  }
  const tmpBest = bestFile ?? path.join(os.tmpdir(), `er-best-${process.pid}-${Date.now()}.safetensors`);
  let step = 0, sinceBest = 0;
  for (let epoch = 1; epoch <= o.epochs; epoch++) {
    const t0 = performance.now();
    const order = shuffle(o.train, rand);
    let lossSum = 0, fromStore = 0, b = 0, stepMs = 0;
    const wait: InputWait = { waitMs: 0, prefetchWaitMs: 0 };
    // epoch 1 of an empty store writes it (SR); afterwards every row is in it and the
    // epoch's shuffled schedule runs through the store's prefetch thread
    for await (const { rows, input, T, fromStore: fs_ } of rowBatches(model, order, bs, { store: o.store, writeThrough: true, wait })) {
      fromStore += fs_;
      const ts = performance.now();
      const r = await model.trainStep(input, labelsFor(model, rows, T), schedule(step));
      stepMs += performance.now() - ts;
      lossSum += r.loss;
      step++;
      b++;
      o.onStep?.({ epoch, step: b, steps: perEpoch, loss: lossSum / b, stepLoss: r.loss, gradNorm: r.gradNorm, rowsPerSecond: (b * bs) / ((performance.now() - t0) / 1000) });
    }
    let devLoss: number | null = null, devMetrics: Record<string, unknown> | null = null;
    if (o.dev && o.dev.length > 0) {
      const ev = await evaluate(model, o.dev, { batchSize: bs, store: o.store });
      devLoss = ev.loss;
      devMetrics = o.metrics ? o.metrics(ev.logits) : null;
    }
    const seconds = (performance.now() - t0) / 1000;
    const rec: EpochRecord = {
      epoch, trainLoss: lossSum / perEpoch, devLoss, devMetrics, seconds, examplesPerSecond: o.train.length / seconds,
      rowsFromStore: fromStore, inputWaitSeconds: wait.waitMs / 1000, prefetchWaitSeconds: wait.prefetchWaitMs / 1000,
      stepSeconds: stepMs / 1000, best: false,
    };
    const score = devLoss ?? rec.trainLoss;
    const bestScore = best ? (best.devLoss ?? best.trainLoss) : Infinity;
    if (score < bestScore || best === null) {
      rec.best = true;
      best = rec;
      sinceBest = 0;
      model.exportSafetensors(tmpBest);
    } else {
      sinceBest++;
    }
    log.push(rec);
    o.onEpoch?.(rec);
    if (devLoss !== null && sinceBest >= patience) break;
  }
  // the best epoch's parameters
  model.importSafetensors(tmpBest);
  if (!bestFile) fs.rmSync(tmpBest, { force: true });
  return { log, best: best! };
}
