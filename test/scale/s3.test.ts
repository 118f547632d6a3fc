// er store push / pull against a real S3-compatible server on loopback (moto_server):
// a pushed and pulled store equals the original record for record; an interrupted push
// and an interrupted pull resume without moving the done bytes again; a prefix without
// er-store.json (an unfinished push) is refused; a damaged object is caught and no
// store appears under the target name.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand, PutObjectCommand, S3Client, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { Encoder } from '../../src/model/encoder';
import { ActivationStore } from '../../src/store/store';
import { pullStore, pushStore, parseS3Url } from '../../src/scale/s3';
import { makeCorpus } from '../helpers/corpus';
import { FIXTURES } from '../helpers/fixtures';
import { motoAvailable, Running, startMoto } from '../helpers/servers';

process.env.AWS_ACCESS_KEY_ID ??= 'testing';
process.env.AWS_SECRET_ACCESS_KEY ??= 'testing';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-s3-'));
const storeDir = path.join(tmp, 'store');
let moto: Running;
let s3: S3Client;
const MIB = 1 << 20;

function digests(st: ActivationStore): string[] {
  const out: string[] = [];
  for (let i = 0; i < 1000; i++) {
    for (const ref of st.document(`doc-${i}`) ?? []) {
      const t = st.read(ref);
      out.push(crypto.createHash('sha256').update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex'));
    }
  }
  return out;
}

describe.skipIf(!motoAvailable)('er store push / pull through an S3-compatible server', () => {
  beforeAll(async () => {
    moto = await startMoto();
    s3 = new S3Client({ endpoint: moto.url, forcePathStyle: true, region: 'us-east-1' });
    await s3.send(new CreateBucketCommand({ Bucket: 'stores' }));
    // an fp32 store with one segment over the multipart threshold (5 MiB parts)
    const enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
    const st = await ActivationStore.create(storeDir, enc, { layer: 1, dtype: 'fp32', maxLength: 64, stride: 16, maxSegmentBytes: 12 * MIB });
    const corpus = makeCorpus(1000).map((d, i) => ({ ...d, text: `${d.text} ${'protein kinase inhibitor binding '.repeat(2 + (i % 12))}` }));
    await st.encode(corpus, { batchSize: 16 });
    st.close();
    enc.close();
  }, 120_000);
  afterAll(async () => {
    s3?.destroy();
    await moto?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('parses s3:// URLs and refuses others with the expected form', () => {
    expect(parseS3Url('s3://stores/a/b/')).toEqual({ bucket: 'stores', prefix: 'a/b' });
    expect(parseS3Url('s3://stores')).toEqual({ bucket: 'stores', prefix: '' });
    expect(() => parseS3Url('http://x/y')).toThrow(/not an s3:\/\/ URL \(expected s3:\/\/bucket\/prefix/);
  });

  it('push then pull gives the same store, record for record, verified', async () => {
    const orig = await ActivationStore.open(storeDir);
    const bytes = orig.stats().bytes;
    expect(bytes).toBeGreaterThan(5 * MIB);
    const push = await pushStore(storeDir, 's3://stores/runs/one', { endpoint: moto.url, partBytes: 5 * MIB });
    expect(push.bytesMoved).toBe(push.bytesTotal);
    const again = await pushStore(storeDir, 's3://stores/runs/one', { endpoint: moto.url, partBytes: 5 * MIB });
    expect(again.bytesMoved).toBe(0); // everything there already: skipped
    const out = path.join(tmp, 'pulled');
    const pull = await pullStore('s3://stores/runs/one', out, { endpoint: moto.url });
    expect(pull.bytesMoved).toBe(push.bytesTotal);
    expect(fs.existsSync(`${out}.partial`)).toBe(false);
    const got = await ActivationStore.open(out);
    expect((await got.verify()).ok).toBe(true);
    expect(got.stats()).toEqual(orig.stats());
    expect(digests(got)).toEqual(digests(orig));
    got.close();
    orig.close();
  }, 120_000);

  it('an interrupted push resumes: the finished files and multipart parts are not sent again', async () => {
    const ac = new AbortController();
    let seen = 0;
    await expect(pushStore(storeDir, 's3://stores/runs/two', {
      endpoint: moto.url, partBytes: 5 * MIB, signal: ac.signal,
      onProgress: (p) => { seen = p.bytesMoved; if (p.bytesMoved > 6 * MIB) ac.abort(); },
    })).rejects.toThrow(/aborted|AbortError/);
    expect(seen).toBeGreaterThan(6 * MIB);
    await expect(pullStore('s3://stores/runs/two', path.join(tmp, 'none'), { endpoint: moto.url })).rejects.toThrow(/no complete store there.*push did not finish/);
    const r = await pushStore(storeDir, 's3://stores/runs/two', { endpoint: moto.url, partBytes: 5 * MIB });
    expect(r.bytesSkipped).toBeGreaterThanOrEqual(5 * MIB);
    expect(r.bytesMoved + r.bytesSkipped).toBe(r.bytesTotal);
    const out = path.join(tmp, 'pulled-two');
    await pullStore('s3://stores/runs/two', out, { endpoint: moto.url });
    const got = await ActivationStore.open(out);
    expect((await got.verify()).ok).toBe(true);
    got.close();
  }, 120_000);

  it('an interrupted pull leaves nothing at the target and resumes where it stopped', async () => {
    const out = path.join(tmp, 'pulled-three');
    const ac = new AbortController();
    await expect(pullStore('s3://stores/runs/one', out, {
      endpoint: moto.url, partBytes: MIB, signal: ac.signal,
      onProgress: (p) => { if (p.bytesMoved > 3 * MIB) ac.abort(); },
    })).rejects.toThrow(/aborted|AbortError/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(`${out}.partial`)).toBe(true);
    const r = await pullStore('s3://stores/runs/one', out, { endpoint: moto.url, partBytes: MIB });
    expect(r.bytesSkipped).toBeGreaterThan(3 * MIB);
    expect(r.bytesMoved).toBeLessThan(r.bytesTotal - 3 * MIB);
    const got = await ActivationStore.open(out);
    expect((await got.verify()).ok).toBe(true);
    got.close();
  }, 120_000);

  it('a damaged object is caught by its checksum and no store appears at the target', async () => {
    await pushStore(storeDir, 's3://stores/runs/bad', { endpoint: moto.url, partBytes: 5 * MIB });
    const body = fs.readFileSync(path.join(storeDir, 'segments', 'seg-000001.ers'));
    body[4096] ^= 0xff;
    await s3.send(new PutObjectCommand({ Bucket: 'stores', Key: 'runs/bad/segments/seg-000001.ers', Body: body }));
    const out = path.join(tmp, 'pulled-bad');
    await expect(pullStore('s3://stores/runs/bad', out, { endpoint: moto.url })).rejects.toThrow(/seg-000001\.ers: its SHA-256 differs/);
    expect(fs.existsSync(out)).toBe(false);
    await s3.send(new DeleteObjectCommand({ Bucket: 'stores', Key: 'runs/bad/er-store.json' }));
    await expect(pullStore('s3://stores/runs/bad', out, { endpoint: moto.url })).rejects.toThrow(/no complete store there/);
    await expect(pullStore('s3://nobucket/x', path.join(tmp, 'nb'), { endpoint: moto.url })).rejects.toThrow(/NoSuchBucket|no complete store/);
  }, 120_000);
});
