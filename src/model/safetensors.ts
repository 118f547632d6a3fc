/**
 * Reader for the safetensors format: an 8-byte little-endian header length n, a
 * JSON header of n bytes, then the tensor data. Every header is validated before
 * any byte of data is trusted, against all of the format's invariants: the header is
 * UTF-8 JSON of exactly n bytes, beginning with `{` (trailing spaces allowed); known
 * dtypes and integer shapes; byte counts that match dtype x shape; and the tensors'
 * `data_offsets` tile the data section exactly, from byte 0 to the end of the file,
 * with no overlap and no gap. A header length that is off by even one byte therefore
 * never passes (the tensors would no longer end where the file does).
 * The data itself is memory-mapped by the native side, never copied here.
 */
import * as fs from 'fs';
import { CheckpointError } from '../errors';

/** Bytes per element of each safetensors dtype. */
export const DTYPE_SIZES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

/** Largest header accepted (the format's own limit is 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** byte offsets relative to the start of the data region */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** absolute offset of the data region (8 + header length) */
  dataStart: number;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function fail(file: string, what: string): never {
  throw new CheckpointError(`${file}: invalid safetensors file: ${what}`);
}

/**
 * Validates a header given its raw bytes (everything after the 8-byte length) and
 * the total file size. Pure: no I/O, so it can be fuzzed.
 */
export function parseSafetensorsHeader(file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  if (dataStart > fileSize) fail(file, `header of ${headerBytes.length} bytes is longer than the file (${fileSize} bytes)`);
  const dataSize = fileSize - dataStart;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    fail(file, `header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(file, 'header is not a JSON object');
  if (headerBytes.length === 0 || headerBytes[0] !== 0x7b) {
    fail(file, `the header (${headerBytes.length} bytes) does not begin with "{"; the header length may be wrong or this is not a safetensors file`);
  }
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(file, '__metadata__ is not an object');
      metadata = {};
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(file, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(file, `entry "${name}" is not an object`);
    const entry = raw as Record<string, unknown>;
    const dtype = entry.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_SIZES)) {
      fail(file, `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_SIZES).join(', ')})`);
    }
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(file, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)} (expected an array of non-negative integers)`);
    }
    const offsets = entry.data_offsets;
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((d) => Number.isSafeInteger(d) && d >= 0) || offsets[1] < offsets[0]
    ) {
      fail(file, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataSize) {
      fail(file, `tensor "${name}" data [${begin}, ${end}) runs past the end of the data (${dataSize} bytes); the file may be truncated`);
    }
    let count = 1;
    for (const d of shape as number[]) count *= d;
    const expected = count * DTYPE_SIZES[dtype];
    if (!Number.isSafeInteger(expected) || end - begin !== expected) {
      fail(file, `tensor "${name}" spans ${end - begin} bytes but ${dtype}[${(shape as number[]).join(', ')}] needs ${expected}`);
    }
    tensors.set(name, { name, dtype, shape: [...(shape as number[])], begin, end });
  }
  // the tensors tile the data section: sorted by offset, each begins where the previous
  // one ended, the first at 0 and the last at the end of the file
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: TensorInfo | null = null;
  for (const t of sorted) {
    if (t.begin < pos) fail(file, `tensors "${prev!.name}" and "${t.name}" overlap`);
    if (t.begin > pos) {
      fail(file, `bytes [${pos}, ${t.begin}) of the data belong to no tensor (before "${t.name}"); the data_offsets must cover the data section without gaps`);
    }
    pos = t.end;
    prev = t;
  }
  if (pos !== dataSize) {
    fail(file, `the tensors cover ${pos} bytes but the data section after the ${headerBytes.length}-byte header has ${dataSize}; the header length is wrong or the file has trailing bytes`);
  }
  return { file, fileSize, dataStart, tensors, metadata };
}

/** Reads and validates the header of a safetensors file (the data is not read). */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw new CheckpointError(`${file}: cannot open: ${(err as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) fail(file, `file is ${size} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    if (n > BigInt(size - 8)) fail(file, `header length ${n} is longer than the rest of the file (${size - 8} bytes); the file may be truncated`);
    const header = Buffer.alloc(Number(n));
    const got = fs.readSync(fd, header, 0, header.length, 8);
    if (got !== header.length) fail(file, `could read only ${got} of ${header.length} header bytes`);
    return parseSafetensorsHeader(file, header, size);
  } finally {
    fs.closeSync(fd);
  }
}

/** A tensor read fully into memory (for fixtures and small files, not for weights). */
export interface LoadedTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | Int32Array | Float64Array | BigInt64Array | Uint8Array;
}

/** Reads every tensor of a small safetensors file into typed arrays (F32, F64, I32, I64, U8). */
export function readSafetensors(file: string, contents?: Buffer): Map<string, LoadedTensor> {
  const header = readSafetensorsHeader(file);
  const buf = contents ?? fs.readFileSync(file);
  if (buf.length !== header.fileSize) throw new CheckpointError(`${file}: changed while it was read (${buf.length} bytes, the header was read from ${header.fileSize})`);
  const out = new Map<string, LoadedTensor>();
  for (const t of header.tensors.values()) {
    const bytes = buf.subarray(header.dataStart + t.begin, header.dataStart + t.end);
    const copy = new Uint8Array(bytes).buffer; // aligned copy
    let data: LoadedTensor['data'];
    switch (t.dtype) {
      case 'F32': data = new Float32Array(copy); break;
      case 'F64': data = new Float64Array(copy); break;
      case 'I32': data = new Int32Array(copy); break;
      case 'I64': data = new BigInt64Array(copy); break;
      case 'U8': case 'BOOL': data = new Uint8Array(copy); break;
      default: throw new CheckpointError(`${file}: tensor "${t.name}" has dtype ${t.dtype}, which readSafetensors does not load`);
    }
    out.set(t.name, { dtype: t.dtype, shape: t.shape, data });
  }
  return out;
}

/** A tensor to write: float32 or int32 data with its shape. */
export interface TensorToWrite {
  name: string;
  data: Float32Array | Int32Array;
  shape: number[];
}

/**
 * Writes a safetensors file (atomically: a temporary file renamed into place).
 * The header is padded with spaces to a multiple of 8 bytes so the data is aligned.
 */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new RangeError(`tensor ${t.name}: ${t.data.length} values do not fill shape [${t.shape.join(', ')}]`);
    const bytes = t.data.byteLength;
    header[t.name] = { dtype: t.data instanceof Float32Array ? 'F32' : 'I32', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, head);
    fs.writeSync(fd, Buffer.from(json));
    for (const t of tensors) fs.writeSync(fd, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
