/**
 * The activation store: layer-k hidden states of every window of a corpus, on disk,
 * content addressed, crash safe, read through memory maps with a native prefetcher.
 *
 * Guarantees (see README "Activation store"):
 * - A record is committed when its index row is; the segment bytes are made durable
 *   (fdatasync) before the index transaction commits, so committed records are whole.
 * - Nothing committed is rewritten: segments are append-only; a writer that opens a
 *   store truncates only bytes past the committed length (an interrupted append).
 * - One writer at a time (flock on LOCK, released by the kernel if the writer dies);
 *   any number of readers, in any process, see only committed records.
 * - Every record carries a CRC32C, checked on read unless switched off.
 */
import * as fs from 'fs';
import * as path from 'path';
import { createHash } from 'crypto';
import { IndexDatabase } from './sqlite';
import { fsyncPath, makeDir } from '../util/fs';
import { native, NativePrefetcher, NativeStoreReader, NativeStoreWriter } from '../native/binding';
import { Encoder } from '../model/encoder';
import { weightFingerprint, weightFingerprintAsync } from '../model/checkpoint';
import type { Encoded } from '../model/tokenizer';
import { Tensor, tensor } from '../tensor/tensor';
import { lend } from '../tensor/lease';
import {
  CODECS, contentHash, DEFAULT_MAX_SEGMENT_BYTES, FORMAT_VERSION, identityHash, INDEX_SCHEMA, Manifest,
  segmentFileName, segmentIdentity, StoreDtype, StoreIdentity, windowKey,
} from './format';

/** A store that cannot be used as asked: the message names the store and what differs. */
export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

/** One text (or text pair) to encode. */
export interface EncodeItem {
  id: string;
  text: string;
  pair?: string;
  /**
   * The text's windows already tokenized (e.g. NER sentences aligned to words); when
   * given, they are stored as they are instead of tokenizing `text`.
   */
  encodings?: Encoded[];
}

/** Options of {@link ActivationStore.create}. */
export interface CreateStoreOptions {
  /** The layer whose output is stored (1..N; 0 = the embeddings). */
  layer: number;
  /** Stored value type; default 'fp16'. */
  dtype?: StoreDtype;
  /** Window length in tokens, special tokens included; default: the model's maximum. */
  maxLength?: number;
  /** Tokens shared by consecutive windows of a long text; default 128 (or maxLength / 4 when smaller). */
  stride?: number;
  /** Rotate to a new segment file past this many bytes; default 1 GiB. */
  maxSegmentBytes?: number;
  /**
   * The number of the store's first segment file (default 1). Shards of one store given
   * disjoint ranges are merged by hard-linking their segment files instead of copying.
   */
  firstSegment?: number;
}

/** Options of {@link ActivationStore.open}. */
export interface OpenStoreOptions {
  /** When given, the store must have been made by this encoder (weights and tokenizer). */
  encoder?: Encoder;
  /** When given, the store must hold this layer. */
  layer?: number;
  /** When given, the store must hold this dtype. */
  dtype?: StoreDtype;
  /** Open for writing (needs `encoder`); takes the writer lock. Default false. */
  write?: boolean;
  /** Rotate to a new segment file past this many bytes (writers only); default 1 GiB. */
  maxSegmentBytes?: number;
  /** The first segment's number when the store has none yet (writers only); default 1. */
  firstSegment?: number;
}

/** Progress of {@link ActivationStore.encode}, reported after every batch. */
export interface EncodeProgress {
  textsDone: number;
  /** texts that were already in the store */
  textsSkipped: number;
  windowsDone: number;
  tokensDone: number;
  recordsWritten: number;
  bytesWritten: number;
  elapsedMs: number;
}

/** Options of {@link ActivationStore.encode}. */
export interface EncodeOptions {
  /** Windows per forward batch; default 32. */
  batchSize?: number;
  onProgress?: (p: EncodeProgress) => void;
  /** Called for a text longer than maxLength that had to be truncated (text pairs cannot be windowed). */
  onWarning?: (message: string) => void;
  /**
   * The layer-k activations of the items' windows, already computed ([windows, T, H], the
   * windows in input order, padded to the longest): stored as they are instead of running
   * the prefix again. The items must fit one batch (batchSize at least their windows).
   * What an inference session's read-through uses for the texts it has just computed.
   */
  activations?: Tensor;
}

/** Where a window's record lives. */
export interface WindowRef {
  key: Buffer;
  segment: number;
  offset: number;
  bytes: number;
  tokens: number;
}

/**
 * A batch from {@link ActivationStore.batches}. Its arrays are views of a prefetch ring
 * slot, valid until the next batch is requested (or `release()`), and for as long as a
 * native call that reads them (a forward pass, a training step) is still running, awaited
 * or not. After that they are detached (length 0). `hold()` keeps them longer; `copy: true`
 * gives owned copies instead.
 */
export interface StoreBatch {
  index: number;
  /** window keys, one per row */
  keys: Buffer[];
  /** the schedule entry each row came from */
  entries: (string | Buffer)[];
  /** [rows, T, H], zero past each row's tokens */
  hidden: Tensor;
  /** [rows * T], 1 on stored tokens */
  attentionMask: Int32Array;
  /** Keeps the arrays valid past the next batch; call the returned function when done with them. */
  hold(): () => void;
  /** Gives the slot back early (the arrays stay valid while a native call still reads them). */
  release(): void;
}

/** IEEE binary16 values as their 16-bit codes, row-major. */
export interface HalfTensor {
  data: Uint16Array;
  shape: number[];
}

/** A batch of {@link ActivationStore.batches} with `fp16: true`: the records' own fp16 values. */
export type StoreBatchF16 = Omit<StoreBatch, 'hidden'> & {
  /** [rows, T, H] fp16 codes as the store holds them, zero past each row's tokens */
  hidden16: HalfTensor;
};

/** Options of {@link ActivationStore.batches}. */
export interface BatchOptions {
  /** Rows per batch; default 32. */
  batchSize?: number;
  /** Batches decoded ahead by the native thread; false or 0 switches prefetching off. Default 2. */
  prefetch?: number | false;
  /** Bound on the prefetch buffers' memory in bytes; the depth is reduced to fit. */
  maxBytes?: number;
  /** Check each record's CRC32C while reading; default true. */
  verify?: boolean;
  /** Give each batch its own copies instead of views of the ring buffers. */
  copy?: boolean;
  /**
   * Hand the hidden states over as the records hold them (`hidden16`, fp16 codes; checked
   * as always) instead of decoding them to fp32: what a GPU model takes, casting them on the
   * device. An fp16 store only.
   */
  fp16?: boolean;
}

/** What `store.verify()` found: per segment, in the index, and overall (`ok`). */
export interface VerifyResult {
  ok: boolean;
  segments: { file: string; committedBytes: number; fileBytes: number; records: number; problems: string[] }[];
  indexProblems: string[];
  records: number;
  docs: number;
}

interface Pending {
  item: EncodeItem;
  content: Buffer;
  keys: Buffer[];
  tokens: number;
  lastWindow: number;
}

interface Win {
  enc: Encoded;
  key: Buffer;
  doc: Pending;
}

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function checkInt(name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw new RangeError(`${name} must be an integer in ${lo}..${hi}, got ${String(v)}`);
  }
  return v;
}

function writeFileAtomic(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncPath(path.dirname(file));
}

/**
 * True when a directory holds only what an interrupted {@link ActivationStore.create}
 * leaves before the manifest exists (the manifest is written last, so no record can
 * have been committed): an empty segments folder, the index files, the lock, a
 * temporary manifest.
 */
function isUnfinishedCreation(dir: string): boolean {
  for (const f of fs.readdirSync(dir)) {
    if (f === 'segments') {
      if (fs.readdirSync(path.join(dir, f)).length > 0) return false;
    } else if (!/^(index\.sqlite(-wal|-shm|-journal)?|LOCK|manifest\.json\.tmp-\d+)$/.test(f)) {
      return false;
    }
  }
  return true;
}

/** The identity a given encoder and settings would give a store. */
export function storeIdentity(encoder: Encoder, layer: number, dtype: StoreDtype, maxLength: number, stride: number): StoreIdentity {
  const src = encoder.tokenizer.source;
  return {
    formatVersion: FORMAT_VERSION,
    modelFingerprint: weightFingerprint(encoder.checkpoint, layer),
    family: encoder.shape.family,
    hidden: encoder.hidden,
    layer,
    dtype,
    tokenizerFingerprint: sha256File(src),
    maxLength,
    stride,
  };
}

function readManifest(dir: string): Manifest {
  const file = path.join(dir, 'manifest.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new StoreError(`${dir}: not an activation store (cannot read manifest.json: ${(err as Error).message})`);
  }
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (err) {
    throw new StoreError(`${file}: corrupt manifest (not valid JSON: ${(err as Error).message}); the store cannot be trusted`);
  }
  if (typeof m !== 'object' || m === null || typeof m.identity !== 'object' || m.identity === null || typeof m.identityHash !== 'string') {
    throw new StoreError(`${file}: corrupt manifest (missing identity); the store cannot be trusted`);
  }
  if (m.identity.formatVersion !== FORMAT_VERSION) {
    throw new StoreError(`${file}: format version ${String(m.identity.formatVersion)}; this build reads version ${FORMAT_VERSION}`);
  }
  if (identityHash(m.identity) !== m.identityHash) {
    throw new StoreError(`${file}: corrupt manifest (the identity hash does not match its fields); the store cannot be trusted`);
  }
  const id = m.identity as unknown as Record<string, unknown>;
  if (typeof id.dtype !== 'string' || !Object.prototype.hasOwnProperty.call(CODECS, id.dtype)) {
    throw new StoreError(`${file}: unknown dtype ${JSON.stringify(id.dtype)} (known: ${Object.keys(CODECS).join(', ')}); the store cannot be trusted`);
  }
  for (const k of ['modelFingerprint', 'family', 'tokenizerFingerprint'] as const) {
    if (typeof id[k] !== 'string' || (id[k] as string).length === 0) throw new StoreError(`${file}: corrupt manifest (identity.${k} must be a non-empty string); the store cannot be trusted`);
  }
  const ranges = { hidden: [1, 1 << 20], layer: [0, 1 << 16], maxLength: [1, 1 << 24], stride: [0, 1 << 24] } as const;
  for (const [k, [lo, hi]] of Object.entries(ranges)) {
    const v = id[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new StoreError(`${file}: corrupt manifest (identity.${k} must be an integer in ${lo}..${hi}, got ${JSON.stringify(v)}); the store cannot be trusted`);
    }
  }
  return m;
}

const IDENTITY_LABELS: Record<keyof StoreIdentity, string> = {
  formatVersion: 'format version',
  modelFingerprint: 'model weights (embeddings and layers up to k)',
  family: 'model family',
  hidden: 'hidden size',
  layer: 'layer',
  dtype: 'dtype',
  tokenizerFingerprint: 'tokenizer',
  maxLength: 'max length',
  stride: 'stride',
};

function compareIdentity(dir: string, stored: StoreIdentity, wanted: Partial<StoreIdentity>): void {
  for (const k of Object.keys(wanted) as (keyof StoreIdentity)[]) {
    if (wanted[k] === undefined) continue;
    if (stored[k] !== wanted[k]) {
      const show = (v: unknown) => (typeof v === 'string' && v.length === 64 ? `${v.slice(0, 12)}…` : JSON.stringify(v));
      throw new StoreError(
        `${dir}: refused: the store's ${IDENTITY_LABELS[k]} is ${show(stored[k])}, but ${show(wanted[k])} was asked for. ` +
          'A store only serves the model, layer, dtype and tokenizer that produced it; use another --store directory.',
      );
    }
  }
}

/**
 * Lays out a new store in `abs` (empty or missing): segments/, the index with the
 * identity hash, and last the manifest (a directory without it is an unfinished creation).
 */
function initStoreDir(abs: string, manifest: Manifest): void {
  makeDir(path.join(abs, 'segments'));
  const db = new IndexDatabase(path.join(abs, 'index.sqlite'));
  db.pragma('journal_mode = WAL');
  db.exec(INDEX_SCHEMA);
  db.prepare('INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)').run('identityHash', manifest.identityHash);
  db.close();
  writeFileAtomic(path.join(abs, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
}

function segmentFile(dir: string, segment: number): string {
  return path.join(dir, segmentFileName(segment));
}


/**
 * Opens a store's index (read-only unless `write`) and checks that it belongs to the
 * store whose identity hash is `identityHash`; any failure is a StoreError naming the file.
 */
function openIndex(indexFile: string, identityHash: string, write: boolean): IndexDatabase {
  let db: IndexDatabase | undefined;
  try {
    db = new IndexDatabase(indexFile, { readonly: !write, fileMustExist: true });
    db.pragma('busy_timeout = 10000');
    if (write) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    if (db.prepare("SELECT v FROM meta WHERE k = 'identityHash'").pluck().get() !== identityHash) {
      throw new StoreError(`${indexFile}: belongs to another store (its identity differs from manifest.json)`);
    }
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof StoreError) throw err;
    throw new StoreError(`${indexFile}: cannot open the index: ${(err as Error).message}`);
  }
}

/**
 * A writer's recovery: every segment the index names must hold its committed bytes, and
 * what an interrupted append left past them is dropped (except in the last segment,
 * whose writer continues at its committed length). Returns the segments in order.
 */
function recoverSegments(dir: string, db: IndexDatabase): { segment: number; committed: number }[] {
  const segs = db.prepare('SELECT segment, committed FROM segments ORDER BY segment').all() as { segment: number; committed: number }[];
  for (const s of segs) {
    const file = segmentFile(dir, s.segment);
    const size = fs.existsSync(file) ? fs.statSync(file).size : -1;
    if (size < s.committed) {
      throw new StoreError(
        `${file}: the index commits records up to byte ${s.committed} but the file ${size < 0 ? 'is missing' : `has ${size} bytes`}; committed data is lost (the store is damaged; run er inspect --verify)`,
      );
    }
    if (size > s.committed && s !== segs[segs.length - 1]) fs.truncateSync(file, s.committed); // interrupted append
  }
  return segs;
}

/** What {@link ActivationStore.merge} did. */
export interface MergeResult {
  /** the merged store's directory */
  dir: string;
  shards: number;
  /** segment files taken in (copied or linked) */
  segments: number;
  /** of which hard-linked */
  linked: number;
  /** segment bytes taken in */
  bytes: number;
  /** index entries added (records already in the store, from it or an earlier shard, are not) */
  recordsAdded: number;
  /** records of the shards whose key the store already held: stored once in the index */
  recordsDuplicate: number;
  docsAdded: number;
  docsDuplicate: number;
}

/** Options of {@link ActivationStore.merge}. */
export interface MergeOptions {
  /** check every shard (store.verify()) before taking anything from it; default true */
  verify?: boolean;
  /** delete each shard directory once the merged index that holds it is committed */
  removeShards?: boolean;
  /**
   * hard-link the shards' segment files instead of copying them, where their numbers are
   * free in the store and the shard is on the same filesystem (else they are copied);
   * needs `removeShards` (a linked file must not be written by two stores). Shards made
   * with disjoint `firstSegment` ranges (as `er encode --queue` makes them) link whole.
   */
  link?: boolean;
  /** called after each shard is merged */
  onShard?: (info: { shard: string; index: number; recordsAdded: number; bytes: number }) => void;
}

/** A store's writer lock and index, opened without an encoder: what merging needs. */
interface RawWriter {
  db: IndexDatabase;
  lock: NativeStoreWriter;
}

/** A memory-mapped, crash-safe store of layer-k activations. */
export class ActivationStore {
  private writer: NativeStoreWriter | null = null;
  private readonly reader: NativeStoreReader;
  private readonly identityBytes: Uint8Array;
  private readonly stmts;
  private closed = false;

  private constructor(
    /** The store's directory. */
    readonly dir: string,
    /** What produced the store. */
    readonly manifest: Manifest,
    private readonly db: IndexDatabase,
    /** The encoder bound to this store (needed to encode). */
    readonly encoder: Encoder | undefined,
    /** False when opened for writing. */
    readonly readOnly: boolean,
  ) {
    this.identityBytes = segmentIdentity(manifest.identityHash);
    this.reader = new (native().StoreReader)(dir, this.identityBytes, manifest.identity.hidden);
    this.stmts = {
      record: db.prepare('SELECT segment, offset, bytes, tokens FROM records WHERE key = ?'),
      doc: db.prepare('SELECT content, windows, tokens FROM docs WHERE id = ?'),
    };
  }

  /**
   * Creates a store for `encoder`'s layer `layer` in `dir`, or opens the store already
   * there for writing when it was made by the same encoder with the same settings
   * (anything else is refused, naming the field that differs).
   */
  static async create(dir: string, encoder: Encoder, opts: CreateStoreOptions): Promise<ActivationStore> {
    if (!(encoder instanceof Encoder)) throw new TypeError('create(dir, encoder, options) needs an Encoder');
    const layer = checkInt('layer', opts?.layer, 0, encoder.numLayers);
    const dtype = opts.dtype ?? 'fp16';
    if (!(dtype in CODECS)) throw new TypeError(`dtype must be one of ${Object.keys(CODECS).join(', ')}, got ${String(dtype)}`);
    const maxLength = checkInt('maxLength', opts.maxLength ?? encoder.maxLength, 8, encoder.maxLength);
    const stride = checkInt('stride', opts.stride ?? Math.min(128, Math.floor(maxLength / 4)), 0, maxLength - 8);
    const abs = path.resolve(dir);
    // the fingerprint is hashed on a worker thread (and kept), so storeIdentity() finds it ready
    await weightFingerprintAsync(encoder.checkpoint, layer);
    const identity = storeIdentity(encoder, layer, dtype, maxLength, stride);
    if (fs.existsSync(path.join(abs, 'manifest.json'))) {
      const m = readManifest(abs);
      compareIdentity(abs, m.identity, identity);
      return ActivationStore.open(abs, { encoder, write: true, maxSegmentBytes: opts.maxSegmentBytes, firstSegment: opts.firstSegment });
    }
    if (fs.existsSync(abs) && fs.readdirSync(abs).length > 0) {
      if (!isUnfinishedCreation(abs)) {
        throw new StoreError(`${abs}: exists, is not empty and has no manifest.json; choose an empty or new directory`);
      }
      // a creation interrupted before its manifest was written: nothing was committed
      for (const f of fs.readdirSync(abs)) fs.rmSync(path.join(abs, f), { recursive: true, force: true });
    }
    const manifest: Manifest = {
      identity,
      identityHash: identityHash(identity),
      modelDir: encoder.checkpoint.dir,
      createdAt: new Date().toISOString(),
    };
    initStoreDir(abs, manifest);
    return ActivationStore.open(abs, { encoder, write: true, maxSegmentBytes: opts.maxSegmentBytes, firstSegment: opts.firstSegment });
  }

  /** Opens an existing store (read-only unless `write`), checking it against what the caller expects. */
  static async open(dir: string, opts: OpenStoreOptions = {}): Promise<ActivationStore> {
    const abs = path.resolve(dir);
    if (!fs.existsSync(abs)) throw new StoreError(`store directory ${abs} does not exist`);
    if (!fs.statSync(abs).isDirectory()) throw new StoreError(`${abs} is not a directory`);
    const manifest = readManifest(abs);
    const wanted: Partial<StoreIdentity> = { layer: opts.layer, dtype: opts.dtype };
    if (opts.encoder) {
      const id = manifest.identity;
      const layer = opts.layer ?? id.layer;
      if (layer > opts.encoder.numLayers) {
        throw new StoreError(`${abs}: refused: the store holds layer ${id.layer} but the model has only ${opts.encoder.numLayers} layers`);
      }
      Object.assign(wanted, {
        family: opts.encoder.shape.family,
        hidden: opts.encoder.hidden,
        modelFingerprint: await weightFingerprintAsync(opts.encoder.checkpoint, layer),
        tokenizerFingerprint: sha256File(opts.encoder.tokenizer.source),
      });
    }
    compareIdentity(abs, manifest.identity, wanted);
    if (opts.write && !opts.encoder) throw new TypeError('opening a store for writing needs { encoder }');
    const indexFile = path.join(abs, 'index.sqlite');
    if (!fs.existsSync(indexFile)) throw new StoreError(`${indexFile}: missing; the store is damaged`);
    const db = openIndex(indexFile, manifest.identityHash, !!opts.write);
    const store = new ActivationStore(abs, manifest, db, opts.encoder, !opts.write);
    if (opts.write) {
      try {
        store.openWriter(opts.maxSegmentBytes ?? DEFAULT_MAX_SEGMENT_BYTES, opts.firstSegment ?? 1);
      } catch (err) {
        store.close();
        throw err;
      }
    }
    return store;
  }

  /**
   * Merges shard stores (made with the same identity: model, layer, dtype, tokenizer,
   * window settings) into the store at `dir`, creating it when missing, without
   * re-encoding: each shard's committed segment bytes are copied in under new segment
   * numbers (only the 4-byte number in each file header changes), then one index
   * transaction adds the shards' records and documents. A key or document id already
   * present is kept once (the first one wins; content addressing makes them equal).
   * A crash before that commit leaves the store as it was (copied files that no index
   * row names are overwritten by the next merge or append). Shards are read, never
   * changed, unless `removeShards` deletes them after the commit.
   */
  static async merge(dir: string, shards: readonly string[], opts: MergeOptions = {}): Promise<MergeResult> {
    if (!Array.isArray(shards) || shards.length === 0) throw new TypeError('merge(dir, shards) needs at least one shard directory');
    const abs = path.resolve(dir);
    const shardDirs = shards.map((d) => path.resolve(d));
    if (shardDirs.includes(abs)) throw new StoreError(`${abs}: a store cannot be merged into itself`);
    if (new Set(shardDirs).size !== shardDirs.length) throw new StoreError('the same shard is named twice');
    if (opts.link && !opts.removeShards) throw new TypeError('merge: link needs removeShards (a segment file linked into the store must not stay writable by its shard)');
    // every shard: same identity, whole (verified) before anything is taken from it
    const opened: ActivationStore[] = [];
    try {
      for (const d of shardDirs) {
        const sh = await ActivationStore.open(d);
        opened.push(sh);
        if (sh.manifest.identityHash !== opened[0].manifest.identityHash) {
          compareIdentity(d, sh.identity, opened[0].identity);
          throw new StoreError(`${d}: its identity differs from ${shardDirs[0]}'s; shards of one store must come from the same model and settings`);
        }
        if (opts.verify !== false) {
          const v = await sh.verify();
          if (!v.ok) {
            const first = [...v.indexProblems, ...v.segments.flatMap((x) => x.problems)].slice(0, 3).join('; ');
            throw new StoreError(`${d}: the shard fails verification (${first}); re-encode it before merging`);
          }
        }
      }
    } finally {
      for (const sh of opened) sh.close();
    }
    const manifest0 = readManifest(shardDirs[0]);
    if (fs.existsSync(path.join(abs, 'manifest.json'))) {
      const m = readManifest(abs);
      if (m.identityHash !== manifest0.identityHash) {
        compareIdentity(abs, m.identity, manifest0.identity);
        throw new StoreError(`${abs}: the store's identity differs from the shards'`);
      }
    } else {
      if (fs.existsSync(abs) && fs.readdirSync(abs).length > 0) {
        if (!isUnfinishedCreation(abs)) throw new StoreError(`${abs}: exists, is not empty and has no manifest.json; choose an empty or new directory`);
        for (const f of fs.readdirSync(abs)) fs.rmSync(path.join(abs, f), { recursive: true, force: true });
      }
      initStoreDir(abs, { ...manifest0, createdAt: new Date().toISOString() });
    }
    const raw = ActivationStore.openRawWriter(abs, manifest0.identityHash);
    const result: MergeResult = { dir: abs, shards: shardDirs.length, segments: 0, linked: 0, bytes: 0, recordsAdded: 0, recordsDuplicate: 0, docsAdded: 0, docsDuplicate: 0 };
    try {
      const { db } = raw;
      const count = (sql: string) => db.prepare(sql).pluck().get() as number;
      const used = new Set(db.prepare('SELECT segment FROM segments').pluck().all() as number[]);
      let maxUsed = count('SELECT coalesce(max(segment), 0) FROM segments');
      const linked = new Set<number>();
      const sameFs = (d: string) => fs.statSync(d).dev === fs.statSync(abs).dev;
      for (let i = 0; i < shardDirs.length; i++) {
        const shard = shardDirs[i];
        db.prepare("ATTACH DATABASE ? AS shard").run(`file:${encodeURI(path.join(shard, 'index.sqlite'))}?mode=ro`);
        try {
          const segs = db.prepare('SELECT segment, committed FROM shard.segments ORDER BY segment').all() as { segment: number; committed: number }[];
          // 1. the bytes: each committed segment copied under its new number, made durable
          const map: [number, number][] = [];
          let bytes = 0;
          const linkable = opts.link === true && sameFs(shard);
          for (const sg of segs) {
            const src = segmentFile(shard, sg.segment);
            let num = sg.segment;
            let didLink = false;
            if (linkable && !used.has(num)) {
              const dst = segmentFile(abs, num);
              fs.rmSync(dst, { force: true }); // a file a crashed merge left, that no index row names
              try {
                fs.linkSync(src, dst);
                didLink = true;
                // bytes past the shard's committed length were never its records
                if (fs.statSync(dst).size > sg.committed) fs.truncateSync(dst, sg.committed);
              } catch {
                didLink = false;
              }
            }
            if (!didLink) {
              // copied under the next free number: only the number in its header changes
              num = used.has(sg.segment) ? maxUsed + 1 : sg.segment;
              const dst = segmentFile(abs, num);
              fs.rmSync(dst, { force: true });
              fs.copyFileSync(src, dst);
              fs.truncateSync(dst, sg.committed);
              const fd = fs.openSync(dst, 'r+');
              try {
                const b = Buffer.alloc(4);
                b.writeUInt32LE(num, 0);
                fs.writeSync(fd, b, 0, 4, 12);
                fs.fsyncSync(fd);
              } finally {
                fs.closeSync(fd);
              }
            } else {
              linked.add(num);
              result.linked++;
            }
            used.add(num);
            maxUsed = Math.max(maxUsed, num);
            map.push([sg.segment, num]);
            bytes += sg.committed;
          }
          fsyncPath(path.join(abs, 'segments'));
          // 2. the index: one transaction for the shard's records, segments and documents
          let added = 0;
          db.transaction(() => {
            db.exec('CREATE TEMP TABLE IF NOT EXISTS segmap (src INTEGER PRIMARY KEY, dst INTEGER NOT NULL)');
            db.exec('DELETE FROM temp.segmap');
            const ins = db.prepare('INSERT INTO temp.segmap (src, dst) VALUES (?, ?)');
            for (const [a, b] of map) ins.run(a, b);
            const records = count('SELECT count(*) FROM shard.records');
            const docs = count('SELECT count(*) FROM shard.docs');
            added = db.prepare(
              'INSERT OR IGNORE INTO main.records (key, segment, offset, bytes, tokens, crc) ' +
                'SELECT r.key, m.dst, r.offset, r.bytes, r.tokens, r.crc FROM shard.records r JOIN temp.segmap m ON m.src = r.segment',
            ).run().changes;
            db.prepare('INSERT INTO main.segments (segment, committed) SELECT m.dst, s.committed FROM shard.segments s JOIN temp.segmap m ON m.src = s.segment').run();
            const docsAdded = db.prepare('INSERT OR IGNORE INTO main.docs (id, content, windows, tokens) SELECT id, content, windows, tokens FROM shard.docs').run().changes;
            result.recordsAdded += added;
            result.recordsDuplicate += records - added;
            result.docsAdded += docsAdded;
            result.docsDuplicate += docs - docsAdded;
          })();
          result.segments += map.length;
          result.bytes += bytes;
          opts.onShard?.({ shard, index: i, recordsAdded: added, bytes });
        } finally {
          db.exec('DETACH DATABASE shard');
        }
      }
      // the store appends to its last segment: that one must be its own file, not a link
      if (linked.has(maxUsed)) {
        const dst = segmentFile(abs, maxUsed);
        const tmpCopy = `${dst}.copy-${process.pid}`;
        fs.copyFileSync(dst, tmpCopy);
        fsyncPath(tmpCopy);
        fs.renameSync(tmpCopy, dst);
        fsyncPath(path.join(abs, 'segments'));
        result.linked--;
      }
    } finally {
      raw.db.close();
      raw.lock.close();
    }
    if (opts.removeShards) for (const d of shardDirs) fs.rmSync(d, { recursive: true, force: true });
    return result;
  }

  /** The writer lock and a writable index of the store at `abs`, without an encoder. */
  private static openRawWriter(abs: string, identityHash: string): RawWriter {
    const lock = new (native().StoreWriter)(abs, segmentIdentity(identityHash), DEFAULT_MAX_SEGMENT_BYTES);
    let db: IndexDatabase | undefined;
    try {
      db = openIndex(path.join(abs, 'index.sqlite'), identityHash, true);
      recoverSegments(abs, db);
      return { db, lock };
    } catch (err) {
      db?.close();
      lock.close();
      throw err;
    }
  }

  /** Takes the writer lock and recovers from an interrupted append. */
  private openWriter(maxSegmentBytes: number, firstSegment: number): void {
    checkInt('firstSegment', firstSegment, 1, 2 ** 32 - 2);
    const w = new (native().StoreWriter)(this.dir, this.identityBytes, maxSegmentBytes);
    try {
      const segs = recoverSegments(this.dir, this.db);
      const last = segs[segs.length - 1];
      w.openSegment(last ? last.segment : firstSegment, last ? last.committed : 0);
    } catch (err) {
      w.close();
      throw err;
    }
    this.writer = w;
  }

  /** Identity of what produced this store. */
  get identity(): StoreIdentity {
    return this.manifest.identity;
  }

  private live(): void {
    if (this.closed) throw new StoreError(`${this.dir}: the store is closed`);
  }

  /**
   * Tokenizes a text into the windows the store keys it by: one window when it fits
   * in maxLength, else overlapping windows (`stride` tokens shared). Text pairs are
   * truncated to one window.
   */
  async windows(text: string, pair?: string, onWarning?: (m: string) => void): Promise<{ encodings: Encoded[]; keys: Buffer[] }> {
    const enc = this.requireEncoder();
    const { maxLength, stride } = this.identity;
    let encodings: Encoded[];
    if (pair !== undefined) {
      const [full] = await enc.tokenizer.encode([text], { pairs: [pair] });
      if (full.ids.length > maxLength) onWarning?.(`a text pair of ${full.ids.length} tokens was truncated to ${maxLength}`);
      encodings = await enc.tokenizer.encode([text], { pairs: [pair], maxLength });
    } else {
      encodings = (await enc.tokenizer.encodeWindows(text, maxLength, stride)).windows;
    }
    const keys = encodings.map((e) => windowKey(this.manifest.identityHash, e.ids, e.typeIds));
    return { encodings, keys };
  }

  /** The key a window (an encoding) has in this store. */
  keyOf(e: Encoded): Buffer {
    return windowKey(this.manifest.identityHash, e.ids, e.typeIds);
  }

  private requireEncoder(): Encoder {
    if (!this.encoder) throw new StoreError(`${this.dir}: this needs the store's encoder; open it with { encoder }`);
    return this.encoder;
  }

  /** Number of records (windows), documents, stored tokens and committed bytes. */
  stats(): { records: number; docs: number; tokens: number; bytes: number; segments: number; lastSegment: number } {
    this.live();
    const r = this.db.prepare('SELECT count(*) AS n, coalesce(sum(tokens), 0) AS t FROM records').get() as { n: number; t: number };
    const d = this.db.prepare('SELECT count(*) AS n FROM docs').get() as { n: number };
    const s = this.db.prepare('SELECT count(*) AS n, coalesce(sum(committed), 0) AS b, coalesce(max(segment), 0) AS m FROM segments').get() as { n: number; b: number; m: number };
    return { records: r.n, docs: d.n, tokens: r.t, bytes: s.b, segments: s.n, lastSegment: s.m };
  }

  /** Whether a document id is stored (all its windows committed). */
  has(id: string): boolean {
    this.live();
    return this.stmts.doc.get(id) !== undefined;
  }

  /** The windows of a stored document, in order; undefined when the id is unknown. */
  document(id: string): WindowRef[] | undefined {
    this.live();
    const row = this.stmts.doc.get(id) as { windows: Buffer } | undefined;
    if (!row) return undefined;
    const out: WindowRef[] = [];
    for (let i = 0; i < row.windows.length; i += 32) {
      const ref = this.lookup(row.windows.subarray(i, i + 32));
      if (!ref) throw new StoreError(`${this.dir}: document ${JSON.stringify(id)} names a window that is not in the index (the store is damaged)`);
      out.push(ref);
    }
    return out;
  }

  /** Where a window's record lives, or undefined. */
  lookup(key: Buffer): WindowRef | undefined {
    this.live();
    if (!Buffer.isBuffer(key) || key.length !== 32) throw new TypeError('a window key is a 32-byte Buffer');
    const row = this.stmts.record.get(key) as { segment: number; offset: number; bytes: number; tokens: number } | undefined;
    return row ? { key: Buffer.from(key), ...row } : undefined;
  }

  /** Reads one window's activations as fp32 [tokens, H] (checks its CRC unless verify is false). */
  read(keyOrRef: Buffer | WindowRef, verify = true): Tensor {
    const ref = Buffer.isBuffer(keyOrRef) ? this.lookup(keyOrRef) : keyOrRef;
    if (!ref) throw new StoreError(`${this.dir}: no record for key ${(keyOrRef as Buffer).toString('hex').slice(0, 16)}…`);
    const H = this.identity.hidden;
    if (typeof ref !== 'object' || ref === null || !Buffer.isBuffer(ref.key) || ref.key.length !== 32) {
      throw new TypeError('read() takes a 32-byte key or a WindowRef from lookup() / document()');
    }
    let data: Float32Array;
    try {
      data = this.reader.read(ref.segment, ref.offset, ref.bytes, ref.tokens, H, ref.key, verify);
    } catch (e) {
      throw new StoreError(`${this.dir}: cannot read window ${ref.key.toString('hex').slice(0, 16)}…: ${(e as Error).message}`);
    }
    return tensor(data, [ref.tokens, H]);
  }

  /** Finds a text's windows from its content alone (needs the encoder); undefined when any is missing. */
  async find(text: string, pair?: string): Promise<WindowRef[] | undefined> {
    const { keys } = await this.windows(text, pair);
    const refs = keys.map((k) => this.lookup(k));
    return refs.every((r) => r !== undefined) ? (refs as WindowRef[]) : undefined;
  }

  /**
   * Runs the encoder's layers 1..k over every item and appends the windows' activations.
   * Resumable: items already stored are skipped, and a batch is recomputed whole, so
   * the records equal those of an uninterrupted run. Batches are committed atomically.
   */
  async encode(items: Iterable<EncodeItem> | AsyncIterable<EncodeItem>, opts: EncodeOptions = {}): Promise<EncodeProgress> {
    this.live();
    if (this.readOnly || !this.writer) throw new StoreError(`${this.dir}: opened read-only; open with { write: true, encoder } to encode`);
    const enc = this.requireEncoder();
    const batchSize = checkInt('batchSize', opts.batchSize ?? 32, 1, 4096);
    const { layer, dtype } = this.identity;
    const t0 = performance.now();
    const progress: EncodeProgress = { textsDone: 0, textsSkipped: 0, windowsDone: 0, tokensDone: 0, recordsWritten: 0, bytesWritten: 0, elapsedMs: 0 };
    const seenIds = new Set<string>();
    let wins: Win[] = [];
    const insRecord = this.db.prepare('INSERT OR IGNORE INTO records (key, segment, offset, bytes, tokens, crc) VALUES (?, ?, ?, ?, ?, ?)');
    const insSegment = this.db.prepare(
      'INSERT INTO segments (segment, committed) VALUES (?, ?) ON CONFLICT(segment) DO UPDATE SET committed = max(committed, excluded.committed)',
    );
    const insDoc = this.db.prepare('INSERT OR IGNORE INTO docs (id, content, windows, tokens) VALUES (?, ?, ?, ?)');
    const hasRecord = this.db.prepare('SELECT 1 FROM records WHERE key = ?').pluck();

    let flushes = 0;
    const flush = async (batchWins: Win[]) => {
      if (opts.activations && ++flushes > 1) throw new RangeError('activations cover one batch, but the items make more than one (raise batchSize)');
      // rows whose key is new (first occurrence in this batch and not yet committed)
      const select = new Uint8Array(batchWins.length);
      const fresh = new Set<string>();
      for (let i = 0; i < batchWins.length; i++) {
        const hex = batchWins[i].key.toString('hex');
        if (!fresh.has(hex) && !hasRecord.get(batchWins[i].key)) {
          select[i] = 1;
          fresh.add(hex);
        }
      }
      let locs: Float64Array | null = null;
      if (fresh.size > 0) {
        const batch = enc.batchFromEncodings(batchWins.map((w) => w.enc));
        const given = opts.activations;
        if (given && (given.shape[0] !== batch.batchSize || given.shape[1] !== batch.seqLen || given.shape[2] !== enc.hidden)) {
          throw new RangeError(`activations have shape [${given.shape.join(', ')}] but the batch is [${batch.batchSize}, ${batch.seqLen}, ${enc.hidden}]`);
        }
        const hidden = given ?? await enc.forward(batch, { toLayer: layer });
        const lengths = Int32Array.from(batchWins.map((w) => w.enc.ids.length));
        const keys = new Uint8Array(batchWins.length * 32);
        batchWins.forEach((w, i) => keys.set(w.key, i * 32));
        locs = await this.writer!.append(hidden.data, batch.batchSize, batch.seqLen, enc.hidden, lengths, keys, select, CODECS[dtype]);
      }
      // commit: the records, the segments' committed lengths, and the documents that end here
      const finished = new Set<Pending>();
      for (const w of batchWins) w.doc.lastWindow--;
      for (const w of batchWins) if (w.doc.lastWindow === 0) finished.add(w.doc);
      this.db.transaction(() => {
        if (locs) {
          const committed = new Map<number, number>();
          for (let i = 0; i < batchWins.length; i++) {
            if (!select[i]) continue;
            const [seg, off, bytes, crc] = [locs[i * 4], locs[i * 4 + 1], locs[i * 4 + 2], locs[i * 4 + 3]];
            insRecord.run(batchWins[i].key, seg, off, bytes, batchWins[i].enc.ids.length, crc);
            committed.set(seg, Math.max(committed.get(seg) ?? 0, off + bytes));
            progress.recordsWritten++;
            progress.bytesWritten += bytes;
          }
          for (const [seg, end] of committed) insSegment.run(seg, end);
        }
        for (const d of finished) insDoc.run(d.item.id, d.content, Buffer.concat(d.keys), d.tokens);
      })();
      progress.windowsDone += batchWins.length;
      progress.tokensDone += batchWins.reduce((a, w) => a + w.enc.ids.length, 0);
      progress.textsDone += finished.size;
      progress.elapsedMs = performance.now() - t0;
      opts.onProgress?.({ ...progress });
    };

    let index = 0;
    for await (const item of items as AsyncIterable<EncodeItem>) {
      if (typeof item !== 'object' || item === null || typeof item.text !== 'string') {
        throw new TypeError(`item ${index}: expected { id: string, text: string, pair?: string }`);
      }
      if (typeof item.id !== 'string' || item.id.length === 0) throw new TypeError(`item ${index}: id must be a non-empty string`);
      if (item.pair !== undefined && typeof item.pair !== 'string') throw new TypeError(`item ${index} (${item.id}): pair must be a string`);
      index++;
      if (seenIds.has(item.id)) throw new StoreError(`item ${index - 1}: id ${JSON.stringify(item.id)} appears twice in the input`);
      seenIds.add(item.id);
      const content = contentHash(item.text, item.pair);
      const existing = this.stmts.doc.get(item.id) as { content: Buffer } | undefined;
      if (existing && !existing.content.equals(content)) {
        throw new StoreError(`${this.dir}: id ${JSON.stringify(item.id)} is already stored with different text; give the new text another id`);
      }
      const { encodings, keys } = item.encodings
        ? { encodings: item.encodings, keys: item.encodings.map((e) => this.keyOf(e)) }
        : await this.windows(item.text, item.pair, opts.onWarning);
      const doc: Pending = { item, content, keys, tokens: encodings.reduce((a, e) => a + e.ids.length, 0), lastWindow: encodings.length };
      if (existing) progress.textsSkipped++;
      // every window takes its place in the fixed batch sequence, stored or not
      encodings.forEach((e, i) => wins.push({ enc: e, key: keys[i], doc }));
      while (wins.length >= batchSize) {
        const batchWins = wins.slice(0, batchSize);
        wins = wins.slice(batchSize);
        await flush(batchWins);
      }
    }
    if (wins.length > 0) await flush(wins);
    progress.elapsedMs = performance.now() - t0;
    return progress;
  }

  /**
   * Iterates batches of activations along a schedule of document ids or window keys
   * (an epoch's shuffled order, a queue of requests). Each document contributes one
   * row per window. A native thread reads and decodes ahead of the consumer.
   */
  batches(schedule: readonly (string | Buffer)[], opts: BatchOptions & { fp16: true }): AsyncGenerator<StoreBatchF16>;
  batches(schedule: readonly (string | Buffer)[], opts?: BatchOptions): AsyncGenerator<StoreBatch>;
  async *batches(schedule: readonly (string | Buffer)[], opts: BatchOptions = {}): AsyncGenerator<StoreBatch | StoreBatchF16> {
    this.live();
    const fp16 = opts.fp16 === true;
    if (fp16 && this.identity.dtype !== 'fp16') {
      throw new StoreError(`${this.dir}: fp16 batches need an fp16 store; this one holds ${this.identity.dtype} values`);
    }
    const batchSize = checkInt('batchSize', opts.batchSize ?? 32, 1, 65536);
    const depth = opts.prefetch === false ? 0 : checkInt('prefetch', opts.prefetch ?? 2, 0, 64);
    const H = this.identity.hidden;
    const rows: { ref: WindowRef; entry: string | Buffer }[] = [];
    for (const entry of schedule) {
      if (typeof entry === 'string') {
        const refs = this.document(entry);
        if (!refs) throw new StoreError(`${this.dir}: document ${JSON.stringify(entry)} is not in the store`);
        for (const ref of refs) rows.push({ ref, entry });
      } else {
        const ref = this.lookup(entry);
        if (!ref) throw new StoreError(`${this.dir}: window ${entry.toString('hex').slice(0, 16)}… is not in the store`);
        rows.push({ ref, entry });
      }
    }
    const nb = Math.ceil(rows.length / batchSize);
    if (nb === 0) return;
    const n = rows.length;
    const plan = {
      hidden: H,
      batchStart: Uint32Array.from({ length: nb + 1 }, (_, i) => Math.min(n, i * batchSize)),
      segments: Uint32Array.from(rows, (r) => r.ref.segment),
      offsets: Float64Array.from(rows, (r) => r.ref.offset),
      bytes: Float64Array.from(rows, (r) => r.ref.bytes),
      tokens: Uint32Array.from(rows, (r) => r.ref.tokens),
      keys: new Uint8Array(n * 32),
    };
    rows.forEach((r, i) => plan.keys.set(r.ref.key, i * 32));
    let maxTokens = 1;
    for (const r of rows) maxTokens = Math.max(maxTokens, r.ref.tokens);
    const maxRows = Math.min(batchSize, n);
    const slotBytes = maxRows * maxTokens * (H + 1) * 4;
    let d = depth;
    if (opts.maxBytes !== undefined) {
      const fit = Math.floor(opts.maxBytes / slotBytes);
      if (fit < 1) throw new RangeError(`maxBytes ${opts.maxBytes} is too small for one batch of ${maxRows} x ${maxTokens} x ${H} (needs ${slotBytes} bytes)`);
      d = Math.min(d, fit - 1);
    }
    const pf: NativePrefetcher = new (native().Prefetcher)(this.reader, plan, { depth: d, verify: opts.verify ?? true, maxRows, maxTokens, fp16 });
    this.lastPrefetcher = pf;
    // the ring's memory is freed once the loop is over and no lent batch is still read
    let lent = 0, over = false;
    const stopAndFree = () => {
      pf.stop();
      if (lent === 0) pf.free();
    };
    this.active.set(pf, () => {
      over = true;
      stopAndFree();
    });
    try {
      for (let i = 0; i < nb; i++) {
        let b;
        try {
          b = await pf.next(i);
        } catch (e) {
          if (this.closed) throw new StoreError(`${this.dir}: the store was closed while batches() was reading it`);
          throw new StoreError((e as Error).message);
        }
        const first = i * batchSize;
        const slice = rows.slice(first, first + b.rows);
        const slot = b.slot;
        let lease = null;
        if (!opts.copy) {
          lent++;
          lease = lend([b.hidden, b.mask], () => {
            pf.release(slot);
            if (--lent === 0 && over) pf.free();
          });
        }
        const hiddenData = opts.copy ? b.hidden.slice() : b.hidden;
        const mask = opts.copy ? Int32Array.from(b.mask) : b.mask;
        if (opts.copy) pf.release(slot);
        const values = fp16
          ? { hidden16: { data: hiddenData as Uint16Array, shape: [b.rows, b.tokens, H] } }
          : { hidden: tensor(hiddenData as Float32Array, [b.rows, b.tokens, H]) };
        try {
          yield {
            index: i,
            keys: slice.map((r) => r.ref.key),
            entries: slice.map((r) => r.entry),
            ...values,
            attentionMask: mask,
            hold: lease ? () => lease.hold() : () => () => {},
            release: lease ? () => lease.done() : () => {},
          };
        } finally {
          lease?.done();
        }
      }
    } finally {
      this.active.delete(pf);
      over = true;
      stopAndFree();
    }
  }

  /** The prefetcher of the latest {@link batches} call: consumer wait and decode times. */
  lastPrefetcher: NativePrefetcher | null = null;
  /** Prefetchers of batches() loops still running, with what stops them (close() calls it). */
  private readonly active = new Map<NativePrefetcher, () => void>();

  /**
   * Checks everything: every segment's layout and checksums up to its committed
   * length, and every index entry against the record it points to. Per-file results.
   */
  async verify(): Promise<VerifyResult> {
    this.live();
    const segs = this.db.prepare('SELECT segment, committed FROM segments ORDER BY segment').all() as { segment: number; committed: number }[];
    const result: VerifyResult = { ok: true, segments: [], indexProblems: [], records: 0, docs: 0 };
    for (const s of segs) {
      const file = segmentFile(this.dir, s.segment);
      const fileBytes = fs.existsSync(file) ? fs.statSync(file).size : 0;
      const r = await this.reader.verifySegment(s.segment, s.committed);
      result.segments.push({ file, committedBytes: s.committed, fileBytes, records: r.records, problems: r.problems });
    }
    const H = this.identity.hidden;
    const all = this.db.prepare('SELECT key, segment, offset, bytes, tokens FROM records').iterate() as Iterable<{ key: Buffer; segment: number; offset: number; bytes: number; tokens: number }>;
    const committed = new Map(segs.map((s) => [s.segment, s.committed]));
    for (const r of all) {
      result.records++;
      const end = committed.get(r.segment);
      if (end === undefined || r.offset + r.bytes > end) {
        result.indexProblems.push(`index entry ${r.key.toString('hex').slice(0, 16)}… points past the committed data of segment ${r.segment} (offset ${r.offset})`);
        continue;
      }
      try {
        this.reader.read(r.segment, r.offset, r.bytes, r.tokens, H, r.key, true);
      } catch (e) {
        result.indexProblems.push((e as Error).message);
      }
    }
    const docs = this.db.prepare('SELECT id, windows FROM docs').iterate() as Iterable<{ id: string; windows: Buffer }>;
    for (const d of docs) {
      result.docs++;
      for (let i = 0; i < d.windows.length; i += 32) {
        if (!this.stmts.record.get(d.windows.subarray(i, i + 32))) {
          result.indexProblems.push(`document ${JSON.stringify(d.id)}: window ${i / 32} is not in the index`);
        }
      }
    }
    result.ok = result.indexProblems.length === 0 && result.segments.every((s) => s.problems.length === 0);
    return result;
  }

  /**
   * Releases the writer lock and the index. A batches() loop still running is stopped:
   * its pending batch is rejected with a StoreError, and the batches it already handed
   * out are detached once no native call reads them any more.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.active.values()) stop();
    this.active.clear();
    this.reader.close();
    this.writer?.close();
    this.writer = null;
    this.db.close();
  }
}
