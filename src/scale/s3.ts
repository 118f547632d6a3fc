/**
 * Moving stores through S3-compatible object storage (`er store push` / `er store pull`):
 * AWS S3, MinIO, Ceph RGW, or any server speaking the S3 API (`endpoint`).
 *
 * Push uploads a consistent snapshot of a store: its manifest, a copy of the index taken
 * with `VACUUM INTO` (so a writer may keep appending meanwhile) and each segment up to
 * the length that snapshot commits; large files go up in multipart uploads. Every file's
 * SHA-256 and size are recorded in the object's metadata and in `er-store.json`, which is
 * uploaded last: a prefix without it is an unfinished push, and pull refuses it. Push is
 * resumable: files already there with the same size and SHA-256 are skipped, and the parts
 * of an interrupted multipart upload that match (size and MD5) are kept.
 *
 * Pull downloads into `<store>.partial/` (resuming what an interrupted pull left there,
 * with ranged GETs), checks every file's size and SHA-256 against `er-store.json`, opens
 * the result and verifies every record's CRC32C, and only then renames it to `<store>`:
 * a reader never finds a half-written store at that name.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { segmentFileName } from '../store/format';
import { IndexDatabase } from '../store/sqlite';
import { ActivationStore, StoreError } from '../store/store';
import { fsyncPath, makeDir } from '../util/fs';

/** An `s3://bucket/prefix` location. */
export interface S3Location {
  bucket: string;
  /** the key prefix, without a trailing slash ('' for the bucket's root) */
  prefix: string;
}

/** Options of pushStore / pullStore. */
export interface TransferOptions {
  /** an S3-compatible endpoint (MinIO, Ceph RGW, moto); AWS S3 when absent */
  endpoint?: string;
  /** default: AWS_REGION, else us-east-1 */
  region?: string;
  /** multipart part size for large files (at least 5 MiB; default 16 MiB) */
  partBytes?: number;
  /** called as bytes move */
  onProgress?: (p: TransferProgress) => void;
  /** aborts the transfer (a later call resumes it) */
  signal?: AbortSignal;
}

/** Where a transfer stands. */
export interface TransferProgress {
  file: string;
  filesDone: number;
  files: number;
  /** bytes moved over the network in this call */
  bytesMoved: number;
  /** bytes of the whole store, skipped ones included */
  bytesTotal: number;
  /** bytes already there (skipped or resumed) */
  bytesSkipped: number;
}

/** One file of a pushed store, as `er-store.json` lists it. */
export interface PushedFile {
  /** path inside the store, with forward slashes */
  name: string;
  bytes: number;
  sha256: string;
}

/** The `er-store.json` object: what a complete push holds. */
export interface PushedStore {
  format: 'er-store-push/1';
  identityHash: string;
  records: number;
  docs: number;
  pushedAt: string;
  files: PushedFile[];
}

/** What pushStore / pullStore did. */
export interface TransferResult {
  url: string;
  files: number;
  bytesTotal: number;
  bytesMoved: number;
  bytesSkipped: number;
  seconds: number;
}

const PUSH_MANIFEST = 'er-store.json';
const MIB = 1 << 20;

/** Parses `s3://bucket/some/prefix`. */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(String(url));
  if (!m) throw new TypeError(`${JSON.stringify(url)} is not an s3:// URL (expected s3://bucket/prefix; bucket names are 3-63 lowercase letters, digits, dots and hyphens)`);
  return { bucket: m[1], prefix: (m[2] ?? '').replace(/\/+$/, '') };
}

type Sdk = typeof import('@aws-sdk/client-s3');

function sdk(): Sdk {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('@aws-sdk/client-s3') as Sdk;
  } catch {
    throw new Error('moving stores through S3 needs the package @aws-sdk/client-s3: npm install @aws-sdk/client-s3');
  }
}

function client(opts: TransferOptions): InstanceType<Sdk['S3Client']> {
  const { S3Client } = sdk();
  return new S3Client({
    region: opts.region ?? process.env.AWS_REGION ?? 'us-east-1',
    ...(opts.endpoint ? { endpoint: opts.endpoint, forcePathStyle: true } : {}),
    // checksums are ours (SHA-256 per file, MD5 per part, CRC32C per record); servers
    // such as older MinIO or moto need not speak the SDK's flexible checksums
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

function keyOf(loc: S3Location, name: string): string {
  return loc.prefix ? `${loc.prefix}/${name}` : name;
}

function s3Error(err: unknown, what: string, url: string): Error {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  if (e?.name === 'AbortError') return err as Error;
  const code = e?.name ?? 'error';
  const hint = code === 'NoSuchBucket' ? ' (create the bucket first)' :
    code === 'CredentialsProviderError' ? ' (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile)' :
    /ECONNREFUSED|ENOTFOUND/.test(String(e?.message)) ? ' (is the endpoint right and the server up?)' : '';
  return new StoreError(`${url}: ${what} failed: ${code}: ${e?.message ?? String(err)}${hint}`);
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) {
    const e = new Error('the transfer was aborted; run it again to resume');
    e.name = 'AbortError';
    throw e;
  }
}

/** SHA-256 of a file's first `bytes` bytes (and the MD5 of each part, for multipart resume). */
function hashFile(file: string, bytes: number, partBytes: number): { sha256: string; partMd5: string[] } {
  const sha = createHash('sha256');
  const partMd5: string[] = [];
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(Math.min(partBytes, Math.max(bytes, 1)));
  try {
    for (let off = 0; off < bytes; off += partBytes) {
      const n = Math.min(partBytes, bytes - off);
      const md5 = createHash('md5');
      for (let got = 0; got < n;) {
        const r = fs.readSync(fd, buf, 0, Math.min(buf.length, n - got), off + got);
        if (r <= 0) throw new StoreError(`${file}: ends before byte ${off + got} of ${bytes}`);
        sha.update(buf.subarray(0, r));
        md5.update(buf.subarray(0, r));
        got += r;
      }
      partMd5.push(md5.digest('hex'));
    }
  } finally {
    fs.closeSync(fd);
  }
  return { sha256: sha.digest('hex'), partMd5 };
}

function readRange(file: string, start: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.allocUnsafe(length);
    for (let got = 0; got < length;) {
      const r = fs.readSync(fd, b, got, length - got, start + got);
      if (r <= 0) throw new StoreError(`${file}: ends before byte ${start + got}`);
      got += r;
    }
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** A consistent snapshot of a store to upload: the files, their lengths, the index copy. */
function snapshot(storeDir: string, tmp: string): { files: { name: string; src: string; bytes: number }[]; identityHash: string; records: number; docs: number } {
  const manifestFile = path.join(storeDir, 'manifest.json');
  if (!fs.existsSync(manifestFile)) throw new StoreError(`${storeDir}: not a store (no manifest.json)`);
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as { identityHash: string };
  const indexCopy = path.join(tmp, 'index.sqlite');
  const db = new IndexDatabase(path.join(storeDir, 'index.sqlite'), { readonly: true });
  try {
    db.pragma('busy_timeout = 10000');
    db.exec(`VACUUM INTO '${indexCopy.replace(/'/g, "''")}'`);
  } finally {
    db.close();
  }
  const snap = new IndexDatabase(indexCopy, { readonly: true });
  try {
    const segs = snap.prepare('SELECT segment, committed FROM segments ORDER BY segment').all() as { segment: number; committed: number }[];
    const records = snap.prepare('SELECT count(*) FROM records').pluck().get() as number;
    const docs = snap.prepare('SELECT count(*) FROM docs').pluck().get() as number;
    const files = [
      { name: 'manifest.json', src: manifestFile, bytes: fs.statSync(manifestFile).size },
      { name: 'index.sqlite', src: indexCopy, bytes: fs.statSync(indexCopy).size },
      ...segs.map((s) => {
        const name = segmentFileName(s.segment);
        return { name, src: path.join(storeDir, name), bytes: s.committed };
      }),
    ];
    return { files, identityHash: manifest.identityHash, records, docs };
  } finally {
    snap.close();
  }
}

/**
 * Uploads the store at `storeDir` to `url` (s3://bucket/prefix), resuming an earlier,
 * interrupted push of the same store; `er-store.json` goes last.
 */
export async function pushStore(storeDir: string, url: string, opts: TransferOptions = {}): Promise<TransferResult> {
  const t0 = Date.now();
  const loc = parseS3Url(url);
  const partBytes = opts.partBytes ?? 16 * MIB;
  if (!Number.isInteger(partBytes) || partBytes < 5 * MIB) throw new RangeError(`partBytes must be an integer of at least 5 MiB, got ${partBytes}`);
  const s3 = client(opts);
  const S = sdk();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-push-'));
  try {
    const snap = snapshot(path.resolve(storeDir), tmp);
    const bytesTotal = snap.files.reduce((a, f) => a + f.bytes, 0);
    const progress: TransferProgress = { file: '', filesDone: 0, files: snap.files.length, bytesMoved: 0, bytesSkipped: 0, bytesTotal };
    const listed: PushedFile[] = [];
    for (const f of snap.files) {
      checkAbort(opts.signal);
      progress.file = f.name;
      const { sha256, partMd5 } = hashFile(f.src, f.bytes, partBytes);
      listed.push({ name: f.name, bytes: f.bytes, sha256 });
      const Key = keyOf(loc, f.name);
      // already there, whole and equal?
      try {
        const h = await s3.send(new S.HeadObjectCommand({ Bucket: loc.bucket, Key }));
        if (h.ContentLength === f.bytes && h.Metadata?.['er-sha256'] === sha256) {
          progress.bytesSkipped += f.bytes;
          progress.filesDone++;
          opts.onProgress?.({ ...progress });
          continue;
        }
      } catch (err) {
        const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (e.name !== 'NotFound' && e.$metadata?.httpStatusCode !== 404) throw s3Error(err, `HEAD ${Key}`, url);
      }
      const Metadata = { 'er-sha256': sha256 };
      try {
        if (f.bytes <= partBytes) {
          await s3.send(new S.PutObjectCommand({ Bucket: loc.bucket, Key, Body: readRange(f.src, 0, f.bytes), Metadata }), { abortSignal: opts.signal });
          progress.bytesMoved += f.bytes;
        } else {
          // resume the newest unfinished upload of this key with the same content, else start one
          let uploadId: string | undefined;
          const have = new Map<number, { size: number; etag: string }>();
          const ups = await s3.send(new S.ListMultipartUploadsCommand({ Bucket: loc.bucket, Prefix: Key }));
          for (const u of (ups.Uploads ?? []).filter((x) => x.Key === Key).sort((a, b) => +(b.Initiated ?? 0) - +(a.Initiated ?? 0))) {
            const parts = await s3.send(new S.ListPartsCommand({ Bucket: loc.bucket, Key, UploadId: u.UploadId! }));
            const ok = (parts.Parts ?? []).filter((p) => p.PartNumber && p.ETag?.replace(/"/g, '') === partMd5[p.PartNumber - 1]);
            uploadId = u.UploadId;
            for (const p of ok) have.set(p.PartNumber!, { size: p.Size ?? 0, etag: p.ETag! });
            break;
          }
          if (!uploadId) uploadId = (await s3.send(new S.CreateMultipartUploadCommand({ Bucket: loc.bucket, Key, Metadata }))).UploadId!;
          const done: { PartNumber: number; ETag: string }[] = [];
          for (let i = 0; i * partBytes < f.bytes; i++) {
            checkAbort(opts.signal);
            const n = Math.min(partBytes, f.bytes - i * partBytes);
            const prior = have.get(i + 1);
            if (prior && prior.size === n) {
              done.push({ PartNumber: i + 1, ETag: prior.etag });
              progress.bytesSkipped += n;
            } else {
              const r = await s3.send(new S.UploadPartCommand({ Bucket: loc.bucket, Key, UploadId: uploadId, PartNumber: i + 1, Body: readRange(f.src, i * partBytes, n) }), { abortSignal: opts.signal });
              done.push({ PartNumber: i + 1, ETag: r.ETag! });
              progress.bytesMoved += n;
            }
            opts.onProgress?.({ ...progress });
          }
          await s3.send(new S.CompleteMultipartUploadCommand({ Bucket: loc.bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: done } }));
        }
      } catch (err) {
        throw s3Error(err, `upload of ${Key}`, url);
      }
      progress.filesDone++;
      opts.onProgress?.({ ...progress });
    }
    const pushed: PushedStore = { format: 'er-store-push/1', identityHash: snap.identityHash, records: snap.records, docs: snap.docs, pushedAt: new Date().toISOString(), files: listed };
    checkAbort(opts.signal);
    try {
      await s3.send(new S.PutObjectCommand({ Bucket: loc.bucket, Key: keyOf(loc, PUSH_MANIFEST), Body: JSON.stringify(pushed, null, 2) + '\n', ContentType: 'application/json' }));
    } catch (err) {
      throw s3Error(err, `upload of ${PUSH_MANIFEST}`, url);
    }
    return { url, files: listed.length, bytesTotal, bytesMoved: progress.bytesMoved, bytesSkipped: progress.bytesSkipped, seconds: (Date.now() - t0) / 1000 };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    s3.destroy();
  }
}

async function bodyBytes(body: unknown): Promise<Buffer> {
  const b = body as { transformToByteArray?: () => Promise<Uint8Array> };
  if (!b?.transformToByteArray) throw new StoreError('the server returned no body');
  return Buffer.from(await b.transformToByteArray());
}

function sha256Of(file: string): string {
  return hashFile(file, fs.statSync(file).size, 64 * MIB).sha256;
}

/**
 * Downloads the store pushed to `url` into `storeDir` (which must not exist): into
 * `<storeDir>.partial/` first, resuming what an interrupted pull left there; every file
 * checked against `er-store.json`, every record's CRC32C verified; then renamed.
 */
export async function pullStore(url: string, storeDir: string, opts: TransferOptions = {}): Promise<TransferResult> {
  const t0 = Date.now();
  const loc = parseS3Url(url);
  const target = path.resolve(storeDir);
  if (fs.existsSync(target)) throw new StoreError(`${target} exists; pull into a new directory (or remove it first)`);
  const partial = `${target}.partial`;
  const s3 = client(opts);
  const S = sdk();
  try {
    let pushed: PushedStore;
    let manifestText: string;
    try {
      const r = await s3.send(new S.GetObjectCommand({ Bucket: loc.bucket, Key: keyOf(loc, PUSH_MANIFEST) }), { abortSignal: opts.signal });
      manifestText = (await bodyBytes(r.Body)).toString('utf8');
    } catch (err) {
      const e = err as { name?: string };
      if (e.name === 'NoSuchKey') throw new StoreError(`${url}: no complete store there (${PUSH_MANIFEST} is missing: nothing was pushed, or the push did not finish; run er store push again)`);
      throw s3Error(err, `GET ${PUSH_MANIFEST}`, url);
    }
    try {
      pushed = JSON.parse(manifestText) as PushedStore;
    } catch {
      throw new StoreError(`${url}/${PUSH_MANIFEST}: not JSON`);
    }
    if (pushed.format !== 'er-store-push/1' || !Array.isArray(pushed.files)) throw new StoreError(`${url}/${PUSH_MANIFEST}: not a store push manifest (format ${JSON.stringify(pushed.format)})`);
    for (const f of pushed.files) {
      if (typeof f.name !== 'string' || !/^(manifest\.json|index\.sqlite|segments\/seg-\d{6,10}\.ers)$/.test(f.name) || !Number.isSafeInteger(f.bytes) || f.bytes < 0 || !/^[0-9a-f]{64}$/.test(f.sha256)) {
        throw new StoreError(`${url}/${PUSH_MANIFEST}: bad file entry ${JSON.stringify(f).slice(0, 120)}`);
      }
    }
    // a partial folder from a pull of another push is started over
    const stateFile = path.join(partial, '.er-pull.json');
    const pushId = createHash('sha256').update(manifestText).digest('hex');
    if (fs.existsSync(partial)) {
      let same = false;
      try {
        same = (JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { pushId?: string }).pushId === pushId;
      } catch {
        same = false;
      }
      if (!same) fs.rmSync(partial, { recursive: true, force: true });
    }
    makeDir(path.join(partial, 'segments'));
    fs.writeFileSync(stateFile, JSON.stringify({ url, pushId }) + '\n');
    const bytesTotal = pushed.files.reduce((a, f) => a + f.bytes, 0);
    const progress: TransferProgress = { file: '', filesDone: 0, files: pushed.files.length, bytesMoved: 0, bytesSkipped: 0, bytesTotal };
    const chunk = opts.partBytes ?? 16 * MIB;
    for (const f of pushed.files) {
      checkAbort(opts.signal);
      progress.file = f.name;
      const local = path.join(partial, f.name);
      for (let attempt = 0; ; attempt++) {
        let have = fs.existsSync(local) ? fs.statSync(local).size : 0;
        if (have > f.bytes) {
          fs.rmSync(local);
          have = 0;
        }
        progress.bytesSkipped += have;
        const fd = fs.openSync(local, have ? 'r+' : 'w');
        try {
          for (let off = have; off < f.bytes; off += chunk) {
            checkAbort(opts.signal);
            const end = Math.min(f.bytes, off + chunk) - 1;
            let data: Buffer;
            try {
              const r = await s3.send(new S.GetObjectCommand({ Bucket: loc.bucket, Key: keyOf(loc, f.name), Range: `bytes=${off}-${end}` }), { abortSignal: opts.signal });
              data = await bodyBytes(r.Body);
            } catch (err) {
              throw s3Error(err, `GET ${keyOf(loc, f.name)}`, url);
            }
            if (data.length !== end - off + 1) throw new StoreError(`${url}/${f.name}: the server sent ${data.length} bytes for bytes ${off}-${end}`);
            fs.writeSync(fd, data, 0, data.length, off);
            progress.bytesMoved += data.length;
            opts.onProgress?.({ ...progress });
          }
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        if (sha256Of(local) === f.sha256) break;
        fs.rmSync(local);
        if (attempt >= 1) throw new StoreError(`${url}/${f.name}: its SHA-256 differs from ${PUSH_MANIFEST}'s after two downloads; the pushed store is damaged (push it again)`);
      }
      progress.filesDone++;
      opts.onProgress?.({ ...progress });
    }
    // the store as a whole: identity, every record's checksum, the index against the push
    fs.rmSync(stateFile, { force: true });
    const st = await ActivationStore.open(partial);
    try {
      if (st.manifest.identityHash !== pushed.identityHash) throw new StoreError(`${url}: manifest.json's identity differs from ${PUSH_MANIFEST}'s`);
      const v = await st.verify();
      if (!v.ok) {
        const first = [...v.indexProblems, ...v.segments.flatMap((x) => x.problems)].slice(0, 3).join('; ');
        throw new StoreError(`${url}: the pulled store fails verification (${first}); left in ${partial} for a look`);
      }
      if (v.records !== pushed.records || v.docs !== pushed.docs) throw new StoreError(`${url}: ${v.records} records and ${v.docs} texts arrived, ${PUSH_MANIFEST} lists ${pushed.records} and ${pushed.docs}`);
    } finally {
      st.close();
    }
    for (const f of fs.readdirSync(partial)) if (/^index\.sqlite-(wal|shm)$|^LOCK$/.test(f)) fs.rmSync(path.join(partial, f), { force: true });
    fs.renameSync(partial, target);
    fsyncPath(path.dirname(target));
    return { url, files: pushed.files.length, bytesTotal, bytesMoved: progress.bytesMoved, bytesSkipped: progress.bytesSkipped, seconds: (Date.now() - t0) / 1000 };
  } finally {
    s3.destroy();
  }
}
