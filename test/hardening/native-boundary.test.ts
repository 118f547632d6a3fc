// No input from JavaScript may crash the process. Each hostile call runs in a child
// process (test/helpers/boundary-child.js): the process must survive and the call must
// fail with an error that says what is wrong. Before these checks existed each of these
// calls ended the process (std::terminate, SIGSEGV, SIGBUS) or wrote past a buffer.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { ActivationStore } from '../../src/store/store';
import { makeCorpus } from '../helpers/corpus';
import { FIXTURES, ROOT } from '../helpers/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-boundary-'));
const storeDir = path.join(tmp, 'store');
const tiny = path.join(FIXTURES, 'tiny-bert');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  const enc = await Encoder.load(tiny);
  const store = await ActivationStore.create(storeDir, enc, { layer: 1, dtype: 'fp16', maxLength: 24, stride: 6 });
  await store.encode(makeCorpus(12), { batchSize: 4 });
  store.close();
  enc.close();
});

function child(kase: string, dir = storeDir): { status: number | null; signal: string | null; out: { ok?: boolean; error?: string; name?: string }; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'test', 'helpers', 'boundary-child.js'), kase, dir, tiny], { encoding: 'utf8', timeout: 60_000 });
  let out = {};
  try {
    out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
  } catch {
    out = {};
  }
  return { status: r.status, signal: r.signal, out, stderr: r.stderr };
}

function expectRefused(kase: string, message: RegExp, dir?: string): void {
  const r = child(kase, dir);
  expect({ kase, signal: r.signal, status: r.status, stderr: r.signal ? r.stderr.slice(0, 400) : '' }).toEqual({ kase, signal: null, status: 0, stderr: '' });
  expect(r.out.ok).toBeUndefined();
  expect(r.out.error).toMatch(message);
}

describe('the native boundary refuses what would crash it', () => {
  it('a prefetch ring larger than memory is an error naming its size and the options to lower', () => {
    expectRefused('hugeRing', /cannot allocate \d+ bytes for the prefetch ring; lower batchSize, prefetch or maxBytes/);
  });
  it('a WindowRef with a negative offset or an impossible token count is refused before any byte is read', () => {
    expectRefused('negativeOffset', /offset -4096 is not a record offset/);
    expectRefused('hugeTokens', /tokens must be an integer|cannot hold/);
  });
  it('typed arrays of the wrong type are refused (no write past a Uint8Array)', () => {
    expectRefused('f16IntoBytes', /f16ToF32 destination .* wrong array type/);
    expectRefused('copyIntoBytes', /copyF32 destination .* wrong array type/);
    expectRefused('classWeightsWrongType', /classWeights .* wrong array type/);
  });
  it('wrapped objects are checked by their type tag: no type confusion', () => {
    expectRefused('prefetcherPlainReader', /expected a StoreReader/);
    expectRefused('prefetcherWrongReader', /expected a StoreReader/);
    expectRefused('fakeThis', /Illegal invocation|must be called on a NativeEncoder/);
    expectRefused('prototypeObject', /Illegal invocation|must be called on a TaskModel/);
  });
  it("a forged DeBERTa-v2 attention config is refused, never read past the relative table", () => {
    expectRefused('disentangledForged', new RegExp([
      'config\\.disentangled must be an object',
      'tensor encoder\\.rel_embeddings: unknown slot or wrong element count',
      'config\\.disentangled\\.maxRelative',
      'config\\.disentangled\\.shareKey must be a boolean',
      'tensor encoder\\.rel_embeddings was not given',
      'tensor layer\\.0\\.attn\\.pos_k was not given',
    ].join('.* \\| .*')));
  });

  it('a prefetch plan with offsets that are not record offsets is refused', () => {
    expectRefused('planNegativeOffset', /plan record 0: offset .* is not a record offset/);
  });
  it('the index database: closed, forged or misused statements and unbindable values are errors', () => {
    expectRefused('sqliteStatementAfterClose', /the index database is closed/);
    expectRefused('sqliteForgedStatement', /SqliteStatement objects come from SqliteDatabase.prepare/);
    expectRefused('sqliteWrongThis', /Illegal invocation|must be called on a SqliteStatement/);
    expectRefused('sqliteBindObject', /parameter 1: only numbers, bigints, booleans, strings, Uint8Arrays and null can be bound/);
    expectRefused('sqliteBindDetached', /bound a detached buffer as an empty key: 0 rows/);
  });
  it('an index file that is not a database is a StoreError naming it', () => {
    const copy = path.join(tmp, 'garbage-index');
    fs.cpSync(storeDir, copy, { recursive: true });
    for (const f of fs.readdirSync(copy)) if (f.startsWith('index.sqlite')) fs.rmSync(path.join(copy, f));
    fs.writeFileSync(path.join(copy, 'index.sqlite'), Buffer.alloc(8192, 0x5a));
    expectRefused('sqliteNotADatabase', /index\.sqlite: cannot open the index: .*not a database/, copy);
  });
  it('a segment truncated under a live mapping is a StoreError naming the file, not SIGBUS', () => {
    const copy = path.join(tmp, 'truncated');
    fs.cpSync(storeDir, copy, { recursive: true });
    expectRefused('truncatedSegment', /seg-\d+\.ers: the index points to byte \d+ but the file has 64 bytes \(it was truncated/, copy);
  });
});
