/**
 * The dynamic batcher behind inference sessions and embedding sessions: concurrent
 * requests are queued and packed into batches, as the dynamic batchers of inference
 * servers do. A batch starts when the queued rows hold `maxBatchTokens` tokens, or the
 * oldest request has waited `maxDelayMs`, or no other request is on its way (being
 * tokenized: nothing would join, so an idle engine does not wait); a batch's rows are sorted by length and cut
 * into compute batches whose padded size stays within the token budget; one compute
 * batch runs at a time (the engine uses every core for it) while the next one fills.
 * Requests can be aborted (AbortSignal); a full queue (`maxQueue` inputs) refuses at once.
 */
import { Histogram, HistogramSnapshot } from './histogram';

/** The queue is full: the request was refused without being queued (HTTP servers answer 429). */
export class QueueFullError extends Error {
  readonly code = 'ER_QUEUE_FULL';
  constructor(message: string) {
    super(message);
    this.name = 'QueueFullError';
  }
}

export function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  const e = new Error(reason instanceof Error && (reason.name === 'AbortError' || reason.name === 'TimeoutError') ? reason.message : 'the request was aborted');
  e.name = 'AbortError';
  (e as Error & { cause?: unknown }).cause = reason;
  return e;
}

export interface BatcherOptions {
  /** rows per compute batch at most */
  batchSize: number;
  maxBatchTokens: number;
  maxDelayMs: number;
  /** inputs queued at most */
  maxQueue: number;
}

/** Options of one request. */
export interface SubmitOptions {
  signal?: AbortSignal;
  /** called once with the request's own timings before it resolves: time queued, and from its first batch to its answer */
  onTiming?: (t: { queueMs: number; computeMs: number }) => void;
}

/** What a batcher has done since it started. */
export interface BatcherMetrics {
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
}

/** What a compute batch returns: one output per row, and how many rows the store served. */
export interface Computed<O> {
  outputs: O[];
  fromStore: number;
}

interface Pending<R, O> {
  rows: R[];
  outputs: (O | undefined)[];
  /** rows not yet handed to a batch, from this index on */
  next: number;
  left: number;
  enqueued: number;
  started: number;
  done: boolean;
  finish: (outputs: O[]) => unknown;
  onTiming?: SubmitOptions['onTiming'];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

const MS_BOUNDS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

export class Batcher<R, O> {
  private readonly queue: Pending<R, O>[] = [];
  private queuedInputs = 0;
  /** accepted requests still being prepared (tokenized), not yet in the queue */
  private preparing = 0;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private closing = false;
  private closed: Promise<void> | null = null;
  private readonly idle: (() => void)[] = [];
  private readonly counters = { requests: 0, inputs: 0, rejected: 0, aborted: 0, failed: 0, batches: 0, cacheHits: 0, cacheMisses: 0 };
  private readonly hist = {
    queueMs: new Histogram(MS_BOUNDS),
    computeMs: new Histogram(MS_BOUNDS),
    batchRows: new Histogram([1, 2, 4, 8, 16, 32, 64, 128, 256]),
    batchTokens: new Histogram([64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]),
  };

  constructor(
    private readonly o: BatcherOptions,
    /** a row's real tokens */
    private readonly tokensOf: (row: R) => number,
    /** runs one compute batch */
    private readonly compute: (rows: R[]) => Promise<Computed<O>>,
    /** what a request refused after close() is told */
    private readonly closedMessage = 'the session is closed',
  ) {
    for (const k of ['batchSize', 'maxBatchTokens', 'maxQueue'] as const) {
      const v = o[k];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer, got ${String(v)}`);
    }
    if (typeof o.maxDelayMs !== 'number' || !(o.maxDelayMs >= 0) || !Number.isFinite(o.maxDelayMs)) throw new RangeError(`maxDelayMs must be a non-negative number, got ${String(o.maxDelayMs)}`);
  }

  /**
   * Queues a request of `inputs` inputs: `prepare` turns it into rows (it runs once the
   * request is admitted), `finish` turns the rows' outputs into the answer.
   */
  async submit<T>(inputs: number, prepare: () => Promise<R[]>, finish: (outputs: O[]) => T, opts: SubmitOptions = {}): Promise<T> {
    if (this.closing) throw new Error(this.closedMessage);
    const signal = opts.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
    if (signal?.aborted) {
      this.counters.aborted++;
      throw abortError(signal);
    }
    if (this.queuedInputs + inputs > this.o.maxQueue) {
      this.counters.rejected++;
      throw new QueueFullError(`the queue is full (${this.queuedInputs} inputs waiting, at most ${this.o.maxQueue}); retry later`);
    }
    this.queuedInputs += inputs;
    let reserved = inputs;
    const unreserve = () => {
      this.queuedInputs -= reserved;
      reserved = 0;
    };
    let rows: R[];
    this.preparing++;
    try {
      rows = await prepare();
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
    this.counters.inputs += inputs;
    return new Promise<T>((resolve, reject) => {
      const cleanup = () => {
        unreserve();
        signal?.removeEventListener('abort', onAbort);
      };
      const p: Pending<R, O> = {
        rows, outputs: new Array(rows.length), next: 0, left: rows.length, enqueued: performance.now(), started: 0, done: false,
        finish, onTiming: opts.onTiming,
        resolve: (v) => {
          cleanup();
          resolve(v as T);
        },
        reject: (e) => {
          cleanup();
          reject(e);
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
      if (rows.length === 0) {
        p.done = true;
        this.settle(p);
        this.maybeIdle();
        return;
      }
      this.queue.push(p);
      this.pump();
    });
  }

  private settle(p: Pending<R, O>): void {
    let out: unknown;
    try {
      out = p.finish(p.outputs as O[]);
    } catch (e) {
      this.counters.failed++;
      p.reject(e);
      return;
    }
    p.resolve(out);
  }

  /** Starts a batch when the token budget is reached or the oldest input has waited long enough. */
  private pump(): void {
    if (this.running || this.queue.length === 0) return;
    let tokens = 0;
    for (const p of this.queue) {
      for (let i = p.next; i < p.rows.length && tokens < this.o.maxBatchTokens; i++) tokens += this.tokensOf(p.rows[i]);
      if (tokens >= this.o.maxBatchTokens) break;
    }
    const waited = performance.now() - this.queue[0].enqueued;
    // waiting is for requests on their way (being tokenized): with none, nothing would join
    if (tokens < this.o.maxBatchTokens && waited < this.o.maxDelayMs && this.preparing > 0 && !this.closing) {
      if (!this.timer) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.pump();
        }, Math.max(0, this.o.maxDelayMs - waited));
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
   * and runs them in compute batches whose padded size stays within the budget.
   */
  private async runBatch(): Promise<void> {
    const taken: { p: Pending<R, O>; i: number; n: number }[] = [];
    let tokens = 0;
    while (this.queue.length > 0 && tokens < this.o.maxBatchTokens) {
      const p = this.queue[0];
      while (p.next < p.rows.length && (tokens < this.o.maxBatchTokens || taken.length === 0)) {
        const n = this.tokensOf(p.rows[p.next]);
        tokens += n;
        taken.push({ p, i: p.next++, n });
      }
      if (p.started === 0) p.started = performance.now();
      if (p.next >= p.rows.length) this.queue.shift();
    }
    for (const p of new Set(taken.map((t) => t.p))) this.hist.queueMs.observe(p.started - p.enqueued);
    taken.sort((a, b) => a.n - b.n);
    let at = 0;
    while (at < taken.length) {
      // the longest row of a chunk sets its padded length (rows are sorted ascending)
      let end = at + 1;
      while (end < taken.length && end - at < this.o.batchSize && (end - at + 1) * taken[end].n <= this.o.maxBatchTokens) end++;
      const chunk = taken.slice(at, end).filter((t) => !t.p.done);
      at = end;
      if (chunk.length === 0) continue;
      try {
        const r = await this.compute(chunk.map((t) => t.p.rows[t.i]));
        this.counters.batches++;
        this.counters.cacheHits += r.fromStore;
        this.counters.cacheMisses += chunk.length - r.fromStore;
        this.hist.batchRows.observe(chunk.length);
        this.hist.batchTokens.observe(chunk.reduce((a, t) => a + t.n, 0));
        chunk.forEach((t, j) => {
          if (t.p.done) return;
          t.p.outputs[t.i] = r.outputs[j];
          if (--t.p.left === 0) {
            t.p.done = true;
            const computeMs = performance.now() - t.p.started;
            this.hist.computeMs.observe(computeMs);
            try {
              t.p.onTiming?.({ queueMs: t.p.started - t.p.enqueued, computeMs });
            } catch {
              // a caller's callback does not break the batch
            }
            this.settle(t.p);
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

  private maybeIdle(): void {
    if (this.running || this.queue.length > 0 || this.preparing > 0) return;
    for (const f of this.idle.splice(0)) f();
  }

  /** Counters and histograms since the batcher started. */
  metrics(): BatcherMetrics {
    return {
      ...this.counters,
      queueMs: this.hist.queueMs.snapshot(),
      computeMs: this.hist.computeMs.snapshot(),
      batchRows: this.hist.batchRows.snapshot(),
      batchTokens: this.hist.batchTokens.snapshot(),
      queued: this.queuedInputs,
    };
  }

  /** Stops accepting requests; resolves once every accepted one is answered. */
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
    })();
    return this.closed;
  }
}
