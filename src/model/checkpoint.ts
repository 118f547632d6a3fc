/**
 * Hugging Face model directories: config.json, model.safetensors (or a sharded
 * model.safetensors.index.json), tokenizer.json / vocab.txt. Everything is checked
 * here, before native code sees a pointer: the family, the config's numbers, each
 * weight's presence, dtype and shape against config.json.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { CheckpointError } from '../errors';
import type { NativeTensorSpec } from '../native/binding';
import { canonicalSlots, EncoderShape, Family, FAMILIES, slotShape, SUPPORTED_MODEL_TYPES } from './families';
import { readSafetensorsHeader, SafetensorsHeader, TensorInfo } from './safetensors';

/** A validated model directory, ready to hand to the native encoder. */
export interface Checkpoint {
  dir: string;
  family: Family;
  shape: EncoderShape;
  /** the raw config.json */
  config: Record<string, unknown>;
  weightFiles: string[];
  tensors: NativeTensorSpec[];
}

const NATIVE_DTYPES: Record<string, 0 | 1 | 2> = { F32: 0, F16: 1, BF16: 2 };

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CheckpointError(`${file}: cannot read: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new CheckpointError(`${file}: expected a JSON object`);
  return json as Record<string, unknown>;
}

/** Reads config.json and picks the family; throws naming the supported architectures. */
export function readModelConfig(dir: string): { family: Family; shape: EncoderShape; config: Record<string, unknown> } {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw new CheckpointError(`${dir}: no config.json; a Hugging Face model directory needs config.json, model.safetensors and tokenizer.json`);
  const config = readJson(file);
  const modelType = config.model_type;
  const family = FAMILIES.find((f) => typeof modelType === 'string' && f.modelTypes.includes(modelType));
  if (!family) {
    throw new CheckpointError(
      `${file}: model_type ${JSON.stringify(modelType)} is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}`,
    );
  }
  let shape: EncoderShape;
  try {
    shape = family.shape(config, modelType as string);
  } catch (err) {
    throw new CheckpointError(`${file}: ${(err as Error).message.replace(/^config\.json: /, '')}`);
  }
  const ints: (keyof EncoderShape)[] = ['vocabSize', 'hidden', 'layers', 'heads', 'intermediate', 'maxPositions'];
  for (const k of ints) {
    const v = shape[k] as number;
    if (!Number.isInteger(v) || v <= 0) throw new CheckpointError(`${file}: ${k} must be a positive integer, got ${v}`);
  }
  if (shape.hidden % shape.heads !== 0) {
    throw new CheckpointError(`${file}: hidden size ${shape.hidden} is not divisible by the number of attention heads ${shape.heads}`);
  }
  if (shape.activation !== 'gelu') {
    throw new CheckpointError(`${file}: activation ${JSON.stringify(shape.activation)} is not supported; only exact "gelu" (as BERT uses) is`);
  }
  if (config.position_embedding_type !== undefined && config.position_embedding_type !== 'absolute') {
    throw new CheckpointError(`${file}: position_embedding_type ${JSON.stringify(config.position_embedding_type)} is not supported; only "absolute" is`);
  }
  return { family, shape, config };
}

function weightHeaders(dir: string): SafetensorsHeader[] {
  const single = path.join(dir, 'model.safetensors');
  const index = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(single)) return [readSafetensorsHeader(single)];
  if (fs.existsSync(index)) {
    const json = readJson(index);
    const map = json.weight_map;
    if (typeof map !== 'object' || map === null) throw new CheckpointError(`${index}: has no "weight_map" object`);
    const files = [...new Set(Object.values(map as Record<string, unknown>))];
    for (const f of files) {
      if (typeof f !== 'string' || f.includes('/') || f.includes('\\') || f.startsWith('.')) {
        throw new CheckpointError(`${index}: weight_map names an invalid shard file ${JSON.stringify(f)}`);
      }
    }
    return (files as string[]).map((f) => {
      const p = path.join(dir, f);
      if (!fs.existsSync(p)) throw new CheckpointError(`${index}: shard ${f} is missing from ${dir}`);
      return readSafetensorsHeader(p);
    });
  }
  for (const bin of ['pytorch_model.bin', 'model.pt', 'tf_model.h5']) {
    if (fs.existsSync(path.join(dir, bin))) {
      throw new CheckpointError(
        `${dir}: holds ${bin} but no model.safetensors. Convert it once with ` +
          `\`python3 scripts/convert-to-safetensors.py ${dir}\` (needs torch and safetensors).`,
      );
    }
  }
  throw new CheckpointError(`${dir}: no model.safetensors or model.safetensors.index.json`);
}

/** Validates a model directory and resolves every canonical weight slot to a file range. */
export function readCheckpoint(dir: string): Checkpoint {
  const abs = path.resolve(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new CheckpointError(`model directory ${abs} does not exist`);
  }
  if (!st.isDirectory()) throw new CheckpointError(`${abs} is not a directory; pass the folder holding config.json and model.safetensors`);
  const { family, shape, config } = readModelConfig(abs);
  const headers = weightHeaders(abs);
  const lookup = (name: string): [SafetensorsHeader, TensorInfo] | undefined => {
    for (const h of headers) {
      const t = h.tensors.get(name);
      if (t) return [h, t];
    }
    return undefined;
  };
  // the prefix is the one under which the word embeddings are found
  const prefix = family.prefixes.find((p) => family.names('embeddings.word').some((n) => lookup(p + n)));
  if (prefix === undefined) {
    throw new CheckpointError(
      `${headers.map((h) => h.file).join(', ')}: no ${family.names('embeddings.word')[0]} tensor (looked under prefixes ${family.prefixes.map((p) => JSON.stringify(p)).join(', ')}); is this a ${family.name} checkpoint?`,
    );
  }
  const tensors: NativeTensorSpec[] = [];
  for (const slot of canonicalSlots(shape)) {
    const names = family.names(slot).map((n) => prefix + n);
    const found = names.map(lookup).find((x) => x !== undefined);
    if (!found) throw new CheckpointError(`${headers.map((h) => h.file).join(', ')}: missing tensor ${names[0]}`);
    const [h, t] = found;
    const dtype = NATIVE_DTYPES[t.dtype];
    if (dtype === undefined) throw new CheckpointError(`${h.file}: tensor ${t.name} has dtype ${t.dtype}; weights must be F32, F16 or BF16`);
    const want = slotShape(shape, slot);
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new CheckpointError(
        `${h.file}: tensor ${t.name} has shape [${t.shape.join(', ')}] but config.json implies [${want.join(', ')}]`,
      );
    }
    tensors.push({ slot, file: h.file, offset: h.dataStart + t.begin, bytes: t.end - t.begin, dtype, count: want.reduce((a, b) => a * b, 1) });
  }
  return { dir: abs, family, shape, config, weightFiles: headers.map((h) => h.file), tensors };
}

/**
 * A fingerprint of the weights that produce layer `k`: a SHA-256 over config.json's
 * shape, and the bytes of the embeddings and of layers 1..k. Stores are bound to it.
 */
export function weightFingerprint(ckpt: Checkpoint, k: number): string {
  const key = fingerprintKey(ckpt, k);
  const known = key ? fingerprints.get(key) : undefined;
  if (known?.value) return known.value;
  const fp = hashWeights(ckpt, k);
  if (key) fingerprints.set(key, { value: fp, promise: Promise.resolve(fp) });
  return fp;
}

/**
 * The same fingerprint, computed on a worker thread so the event loop stays free while
 * hundreds of megabytes are hashed (about 0.2 s for MiniLM, 1 s for BERT-base here).
 * Results are kept for the process, keyed by the weight files' sizes and mtimes, so a
 * store, a task and a session opened on one model hash it once.
 */
export function weightFingerprintAsync(ckpt: Checkpoint, k: number): Promise<string> {
  const key = fingerprintKey(ckpt, k);
  const known = key ? fingerprints.get(key) : undefined;
  if (known) return known.promise;
  const wanted = tensorsUpTo(ckpt, k).map((t) => ({ slot: t.slot, file: t.file, offset: t.offset, bytes: t.bytes }));
  const promise = new Promise<string>((resolve, reject) => {
    const w = new Worker(HASH_WORKER, { eval: true, workerData: { shape: shapeText(ckpt.shape), tensors: wanted } });
    w.once('message', (m: { hex?: string; error?: string }) => {
      if (m.hex) resolve(m.hex);
      else reject(new CheckpointError(m.error ?? 'hashing the weights failed'));
    });
    w.once('error', (e) => reject(new CheckpointError(`hashing the weights failed: ${e.message}`)));
  });
  const entry: { value?: string; promise: Promise<string> } = { promise };
  promise.then((v) => (entry.value = v), () => key && fingerprints.delete(key));
  if (key) fingerprints.set(key, entry);
  return promise;
}

// A worker thread running hashTensors from its source.
const HASH_WORKER = `
const { parentPort, workerData } = require('worker_threads');
const hashTensors = ${hashTensors.toString()};
try {
  parentPort.postMessage({ hex: hashTensors(workerData.shape, workerData.tensors) });
} catch (e) {
  parentPort.postMessage({ error: String(e && e.message) });
}
`;

const fingerprints = new Map<string, { value?: string; promise: Promise<string> }>();

/** @internal Forgets the fingerprints computed so far (tests: to time a first open). */
export function forgetFingerprints(): void {
  fingerprints.clear();
}

/** The cache key: the model, k, and every weight file's size and mtime (null when a file cannot be stat'ed). */
function fingerprintKey(ckpt: Checkpoint, k: number): string | null {
  try {
    const files = [...new Set(ckpt.tensors.map((t) => t.file))].sort();
    const stats = files.map((f) => {
      const st = fs.statSync(f);
      return `${f}:${st.size}:${st.mtimeMs}:${st.ino}`;
    });
    return `${k}|${JSON.stringify(ckpt.shape)}|${stats.join('|')}`;
  } catch {
    return null;
  }
}

function tensorsUpTo(ckpt: Checkpoint, k: number) {
  return ckpt.tensors.filter((t) => {
    const m = /^layer\.(\d+)\./.exec(t.slot);
    return !m || Number(m[1]) < k;
  });
}

/**
 * The shape as the fingerprint hashes it. Fields added after stores and tasks existed are
 * left out while they hold their "absent" value, so a model's fingerprint (and every store
 * and task bound to it) stays what it was: `relativeBuckets` is hashed only when non-zero.
 */
export function shapeText(shape: EncoderShape): string {
  const { relativeBuckets, ...rest } = shape;
  return JSON.stringify(relativeBuckets ? shape : rest);
}

function hashWeights(ckpt: Checkpoint, k: number): string {
  const wanted = tensorsUpTo(ckpt, k).map((t) => ({ slot: t.slot, file: t.file, offset: t.offset, bytes: t.bytes }));
  try {
    return hashTensors(shapeText(ckpt.shape), wanted);
  } catch (err) {
    throw new CheckpointError((err as Error).message);
  }
}

/**
 * SHA-256 over the shape and the tensors' bytes. Self-contained (it requires what it
 * uses), so a worker thread runs this same function from its source.
 */
function hashTensors(shape: string, tensors: readonly { slot: string; file: string; offset: number; bytes: number }[]): string {
  const nodeFs = require('fs') as typeof import('fs');
  const hash = (require('crypto') as typeof import('crypto')).createHash('sha256');
  hash.update(shape);
  const fds = new Map<string, number>();
  try {
    const buf = Buffer.alloc(1 << 20);
    for (const t of tensors) {
      let fd = fds.get(t.file);
      if (fd === undefined) {
        fd = nodeFs.openSync(t.file, 'r');
        fds.set(t.file, fd);
      }
      hash.update(t.slot);
      for (let done = 0; done < t.bytes;) {
        const n = nodeFs.readSync(fd, buf, 0, Math.min(buf.length, t.bytes - done), t.offset + done);
        if (n <= 0) throw new Error(`${t.file}: unexpected end of file while hashing ${t.slot}`);
        hash.update(buf.subarray(0, n));
        done += n;
      }
    }
  } finally {
    for (const fd of fds.values()) nodeFs.closeSync(fd);
  }
  return hash.digest('hex');
}
