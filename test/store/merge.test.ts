// Merging shard stores into one without re-encoding: the merged store verifies, holds
// every record of a single-process encode of the same texts bit for bit, keeps a
// window or document that several shards hold once, takes new records afterwards,
// refuses shards of another identity or that fail verification, and survives a merge
// interrupted before its index commit.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { ActivationStore, StoreError } from '../../src/store/store';
import { makeCorpus } from '../helpers/corpus';
import { FIXTURES } from '../helpers/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-merge-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const corpus = makeCorpus(80);
const settings = { layer: 1, dtype: 'fp16' as const, maxLength: 24, stride: 6, maxSegmentBytes: 16 << 10 };
let enc: Encoder;

async function encodeInto(dir: string, items: { id: string; text: string }[], batchSize = 8): Promise<void> {
  const st = await ActivationStore.create(dir, enc, settings);
  await st.encode(items, { batchSize });
  st.close();
}

function digest(st: ActivationStore, id: string): string[] {
  return st.document(id)!.map((ref) => {
    const t = st.read(ref);
    return crypto.createHash('sha256').update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
  });
}

beforeAll(async () => {
  enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
  await encodeInto(path.join(tmp, 'single'), corpus);
  // three shards cut at other places than the single run's batches, two of them overlapping
  await encodeInto(path.join(tmp, 's1'), corpus.slice(0, 30), 5);
  await encodeInto(path.join(tmp, 's2'), corpus.slice(25, 60), 8);
  await encodeInto(path.join(tmp, 's3'), corpus.slice(60), 3);
});
afterAll(() => enc.close());

describe('ActivationStore.merge', () => {
  it('the merged store verifies and equals a single-process encode record for record', async () => {
    const dir = path.join(tmp, 'merged');
    const hashDir = (d: string) => fs.readdirSync(path.join(d, 'segments')).map((f) => crypto.createHash('sha256').update(fs.readFileSync(path.join(d, 'segments', f))).digest('hex')).join();
    const shardBefore = ['s1', 's2', 's3'].map((s) => hashDir(path.join(tmp, s)));
    const r = await ActivationStore.merge(dir, ['s1', 's2', 's3'].map((s) => path.join(tmp, s)));
    const single = await ActivationStore.open(path.join(tmp, 'single'));
    const merged = await ActivationStore.open(dir);
    expect((await merged.verify()).ok).toBe(true);
    expect(merged.stats().records).toBe(single.stats().records);
    expect(merged.stats().docs).toBe(corpus.length);
    expect(r.docsAdded).toBe(corpus.length);
    expect(r.docsDuplicate).toBe(5); // doc-25..doc-29 are in s1 and s2
    expect(r.recordsAdded).toBe(single.stats().records);
    expect(r.recordsDuplicate).toBeGreaterThanOrEqual(5);
    expect(r.segments).toBeGreaterThan(3); // small segments: the shards have several each
    for (const { id } of corpus) expect(digest(merged, id)).toEqual(digest(single, id));
    expect(merged.identity).toEqual(single.identity);
    // the shards are read, never changed
    expect(['s1', 's2', 's3'].map((s) => hashDir(path.join(tmp, s)))).toEqual(shardBefore);
    single.close();
    merged.close();
  });

  it('a merged store takes new records, and a second merge adds to it', async () => {
    const dir = path.join(tmp, 'grow');
    await ActivationStore.merge(dir, [path.join(tmp, 's1')]);
    const st = await ActivationStore.open(dir, { encoder: enc, write: true, maxSegmentBytes: 16 << 10 });
    const p = await st.encode(corpus.slice(28, 40), { batchSize: 4 });
    expect(p.textsSkipped).toBe(2);
    st.close();
    const r = await ActivationStore.merge(dir, [path.join(tmp, 's2'), path.join(tmp, 's3')]);
    expect(r.docsDuplicate).toBe(15); // doc-25..doc-39 were in the store already (s1 and the encode above)
    const merged = await ActivationStore.open(dir);
    const single = await ActivationStore.open(path.join(tmp, 'single'));
    expect((await merged.verify()).ok).toBe(true);
    for (const { id } of corpus) expect(digest(merged, id)).toEqual(digest(single, id));
    merged.close();
    single.close();
  });

  it('shards with disjoint segment ranges are hard-linked in, except the store\'s last segment; the result still equals the single encode', async () => {
    const parts = [corpus.slice(0, 30), corpus.slice(30, 55), corpus.slice(55)];
    const dirs = parts.map((_, i) => path.join(tmp, `ranged-${i}`));
    for (const [i, items] of parts.entries()) {
      const st = await ActivationStore.create(dirs[i], enc, { ...settings, firstSegment: 1 + (i + 1) * 10_000 });
      await st.encode(items, { batchSize: 8 });
      st.close();
    }
    const firstSeg = path.join(dirs[0], 'segments', 'seg-010001.ers');
    const inode = fs.statSync(firstSeg).ino;
    await expect(ActivationStore.merge(path.join(tmp, 'linked'), dirs, { link: true })).rejects.toThrow(/link needs removeShards/);
    const r = await ActivationStore.merge(path.join(tmp, 'linked'), dirs, { link: true, removeShards: true });
    expect(r.segments).toBeGreaterThan(3);
    expect(r.linked).toBe(r.segments - 1); // all but the last, which the store will append to
    const linkedFile = path.join(tmp, 'linked', 'segments', 'seg-010001.ers');
    expect(fs.statSync(linkedFile).ino).toBe(inode);
    for (const d of dirs) expect(fs.existsSync(d)).toBe(false);
    const merged = await ActivationStore.open(path.join(tmp, 'linked'));
    const single = await ActivationStore.open(path.join(tmp, 'single'));
    expect((await merged.verify()).ok).toBe(true);
    for (const { id } of corpus) expect(digest(merged, id)).toEqual(digest(single, id));
    const last = merged.stats().lastSegment;
    merged.close();
    single.close();
    expect(fs.statSync(path.join(tmp, 'linked', 'segments', `seg-${String(last).padStart(6, '0')}.ers`)).nlink).toBe(1);
    // appending afterwards goes into the store's own last segment
    const w = await ActivationStore.open(path.join(tmp, 'linked'), { encoder: enc, write: true, maxSegmentBytes: 16 << 10 });
    await w.encode([{ id: 'after', text: 'a text added after the merge' }]);
    w.close();
    const again = await ActivationStore.open(path.join(tmp, 'linked'));
    expect((await again.verify()).ok).toBe(true);
    again.close();
  });

  it('refuses a shard of another identity, one that fails verification, and the target itself', async () => {
    const other = path.join(tmp, 'other-layer');
    const st = await ActivationStore.create(other, enc, { ...settings, layer: 2 });
    await st.encode(corpus.slice(0, 3));
    st.close();
    await expect(ActivationStore.merge(path.join(tmp, 'bad1'), [path.join(tmp, 's1'), other])).rejects.toThrow(/layer|identity differs/);
    expect(fs.existsSync(path.join(tmp, 'bad1'))).toBe(false);

    const damaged = path.join(tmp, 'damaged');
    fs.cpSync(path.join(tmp, 's3'), damaged, { recursive: true });
    const seg = path.join(damaged, 'segments', 'seg-000001.ers');
    const fd = fs.openSync(seg, 'r+');
    fs.writeSync(fd, Buffer.from([0xff, 0xee]), 0, 2, 200); // inside the first record's payload
    fs.closeSync(fd);
    await expect(ActivationStore.merge(path.join(tmp, 'bad2'), [damaged])).rejects.toThrow(StoreError);
    await expect(ActivationStore.merge(path.join(tmp, 'bad2'), [damaged])).rejects.toThrow(/fails verification.*re-encode it/);
    await expect(ActivationStore.merge(path.join(tmp, 's1'), [path.join(tmp, 's1')])).rejects.toThrow(/into itself/);
  });

  it('a merge interrupted after copying segments but before its index commit leaves the store as it was, and can be redone', async () => {
    const dir = path.join(tmp, 'interrupted');
    await ActivationStore.merge(dir, [path.join(tmp, 's1')]);
    const before = await ActivationStore.open(dir);
    const n = before.stats().records;
    const segs = before.stats().segments;
    before.close();
    // what a crash after the copy leaves: segment files past the index's last segment
    for (let i = 1; i <= 3; i++) fs.copyFileSync(path.join(tmp, 's2', 'segments', 'seg-000001.ers'), path.join(dir, 'segments', `seg-${String(segs + i).padStart(6, '0')}.ers`));
    const after = await ActivationStore.open(dir);
    expect(after.stats().records).toBe(n);
    expect((await after.verify()).ok).toBe(true);
    after.close();
    await ActivationStore.merge(dir, [path.join(tmp, 's2'), path.join(tmp, 's3')], { removeShards: false });
    const done = await ActivationStore.open(dir);
    expect((await done.verify()).ok).toBe(true);
    expect(done.stats().docs).toBe(corpus.length);
    done.close();
  });
});
