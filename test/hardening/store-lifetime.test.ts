// Lifetimes across the native boundary: ring slots that stay pinned while a native
// call reads them, stores and encoders closed while work is in flight, descriptors
// after a failed fdatasync, the GC's view of the prefetch rings, schedules of any size.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { ActivationStore, StoreError } from '../../src/store/store';
import { makeCorpus } from '../helpers/corpus';
import { FIXTURES, ROOT } from '../helpers/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-lifetime-'));
let enc: Encoder;
let store: ActivationStore;
let ids: string[];
const corpus = makeCorpus(40);

beforeAll(async () => {
  enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
  store = await ActivationStore.create(path.join(tmp, 'store'), enc, { layer: 1, dtype: 'fp16', maxLength: 24, stride: 6 });
  await store.encode(corpus, { batchSize: 8 });
  ids = corpus.map((c) => c.id);
});
afterAll(() => {
  store.close();
  enc.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The values at real tokens (values at padding positions are unspecified). */
function real(data: Float32Array, mask: Int32Array): Float32Array {
  const H = enc.hidden;
  const out: number[] = [];
  for (let p = 0; p < mask.length; p++) if (mask[p]) for (let j = 0; j < H; j++) out.push(data[p * H + j]);
  return Float32Array.from(out);
}

function same(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** The suffix layers over every batch, each batch copied out and awaited in turn: the reference (real tokens only). */
async function reference(batchSize: number): Promise<{ out: Float32Array[]; masks: Int32Array[] }> {
  const out: Float32Array[] = [];
  const masks: Int32Array[] = [];
  for await (const b of store.batches(ids, { batchSize, copy: true })) {
    out.push(real((await enc.forwardFrom(b.hidden, b.attentionMask, { fromLayer: 1 })).data, b.attentionMask));
    masks.push(b.attentionMask);
  }
  return { out, masks };
}

describe('ring slots and the calls that read them', () => {
  it('a forward pass that is not awaited before the next batch still reads its own batch', async () => {
    const { out: want, masks } = await reference(2);
    const pending: Promise<{ data: Float32Array }>[] = [];
    // the consumer races ahead: every batch's forward is queued, none awaited in the loop,
    // so the ring (depth 1: two slots) would be refilled under them were they not pinned
    for await (const b of store.batches(ids, { batchSize: 2, prefetch: 1 })) {
      pending.push(enc.forwardFrom(b.hidden, b.attentionMask, { fromLayer: 1 }));
    }
    const got = await Promise.all(pending);
    expect(got.length).toBe(want.length);
    expect(want.length).toBeGreaterThan(10);
    const wrong = got.map((g, i) => (same(real(g.data, masks[i]), want[i]) ? -1 : i)).filter((i) => i >= 0);
    expect(wrong).toEqual([]);
  });

  it("a view kept past its batch is detached (empty) and a native call on it is refused; hold() keeps it", async () => {
    const it = store.batches(ids, { batchSize: 4, prefetch: 2 });
    const first = (await it.next()).value!;
    const kept = first.hidden.data.slice();
    const held = (await it.next()).value!;
    const release = held.hold();
    const heldCopy = held.hidden.data.slice();
    await it.next();
    // the first batch was given back when the second was requested
    expect(first.hidden.data.length).toBe(0);
    expect(first.attentionMask.length).toBe(0);
    expect(kept.length).toBeGreaterThan(0);
    await expect(enc.forwardFrom(first.hidden, first.attentionMask, { fromLayer: 1 })).rejects.toThrow();
    // the held one is intact until released
    expect(Buffer.from(held.hidden.data.buffer, held.hidden.data.byteOffset, held.hidden.data.byteLength).equals(Buffer.from(heldCopy.buffer))).toBe(true);
    release();
    expect(held.hidden.data.length).toBe(0);
    await it.return(undefined);
  });
});

describe('closing while work is in flight', () => {
  it('closing the store while batches() runs rejects the pending batch with a StoreError', async () => {
    const s = await ActivationStore.open(path.join(tmp, 'store'));
    const it = s.batches(ids, { batchSize: 2, prefetch: 2 });
    const first = await it.next();
    expect(first.done).toBe(false);
    s.close();
    await expect(it.next()).rejects.toThrow(StoreError);
    await expect(it.next()).resolves.toEqual({ done: true, value: undefined });
    expect(first.value!.hidden.data.length).toBe(0);
  });

  it('closing an encoder while a forward is in flight: the forward finishes with the right values, later calls are refused', async () => {
    const { out: want, masks } = await reference(64);
    const e2 = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
    const it = store.batches(ids, { batchSize: 64, copy: true });
    const b = (await it.next()).value!;
    await it.return(undefined);
    const p = e2.forwardFrom(b.hidden, b.attentionMask, { fromLayer: 1 });
    e2.close();
    expect(same(real((await p).data, masks[0]), want[0])).toBe(true);
    await expect(e2.forwardFrom(b.hidden, b.attentionMask, { fromLayer: 1 })).rejects.toThrow(/closed/);
  });
});

describe('store bookkeeping', () => {
  it('a schedule of 200,000 windows works (no spread of a user-sized array)', async () => {
    const key = store.document(ids[0])![0].key;
    const schedule = Array.from({ length: 200_000 }, () => key);
    let rows = 0;
    for await (const b of store.batches(schedule, { batchSize: 1000, prefetch: 1 })) {
      rows += b.keys.length;
      if (rows >= 3000) break;
    }
    expect(rows).toBe(3000);
  });

  it("the GC is told when a prefetch ring is freed, not only when it is made", () => {
    const r = spawnSync(process.execPath, ['--expose-gc', path.join(ROOT, 'test', 'helpers', 'external-memory-child.js'), path.join(tmp, 'store'), '30'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    const { before, after, ring, rounds } = JSON.parse(r.stdout.trim());
    expect(ring).toBeGreaterThan(1_000_000);
    // thirty rings made and stopped: what remains is far less than even two of them
    expect(after - before).toBeLessThan(2 * ring);
    expect(rounds).toBe(30);
  });

  it('a failed fdatasync never leaves a closed descriptor to be closed again later', async () => {
    process.env.ER_FAULT_SYNC_FAIL = '2';
    let s: ActivationStore;
    try {
      // every record rotates to a new segment, so one batch leaves several files to sync
      s = await ActivationStore.create(path.join(tmp, 'syncfail'), enc, { layer: 1, dtype: 'fp16', maxLength: 24, stride: 6, maxSegmentBytes: 1 });
    } finally {
      delete process.env.ER_FAULT_SYNC_FAIL;
    }
    const items = makeCorpus(6, 99).map((c) => ({ ...c, id: `s-${c.id}` }));
    await expect(s.encode(items.slice(0, 4), { batchSize: 4 })).rejects.toThrow(/fdatasync of a finished segment failed/);
    // descriptors this process opens now may get the numbers the writer closed
    const probe = path.join(tmp, 'probe.txt');
    fs.writeFileSync(probe, 'probe');
    const fds = Array.from({ length: 16 }, () => fs.openSync(probe, 'r'));
    try {
      await s.encode(items, { batchSize: 4 });
      for (const fd of fds) expect(() => fs.fstatSync(fd)).not.toThrow();
    } finally {
      for (const fd of fds) {
        try { fs.closeSync(fd); } catch { /* reported above */ }
      }
    }
    expect(s.stats().docs).toBe(items.length);
    s.close();
  });
});

describe('scratch memory', () => {
  it("one huge forward does not pin its scratch memory; an ordinary one keeps it for the next call", async () => {
    const e = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
    const T = Math.min(64, e.maxLength);
    const small = await e.tokenize(['kidney disease', 'insulin'], { maxLength: T });
    await e.forward(small);
    const kept = e.memory().workspaceBytes;
    expect(kept).toBeGreaterThan(0);
    // about 320,000 tokens: its scratch (qkv, context, FFN) is far past 256 MiB
    const B = Math.ceil(320_000 / T);
    const ids = new Int32Array(B * T).fill(small.inputIds[0]);
    const big = { batchSize: B, seqLen: T, inputIds: ids, attentionMask: new Int32Array(B * T).fill(1), tokenTypeIds: new Int32Array(B * T), positionIds: e.positionIdsFor(ids, B, T), encodings: [] };
    await e.forward(big as never, { toLayer: 1 });
    expect(e.memory().workspaceBytes).toBe(0);
    await e.forward(small);
    expect(e.memory().workspaceBytes).toBe(kept);
    e.close();
  });
});
