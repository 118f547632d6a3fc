/**
 * Inference sessions: a trained task kept open by a backend and called per request.
 * Texts already in the store run only the layers above k; others run the encoder's
 * prefix (and, with `readThrough`, are written to the store for next time). All
 * heavy work runs off the event loop.
 * Concurrent predict() calls share batches (src/infer/batcher.ts).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Encoder } from '../model/encoder';
import { weightFingerprintAsync } from '../model/checkpoint';
import { ActivationStore } from '../store/store';
import { TaskModel } from '../train/model';
import { evaluate } from '../train/loop';
import { Batcher, BatcherMetrics, BatcherOptions, SubmitOptions } from './batcher';
import { acquireEncoder, acquireReadStore } from './shared';
import type { Tensor } from '../tensor/tensor';
import type { TextExample, WordsExample } from '../tasks/data';
import { classificationRows, LabelMap, nerRows, Row } from '../tasks/features';
import { ClassPrediction, decodeClassification, decodeNer, NerPrediction, splitWords } from '../tasks/predict';
import { readTaskDir, TaskSpec } from '../tasks/taskdir';

export { QueueFullError } from './batcher';

/** How a session batches and bounds its work (batch size, wait, queue limit, threads, cache). */
export interface SessionOptions {
  /** the base model directory; default: the one recorded in task.json */
  model?: string;
  /** the store to read activations from; default: the one recorded in task.json (if it exists) */
  store?: string;
  /** write activations of texts that are not in the store (needs the writer lock) */
  readThrough?: boolean;
  /** rows per compute batch at most; default 64 */
  batchSize?: number;
  threads?: number;
  /** a batch is started once the queued inputs hold this many tokens; also the bound on a batch's padded size. Default 8192 */
  maxBatchTokens?: number;
  /** the longest an input waits for others to share its batch, in ms; default 2 */
  maxDelayMs?: number;
  /** inputs queued at most; a request that would exceed it is refused at once (QueueFullError). Default 1024 */
  maxQueue?: number;
  /**
   * Where the task model runs: 'cpu' (default), 'cuda' (its layers, adapters and head on an
   * NVIDIA GPU; every family but DeBERTa-v2) or 'auto' (the GPU when usable; `session.model.deviceReason`
   * says why not). On the GPU a recycled task with no store runs its prefix there too; with
   * a store, texts not in it run the prefix on the CPU (rounded as the store would hold them)
   * and the layers above k on the GPU.
   */
  device?: 'cpu' | 'cuda' | 'auto';
  /** Which GPU; default 0. */
  gpu?: number;
  /** The GPU's precision of the linear layers: 'fp32' (default), 'bf16' or 'fp16'. */
  gpuPrecision?: 'fp32' | 'bf16' | 'fp16';
}

/** Options of {@link InferenceSession.predict}: an AbortSignal, a timing callback. */
export type PredictOptions = SubmitOptions;

/** A request: a text (classification, or NER on whitespace-split words) or pre-split words (NER). */
export type PredictInput = { text: string; pair?: string } | { words: string[] };

/** What a session has done since it opened (see README, "Serving"). */
export interface SessionMetrics extends BatcherMetrics {
  /** read-through writes queued behind responses, and writes that failed */
  writesPending: number;
  writeErrors: number;
}

/**
 * A trained task directory opened for predictions: batches concurrent requests, reads
 * recycled activations from the task's store when a text is there, runs the rest forward-only
 * on the addon's compute thread (see the README's serving section).
 */
export class InferenceSession {
  private readonly batcher: Batcher<Row, Float32Array>;
  private readonly writeCounts = { writesPending: 0, writeErrors: 0 };
  private writes: Promise<void> = Promise.resolve();
  private closed: Promise<void> | null = null;
  /** the message of the latest failed read-through write */
  lastWriteError: string | null = null;

  private constructor(
    readonly spec: TaskSpec,
    readonly encoder: Encoder,
    readonly model: TaskModel,
    readonly labels: LabelMap,
    readonly store: ActivationStore | undefined,
    private readonly readThrough: boolean,
    batching: BatcherOptions,
    /** gives back the shared encoder and store (last first) */
    private readonly releases: (() => void)[],
  ) {
    this.batcher = new Batcher<Row, Float32Array>(batching, (r) => r.encoding.ids.length, (rows) => this.compute(rows), 'the inference session is closed');
  }

  /** Opens a task directory written by `er train` / trainTask. */
  static async open(taskDir: string, opts: SessionOptions = {}): Promise<InferenceSession> {
    const batching = batchingOptions(opts);
    const spec = readTaskDir(taskDir);
    const modelDir = opts.model ?? spec.modelDir;
    if (!fs.existsSync(modelDir)) throw new Error(`${path.join(taskDir, 'task.json')}: its base model ${modelDir} does not exist; pass the model directory (--model)`);
    const enc = await acquireEncoder(modelDir, opts.threads);
    const encoder = enc.value;
    const releases = [enc.release];
    try {
      const fp = await weightFingerprintAsync(encoder.checkpoint, encoder.numLayers);
      if (fp !== spec.modelFingerprint) {
        throw new Error(`${modelDir}: these are not the weights the task was trained on (fingerprint ${fp.slice(0, 12)}…, the task expects ${spec.modelFingerprint.slice(0, 12)}…)`);
      }
      const model = await TaskModel.createAsync(encoder, {
        mode: spec.mode, k: spec.k || undefined, head: { kind: spec.head, numLabels: spec.head === 'qa' ? undefined : spec.labels.length },
        adapter: spec.adapter ?? undefined, threads: opts.threads, dropout: { hidden: 0, attention: 0, head: 0 }, inference: true,
        device: opts.device, gpu: opts.gpu, gpuPrecision: opts.gpuPrecision,
      });
      await model.importSafetensorsAsync(path.join(taskDir, 'model.safetensors'));
      let store: ActivationStore | undefined;
      const storeDir = opts.store ?? spec.storeDir ?? undefined;
      if (model.recycled && storeDir && fs.existsSync(path.join(storeDir, 'manifest.json'))) {
        // a reader is shared by the sessions of this process; the one writer is not
        if (opts.readThrough) {
          const w = await ActivationStore.open(storeDir, { encoder, layer: spec.k, write: true });
          store = w;
          releases.push(() => w.close());
        } else {
          const r = await acquireReadStore(storeDir, encoder, spec.k);
          store = r.value;
          releases.push(r.release);
        }
        if (store.identity.maxLength !== spec.maxLength) {
          throw new Error(`${storeDir}: refused: windows of ${store.identity.maxLength} tokens, the task was trained on ${spec.maxLength}`);
        }
      }
      return new InferenceSession(
        spec, encoder, model, new LabelMap(spec.labels), store, Boolean(opts.readThrough && store), batching, releases,
      );
    } catch (err) {
      for (const r of releases.reverse()) r();
      throw err;
    }
  }

  /**
   * Predicts a list of inputs. Calls from many requests share batches. Classification:
   * labels with probabilities; NER: tags and entity spans. Rejects with a TypeError naming
   * a bad input, a QueueFullError when the queue is full, an AbortError when aborted.
   */
  async predict(inputs: readonly PredictInput[], opts: PredictOptions = {}): Promise<(ClassPrediction | NerPrediction)[]> {
    if (!Array.isArray(inputs)) throw new TypeError('predict takes an array of { text } or { words }');
    if (inputs.length === 0) {
      if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
      return [];
    }
    const { rows, decode } = this.prepareSync(inputs);
    return this.batcher.submit(inputs.length, rows, decode, opts);
  }

  /** Checks the inputs now (so a bad one is refused before anything is queued) and returns how to tokenize and decode them. */
  private prepareSync(inputs: readonly PredictInput[]): { rows: () => Promise<Row[]>; decode: (logits: Float32Array[]) => (ClassPrediction | NerPrediction)[] } {
    if (this.spec.task === 'classification') {
      const ex: TextExample[] = inputs.map((x, i) => {
        if (typeof x !== 'object' || x === null || !('text' in x) || typeof x.text !== 'string') throw new TypeError(`input ${i}: a classification task takes { text, pair? }`);
        if (x.pair !== undefined && typeof x.pair !== 'string') throw new TypeError(`input ${i}: pair must be a string`);
        return { id: String(i), text: x.text, ...(x.pair !== undefined ? { pair: x.pair } : {}), line: i + 1 };
      });
      return {
        rows: async () => (await classificationRows(this.encoder, ex, null, this.spec.maxLength)).rows,
        decode: (logits) => decodeClassification(logits, this.labels),
      };
    }
    const starts: number[][] = [];
    const ex: WordsExample[] = inputs.map((x, i) => {
      if (typeof x === 'object' && x !== null && 'words' in x && Array.isArray(x.words)) {
        const words: string[] = x.words;
        words.forEach((w, j) => {
          if (typeof w !== 'string') throw new TypeError(`input ${i}: words[${j}] must be a string`);
        });
        const s: number[] = [];
        words.forEach((_, j) => s.push(j === 0 ? 0 : s[j - 1] + words[j - 1].length + 1));
        starts.push(s);
        return { id: String(i), words, line: i + 1 };
      }
      if (typeof x !== 'object' || x === null || !('text' in x) || typeof x.text !== 'string') throw new TypeError(`input ${i}: an NER task takes { words } or { text }`);
      const s = splitWords(x.text);
      starts.push(s.starts);
      return { id: String(i), words: s.words, line: i + 1 };
    });
    let rowsOf: Row[] = [];
    return {
      rows: async () => {
        rowsOf = (await nerRows(this.encoder, ex.map((e) => (e.words.length ? e : { ...e, words: [''] })), null, this.spec.maxLength)).rows;
        return rowsOf;
      },
      decode: (logits) => decodeNer(ex, rowsOf, logits, this.labels, starts),
    };
  }

  /** One compute batch: the rows' logits (from the store where it has them). */
  private async compute(rows: Row[]): Promise<{ outputs: Float32Array[]; fromStore: number }> {
    // read-through: misses are answered from the activations just computed, and
    // written to the store behind the response (never before it)
    const ev = await evaluate(this.model, rows, {
      batchSize: rows.length, store: this.store,
      onComputed: this.readThrough ? (r, h) => this.writeBehind(r, h) : undefined,
    });
    return { outputs: ev.logits, fromStore: ev.fromStore };
  }

  /**
   * Appends the layer-k activations of texts that missed the store, after the response,
   * one write at a time, with the activations already computed (the prefix does not run
   * again). A failed write is counted (metrics().writeErrors) and does not fail a request.
   */
  private writeBehind(rows: readonly Row[], hidden: Tensor): void {
    const store = this.store;
    if (!store) return;
    const items = rows.map((r) => {
      const hex = store.keyOf(r.encoding).toString('hex');
      return { id: `window:${hex}`, text: hex, encodings: [r.encoding] };
    });
    // the same window twice in a batch: store the distinct ones (their prefix runs again)
    const distinct = new Set(items.map((i) => i.id)).size === items.length;
    const unique = distinct ? items : [...new Map(items.map((i) => [i.id, i])).values()];
    this.writeCounts.writesPending++;
    this.writes = this.writes
      .then(() => store.encode(unique, { batchSize: unique.length, activations: distinct ? hidden : undefined }))
      .then(() => undefined, (e: Error) => {
        this.writeCounts.writeErrors++;
        this.lastWriteError = e.message;
      })
      .finally(() => {
        this.writeCounts.writesPending--;
      });
  }

  /** Resolves once every read-through write queued so far is committed to the store. */
  async flush(): Promise<void> {
    await this.writes;
  }

  /** Counters and histograms since the session opened. */
  metrics(): SessionMetrics {
    return { ...this.batcher.metrics(), ...this.writeCounts };
  }

  /** Stops accepting requests, finishes every one already accepted (and its read-through writes), then releases the store and the encoder. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.batcher.close();
      await this.writes;
      for (const r of [...this.releases].reverse()) r();
    })();
    return this.closed;
  }
}

/** The batching options of a session, with their defaults. */
export function batchingOptions(opts: { batchSize?: number; maxBatchTokens?: number; maxDelayMs?: number; maxQueue?: number }): BatcherOptions {
  return { batchSize: opts.batchSize ?? 64, maxBatchTokens: opts.maxBatchTokens ?? 8192, maxDelayMs: opts.maxDelayMs ?? 2, maxQueue: opts.maxQueue ?? 1024 };
}
