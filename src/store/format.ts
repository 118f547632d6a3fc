/**
 * The activation store's format, TypeScript side. The byte layout of segment files
 * is defined in native/store/format.h (FORMAT VERSION 1); this module mirrors its
 * constants and defines the manifest and the SQLite index schema.
 */
import { createHash } from 'crypto';

/** Version of the on-disk format (manifest, index schema and segment layout together). */
export const FORMAT_VERSION = 1;

/** Stored value types and their codec numbers in record headers. */
export const CODECS = { fp32: 0, fp16: 1 } as const;
/** How a store keeps activations: `fp16` (half the bytes) or `fp32` (exact). */
export type StoreDtype = keyof typeof CODECS;

/** Bytes per stored value. */
export const DTYPE_BYTES: Record<StoreDtype, number> = { fp32: 4, fp16: 2 };

/** Record header and alignment (native/store/format.h). */
export const RECORD_HEADER_BYTES = 64;
export const RECORD_ALIGN = 64;
export const SEGMENT_HEADER_BYTES = 64;

/** Segments rotate past this size. */
export const DEFAULT_MAX_SEGMENT_BYTES = 1 << 30;

/** What produced the activations. A store refuses any other producer. */
export interface StoreIdentity {
  formatVersion: number;
  /** SHA-256 over the model's shape, its embeddings and layers 1..layer */
  modelFingerprint: string;
  family: string;
  hidden: number;
  layer: number;
  dtype: StoreDtype;
  /** SHA-256 of tokenizer.json (or vocab.txt) */
  tokenizerFingerprint: string;
  maxLength: number;
  stride: number;
}

/** A store's manifest.json: what produced it (its identity and hash), from which model, when. */
export interface Manifest {
  identity: StoreIdentity;
  /** SHA-256 of the canonical identity JSON; keys and segment headers derive from it */
  identityHash: string;
  /** informational: where the model was loaded from when the store was created */
  modelDir: string;
  createdAt: string;
}

/** Identity fields in a fixed order, so the hash does not depend on key order. */
const IDENTITY_FIELDS: (keyof StoreIdentity)[] = [
  'formatVersion', 'modelFingerprint', 'family', 'hidden', 'layer', 'dtype', 'tokenizerFingerprint', 'maxLength', 'stride',
];

export function identityHash(id: StoreIdentity): string {
  const canonical = JSON.stringify(IDENTITY_FIELDS.map((k) => [k, id[k]]));
  return createHash('sha256').update(canonical).digest('hex');
}

/** A segment file's path inside its store: `segments/seg-NNNNNN.ers` (six digits at least). */
export function segmentFileName(segment: number): string {
  return `segments/seg-${String(segment).padStart(6, '0')}.ers`;
}

/** The identity bytes written into segment headers (first 16 bytes of the identity hash). */
export function segmentIdentity(hash: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hash, 'hex').subarray(0, 16));
}

/**
 * A window's key: SHA-256 of the identity hash, the number of tokens, the token ids
 * and the token type ids (int32 little endian). Same window, same producer: same key.
 */
export function windowKey(idHash: string, ids: readonly number[], typeIds: readonly number[]): Buffer {
  const buf = Buffer.alloc(4 + 8 * ids.length);
  buf.writeUInt32LE(ids.length, 0);
  for (let i = 0; i < ids.length; i++) {
    buf.writeInt32LE(ids[i], 4 + 4 * i);
    buf.writeInt32LE(typeIds[i] ?? 0, 4 + 4 * (ids.length + i));
  }
  return createHash('sha256').update(Buffer.from(idHash, 'hex')).update(buf).digest();
}

/** Content hash of a document (text and optional pair). */
export function contentHash(text: string, pair?: string): Buffer {
  const h = createHash('sha256').update(text);
  if (pair !== undefined) h.update('\u0000pair\u0000').update(pair);
  return h.digest();
}

/** SQLite schema of index.sqlite (format version 1). */
export const INDEX_SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (segment INTEGER PRIMARY KEY, committed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  key BLOB PRIMARY KEY,          -- 32-byte window key
  segment INTEGER NOT NULL,
  offset INTEGER NOT NULL,       -- of the record header
  bytes INTEGER NOT NULL,        -- header + payload + padding
  tokens INTEGER NOT NULL,
  crc INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS docs (
  id TEXT PRIMARY KEY,           -- the user's id
  content BLOB NOT NULL,         -- SHA-256 of the text (and pair)
  windows BLOB NOT NULL,         -- the window keys, 32 bytes each, in order
  tokens INTEGER NOT NULL        -- tokens over all windows
) WITHOUT ROWID;
`;
