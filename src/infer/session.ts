/**
 * Inference sessions: a trained task kept open by a backend and called per request.
 * Texts already in the store run only the layers above k; others run the encoder's
 * prefix (and, with `readThrough`, are written to the store for next time). All
 * heavy work runs off the event loop.
 *
 * Concurrent predict() calls are queued and packed into batches, the way dynamic
 * batchers of inference servers do: a batch is formed when the queued inputs reach a
 * token budget (`maxBatchTokens`) or the oldest has waited `maxDelayMs`; inputs are
 * grouped by length so that batches carry little padding; one batch computes at a time
 * (the engine uses every core for it) while the next one fills. A request can be
 * aborted (AbortSignal); a full queue (`maxQueue` inputs) refuses at once.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Encoder } from '../model/encoder';
import { weightFingerprintAsync } from '../model/checkpoint';
import { ActivationStore } from '../store/store';
import { TaskModel } from '../train/model';
import { evaluate } from '../train/loop';
import { Histogram, HistogramSnapshot } from './histogram';
import type { Tensor } from '../tensor/tensor';
import type { TextExample, WordsExample } from '../tasks/data';
import { classificationRows, LabelMap, nerRows, Row } from '../tasks/features';
import { ClassPrediction, decodeClassification, decodeNer, NerPrediction, splitWords } from '../tasks/predict';
import { readTaskDir, TaskSpec } from '../tasks/taskdir';

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
}

/** Options of {@link InferenceSession.predict}. */
export interface PredictOptions {
  /** aborts the request (e.g. AbortSignal.timeout(500)); it rejects with an AbortError and leaves the others alone */
  signal?: AbortSignal;
  /** called once with the request's own timings before it resolves: time queued, and from its first batch to its answer */
  onTiming?: (t: { queueMs: number; computeMs: number }) => void;
}

/** A request: a text (classification, or NER on whitespace-split words) or pre-split words (NER). */
export type PredictInput = { text: string; pair?: string } | { words: string[] };

/** The queue is full: the request was refused without being queued (HTTP servers answer 429). */
export class QueueFullError extends Error {
  readonly code = 'ER_QUEUE_FULL';
  constructor(message: string) {
    super(message);
    this.name = 'QueueFullError';
  }
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error && (reason.name === 'AbortError' || reason.name === 'TimeoutError')) {
    const e = new Error(reason.message);
    e.name = 'AbortError';
    (e as Error & { cause?: unknown }).cause = reason;
    return e;
  }
  const e = new Error('the request was aborted');
  e.name = 'AbortError';
  (e as Error & { cause?: unknown }).cause = reason;
  return e;
}

/** What a session has done since it opened (see README, "Serving"). */
export interface SessionMetrics {
  /** requests accepted into the queue */
  requests: number;
  inputs: number;
  /** refused because the queue was full */
  rejected: number;
  aborted: number;
  failed: number;
  /** compute batches run */
  batches: number;
  /** rows whose activations came from the store, and rows that ran the prefix */
  cacheHits: number;
  cacheMisses: number;
  /** per request: from queued to its first batch starting; and from then to its answer */
  queueMs: HistogramSnapshot;
  computeMs: HistogramSnapshot;
  /** per batch: rows and real tokens */
  batchRows: HistogramSnapshot;
  batchTokens: HistogramSnapshot;
  /** inputs waiting now */
  queued: number;
  /** read-through writes queued behind responses, and writes that failed */
  writesPending: number;
  writeErrors: number;
}

interface Pending {
  rows: Row[];
  logits: (Float32Array | undefined)[];
  /** rows not yet handed to a batch, from this index on */
  next: number;
  left: number;
  enqueued: number;
  started: number;
  done: boolean;
  decode: (logits: Float32Array[]) => (ClassPrediction | NerPrediction)[];
  onTiming?: (t: { queueMs: number; computeMs: number }) => void;
  resolve: (v: (ClassPrediction | NerPrediction)[]) => void;
  reject: (e: unknown) => void;
  cleanup: () => void;
}

const MS_BOUNDS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

export class InferenceSession {
  private readonly queue: Pending[] = [];
  private queuedInputs = 0;
  /** accepted requests still being tokenized (not yet in the queue) */
  private preparing = 0;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private closing = false;
  private closed: Promise<void> | null = null;
  private readonly idle: (() => void)[] = [];
  private readonly counters = {
    requests: 0, inputs: 0, rejected: 0, aborted: 0, failed: 0, batches: 0, cacheHits: 0, cacheMisses: 0, writesPending: 0, writeErrors: 0,
  };
  private writes: Promise<void> = Promise.resolve();
  /** the message of the latest failed read-through write */
  lastWriteError: string | null = null;
  private readonly hist = {
    queueMs: new Histogram(MS_BOUNDS),
    computeMs: new Histogram(MS_BOUNDS),
    batchRows: new Histogram([1, 2, 4, 8, 16, 32, 64, 128, 256]),
    batchTokens: new Histogram([64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]),
  };

  private constructor(
    readonly spec: TaskSpec,
    readonly encoder: Encoder,
    readonly model: TaskModel,
    readonly labels: LabelMap,
    readonly store: ActivationStore | undefined,
    private readonly readThrough: boolean,
    private readonly batchSize: number,
    private readonly maxBatchTokens: number,
    private readonly maxDelayMs: number,
    private readonly maxQueue: number,
  ) {}

  /** Opens a task directory written by `er train` / trainTask. */
  static async open(taskDir: string, opts: SessionOptions = {}): Promise<InferenceSession> {
    const batchSize = positiveInt('batchSize', opts.batchSize ?? 64);
    const maxBatchTokens = positiveInt('maxBatchTokens', opts.maxBatchTokens ?? 8192);
    const maxQueue = positiveInt('maxQueue', opts.maxQueue ?? 1024);
    const maxDelayMs = opts.maxDelayMs ?? 2;
    if (typeof maxDelayMs !== 'number' || !(maxDelayMs >= 0) || !Number.isFinite(maxDelayMs)) throw new RangeError(`maxDelayMs must be a non-negative number, got ${String(maxDelayMs)}`);
    const spec = readTaskDir(taskDir);
    const modelDir = opts.model ?? spec.modelDir;
    if (!fs.existsSync(modelDir)) throw new Error(`${path.join(taskDir, 'task.json')}: its base model ${modelDir} does not exist; pass the model directory (--model)`);
    const encoder = await Encoder.load(modelDir, { threads: opts.threads });
    try {
      const fp = await weightFingerprintAsync(encoder.checkpoint, encoder.numLayers);
      if (fp !== spec.modelFingerprint) {
        throw new Error(`${modelDir}: these are not the weights the task was trained on (fingerprint ${fp.slice(0, 12)}…, the task expects ${spec.modelFingerprint.slice(0, 12)}…)`);
      }
      const model = await TaskModel.createAsync(encoder, {
        mode: spec.mode, k: spec.k || undefined, head: { kind: spec.head, numLabels: spec.head === 'qa' ? undefined : spec.labels.length },
        adapter: spec.adapter ?? undefined, threads: opts.threads, dropout: { hidden: 0, attention: 0, head: 0 }, inference: true,
      });
      await model.importSafetensorsAsync(path.join(taskDir, 'model.safetensors'));
      let store: ActivationStore | undefined;
      const storeDir = opts.store ?? spec.storeDir ?? undefined;
      if (model.recycled && storeDir && fs.existsSync(path.join(storeDir, 'manifest.json'))) {
        store = await ActivationStore.open(storeDir, { encoder, layer: spec.k, write: Boolean(opts.readThrough) });
        if (store.identity.maxLength !== spec.maxLength) {
          store.close();
          throw new Error(`${storeDir}: refused: windows of ${store.identity.maxLength} tokens, the task was trained on ${spec.maxLength}`);
        }
      }
      return new InferenceSession(
        spec, encoder, model, new LabelMap(spec.labels), store, Boolean(opts.readThrough && store), batchSize,
        maxBatchTokens, maxDelayMs, maxQueue,
      );
    } catch (err) {
      encoder.close();
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
    if (this.closing) throw new Error('the inference session is closed');
    const signal = opts.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
    if (inputs.length === 0) return [];
    if (signal?.aborted) {
      this.counters.aborted++;
      throw abortError(signal);
    }
    const { rows, decode } = this.prepareSync(inputs);
    if (this.queuedInputs + inputs.length > this.maxQueue) {
      this.counters.rejected++;
      throw new QueueFullError(`the queue is full (${this.queuedInputs} inputs waiting, at most ${this.maxQueue}); retry later`);
    }
    this.queuedInputs += inputs.length;
    let reserved = inputs.length;
    const unreserve = () => {
      this.queuedInputs -= reserved;
      reserved = 0;
    };
    let prepared: { rows: Row[]; decode: Pending['decode'] };
    this.preparing++;
    try {
      prepared = { rows: await rows(), decode };
    } catch (e) {
      unreserve();
      this.counters.failed++;
      throw e;
    } finally {
      this.preparing--;
    }
    if (signal?.aborted) {
      unreserve();
      this.counters.aborted++;
      this.maybeIdle();
      throw abortError(signal);
    }
    this.counters.requests++;
    this.counters.inputs += inputs.length;
    return new Promise((resolve, reject) => {
      const p: Pending = {
        rows: prepared.rows, logits: new Array(prepared.rows.length), next: 0, left: prepared.rows.length,
        enqueued: performance.now(), started: 0, done: false, decode: prepared.decode, onTiming: opts.onTiming,
        resolve: (v) => {
          p.cleanup();
          resolve(v);
        },
        reject: (e) => {
          p.cleanup();
          reject(e);
        },
        cleanup: () => {
          unreserve();
          signal?.removeEventListener('abort', onAbort);
        },
      };
      const onAbort = () => {
        if (p.done) return;
        p.done = true;
        const i = this.queue.indexOf(p);
        if (i >= 0) this.queue.splice(i, 1);
        this.counters.aborted++;
        p.reject(abortError(signal!));
        this.maybeIdle();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (p.rows.length === 0) {
        p.done = true;
        p.resolve(p.decode([]));
        this.maybeIdle();
        return;
      }
      this.queue.push(p);
      this.pump();
    });
  }

  /** Checks the inputs now (so a bad one is refused before anything is queued) and returns how to tokenize and decode them. */
  private prepareSync(inputs: readonly PredictInput[]): { rows: () => Promise<Row[]>; decode: Pending['decode'] } {
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

  /** Starts a batch when the token budget is reached or the oldest input has waited long enough. */
  private pump(): void {
    if (this.running || this.queue.length === 0) return;
    let tokens = 0;
    for (const p of this.queue) {
      for (let i = p.next; i < p.rows.length && tokens < this.maxBatchTokens; i++) tokens += p.rows[i].encoding.ids.length;
      if (tokens >= this.maxBatchTokens) break;
    }
    const waited = performance.now() - this.queue[0].enqueued;
    if (tokens < this.maxBatchTokens && waited < this.maxDelayMs && !this.closing) {
      if (!this.timer) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.pump();
        }, Math.max(0, this.maxDelayMs - waited));
      }
      return;
    }
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.running = true;
    this.runBatch().finally(() => {
      this.running = false;
      this.pump();
      this.maybeIdle();
    });
  }

  /**
   * Takes queued rows, oldest request first, up to the token budget; sorts them by length
   * and runs them in batches whose padded size stays within the budget.
   */
  private async runBatch(): Promise<void> {
    const taken: { p: Pending; i: number }[] = [];
    let tokens = 0;
    while (this.queue.length > 0 && tokens < this.maxBatchTokens) {
      const p = this.queue[0];
      while (p.next < p.rows.length && (tokens < this.maxBatchTokens || taken.length === 0)) {
        tokens += p.rows[p.next].encoding.ids.length;
        taken.push({ p, i: p.next++ });
      }
      if (p.started === 0) p.started = performance.now();
      if (p.next >= p.rows.length) this.queue.shift();
    }
    const started = new Set(taken.map((t) => t.p));
    for (const p of started) this.hist.queueMs.observe(p.started - p.enqueued);
    taken.sort((a, b) => a.p.rows[a.i].encoding.ids.length - b.p.rows[b.i].encoding.ids.length);
    let at = 0;
    while (at < taken.length) {
      // the longest row of a chunk sets its padded length (rows are sorted ascending)
      let end = at + 1;
      while (end < taken.length && end - at < this.batchSize && (end - at + 1) * taken[end].p.rows[taken[end].i].encoding.ids.length <= this.maxBatchTokens) end++;
      const chunk = taken.slice(at, end).filter((t) => !t.p.done);
      at = end;
      if (chunk.length === 0) continue;
      const rows = chunk.map((t) => t.p.rows[t.i]);
      try {
        // read-through: misses are answered from the activations just computed, and
        // written to the store behind the response (never before it)
        const ev = await evaluate(this.model, rows, {
          batchSize: rows.length, store: this.store,
          onComputed: this.readThrough ? (r, h) => this.writeBehind(r, h) : undefined,
        });
        this.counters.batches++;
        this.counters.cacheHits += ev.fromStore;
        this.counters.cacheMisses += rows.length - ev.fromStore;
        this.hist.batchRows.observe(rows.length);
        this.hist.batchTokens.observe(rows.reduce((a, r) => a + r.encoding.ids.length, 0));
        chunk.forEach((t, j) => {
          if (t.p.done) return;
          t.p.logits[t.i] = ev.logits[j];
          if (--t.p.left === 0) {
            t.p.done = true;
            const computeMs = performance.now() - t.p.started;
            this.hist.computeMs.observe(computeMs);
            try {
              t.p.onTiming?.({ queueMs: t.p.started - t.p.enqueued, computeMs });
            } catch {
              // a caller's callback does not break the batch
            }
            let out: (ClassPrediction | NerPrediction)[];
            try {
              out = t.p.decode(t.p.logits as Float32Array[]);
            } catch (e) {
              this.counters.failed++;
              t.p.reject(e);
              return;
            }
            t.p.resolve(out);
          }
        });
      } catch (e) {
        for (const t of chunk) {
          if (t.p.done) continue;
          t.p.done = true;
          const i = this.queue.indexOf(t.p);
          if (i >= 0) this.queue.splice(i, 1);
          this.counters.failed++;
          t.p.reject(e);
        }
      }
    }
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
    this.counters.writesPending++;
    this.writes = this.writes
      .then(() => store.encode(unique, { batchSize: unique.length, activations: distinct ? hidden : undefined }))
      .then(() => undefined, (e: Error) => {
        this.counters.writeErrors++;
        this.lastWriteError = e.message;
      })
      .finally(() => {
        this.counters.writesPending--;
      });
  }

  private maybeIdle(): void {
    if (this.running || this.queue.length > 0 || this.preparing > 0) return;
    for (const f of this.idle.splice(0)) f();
  }

  /** Resolves once every read-through write queued so far is committed to the store. */
  async flush(): Promise<void> {
    await this.writes;
  }

  /** Counters and histograms since the session opened. */
  metrics(): SessionMetrics {
    return {
      ...this.counters,
      queueMs: this.hist.queueMs.snapshot(),
      computeMs: this.hist.computeMs.snapshot(),
      batchRows: this.hist.batchRows.snapshot(),
      batchTokens: this.hist.batchTokens.snapshot(),
      queued: this.queuedInputs,
    };
  }

  /** Stops accepting requests, finishes every one already accepted, then releases the store and the encoder. */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    this.closed = (async () => {
      if (this.running || this.queue.length > 0 || this.preparing > 0) {
        await new Promise<void>((r) => {
          this.idle.push(r);
          this.pump();
        });
      }
      if (this.timer) clearTimeout(this.timer);
      await this.writes;
      this.store?.close();
      this.encoder.close();
    })();
    return this.closed;
  }
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${String(v)}`);
  return v;
}
