/**
 * The public face of the native encoder: load a Hugging Face checkpoint, tokenize,
 * and run the encoder layer by layer, off the event loop.
 */
import * as fs from 'fs';
import * as path from 'path';
import { native, NativeEncoder, NativeEncoderMemory } from '../native/binding';
import { whileReading } from '../tensor/lease';
import { Tensor, tensor } from '../tensor/tensor';
import { Checkpoint, readCheckpoint } from './checkpoint';
import type { EncoderShape } from './families';
import { Encoded, TextTokenizer, TokenizeOptions } from './tokenizer';

/** A padded batch of token ids, ready for {@link Encoder.forward}. All arrays are [batchSize, seqLen] row-major. */
export interface Batch {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  /** 1 for real tokens, 0 for padding */
  attentionMask: Int32Array;
  tokenTypeIds: Int32Array;
  /** absolute position ids as the family numbers them (RoBERTa starts after the pad id) */
  positionIds: Int32Array;
  /** the unpadded encodings, with offsets and word ids */
  encodings: Encoded[];
}

/** Options of {@link Encoder.load}. */
export interface LoadOptions {
  /** Threads for native compute; default: every core. */
  threads?: number;
  /**
   * Compute precision of the linear layers. `'fp32'` (default) is the reference
   * (within 1e-4 of PyTorch). `'bf16'` runs those GEMMs with bfloat16 inputs and
   * weights and fp32 accumulation (about twice the GEMM rate on CPUs with
   * AVX512-BF16); LayerNorm, softmax, GELU and attention stay fp32.
   */
  precision?: Precision;
  /**
   * Where the forward passes run: `'cpu'` (default), `'cuda'` (an NVIDIA GPU, through the
   * GPU backend `embedding_recycler_cuda.so`; BERT, RoBERTa, DistilBERT, MPNet and their
   * derivatives, not DeBERTa-v2 yet), or `'auto'` (the GPU when one is usable for this model, else
   * the CPU; {@link Encoder.deviceReason} says why). On the GPU, `precision` may also be
   * `'fp16'`; `'fp32'` there runs without TF32.
   */
  device?: Device;
  /** Which GPU, for device 'cuda' or 'auto'; default 0. */
  gpu?: number;
}

/** Compute precision of the linear layers; `'fp16'` on device 'cuda' only. */
export type Precision = 'fp32' | 'bf16' | 'fp16';

/** Where an encoder runs. */
export type Device = 'cpu' | 'cuda' | 'auto';

/** Why this model cannot run on the GPU backend, or '' if it can. */
export function gpuRefusal(shape: EncoderShape): string {
  if (shape.disentangled) {
    return `the GPU encoder does not run ${shape.family}'s disentangled attention yet (it runs BERT, RoBERTa, DistilBERT, MPNet and their derivatives)`;
  }
  return '';
}

/** Resolves device 'cpu' | 'cuda' | 'auto' for a model: where it runs, and why not on the GPU when 'auto' chose the CPU. */
export function resolveDevice(shape: EncoderShape, device: Device, gpu: number, precision: Precision): { device: 'cpu' | 'cuda'; reason: string } {
  if (device === 'cpu') return { device: 'cpu', reason: 'device cpu was asked for' };
  const refusal = gpuRefusal(shape);
  let why = refusal;
  if (!why) {
    const info = native().cudaInfo();
    if (!info.available) why = info.reason ?? 'no usable GPU';
    else if (gpu >= info.devices.length) why = `GPU ${gpu} does not exist: this machine has ${info.devices.length} (${info.devices.join('; ')})`;
  }
  if (!why) return { device: 'cuda', reason: `GPU ${gpu}` };
  if (device === 'cuda') throw new Error(`device 'cuda': ${why}${refusal ? "; use device 'cpu'" : ''}`);
  if (precision === 'fp16') throw new Error(`precision 'fp16' needs a GPU, and device 'auto' found none usable: ${why}; use precision 'fp32' or 'bf16'`);
  return { device: 'cpu', reason: why };
}

/** Options of {@link Encoder.forward}. */
export interface ForwardOptions {
  /** Last layer to run: 0 = embeddings (+ LayerNorm) only, N = the full encoder (default). */
  toLayer?: number;
  /** Round the output to fp16 and back on the compute thread: the values an fp16 store holds for it. */
  roundF16?: boolean;
}

/** Options of {@link Encoder.forwardFrom}. */
export interface ForwardFromOptions {
  /** The layer whose output `hidden` holds (0 = embeddings). */
  fromLayer: number;
  /** Last layer to run; default N. */
  toLayer?: number;
}

function checkInt(name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw new RangeError(`${name} must be an integer in ${lo}..${hi}, got ${String(v)}`);
  }
  return v;
}

/** Options of {@link Encoder.embed}. */
export interface EmbedOptions {
  /** 'mean' over real tokens (sentence-transformers' default for MiniLM, MPNet) or 'cls' (the first token) */
  pooling?: 'mean' | 'cls';
  /** L2-normalise each embedding; default true */
  normalize?: boolean;
  maxLength?: number;
  batchSize?: number;
}

/**
 * Pools hidden states [B, T, H] over each row's real tokens (mask 1): their mean, or the
 * first token; then L2-normalises when asked. Sums run in float64.
 */
export function poolHidden(hidden: Float32Array, mask: Int32Array, B: number, T: number, H: number, pooling: 'mean' | 'cls', normalize: boolean): Float32Array[] {
  const out: Float32Array[] = [];
  const acc = new Float64Array(H);
  for (let b = 0; b < B; b++) {
    acc.fill(0);
    let n = 0;
    if (pooling === 'cls') {
      for (let j = 0; j < H; j++) acc[j] = hidden[b * T * H + j];
      n = 1;
    } else {
      for (let t = 0; t < T; t++) {
        if (!mask[b * T + t]) continue;
        n++;
        const base = (b * T + t) * H;
        for (let j = 0; j < H; j++) acc[j] += hidden[base + j];
      }
      if (n === 0) n = 1;
    }
    let norm = 0;
    for (let j = 0; j < H; j++) {
      acc[j] /= n;
      norm += acc[j] * acc[j];
    }
    // sentence-transformers' Normalize: x / max(||x||, 1e-12)
    const scale = normalize ? 1 / Math.max(Math.sqrt(norm), 1e-12) : 1;
    const e = new Float32Array(H);
    for (let j = 0; j < H; j++) e[j] = acc[j] * scale;
    out.push(e);
  }
  return out;
}

/** A pretrained encoder (BERT, RoBERTa, DistilBERT, MPNet, DeBERTa-v2 and their derivatives) running natively on the CPU, or on an NVIDIA GPU (every family but DeBERTa-v2 so far). */
export class Encoder {
  /** @internal */
  private handle: NativeEncoder | null;
  private constructor(
    /** The validated checkpoint. */
    readonly checkpoint: Checkpoint,
    /** The tokenizer that came with the checkpoint. */
    readonly tokenizer: TextTokenizer,
    handle: NativeEncoder,
    private threads: number,
    /** Compute precision of the linear layers. */
    readonly precision: Precision,
    /** Where the forward passes run. */
    readonly device: 'cpu' | 'cuda',
    /** Why the encoder runs where it does (with device 'auto': why not on the GPU). */
    readonly deviceReason: string,
  ) {
    this.handle = handle;
  }

  /**
   * Loads a Hugging Face model directory (config.json, model.safetensors or a
   * sharded index, tokenizer.json or vocab.txt). The weights are memory-mapped,
   * not copied (F16/BF16 weights are widened to F32 once).
   */
  static async load(dir: string, opts: LoadOptions = {}): Promise<Encoder> {
    const ckpt = readCheckpoint(dir);
    const tok = TextTokenizer.load(ckpt.dir, ckpt.shape.padTokenId);
    const addon = native();
    const threads = opts.threads === undefined ? addon.cpuInfo().defaultThreads : checkInt('threads', opts.threads, 1, 1024);
    const precision = opts.precision ?? 'fp32';
    if (precision !== 'fp32' && precision !== 'bf16' && precision !== 'fp16') throw new TypeError(`precision must be 'fp32', 'bf16' or 'fp16' (GPU only), got ${String(precision)}`);
    const asked = opts.device ?? 'cpu';
    if (asked !== 'cpu' && asked !== 'cuda' && asked !== 'auto') throw new TypeError(`device must be 'cpu', 'cuda' or 'auto', got ${String(asked)}`);
    const gpu = opts.gpu === undefined ? 0 : checkInt('gpu', opts.gpu, 0, 1023);
    if (precision === 'fp16' && asked === 'cpu') throw new TypeError("precision 'fp16' runs on device 'cuda' only; on the CPU use 'fp32' or 'bf16'");
    const { device, reason } = resolveDevice(ckpt.shape, asked, gpu, precision);
    if (precision === 'bf16' && device === 'cpu') {
      const impl = addon.cpuInfo().bf16Matmul;
      if (impl.startsWith('unavailable')) {
        throw new TypeError(`precision 'bf16' needs oneDNN's bf16 matmul, which this CPU does not have (${impl}); use precision 'fp32'`);
      }
    }
    const s = ckpt.shape;
    // mapping, widening and prepacking the weights (hundreds of ms at BERT-base size) run
    // in libuv's pool, not on the JavaScript thread
    const handle = await addon.loadEncoder(
      {
        vocab: s.vocabSize,
        hidden: s.hidden,
        layers: s.layers,
        heads: s.heads,
        intermediate: s.intermediate,
        maxPositions: s.maxPositions,
        typeVocab: s.typeVocabSize,
        relBuckets: s.relativeBuckets,
        eps: s.layerNormEps,
        ...(s.disentangled ? { disentangled: s.disentangled } : {}),
        precision,
        ...(device === 'cuda' ? { device, gpu } : {}),
      },
      ckpt.tensors,
    );
    return new Encoder(ckpt, tok, handle, threads, precision, device, reason);
  }

  /** The model's dimensions and family. */
  get shape(): EncoderShape {
    return this.checkpoint.shape;
  }

  /** Number of transformer layers N. */
  get numLayers(): number {
    return this.checkpoint.shape.layers;
  }

  /** Hidden size H. */
  get hidden(): number {
    return this.checkpoint.shape.hidden;
  }

  /** Longest sequence the position embeddings allow, special tokens included. */
  get maxLength(): number {
    return this.checkpoint.shape.maxPositions - this.checkpoint.shape.positionOffset;
  }

  /** Threads used by native compute. */
  setThreads(n: number): void {
    this.threads = checkInt('threads', n, 1, 1024);
  }

  private live(): NativeEncoder {
    if (!this.handle) throw new Error('Encoder is closed');
    return this.handle;
  }

  /**
   * Tokenizes texts (or text pairs) into a padded batch. Truncates to `maxLength`
   * (default: the model's limit); pads to the longest row unless told otherwise.
   */
  async tokenize(texts: readonly string[], opts: TokenizeOptions = {}): Promise<Batch> {
    if (!Array.isArray(texts) || texts.length === 0) throw new TypeError('texts must be a non-empty array of strings');
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw new TypeError(`texts[${i}] must be a string, got ${typeof t}`);
    });
    if (opts.pairs !== undefined) {
      if (!Array.isArray(opts.pairs) || opts.pairs.length !== texts.length) {
        throw new TypeError(`pairs must be an array of ${texts.length} strings (one per text)`);
      }
      opts.pairs.forEach((t, i) => {
        if (typeof t !== 'string') throw new TypeError(`pairs[${i}] must be a string, got ${typeof t}`);
      });
    }
    const maxLength = checkInt('maxLength', opts.maxLength ?? this.maxLength, 1, this.maxLength);
    const padding = opts.padding ?? 'longest';
    if (padding !== 'longest' && padding !== 'max_length' && padding !== false) {
      throw new TypeError(`padding must be 'longest', 'max_length' or false, got ${String(padding)}`);
    }
    const encodings = await this.tokenizer.encode(texts, { pairs: opts.pairs, maxLength, addSpecialTokens: opts.addSpecialTokens });
    return this.batchFromEncodings(encodings, padding === 'max_length' ? maxLength : undefined, padding === false);
  }

  /**
   * Pads encodings into a batch. `padTo` fixes the sequence length; `strict`
   * refuses rows of different lengths.
   */
  batchFromEncodings(encodings: Encoded[], padTo?: number, strict = false): Batch {
    let longest = 1;
    for (const e of encodings) longest = Math.max(longest, e.ids.length);
    if (strict && encodings.some((e) => e.ids.length !== longest)) {
      throw new RangeError('padding is false but the rows have different lengths; use padding: "longest"');
    }
    const T = padTo ?? longest;
    const B = encodings.length;
    const s = this.checkpoint.shape;
    const inputIds = new Int32Array(B * T).fill(s.padTokenId);
    const attentionMask = new Int32Array(B * T);
    const tokenTypeIds = new Int32Array(B * T);
    const positionIds = new Int32Array(B * T);
    encodings.forEach((e, b) => {
      if (e.ids.length > T) throw new RangeError(`row ${b} has ${e.ids.length} tokens, more than the sequence length ${T}`);
      for (let t = 0; t < e.ids.length; t++) {
        inputIds[b * T + t] = e.ids[t];
        attentionMask[b * T + t] = 1;
        tokenTypeIds[b * T + t] = s.typeVocabSize > 0 ? e.typeIds[t] : 0;
      }
    });
    this.fillPositions(inputIds, positionIds, B, T);
    return { batchSize: B, seqLen: T, inputIds, attentionMask, tokenTypeIds, positionIds, encodings };
  }

  /** Position ids ([B*T]) as the family computes them from the token ids ([B*T]). */
  positionIdsFor(ids: Int32Array, B: number, T: number): Int32Array {
    const out = new Int32Array(B * T);
    this.fillPositions(ids, out, B, T);
    return out;
  }

  /**
   * Sentence embeddings, by sentence-transformers' convention: the last layer's hidden
   * states pooled over each text's real tokens (`mean`, the default; or `cls`, the first
   * token), then L2-normalised unless `normalize: false`. Texts are truncated to
   * `maxLength` (default: the model directory's sentence_bert_config.json
   * `max_seq_length` when present, else the model's limit) and run in batches of
   * `batchSize` (default 32). Returns one Float32Array of the hidden size per text.
   */
  async embed(texts: readonly string[], opts: EmbedOptions = {}): Promise<Float32Array[]> {
    const pooling = opts.pooling ?? 'mean';
    if (pooling !== 'mean' && pooling !== 'cls') throw new TypeError(`pooling must be 'mean' or 'cls', got ${String(pooling)}`);
    const normalize = opts.normalize ?? true;
    if (typeof normalize !== 'boolean') throw new TypeError('normalize must be a boolean');
    const maxLength = checkInt('maxLength', opts.maxLength ?? this.sentenceMaxLength(), 1, this.maxLength);
    const batchSize = checkInt('batchSize', opts.batchSize ?? 32, 1, 4096);
    if (!Array.isArray(texts)) throw new TypeError('texts must be an array of strings');
    if (texts.length === 0) return [];
    const H = this.hidden;
    const out: Float32Array[] = [];
    for (let i = 0; i < texts.length; i += batchSize) {
      const batch = await this.tokenize(texts.slice(i, i + batchSize), { maxLength });
      const h = await this.forward(batch);
      out.push(...poolHidden(h.data, batch.attentionMask, batch.batchSize, batch.seqLen, H, pooling, normalize));
    }
    return out;
  }

  /** sentence-transformers' max_seq_length for this model directory, else the model's limit. */
  sentenceMaxLength(): number {
    try {
      const cfg = JSON.parse(fs.readFileSync(path.join(this.checkpoint.dir, 'sentence_bert_config.json'), 'utf8')) as { max_seq_length?: unknown };
      const n = cfg.max_seq_length;
      if (typeof n === 'number' && Number.isInteger(n) && n >= 1) return Math.min(n, this.maxLength);
    } catch {
      // no sentence-transformers configuration: the model's own limit
    }
    return this.maxLength;
  }

  /** @internal the native handle, for the training engine */
  nativeHandle(): NativeEncoder {
    return this.live();
  }

  /** Position ids as the family computes them from the token ids. */
  private fillPositions(ids: Int32Array, out: Int32Array, B: number, T: number): void {
    const s = this.checkpoint.shape;
    for (let b = 0; b < B; b++) {
      if (s.family === 'roberta' || s.family === 'mpnet') {
        // real tokens count from pad + 1; padding tokens take the pad id
        let seen = 0;
        for (let t = 0; t < T; t++) {
          const real = ids[b * T + t] !== s.padTokenId;
          if (real) seen++;
          out[b * T + t] = real ? s.padTokenId + seen : s.padTokenId;
        }
      } else {
        for (let t = 0; t < T; t++) out[b * T + t] = t;
      }
    }
  }

  /** Checks a batch's arrays, ids and mask against this model; throws naming the bad entry. */
  checkBatch(batch: Batch): void {
    if (typeof batch !== 'object' || batch === null) throw new TypeError('batch must be an object from encoder.tokenize()');
    const { batchSize: B, seqLen: T } = batch;
    checkInt('batch.batchSize', B, 1, 1 << 24);
    checkInt('batch.seqLen', T, 1, 1 << 24);
    const s = this.checkpoint.shape;
    const want = B * T;
    for (const key of ['inputIds', 'attentionMask'] as const) {
      const a = batch[key];
      if (!(a instanceof Int32Array) || a.length !== want) {
        throw new RangeError(`batch.${key} must be an Int32Array of batchSize * seqLen = ${want} values, got ${a instanceof Int32Array ? a.length : typeof a}`);
      }
    }
    if (T > this.maxLength) throw new RangeError(`batch.seqLen ${T} exceeds the model's maximum length ${this.maxLength}`);
    for (let i = 0; i < want; i++) {
      const id = batch.inputIds[i];
      if (id < 0 || id >= s.vocabSize) {
        throw new RangeError(`batch.inputIds[${Math.floor(i / T)}][${i % T}] = ${id} is outside the vocabulary (0..${s.vocabSize - 1})`);
      }
      const m = batch.attentionMask[i];
      if (m !== 0 && m !== 1) throw new RangeError(`batch.attentionMask[${Math.floor(i / T)}][${i % T}] = ${m}; the mask must hold 0 or 1`);
    }
    if (batch.tokenTypeIds !== undefined) {
      if (!(batch.tokenTypeIds instanceof Int32Array) || batch.tokenTypeIds.length !== want) {
        throw new RangeError(`batch.tokenTypeIds must be an Int32Array of ${want} values`);
      }
      const limit = Math.max(1, s.typeVocabSize);
      for (let i = 0; i < want; i++) {
        const v = batch.tokenTypeIds[i];
        if (v < 0 || v >= limit) throw new RangeError(`batch.tokenTypeIds[${Math.floor(i / T)}][${i % T}] = ${v}; this model has ${limit} token type(s)`);
      }
    }
    if (batch.positionIds !== undefined) {
      if (!(batch.positionIds instanceof Int32Array) || batch.positionIds.length !== want) {
        throw new RangeError(`batch.positionIds must be an Int32Array of ${want} values`);
      }
      for (let i = 0; i < want; i++) {
        const v = batch.positionIds[i];
        if (v < 0 || v >= s.maxPositions) throw new RangeError(`batch.positionIds[${Math.floor(i / T)}][${i % T}] = ${v} is outside 0..${s.maxPositions - 1}`);
      }
    }
  }

  /**
   * Runs the embeddings and layers 1..toLayer. Resolves to the hidden states of
   * layer `toLayer`, shape [batchSize, seqLen, hidden]. Padding positions hold
   * zeros (padded rows run packed). Runs on the encoder's compute thread.
   */
  async forward(batch: Batch, opts: ForwardOptions = {}): Promise<Tensor> {
    const toLayer = checkInt('toLayer', opts.toLayer ?? this.numLayers, 0, this.numLayers);
    this.checkBatch(batch);
    let positions = batch.positionIds;
    if (positions === undefined) {
      positions = new Int32Array(batch.batchSize * batch.seqLen);
      this.fillPositions(batch.inputIds, positions, batch.batchSize, batch.seqLen);
    }
    const types = this.checkpoint.shape.typeVocabSize > 0 ? batch.tokenTypeIds ?? null : null;
    const err = new Error();
    try {
      const out = await this.live().forward(batch.inputIds, positions, types, batch.attentionMask, batch.batchSize, batch.seqLen, toLayer, this.threads, opts.roundF16 === true);
      return tensor(out, [batch.batchSize, batch.seqLen, this.hidden]);
    } catch (e) {
      err.message = `forward failed: ${(e as Error).message}`;
      throw err;
    }
  }

  /**
   * Runs layers fromLayer+1..toLayer on the hidden states of layer `fromLayer`
   * (shape [B, T, H]), with the batch's attention mask ([B*T] of 0/1). The result
   * equals `forward(batch, {toLayer})` bit for bit when `hidden` came from
   * `forward(batch, {toLayer: fromLayer})`.
   */
  async forwardFrom(hidden: Tensor, attentionMask: Int32Array, opts: ForwardFromOptions): Promise<Tensor> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('forwardFrom needs options { fromLayer }');
    const fromLayer = checkInt('fromLayer', opts.fromLayer, 0, this.numLayers);
    const toLayer = checkInt('toLayer', opts.toLayer ?? this.numLayers, fromLayer, this.numLayers);
    if (typeof hidden !== 'object' || hidden === null || !(hidden.data instanceof Float32Array) || !Array.isArray(hidden.shape)) {
      throw new TypeError('hidden must be a tensor { data: Float32Array, shape: [batch, seqLen, hidden] }');
    }
    if (hidden.shape.length !== 3 || hidden.shape[2] !== this.hidden) {
      throw new RangeError(`hidden must have shape [batch, seqLen, ${this.hidden}], got [${hidden.shape.join(', ')}]`);
    }
    const [B, T] = hidden.shape;
    if (hidden.data.length !== B * T * this.hidden) throw new RangeError(`hidden.data has ${hidden.data.length} values, shape [${hidden.shape.join(', ')}] needs ${B * T * this.hidden}`);
    if (!(attentionMask instanceof Int32Array) || attentionMask.length !== B * T) {
      throw new RangeError(`attentionMask must be an Int32Array of ${B} x ${T} = ${B * T} values (one per position of hidden), got ${attentionMask instanceof Int32Array ? attentionMask.length : typeof attentionMask}`);
    }
    for (let i = 0; i < attentionMask.length; i++) {
      if (attentionMask[i] !== 0 && attentionMask[i] !== 1) throw new RangeError(`attentionMask[${i}] = ${attentionMask[i]}; the mask must hold 0 or 1`);
    }
    const err = new Error();
    try {
      const h = this.live();
      const out = await whileReading([hidden.data, attentionMask], () => h.forwardFrom(hidden.data, attentionMask, B, T, fromLayer, toLayer, this.threads));
      return tensor(out, [B, T, this.hidden]);
    } catch (e) {
      err.message = `forwardFrom failed: ${(e as Error).message}`;
      throw err;
    }
  }

  /**
   * Bytes of weights mapped from disk, bytes converted into memory, bytes of prepacked
   * linear-layer weights, and bytes of scratch memory kept between calls (freed after a
   * call that grew it past 256 MiB). On device 'cuda' also the GPU and the device bytes of
   * its weights and of the buffers kept for the largest batch so far.
   */
  memory(): NativeEncoderMemory {
    return this.live().memory();
  }

  /** Releases the weights once running jobs end. Further calls throw. */
  close(): void {
    this.handle?.close();
    this.handle = null;
  }
}
