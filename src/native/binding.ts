/**
 * The one place that loads the native addon and types its exports.
 * Nothing else in the package requires the `.node` file.
 * @internal
 */
import * as fs from 'fs';
import * as path from 'path';
import type { DisentangledShape } from '../model/families';

/** Canonical weight slots the native encoder knows (see src/model/families.ts). */
export interface NativeTensorSpec {
  slot: string;
  file: string;
  /** absolute byte offset of the tensor's data in `file` */
  offset: number;
  bytes: number;
  /** 0 = F32, 1 = F16, 2 = BF16 */
  dtype: 0 | 1 | 2;
  count: number;
}

export interface NativeEncoderConfig {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  maxPositions: number;
  typeVocab: number;
  eps: number;
  precision: 'fp32' | 'bf16' | 'fp16';
  /** 'cuda': the forward passes run on GPU `gpu` (default 0) through the GPU backend */
  device?: 'cpu' | 'cuda';
  gpu?: number;
  /** buckets of MPNet's relative position bias (0 or absent: none) */
  relBuckets?: number;
  /** DeBERTa-v2's disentangled attention and embeddings (no absolute positions unless
   * absolutePositions; the embeddings multiplied by the mask) */
  disentangled?: DisentangledShape;
}

export interface NativeEncoder {
  forward(
    ids: Int32Array,
    positions: Int32Array,
    typeIds: Int32Array | null,
    mask: Int32Array,
    batch: number,
    seqLen: number,
    toLayer: number,
    threads: number,
    roundF16?: boolean,
  ): Promise<Float32Array>;
  forwardFrom(
    hidden: Float32Array,
    mask: Int32Array,
    batch: number,
    seqLen: number,
    fromLayer: number,
    toLayer: number,
    threads: number,
  ): Promise<Float32Array>;
  memory(): NativeEncoderMemory;
  close(): void;
}

export interface NativeEncoderMemory {
  mappedBytes: number;
  ownedBytes: number;
  packedBytes: number;
  workspaceBytes: number;
  /** device 'cuda' only: the GPU, and the device memory of the weights and the kept batch buffers */
  gpu?: number;
  deviceWeightBytes?: number;
  deviceBufferBytes?: number;
}

/** What the GPU backend (embedding_recycler_cuda.so) says about this machine. */
export interface NativeCudaInfo {
  /** the file looked for */
  backend: string;
  loaded: boolean;
  /** a GPU the backend can use was found */
  available: boolean;
  /** why not, when not */
  reason?: string;
  /** the CUDA runtime the backend was built with */
  runtime?: string;
  /** one line per GPU: "0: NVIDIA H200, compute 9.0, 139.8 GiB, driver 13.0" */
  devices: string[];
}

/** Appends records to segment files; holds the store's writer lock. */
export interface NativeStoreWriter {
  openSegment(segment: number, committed: number): void;
  /** Resolves to [segment, offset, bytes, crc] per row (NaN for unselected rows), after fdatasync. */
  append(
    hidden: Float32Array, batch: number, seqLen: number, hidden_: number,
    lengths: Int32Array, keys: Uint8Array, select: Uint8Array, codec: number,
  ): Promise<Float64Array>;
  close(): void;
}

export interface NativeStoreReader {
  read(segment: number, offset: number, bytes: number, tokens: number, hidden: number, key: Uint8Array, verify: boolean): Float32Array;
  verifySegment(segment: number, committed: number): Promise<{ records: number; bytes: number; problems: string[] }>;
  /** Unmaps the segment files. */
  close(): void;
}

export interface NativePlan {
  hidden: number;
  batchStart: Uint32Array;
  segments: Uint32Array;
  offsets: Float64Array;
  bytes: Float64Array;
  tokens: Uint32Array;
  keys: Uint8Array;
}

export interface NativePrefetchedBatch {
  slot: number;
  batch: number;
  rows: number;
  tokens: number;
  /** fp32, or the records' fp16 codes with the prefetcher's fp16 option */
  hidden: Float32Array | Uint16Array;
  mask: Int32Array;
}

export interface NativePrefetcher {
  next(index: number): Promise<NativePrefetchedBatch>;
  release(slot: number): void;
  stats(): { consumerWaitMs: number; decodeMs: number; bytesRead: number; batches: number; bufferBytes: number };
  /** Stops the thread and detaches the views handed out; the ring's memory stays. */
  stop(): void;
  /** Frees the ring's memory (after stop(), once no native call reads a slot). */
  free(): void;
}

export interface NativeTaskModel {
  step(
    inputs: { ids?: Int32Array; positions?: Int32Array; types?: Int32Array; mask: Int32Array; hidden?: Float32Array; hidden16?: Uint16Array; B: number; T: number },
    labels: Int32Array | null,
    options: {
      train: boolean; backward: boolean; zeroGrad?: boolean; logits?: boolean; threads: number;
      update?: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; clip: number };
    },
  ): Promise<{ loss: number; gradNorm: number; logits?: Float32Array }>;
  parameters(): { name: string; size: number; decay: boolean }[];
  getParameter(name: string): Float32Array;
  getGradient(name: string): Float32Array;
  setParameter(name: string, value: Float32Array): void;
  memory(): { paramBytes: number; activationBytes: number; steps: number; gpu?: number; deviceWeightBytes?: number; deviceBufferBytes?: number };
}

export interface NativeTaskConfig {
  mode: number; k: number; head: number; numLabels: number; adapterSize: number; adapterLayers: number[];
  adapterAct: number; hiddenDropout: number; attentionDropout: number; headDropout: number; seed: number;
  classWeights: Float32Array | null; precision: 'fp32' | 'bf16'; inference?: boolean;
  /** 'cuda': evaluation steps run on GPU `gpu` in `gpuPrecision` (inference models only) */
  device?: 'cpu' | 'cuda'; gpu?: number; gpuPrecision?: 'fp32' | 'bf16' | 'fp16';
}

/** One prepared statement of the store's index (native/binding/sqlite.cpp). */
export interface NativeSqliteStatement {
  /** Parameters are the call's arguments, in order; so for get, all and bind. */
  run(...params: unknown[]): { changes: number };
  /** The first row (an object, or its first column when plucking), or undefined. */
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  bind(...params: unknown[]): void;
  /** The next row, or undefined when done (the statement is then reset). */
  step(): unknown;
  reset(): void;
  /** Rows become their first column. */
  pluck(on: boolean): void;
}

/** The store's index database: the system's SQLite, used synchronously. */
export interface NativeSqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): NativeSqliteStatement;
  inTransaction(): boolean;
  /** Finalizes every statement and closes the file. */
  close(): void;
}

export interface NativeAddon {
  SqliteDatabase: new (file: string, readonly: boolean, mustExist: boolean) => NativeSqliteDatabase;
  /** Version of the SQLite library the addon runs. */
  sqliteVersion: string;
  TaskModel: new (encoder: NativeEncoder, config: NativeTaskConfig) => NativeTaskModel;
  /** Builds a TaskModel on a worker thread. */
  buildTaskModel(encoder: NativeEncoder, config: NativeTaskConfig): Promise<NativeTaskModel>;
  /** The store's fp16 -> fp32 decode kernel run `reps` times; returns seconds. */
  f16ToF32(src: Uint16Array, dst: Float32Array, reps?: number): number;
  /** memcpy of fp32 values `reps` times (the decode benchmark's baseline); returns seconds. */
  copyF32(src: Float32Array, dst: Float32Array, reps?: number): number;
  /** One engine kernel run `reps` times on the given arrays (micro-benchmarks); returns seconds. */
  microKernel(name: 'crc32c' | 'gelu' | 'layerNorm', ...args: (Float32Array | Uint8Array | number)[]): number;
  /** External memory V8 has been told about (the addon's accounting), in bytes. */
  externalMemory(): number;
  StoreWriter: new (dir: string, identity: Uint8Array, maxSegmentBytes: number) => NativeStoreWriter;
  StoreReader: new (dir: string, identity: Uint8Array, hidden: number) => NativeStoreReader;
  Prefetcher: new (
    reader: NativeStoreReader, plan: NativePlan,
    opts: { depth: number; verify: boolean; maxRows: number; maxTokens: number; fp16?: boolean },
  ) => NativePrefetcher;
  NativeEncoder: new (config: NativeEncoderConfig, tensors: NativeTensorSpec[]) => NativeEncoder;
  /** The same load with the weights mapped, widened and prepacked off the JavaScript thread. */
  loadEncoder(config: NativeEncoderConfig, tensors: NativeTensorSpec[]): Promise<NativeEncoder>;
  cpuInfo(): { kernels: string; defaultThreads: number; gemm: string; fp32Matmul: string; bf16Matmul: string };
  /** Opens the GPU backend on first call (never throws). */
  cudaInfo(): NativeCudaInfo;
}

let cached: NativeAddon | undefined;
let loadedFrom = '';

/** Where the addon in use was loaded from (its file), or '' before the first load. */
export function addonPath(): string {
  return loadedFrom;
}

/** The platform packages to try, most specific first: the CUDA build where an NVIDIA driver is present. */
export function platformPackages(): string[] {
  const base = `@embedding-recycler/${process.platform}-${process.arch}`;
  const nvidia = process.platform === 'linux' && fs.existsSync('/proc/driver/nvidia/version');
  return nvidia && process.env.ER_CUDA !== 'off' ? [`${base}-cuda`, base] : [base];
}

interface PlatformManifest {
  requires?: { glibc?: string; glibcxx?: string };
}

function versionBelow(have: string, need: string): boolean {
  const a = have.split('.').map(Number), b = need.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0);
  return false;
}

/** The C library this process runs on: glibc's version, or null on another libc. */
export function runtimeGlibc(): string | null {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime ?? null;
}

/** Why a platform package cannot serve this machine, before the dynamic linker is asked; '' if it can. */
export function platformMismatch(dir: string, name: string): string {
  let m: PlatformManifest = {};
  try {
    m = JSON.parse(fs.readFileSync(path.join(dir, 'platform.json'), 'utf8')) as PlatformManifest;
  } catch (err) {
    return `${name}/platform.json is unreadable (${(err as Error).message}); reinstall the package`;
  }
  const need = m.requires?.glibc;
  if (!need || need === '0') return '';
  const have = runtimeGlibc();
  if (have === null) return `${name} is built for glibc ${need}+, and this system's C library is not glibc (musl?); build from source`;
  if (versionBelow(have, need)) {
    return `${name} needs glibc ${need} or newer and this machine has glibc ${have}; upgrade the system or build from source ` +
      '(npm rebuild embedding-recycler --build-from-source)';
  }
  return '';
}

/** A dynamic-linker error made readable: which library or symbol version is missing, and what to do. */
export function explainLoadError(message: string): string {
  const sym = /version `((GLIBCXX|GLIBC|CXXABI)_[\d.]+)' not found/.exec(message);
  if (sym) {
    const lib = sym[2] === 'GLIBC' ? 'glibc' : 'libstdc++';
    return `${message}\n    (this machine's ${lib} is older than the build needs: it lacks ${sym[1]}; upgrade ${lib} or build from source)`;
  }
  const missing = /^(lib[^:]+\.so[.\d]*): cannot open shared object file/m.exec(message);
  if (missing) return `${message}\n    (${missing[1]} is not installed and not bundled beside the addon)`;
  return message;
}

interface Candidate {
  source: string;
  file: string;
  /** checked before loading; a reason not to try, or '' */
  precheck?: () => string;
}

/**
 * Loads the addon, trying in order: ER_ADDON_PATH (when set, only it), a local build
 * (build/Release, build/Debug), the platform packages. On failure one error lists
 * every attempt with its reason and what to do.
 */
export function native(): NativeAddon {
  if (cached) return cached;
  const root = path.resolve(__dirname, '..', '..');
  const candidates: Candidate[] = [];
  const explicit = process.env.ER_ADDON_PATH;
  if (explicit) {
    // the addon named by ER_ADDON_PATH is the one wanted: no quiet fallback to another
    candidates.push({ source: 'ER_ADDON_PATH', file: path.resolve(explicit) });
  } else {
    for (const kind of ['Release', 'Debug']) {
      candidates.push({ source: `local build (${kind})`, file: path.join(root, 'build', kind, 'embedding_recycler.node') });
    }
    for (const name of platformPackages()) {
      let dir = '';
      try {
        dir = path.dirname(require.resolve(`${name}/platform.json`, { paths: [root] }));
      } catch {
        candidates.push({ source: name, file: `${name} (not installed)` });
        continue;
      }
      candidates.push({ source: name, file: path.join(dir, 'embedding_recycler.node'), precheck: () => platformMismatch(dir, name) });
    }
  }
  const attempts: string[] = [];
  for (const c of candidates) {
    if (!fs.existsSync(c.file)) {
      attempts.push(`  ${c.source}: ${c.file}: not found`);
      continue;
    }
    const why = c.precheck?.() ?? '';
    if (why) {
      attempts.push(`  ${c.source}: ${why}`);
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      cached = require(c.file) as NativeAddon;
      loadedFrom = c.file;
      return cached;
    } catch (err) {
      attempts.push(`  ${c.source}: ${c.file}: ${explainLoadError((err as Error).message)}`);
    }
  }
  throw new Error(
    'embedding-recycler: could not load the native addon. Tried:\n' +
      attempts.join('\n') +
      `\nInstall the prebuilt addon (npm install ${platformPackages().at(-1)}, which npm installs with embedding-recycler ` +
      'on supported platforms), point ER_ADDON_PATH at an addon, or build from source: npm rebuild embedding-recycler ' +
      '--build-from-source (needs cmake, g++, libdnnl-dev and libsqlite3-dev, and the packages cmake-js and node-addon-api).',
  );
}
