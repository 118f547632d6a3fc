// Faults and bad input: stores from another producer, damaged files, a full disk,
// a second writer, malformed input lines. Each gives a clear error, and everything
// committed before stays readable.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { ActivationStore, StoreError } from '../../src/store/store';
import { makeCorpus, writeJsonl } from '../helpers/corpus';
import { copyModel, FIXTURES, ROOT } from '../helpers/fixtures';

const CLI = path.join(ROOT, 'lib', 'cli', 'main.js');
const MODEL = path.join(FIXTURES, 'tiny-bert');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-faults-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let enc: Encoder;
let n = 0;
const corpus = makeCorpus(40, 21);
async function fresh(opts: { layer?: number; dtype?: 'fp16' | 'fp32' } = {}): Promise<string> {
  const dir = path.join(tmp, `s${n++}`);
  const s = await ActivationStore.create(dir, enc, { layer: opts.layer ?? 2, dtype: opts.dtype ?? 'fp16', maxLength: 24, stride: 6 });
  await s.encode(corpus, { batchSize: 8 });
  s.close();
  return dir;
}
const segFile = (dir: string) => path.join(dir, 'segments', 'seg-000001.ers');

beforeAll(async () => { enc = await Encoder.load(MODEL); });
afterAll(() => enc.close());

describe('opening a store made by something else is refused, naming the field', () => {
  it('another layer, dtype, model or tokenizer', async () => {
    const dir = await fresh();
    await expect(ActivationStore.open(dir, { layer: 3 })).rejects.toThrow(/the store's layer is 2, but 3 was asked for/);
    await expect(ActivationStore.open(dir, { dtype: 'fp32' })).rejects.toThrow(/the store's dtype is "fp16", but "fp32" was asked for/);
    await expect(ActivationStore.create(dir, enc, { layer: 2, dtype: 'fp16', maxLength: 32, stride: 6 })).rejects.toThrow(/max length is 24, but 32/);
    const other = await Encoder.load(path.join(FIXTURES, 'tiny-roberta'));
    await expect(ActivationStore.open(dir, { encoder: other })).rejects.toThrow(/the store's model family is "bert", but "roberta"/);
    other.close();
    // the same weights with another tokenizer
    const d2 = copyModel('tiny-bert', path.join(tmp, 'other-tok'));
    const tj = JSON.parse(fs.readFileSync(path.join(d2, 'tokenizer.json'), 'utf8'));
    tj.normalizer.lowercase = false;
    fs.writeFileSync(path.join(d2, 'tokenizer.json'), JSON.stringify(tj));
    const e2 = await Encoder.load(d2);
    await expect(ActivationStore.open(dir, { encoder: e2 })).rejects.toThrow(/the store's tokenizer is .* but .* was asked for/);
    e2.close();
    // other weights below the stored layer (one byte of the word embeddings changed)
    const d3 = copyModel('tiny-bert', path.join(tmp, 'other-weights'));
    const buf = fs.readFileSync(path.join(d3, 'model.safetensors'));
    const hlen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString());
    const [begin] = header['embeddings.word_embeddings.weight'].data_offsets as [number, number];
    buf[8 + hlen + begin + 100] ^= 0x01;
    fs.writeFileSync(path.join(d3, 'model.safetensors'), buf);
    const e3 = await Encoder.load(d3);
    await expect(ActivationStore.open(dir, { encoder: e3 })).rejects.toThrow(/the store's model weights \(embeddings and layers up to k\) is .* but .* was asked for/);
    e3.close();
  });

  it('a missing directory, a missing or corrupt manifest, a directory that is not a store', async () => {
    await expect(ActivationStore.open(path.join(tmp, 'nowhere'))).rejects.toThrow(/store directory .*nowhere does not exist/);
    const dir = await fresh();
    const m = path.join(dir, 'manifest.json');
    const good = fs.readFileSync(m, 'utf8');
    fs.writeFileSync(m, '{ broken');
    await expect(ActivationStore.open(dir)).rejects.toThrow(/manifest\.json: corrupt manifest \(not valid JSON/);
    const edited = JSON.parse(good);
    edited.identity.layer = 3;
    fs.writeFileSync(m, JSON.stringify(edited));
    await expect(ActivationStore.open(dir)).rejects.toThrow(/corrupt manifest \(the identity hash does not match its fields\)/);
    fs.rmSync(m);
    fs.mkdirSync(m);
    await expect(ActivationStore.open(dir)).rejects.toThrow(/not an activation store \(cannot read manifest\.json/);
    fs.rmSync(m, { recursive: true });
    fs.writeFileSync(m, good);
    const s = await ActivationStore.open(dir);
    expect(s.stats().docs).toBe(corpus.length);
    s.close();
    const notStore = path.join(tmp, 'not-a-store');
    fs.mkdirSync(notStore);
    fs.writeFileSync(path.join(notStore, 'data.txt'), 'x');
    await expect(ActivationStore.create(notStore, enc, { layer: 2 })).rejects.toThrow(/exists, is not empty and has no manifest\.json/);
  });
});

describe('damaged data', () => {
  it('a flipped byte in a record: its read fails naming file and offset, verify reports it, the rest stays readable', async () => {
    const dir = await fresh();
    let s = await ActivationStore.open(dir);
    const victim = s.document(corpus[5].id)![0];
    const other = s.document(corpus[6].id)![0];
    s.close();
    const fd = fs.openSync(segFile(dir), 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, victim.offset + 64 + 10);
    b[0] ^= 0x20;
    fs.writeSync(fd, b, 0, 1, victim.offset + 64 + 10);
    fs.closeSync(fd);
    s = await ActivationStore.open(dir);
    expect(() => s.read(victim)).toThrow(new RegExp(`seg-000001\\.ers at byte ${victim.offset}: checksum mismatch`));
    expect(s.read(other).data.length).toBe(other.tokens * 32);
    // the fp16 batches a GPU model reads check the CRC as well
    const fp16Batches = async () => {
      for await (const _ of s.batches([victim.key], { fp16: true })) void _;
    };
    await expect(fp16Batches()).rejects.toThrow(new RegExp(`seg-000001\\.ers at byte ${victim.offset}: checksum mismatch`));
    for await (const b of s.batches([other.key], { fp16: true })) expect(b.hidden16.data.length).toBe(other.tokens * 32);
    const v = await s.verify();
    expect(v.ok).toBe(false);
    expect(v.segments[0].problems.join()).toMatch(new RegExp(`at byte ${victim.offset}: checksum mismatch`));
    s.close();
    const cli = spawnSync(process.execPath, [CLI, 'inspect', '--store', dir, '--verify'], { encoding: 'utf8' });
    expect(cli.status).toBe(2);
    expect(cli.stdout).toMatch(/FAIL .*seg-000001\.ers/);
    expect(cli.stdout).toMatch(/verify: PROBLEMS FOUND/);
  });

  it('a segment truncated into committed data: refused for writing, reported by verify, reads past the end fail clearly', async () => {
    const dir = await fresh();
    const size = fs.statSync(segFile(dir)).size;
    fs.truncateSync(segFile(dir), size - 100);
    await expect(ActivationStore.open(dir, { encoder: enc, write: true })).rejects.toThrow(
      new RegExp(`seg-000001\\.ers: the index commits records up to byte ${size} but the file has ${size - 100} bytes`),
    );
    const s = await ActivationStore.open(dir);
    const v = await s.verify();
    expect(v.ok).toBe(false);
    expect(v.segments[0].problems.join()).toMatch(/committed data is missing/);
    expect(v.indexProblems.join()).toMatch(/the index points to byte \d+ but the file has \d+ bytes/);
    s.close();
  });

  it('a torn tail (an append that never committed) is truncated by the next writer; committed data is untouched', async () => {
    const dir = await fresh();
    const before = fs.readFileSync(segFile(dir));
    fs.appendFileSync(segFile(dir), Buffer.alloc(1000, 7));
    const s = await ActivationStore.open(dir, { encoder: enc, write: true });
    expect(fs.readFileSync(segFile(dir)).equals(before)).toBe(true);
    await s.encode([{ id: 'new', text: 'a new text after the crash' }]);
    expect((await s.verify()).ok).toBe(true);
    expect(fs.readFileSync(segFile(dir)).subarray(0, before.length).equals(before)).toBe(true);
    s.close();
  });
});

describe('a second writer', () => {
  it('is refused with the holder pid; readers are not', async () => {
    const dir = await fresh();
    const w = await ActivationStore.open(dir, { encoder: enc, write: true });
    await expect(ActivationStore.open(dir, { encoder: enc, write: true })).rejects.toThrow(
      new RegExp(`being written by process ${process.pid}; only one writer at a time`),
    );
    const r = await ActivationStore.open(dir);
    expect(r.stats().docs).toBe(corpus.length);
    r.close();
    w.close();
    const w2 = await ActivationStore.open(dir, { encoder: enc, write: true });
    w2.close();
  });
});

describe('the disk running full during er encode', () => {
  it('fails with ENOSPC, keeps the store consistent and every committed text readable, and resumes', async () => {
    const input = path.join(tmp, 'full.jsonl');
    const items = makeCorpus(200, 4);
    writeJsonl(input, items);
    const dir = path.join(tmp, 'full');
    const args = [CLI, 'encode', '--model', MODEL, '--layer', '2', '--input', input, '--store', dir, '--max-length', '24', '--stride', '6', '--batch-size', '8', '--quiet'];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, ER_FAULT_WRITE_LIMIT: '60000' } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/seg-000001\.ers: write failed: No space left on device/);
    const s = await ActivationStore.open(dir);
    const v = await s.verify();
    expect(v.ok).toBe(true);
    const stored = s.stats().docs;
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThan(items.length);
    for (const it of items.slice(0, stored)) expect(s.has(it.id)).toBe(true);
    s.close();
    const again = spawnSync(process.execPath, args, { encoding: 'utf8' });
    expect(again.status, again.stderr).toBe(0);
    const s2 = await ActivationStore.open(dir);
    expect(s2.stats().docs).toBe(items.length);
    expect((await s2.verify()).ok).toBe(true);
    s2.close();
  });
});

describe('malformed input lines', () => {
  const input = path.join(tmp, 'bad.jsonl');
  beforeAll(() => {
    fs.writeFileSync(input, [
      JSON.stringify({ id: 'a', text: 'fine text one' }),
      '{ not json',
      JSON.stringify({ id: 'b' }),
      JSON.stringify({ id: 'c', text: 'fine text two' }),
      JSON.stringify([1, 2]),
    ].join('\n') + '\n');
  });
  const run = (dir: string, ...extra: string[]) =>
    spawnSync(process.execPath, [CLI, 'encode', '--model', MODEL, '--layer', '1', '--input', input, '--store', dir, '--max-length', '24', ...extra], { encoding: 'utf8' });

  it('stop by default, naming file and line', () => {
    const r = run(path.join(tmp, 'bad1'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bad\.jsonl:2: not valid JSON .*use --on-bad-line skip/);
  });

  it('with --on-bad-line skip: warned one by one and listed, never silently dropped', async () => {
    const dir = path.join(tmp, 'bad2');
    const r = run(dir, '--on-bad-line', 'skip');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/skipping .*bad\.jsonl:2: not valid JSON/);
    expect(r.stderr).toMatch(/skipping .*bad\.jsonl:3: no string field "text"/);
    expect(r.stderr).toMatch(/skipping .*bad\.jsonl:5: expected a JSON object/);
    expect(r.stdout).toMatch(/skipped 3 bad line\(s\): 2, 3, 5/);
    const s = await ActivationStore.open(dir);
    expect(s.has('a') && s.has('c')).toBe(true);
    expect(s.stats().docs).toBe(2);
    s.close();
  });

  it('an id given twice, or reused for another text, is an error', async () => {
    const dir = path.join(tmp, 'ids');
    const s = await ActivationStore.create(dir, enc, { layer: 1, maxLength: 24, stride: 6 });
    await expect(s.encode([{ id: 'x', text: 'one' }, { id: 'x', text: 'two' }])).rejects.toThrow(/id "x" appears twice in the input/);
    await s.encode([{ id: 'y', text: 'one' }]);
    await expect(s.encode([{ id: 'y', text: 'different' }])).rejects.toThrow(/id "y" is already stored with different text/);
    await expect(s.encode([{ id: 'z' } as unknown as { id: string; text: string }])).rejects.toThrow(/item 0: expected \{ id: string, text: string/);
    s.close();
    await expect(s.encode([])).rejects.toThrow(StoreError);
  });
});
