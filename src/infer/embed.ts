/**
 * Embedding sessions: sentence embeddings served from an open encoder, with requests
 * batched like task predictions (src/infer/batcher.ts). Texts whose layer-k windows are
 * in a store run only the layers above k. A miss in an fp16 store gets its layer-k
 * activations rounded to fp16 (the store writer's conversion) before the layers above
 * k, so a text embeds the same whether it was cached or not.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Encoder, poolHidden } from '../model/encoder';
import type { Device } from '../model/encoder';
import type { Encoded } from '../model/tokenizer';
import { ActivationStore } from '../store/store';
import { Batcher, BatcherMetrics, SubmitOptions } from './batcher';
import { batchingOptions } from './session';

export interface EmbeddingSessionOptions {
  /** a store of this model's layer-k activations: texts found in it run only the layers above k */
  store?: string;
  threads?: number;
  /** where the encoder runs: 'cpu' (default), 'cuda' or 'auto' (see the encoder's LoadOptions.device) */
  device?: Device;
  /** which GPU, for device 'cuda' or 'auto' */
  gpu?: number;
  /** 'mean' (default) or 'cls' */
  pooling?: 'mean' | 'cls';
  /** tokens per text; default the model's sentence_bert_config.json max_seq_length, else its limit */
  maxLength?: number;
  batchSize?: number;
  maxBatchTokens?: number;
  maxDelayMs?: number;
  maxQueue?: number;
}

export interface EmbedRequestOptions extends SubmitOptions {
  /** L2-normalise; default true */
  normalize?: boolean;
  /** refuse (RangeError) a text longer than maxLength tokens instead of truncating it; default false */
  refuseLong?: boolean;
}

interface EmbedRow {
  encoding: Encoded;
  key: Buffer | null;
}

export class EmbeddingSession {
  private readonly batcher: Batcher<EmbedRow, Float32Array>;
  private closed: Promise<void> | null = null;

  private constructor(
    readonly encoder: Encoder,
    readonly store: ActivationStore | undefined,
    readonly pooling: 'mean' | 'cls',
    readonly maxLength: number,
    opts: EmbeddingSessionOptions,
  ) {
    this.batcher = new Batcher<EmbedRow, Float32Array>(batchingOptions(opts), (r) => r.encoding.ids.length, (rows) => this.compute(rows), 'the embedding session is closed');
  }

  /** Opens a model directory (and optionally a store made from it) for embedding. */
  static async open(modelDir: string, opts: EmbeddingSessionOptions = {}): Promise<EmbeddingSession> {
    const pooling = opts.pooling ?? 'mean';
    if (pooling !== 'mean' && pooling !== 'cls') throw new TypeError(`pooling must be 'mean' or 'cls', got ${String(pooling)}`);
    const encoder = await Encoder.load(modelDir, { threads: opts.threads, device: opts.device, gpu: opts.gpu });
    try {
      let store: ActivationStore | undefined;
      if (opts.store !== undefined) {
        if (!fs.existsSync(path.join(opts.store, 'manifest.json'))) throw new Error(`${opts.store}: not an activation store (no manifest.json)`);
        store = await ActivationStore.open(opts.store, { encoder });
      }
      let maxLength = opts.maxLength ?? encoder.sentenceMaxLength();
      if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > encoder.maxLength) throw new RangeError(`maxLength must be an integer in 1..${encoder.maxLength}, got ${String(maxLength)}`);
      // a text that fits one stored window has that window's token ids
      if (store) maxLength = Math.min(maxLength, store.identity.maxLength);
      return new EmbeddingSession(encoder, store, pooling, maxLength, opts);
    } catch (e) {
      encoder.close();
      throw e;
    }
  }

  /** Embeds texts (batched with other calls); one Float32Array of the hidden size per text. */
  async embed(texts: readonly string[], opts: EmbedRequestOptions = {}): Promise<Float32Array[]> {
    if (!Array.isArray(texts)) throw new TypeError('embed takes an array of strings');
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw new TypeError(`inputs[${i}] must be a string`);
    });
    const normalize = opts.normalize ?? true;
    if (typeof normalize !== 'boolean') throw new TypeError('normalize must be a boolean');
    if (texts.length === 0) return [];
    const prepare = async (): Promise<EmbedRow[]> => {
      if (opts.refuseLong) {
        const full = await this.encoder.tokenizer.encode(texts);
        full.forEach((e, i) => {
          if (e.ids.length > this.maxLength) throw new RangeError(`inputs[${i}]: ${e.ids.length} tokens, more than the ${this.maxLength} this model takes (send truncate: true to cut it)`);
        });
      }
      const enc = await this.encoder.tokenizer.encode(texts, { maxLength: this.maxLength });
      return enc.map((e) => ({ encoding: e, key: this.store ? this.store.keyOf(e) : null }));
    };
    const finish = (pooled: Float32Array[]) => (normalize ? pooled.map(l2normalize) : pooled);
    return this.batcher.submit(texts.length, prepare, finish, opts);
  }

  /** One compute batch: cached rows run the layers above k, the others the whole encoder. */
  private async compute(rows: EmbedRow[]): Promise<{ outputs: Float32Array[]; fromStore: number }> {
    const enc = this.encoder;
    const out: Float32Array[] = new Array(rows.length);
    const store = this.store;
    const hit: number[] = [], miss: number[] = [];
    rows.forEach((r, i) => (store && r.key && store.lookup(r.key) ? hit : miss).push(i));
    const k = store ? store.identity.layer : 0;
    if (store && hit.length > 0) {
      for await (const b of store.batches(hit.map((i) => rows[i].key!), { batchSize: hit.length, prefetch: 0 })) {
        const [B, T] = b.hidden.shape;
        const h = await enc.forwardFrom(b.hidden, b.attentionMask, { fromLayer: k });
        poolHidden(h.data, b.attentionMask, B, T, enc.hidden, this.pooling, false).forEach((e, j) => (out[hit[j]] = e));
      }
    }
    if (miss.length > 0) {
      const batch = enc.batchFromEncodings(miss.map((i) => rows[i].encoding));
      let h;
      if (store && store.identity.dtype === 'fp16' && k > 0) {
        // the values a later hit reads back: layer k rounded as the store writer rounds it
        const hk = await enc.forward(batch, { toLayer: k, roundF16: true });
        h = await enc.forwardFrom(hk, batch.attentionMask, { fromLayer: k });
      } else {
        h = await enc.forward(batch);
      }
      poolHidden(h.data, batch.attentionMask, batch.batchSize, batch.seqLen, enc.hidden, this.pooling, false).forEach((e, j) => (out[miss[j]] = e));
    }
    return { outputs: out, fromStore: hit.length };
  }

  metrics(): BatcherMetrics {
    return this.batcher.metrics();
  }

  /** Stops accepting requests, answers the accepted ones, then releases the store and the encoder. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.batcher.close();
      this.store?.close();
      this.encoder.close();
    })();
    return this.closed;
  }
}

function l2normalize(x: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  const scale = 1 / Math.max(Math.sqrt(s), 1e-12);
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i] * scale;
  return y;
}
