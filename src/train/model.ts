/**
 * Task models: the layers above k (or all of them), Houlsby adapters and a task head,
 * trained natively with AdamW. Built from an {@link Encoder}; the encoder's own weights
 * are never changed (trained layers get their own copies).
 */
import { whileReading } from '../tensor/lease';
import { createHash } from 'crypto';
import * as fs from 'fs';
import { native, NativeTaskModel } from '../native/binding';
import { Batch, Encoder, resolveDevice } from '../model/encoder';
import { weightFingerprint } from '../model/checkpoint';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../model/safetensors';
import type { Tensor } from '../tensor/tensor';
import type { HalfTensor } from '../store/store';

/** Training modes (see the README's table). */
export const TRAIN_MODES = ['full', 'frozen-prefix', 'reduced', 'reduced-adapters', 'full-adapters'] as const;
/** One of TRAIN_MODES. */
export type TrainMode = (typeof TRAIN_MODES)[number];

/** Heads: [CLS] classification, per-token classification, extractive QA (start/end). */
export const HEAD_KINDS = ['sequence', 'token', 'qa'] as const;
/** One of HEAD_KINDS. */
export type HeadKind = (typeof HEAD_KINDS)[number];

/** Default hyperparameters, in one place. */
export const TRAIN_DEFAULTS = {
  adapterSize: 64,
  adapterAct: 'gelu' as 'gelu' | 'relu',
  dropout: 0.1,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  clip: 1.0,
};

/** How to build a task model: mode, k, head, adapters, dropout, seed, precision (see the README's training section). */
export interface TaskModelOptions {
  mode: TrainMode;
  /** Layers 1..k are the recycled (or frozen) prefix; default N/2. Ignored by full and full-adapters. */
  k?: number;
  head: { kind: HeadKind; numLabels?: number };
  /** Houlsby adapters (adapter modes): bottleneck size, 1-based layers (default: all the mode allows), nonlinearity. */
  adapter?: { size?: number; layers?: number[]; act?: 'gelu' | 'relu' };
  /** Dropout probabilities; default 0.1 each (0 turns one off). */
  dropout?: { hidden?: number; attention?: number; head?: number };
  /** Seeds the initialisation of new weights and the dropout masks. */
  seed?: number;
  /** One weight per label for the cross-entropy (sequence and token heads). */
  classWeights?: number[];
  /** Native threads; default: the encoder's. */
  threads?: number;
  /**
   * Inference only: parameters without gradients or Adam moments (a quarter of the
   * memory), and activation buffers freed after a step that grew them past 256 MiB.
   * Training steps are refused. What inference sessions use.
   */
  inference?: boolean;
  /**
   * 'fp32' (default, the reference) or 'bf16' mixed precision: the linear layers' GEMMs
   * take bfloat16 inputs with fp32 accumulation; master weights, gradients, AdamW state,
   * the loss and every other operation stay fp32.
   */
  precision?: 'fp32' | 'bf16';
  /**
   * Where the model's steps run: `'cpu'` (default), `'cuda'` or `'auto'` (the GPU when one
   * is usable for this model; {@link TaskModel.deviceReason} says why not).
   *
   * On the GPU, an inference model (`inference: true`) has its layers, adapters and head
   * uploaded there, again after its parameters change. A trainable model trains there: its
   * weights, gradients and AdamW moments live on the GPU, in fp32 (`precision: 'bf16'`: the
   * linear layers' GEMMs take bf16 inputs, as on the CPU). The host computes the
   * loss and its gradient from the logits, and reads the trained values back when they are
   * read (`getParameter`, `save`). A recycled mode also takes token ids there, and then its
   * prefix runs on the GPU too. The encoder itself stays a CPU encoder.
   */
  device?: 'cpu' | 'cuda' | 'auto';
  /** Which GPU for device 'cuda' or 'auto'; default 0. */
  gpu?: number;
  /** The GPU's precision of an inference model's linear layers (the head stays fp32); default `precision`. A trainable model uses `precision` on the GPU too. */
  gpuPrecision?: 'fp32' | 'bf16' | 'fp16';
}

/**
 * What a step reads: token ids (full, frozen-prefix, full-adapters) or layer-k activations
 * (reduced modes): fp32, or on device 'cuda' the fp16 codes an fp16 store holds
 * (`hidden16`, cast to fp32 on the GPU).
 */
export type TrainInput = { batch: Batch } | { hidden: Tensor; attentionMask: Int32Array } | { hidden16: HalfTensor; attentionMask: Int32Array };

/** AdamW settings for one step; lr is required (the schedule lives in TypeScript, see {@link linearSchedule}). */
export interface StepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip gradients to this global norm; 0 switches clipping off. Default 1. */
  clip?: number;
}

/** The manifest stored with exported parameters. */
export interface TaskManifest {
  format: 'embedding-recycler-task';
  version: 1;
  /** SHA-256 over the base model's shape and all its weights */
  baseModelFingerprint: string;
  family: string;
  hidden: number;
  layers: number;
  mode: TrainMode;
  k: number;
  head: { kind: HeadKind; numLabels: number };
  adapter: { size: number; layers: number[]; act: 'gelu' | 'relu' } | null;
}

/**
 * Learning rate of a linear warm-up over `warmup` steps, then linear decay to 0 at
 * `total` (steps count from 0), as Hugging Face's get_linear_schedule_with_warmup.
 */
export function linearSchedule(lr: number, warmup: number, total: number): (step: number) => number {
  return (step) => {
    if (step < warmup) return (lr * (step + 1)) / warmup;
    return lr * Math.max(0, (total - step) / Math.max(1, total - warmup));
  };
}

function checkInt(name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${name} must be an integer in ${lo}..${hi}, got ${String(v)}`);
  return v;
}

function checkProb(name: string, v: unknown): number {
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new RangeError(`${name} must be a probability in [0, 1), got ${String(v)}`);
  return v;
}

/** A trainable task model on top of an encoder. */
export class TaskModel {
  private readonly handle: NativeTaskModel;
  private readonly threads: number;
  private fingerprint: string | undefined;

  private constructor(readonly encoder: Encoder, readonly mode: TrainMode, readonly k: number, readonly head: { kind: HeadKind; numLabels: number },
    readonly adapter: TaskManifest['adapter'], handle: NativeTaskModel, threads: number,
    /** where evaluation steps run */
    readonly device: 'cpu' | 'cuda' = 'cpu',
    /** why there (with device 'auto': why not on the GPU) */
    readonly deviceReason = 'device cpu was asked for') {
    this.handle = handle;
    this.threads = threads;
  }

  /** The native configuration of a checked model description. */
  private static nativeConfig(mode: TrainMode, k: number, head: { kind: HeadKind; numLabels: number }, adapter: TaskManifest['adapter'], opts: TaskModelOptions,
    device: { device: 'cpu' | 'cuda' }) {
    const d = opts.dropout ?? {};
    return {
      mode: TRAIN_MODES.indexOf(mode),
      k,
      head: HEAD_KINDS.indexOf(head.kind),
      numLabels: head.numLabels,
      adapterSize: adapter?.size ?? 0,
      adapterLayers: adapter ? adapter.layers.map((l) => l - 1) : [],
      adapterAct: adapter?.act === 'relu' ? 1 : 0,
      hiddenDropout: checkProb('dropout.hidden', d.hidden ?? TRAIN_DEFAULTS.dropout),
      attentionDropout: checkProb('dropout.attention', d.attention ?? TRAIN_DEFAULTS.dropout),
      headDropout: checkProb('dropout.head', d.head ?? TRAIN_DEFAULTS.dropout),
      seed: opts.seed ?? 0,
      classWeights: opts.classWeights ? Float32Array.from(opts.classWeights) : null,
      precision: opts.precision ?? 'fp32',
      inference: opts.inference === true,
      ...(device.device === 'cuda' ? { device: 'cuda' as const, gpu: opts.gpu ?? 0, gpuPrecision: opts.gpuPrecision ?? opts.precision ?? 'fp32' } : {}),
    };
  }

  /** Where the model's steps run (options device, gpu, gpuPrecision checked). */
  private static device(encoder: Encoder, opts: TaskModelOptions): { device: 'cpu' | 'cuda'; reason: string } {
    const asked = opts.device ?? 'cpu';
    if (asked !== 'cpu' && asked !== 'cuda' && asked !== 'auto') throw new TypeError(`device must be 'cpu', 'cuda' or 'auto', got ${String(asked)}`);
    if (opts.gpuPrecision !== undefined && !['fp32', 'bf16', 'fp16'].includes(opts.gpuPrecision)) throw new TypeError(`gpuPrecision must be 'fp32', 'bf16' or 'fp16', got ${String(opts.gpuPrecision)}`);
    const gpu = opts.gpu ?? 0;
    if (!Number.isInteger(gpu) || gpu < 0 || gpu > 1023) throw new RangeError(`gpu must be an integer in 0..1023, got ${String(gpu)}`);
    if (asked === 'cpu') return { device: 'cpu', reason: 'device cpu was asked for' };
    if (opts.inference !== true && opts.gpuPrecision !== undefined && opts.gpuPrecision !== (opts.precision ?? 'fp32')) {
      // a trainable model runs its own precision on either device
      throw new TypeError(`gpuPrecision '${opts.gpuPrecision}': a task model trains on the GPU in its own precision ('${opts.precision ?? 'fp32'}'); leave gpuPrecision out, or set precision ('fp32' or 'bf16')`);
    }
    return resolveDevice(encoder.shape, asked, gpu, 'fp32');
  }

  /** Builds a task model; new weights (head, adapters) are initialised from the seed. */
  static create(encoder: Encoder, opts: TaskModelOptions): TaskModel {
    const { mode, k, head, adapter } = TaskModel.describe(encoder, opts);
    const dev = TaskModel.device(encoder, opts);
    const handle = new (native().TaskModel)(encoder.nativeHandle(), TaskModel.nativeConfig(mode, k, head, adapter, opts, dev));
    return new TaskModel(encoder, mode, k, head, adapter, handle, opts.threads ?? native().cpuInfo().defaultThreads, dev.device, dev.reason);
  }

  /**
   * {@link create}, with the parameters allocated and copied on a worker thread: what a
   * server uses, so that opening a task never blocks the event loop.
   */
  static async createAsync(encoder: Encoder, opts: TaskModelOptions): Promise<TaskModel> {
    const { mode, k, head, adapter } = TaskModel.describe(encoder, opts);
    const dev = TaskModel.device(encoder, opts);
    const handle = await native().buildTaskModel(encoder.nativeHandle(), TaskModel.nativeConfig(mode, k, head, adapter, opts, dev));
    return new TaskModel(encoder, mode, k, head, adapter, handle, opts.threads ?? native().cpuInfo().defaultThreads, dev.device, dev.reason);
  }

  /** Checks the options and resolves the model's shape (k, head, adapters). */
  private static describe(encoder: Encoder, opts: TaskModelOptions): { mode: TrainMode; k: number; head: { kind: HeadKind; numLabels: number }; adapter: TaskManifest['adapter'] } {
    if (!(encoder instanceof Encoder)) throw new TypeError('TaskModel.create(encoder, options) needs an Encoder');
    if (encoder.device !== 'cpu') {
      throw new Error("TaskModel: the encoder was loaded with device 'cuda', and task models (training and serving) run on the CPU so far; load the encoder with device 'cpu' for them");
    }
    if (typeof opts !== 'object' || opts === null) throw new TypeError('TaskModel.create needs options { mode, head }');
    if (!TRAIN_MODES.includes(opts.mode)) throw new TypeError(`mode must be one of ${TRAIN_MODES.join(', ')}, got ${String(opts.mode)}`);
    const N = encoder.numLayers;
    const usesK = opts.mode !== 'full' && opts.mode !== 'full-adapters';
    const k = usesK ? checkInt('k', opts.k ?? Math.floor(N / 2), 1, N - 1) : 0;
    if (!opts.head || !HEAD_KINDS.includes(opts.head.kind)) throw new TypeError(`head.kind must be one of ${HEAD_KINDS.join(', ')}`);
    const numLabels = opts.head.kind === 'qa' ? 2 : checkInt('head.numLabels', opts.head.numLabels, 2, 1 << 16);
    if (opts.head.kind === 'qa' && opts.head.numLabels !== undefined && opts.head.numLabels !== 2) throw new RangeError('a QA head has 2 outputs (start, end); leave numLabels out');
    let adapter: TaskManifest['adapter'] = null;
    if (opts.mode === 'reduced-adapters' || opts.mode === 'full-adapters') {
      const first = opts.mode === 'reduced-adapters' ? k + 1 : 1;
      const size = checkInt('adapter.size', opts.adapter?.size ?? TRAIN_DEFAULTS.adapterSize, 1, 65536);
      const layers = opts.adapter?.layers ?? Array.from({ length: N - first + 1 }, (_, i) => first + i);
      for (const l of layers) {
        if (!Number.isInteger(l) || l < first || l > N) throw new RangeError(`adapter.layers: layer ${l} is not one this mode runs with adapters (${first}..${N})`);
      }
      const act = opts.adapter?.act ?? TRAIN_DEFAULTS.adapterAct;
      if (act !== 'gelu' && act !== 'relu') throw new TypeError(`adapter.act must be 'gelu' or 'relu', got ${String(act)}`);
      adapter = { size, layers: [...layers].sort((a, b) => a - b), act };
    } else if (opts.adapter) {
      throw new TypeError(`mode ${opts.mode} has no adapters; use reduced-adapters or full-adapters`);
    }
    if (opts.precision !== undefined && opts.precision !== 'fp32' && opts.precision !== 'bf16') throw new TypeError(`precision must be 'fp32' or 'bf16', got ${String(opts.precision)}`);
    if (opts.classWeights !== undefined) {
      if (opts.head.kind === 'qa') throw new TypeError('classWeights do not apply to a QA head');
      if (!Array.isArray(opts.classWeights) || opts.classWeights.length !== numLabels || !opts.classWeights.every((w) => typeof w === 'number' && w >= 0 && Number.isFinite(w))) {
        throw new RangeError(`classWeights must be ${numLabels} non-negative numbers (one per label)`);
      }
    }
    return { mode: opts.mode, k, head: { kind: opts.head.kind, numLabels }, adapter };
  }

  /** Whether this mode reads layer-k activations instead of token ids. */
  get recycled(): boolean {
    return this.mode === 'reduced' || this.mode === 'reduced-adapters';
  }

  private inputs(input: TrainInput) {
    // on the GPU a recycled model also runs from token ids: the prefix runs there as well
    if (this.recycled && 'hidden16' in input) {
      if (this.device !== 'cuda') throw new TypeError("fp16 activations (hidden16) are for a model on device 'cuda'; on the CPU give { hidden } (fp32)");
      const { hidden16, attentionMask } = input;
      if (!(hidden16?.data instanceof Uint16Array) || hidden16.shape?.length !== 3 || hidden16.shape[2] !== this.encoder.hidden) {
        throw new RangeError(`hidden16 must be { data: Uint16Array, shape: [batch, seqLen, ${this.encoder.hidden}] }`);
      }
      const [B, T] = hidden16.shape;
      if (hidden16.data.length !== B * T * this.encoder.hidden) throw new RangeError(`hidden16.data must hold ${B * T * this.encoder.hidden} values`);
      if (!(attentionMask instanceof Int32Array) || attentionMask.length !== B * T) throw new RangeError(`attentionMask must be an Int32Array of ${B * T} values`);
      return { B, T, mask: attentionMask, hidden16: hidden16.data };
    }
    if (this.recycled && !(this.device === 'cuda' && 'batch' in input)) {
      if (!('hidden' in input)) throw new TypeError(`mode ${this.mode} takes layer-${this.k} activations: { hidden, attentionMask }`);
      const { hidden, attentionMask } = input;
      if (hidden.shape.length !== 3 || hidden.shape[2] !== this.encoder.hidden) throw new RangeError(`hidden must have shape [batch, seqLen, ${this.encoder.hidden}], got [${hidden.shape.join(', ')}]`);
      const [B, T] = hidden.shape;
      if (!(attentionMask instanceof Int32Array) || attentionMask.length !== B * T) throw new RangeError(`attentionMask must be an Int32Array of ${B * T} values`);
      return { B, T, mask: attentionMask, hidden: hidden.data };
    }
    if (!('batch' in input)) throw new TypeError(`mode ${this.mode} takes token ids: { batch } from encoder.tokenize()`);
    const b = input.batch;
    this.encoder.checkBatch(b);
    const positions = b.positionIds ?? this.encoder.positionIdsFor(b.inputIds, b.batchSize, b.seqLen);
    return { B: b.batchSize, T: b.seqLen, mask: b.attentionMask, ids: b.inputIds, positions, types: b.tokenTypeIds };
  }

  private checkLabels(labels: Int32Array, B: number, T: number): void {
    const want = this.head.kind === 'sequence' ? B : this.head.kind === 'qa' ? 2 * B : B * T;
    if (!(labels instanceof Int32Array) || labels.length !== want) {
      throw new RangeError(`labels must be an Int32Array of ${want} values for a ${this.head.kind} head (${this.head.kind === 'qa' ? 'start and end per row' : this.head.kind === 'token' ? 'one per token, negative = ignored' : 'one per row'})`);
    }
    for (let i = 0; i < labels.length; i++) {
      const y = labels[i];
      if (this.head.kind === 'qa' ? y >= T : y >= this.head.numLabels) throw new RangeError(`labels[${i}] = ${y} is out of range`);
      if (this.head.kind === 'sequence' && y < 0) throw new RangeError(`labels[${i}] = ${y}: a sequence label cannot be ignored`);
    }
  }

  private async run(input: TrainInput, labels: Int32Array | null, o: { train: boolean; backward: boolean; logits: boolean; update?: StepOptions }) {
    const inp = this.inputs(input);
    if (labels) this.checkLabels(labels, inp.B, inp.T);
    const u = o.update;
    const err = new Error();
    try {
      const handle = this.handle;
      return await whileReading([inp.hidden ?? inp.hidden16, inp.mask], () => handle.step(inp, labels, {
        train: o.train,
        backward: o.backward,
        logits: o.logits,
        threads: this.threads,
        update: u
          ? {
              lr: u.lr, beta1: u.beta1 ?? TRAIN_DEFAULTS.beta1, beta2: u.beta2 ?? TRAIN_DEFAULTS.beta2, eps: u.eps ?? TRAIN_DEFAULTS.eps,
              weightDecay: u.weightDecay ?? TRAIN_DEFAULTS.weightDecay, clip: u.clip ?? TRAIN_DEFAULTS.clip,
            }
          : undefined,
      }));
    } catch (e) {
      err.message = `training step failed: ${(e as Error).message}`;
      throw err;
    }
  }

  /**
   * One training step: forward with dropout, backward, global-norm clipping, AdamW.
   * Runs on a worker thread. Resolves to the batch's loss and the gradient norm before clipping.
   */
  async trainStep(input: TrainInput, labels: Int32Array, opts: StepOptions | number): Promise<{ loss: number; gradNorm: number }> {
    const o = typeof opts === 'number' ? { lr: opts } : opts;
    if (typeof o.lr !== 'number' || !(o.lr >= 0) || !Number.isFinite(o.lr)) throw new RangeError(`lr must be a non-negative number, got ${String(o.lr)}`);
    const r = await this.run(input, labels, { train: true, backward: true, logits: false, update: o });
    return { loss: r.loss, gradNorm: r.gradNorm };
  }

  /** Forward and backward without an update (gradients can then be read); dropout only when `train`. */
  async computeGradients(input: TrainInput, labels: Int32Array, train = false): Promise<number> {
    return (await this.run(input, labels, { train, backward: true, logits: false })).loss;
  }

  /**
   * Forward without dropout. Logits: sequence [B, numLabels]; token [B*T, numLabels];
   * QA [B*T, 2] (start, end). With labels, also the loss.
   */
  async evalStep(input: TrainInput, labels?: Int32Array): Promise<{ logits: Float32Array; loss?: number }> {
    const r = await this.run(input, labels ?? null, { train: false, backward: false, logits: true });
    return labels ? { logits: r.logits!, loss: r.loss } : { logits: r.logits! };
  }

  /** Names of the trained parameters (canonical names), in order. */
  parameterNames(): string[] {
    return this.handle.parameters().map((p) => p.name);
  }

  /** Number of trained values. */
  parameterCount(): number {
    return this.handle.parameters().reduce((a, p) => a + p.size, 0);
  }

  /** A copy of a trained parameter. */
  parameter(name: string): Float32Array {
    return this.handle.getParameter(name);
  }

  /** A copy of a parameter's gradient from the last backward pass. */
  gradient(name: string): Float32Array {
    return this.handle.getGradient(name);
  }

  setParameter(name: string, value: Float32Array): void {
    this.handle.setParameter(name, value);
  }

  /** Bytes of parameters (with gradients and Adam moments) and of activation buffers. */
  memory(): { paramBytes: number; activationBytes: number; steps: number; gpu?: number; deviceWeightBytes?: number; deviceBufferBytes?: number } {
    return this.handle.memory();
  }

  private baseFingerprint(): string {
    this.fingerprint ??= weightFingerprint(this.encoder.checkpoint, this.encoder.numLayers);
    return this.fingerprint;
  }

  /** The manifest describing this model (written with exported parameters). */
  manifest(): TaskManifest {
    const s = this.encoder.shape;
    return {
      format: 'embedding-recycler-task', version: 1, baseModelFingerprint: this.baseFingerprint(), family: s.family,
      hidden: s.hidden, layers: s.layers, mode: this.mode, k: this.k, head: this.head, adapter: this.adapter,
    };
  }

  /** Writes the trained parameters (only those) and the manifest as a safetensors file. */
  exportSafetensors(file: string): void {
    const tensors = this.handle.parameters().map((p) => ({ name: p.name, data: this.parameter(p.name), shape: [p.size] }));
    writeSafetensors(file, tensors, { manifest: JSON.stringify(this.manifest()) });
  }

  /**
   * Loads parameters written by {@link exportSafetensors}; refuses a file made for
   * another base model, mode, k, head or adapter configuration, naming the difference.
   */
  importSafetensors(file: string): void {
    this.importTensors(file, readSafetensors(file));
  }

  /** {@link importSafetensors} with the file read asynchronously (for servers). */
  async importSafetensorsAsync(file: string): Promise<void> {
    const bytes = await fs.promises.readFile(file);
    this.importTensors(file, readSafetensors(file, bytes));
  }

  private importTensors(file: string, tensors: ReturnType<typeof readSafetensors>): void {
    const header = readSafetensorsHeader(file);
    let m: TaskManifest;
    try {
      m = JSON.parse(header.metadata.manifest ?? '');
    } catch {
      throw new Error(`${file}: has no task manifest; it was not written by exportSafetensors`);
    }
    const mine = this.manifest();
    for (const key of ['baseModelFingerprint', 'mode', 'k', 'head', 'adapter'] as const) {
      if (JSON.stringify(m[key]) !== JSON.stringify(mine[key])) {
        throw new Error(`${file}: was trained with ${key} ${JSON.stringify(m[key])?.slice(0, 80)}, this model has ${JSON.stringify(mine[key])?.slice(0, 80)}`);
      }
    }
    const names = this.parameterNames();
    for (const name of names) {
      const t = tensors.get(name);
      if (!t || !(t.data instanceof Float32Array)) throw new Error(`${file}: parameter ${name} is missing`);
      this.setParameter(name, t.data);
    }
  }
}

/** SHA-256 of a file, hex (for task directories). */
export function fileSha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}
