// Crash safety: `er encode` killed with SIGKILL at random moments, resumed each
// time, ends identical to an uninterrupted run; readers in other processes never
// see a torn or corrupt record while a writer appends.
import { spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActivationStore } from '../../src/store/store';
import { makeCorpus, writeJsonl } from '../helpers/corpus';
import { FIXTURES, ROOT } from '../helpers/fixtures';

const CLI = path.join(ROOT, 'lib', 'cli', 'main.js');
const MODEL = path.join(FIXTURES, 'tiny-bert');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-crash-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function encodeArgs(input: string, store: string): string[] {
  return [CLI, 'encode', '--model', MODEL, '--layer', '2', '--dtype', 'fp16', '--input', input, '--store', store,
    '--max-length', '24', '--stride', '6', '--batch-size', '4', '--threads', '1', '--quiet'];
}

function runToEnd(input: string, store: string, env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(process.execPath, encodeArgs(input, store), { encoding: 'utf8', env });
}

/** Every document's window keys and every record's decoded values, for comparison. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const store = await ActivationStore.open(dir);
  const out = new Map<string, string>();
  const ids = (store as unknown as { db: { prepare(s: string): { pluck(): { all(): string[] } } } }).db.prepare('SELECT id FROM docs').pluck().all();
  for (const id of ids) {
    const parts = store.document(id)!.map((r) => {
      const d = store.read(r).data;
      return `${r.key.toString('hex')}:${Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64')}`;
    });
    out.set(id, parts.join('|'));
  }
  store.close();
  return out;
}

/** sha1 of every record's values, by key (hex), as the reader processes compute them. */
async function recordHashes(dir: string): Promise<Map<string, string>> {
  const store = await ActivationStore.open(dir);
  const out = new Map<string, string>();
  const ids = (store as unknown as { db: { prepare(s: string): { pluck(): { all(): string[] } } } }).db.prepare('SELECT id FROM docs').pluck().all();
  for (const id of ids) {
    for (const r of store.document(id)!) {
      const d = store.read(r).data;
      out.set(r.key.toString('hex'), crypto.createHash('sha1').update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)).digest('hex'));
    }
  }
  expect(out.size).toBe(store.stats().records);
  store.close();
  return out;
}

describe('crash safety', () => {
  it('survives 20+ SIGKILLs at random moments and ends equal to an uninterrupted run', async () => {
    const input = path.join(tmp, 'corpus.jsonl');
    writeJsonl(input, makeCorpus(700, 5));
    const ref = path.join(tmp, 'reference');
    const t0 = performance.now();
    const r = runToEnd(input, ref);
    const fullMs = performance.now() - t0;
    expect(r.status, r.stderr).toBe(0);

    const victim = path.join(tmp, 'victim');
    let seed = 99;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    let kills = 0, finishedEarly = 0, attempts = 0;
    while (kills < 20 && attempts < 60) {
      attempts++;
      const child = spawn(process.execPath, encodeArgs(input, victim), { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => { stderr += d; });
      // from process start-up to the end of a full run, so kills land in every phase
      const delay = 30 + rand() * fullMs * 0.9;
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      const [code, signal] = await new Promise<[number | null, string | null]>((res) => child.on('exit', (c, s) => res([c, s])));
      clearTimeout(timer);
      if (signal === 'SIGKILL') kills++;
      else {
        expect(code, stderr).toBe(0);
        finishedEarly++;
        // start again from scratch for the remaining kills, keeping the interrupted history
        if (kills < 20) fs.rmSync(victim, { recursive: true, force: true });
      }
    }
    console.log(`crash test: ${kills} SIGKILLs, ${finishedEarly} runs finished before their kill, full run ${fullMs.toFixed(0)} ms`);
    expect(kills).toBeGreaterThanOrEqual(20);
    const last = runToEnd(input, victim);
    expect(last.status, last.stderr).toBe(0);
    const verify = spawnSync(process.execPath, [CLI, 'inspect', '--store', victim, '--verify', '--json'], { encoding: 'utf8' });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout).verify.ok).toBe(true);
    const [a, b] = [await snapshot(ref), await snapshot(victim)];
    expect(b.size).toBe(700);
    expect(a.size).toBe(700);
    let differing = 0;
    for (const [id, v] of a) if (b.get(id) !== v) differing++;
    expect(differing).toBe(0);
  });

  it('readers in other processes never see a torn or corrupt record while the writer appends', async () => {
    const input = path.join(tmp, 'big.jsonl');
    writeJsonl(input, makeCorpus(1500, 8));
    const dir = path.join(tmp, 'concurrent');
    const stop = path.join(tmp, 'stop-readers');
    const reader = path.join(ROOT, 'test', 'helpers', 'store-reader.js');
    const readers = [0, 1].map(() => spawn(process.execPath, [reader, dir, stop], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const outputs = readers.map((p) => {
      let out = '';
      p.stdout.on('data', (d) => { out += d; });
      p.stderr.on('data', (d) => { out += d; });
      return new Promise<string>((res) => p.on('exit', () => res(out)));
    });
    const writer = spawn(process.execPath, encodeArgs(input, dir), { stdio: ['ignore', 'ignore', 'pipe'] });
    let werr = '';
    writer.stderr.on('data', (d) => { werr += d; });
    const code = await new Promise<number | null>((res) => writer.on('exit', (c) => res(c)));
    fs.writeFileSync(stop, '');
    const results = (await Promise.all(outputs)).map((o) => JSON.parse(o.trim().split('\n').pop()!)) as
      { passes: number; reads: number; batches: number; errors: string[]; seen: number[]; hashes: Record<string, string> }[];
    expect(code, werr).toBe(0);
    const final = await recordHashes(dir);
    const partial = (r: { seen: number[] }) => r.seen.filter((n) => n > 0 && n < final.size);
    console.log(`concurrency test: ${final.size} records in the end; readers made ${results.map((r) => `${r.passes} passes / ${r.reads} record reads / ${r.batches} batches, ${partial(r).length} passes over a partial store${partial(r).length ? ` (${Math.min(...partial(r))}..${Math.max(...partial(r))} records)` : ''}`).join('; ')}`);
    let overlapped = 0;
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.passes).toBe(r.seen.length);
      // what a reader saw only grows, and never past the end
      r.seen.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(i ? r.seen[i - 1] : 0));
      expect(Math.max(...r.seen)).toBeLessThanOrEqual(final.size);
      // every record a reader read, at whatever moment, holds the values it holds in the end
      const keys = Object.keys(r.hashes);
      expect(keys.length).toBeGreaterThan(0);
      let wrong = 0;
      for (const k of keys) if (final.get(k) !== r.hashes[k]) wrong++;
      expect(wrong, 'records read with other values than the finished store holds').toBe(0);
      // reads overlapped the writer: a pass over a partial store, then a later one over more
      const first = r.seen.findIndex((n) => n > 0 && n < final.size);
      if (first >= 0 && r.seen.slice(first + 1).some((n) => n > r.seen[first])) overlapped++;
    }
    expect(overlapped, 'no reader saw the store grow while it read').toBeGreaterThan(0);
  });
});
