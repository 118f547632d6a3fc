// er encode --queue with er worker processes on a real Redis (redis-server on loopback):
// three workers, one of them SIGKILLed twice at random moments, encode a generated
// corpus; the merged store equals a single-process `er encode` of the same input
// record for record. The failure cases: a worker whose model differs refuses the job
// and the run stops naming the shard and why; a shard that fails on every attempt
// stops the run, named; a worker given damaged model files fails at start; Redis
// restarting mid-run (losing the queue) does not stop it.
import { ChildProcess, spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActivationStore } from '../../src/store/store';
import { FIXTURES, ROOT } from '../helpers/fixtures';
import { motoAvailable, redisAvailable, Running, startMoto, startRedis } from '../helpers/servers';

const CLI = path.join(ROOT, 'lib', 'cli', 'main.js');
const TINY = path.join(FIXTURES, 'tiny-bert');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-queue-'));
const corpusFile = path.join(tmp, 'corpus.jsonl');
const N = 3000;
let redis: Running;
const children: ChildProcess[] = [];

function corpus(): { id: string; text: string }[] {
  const words = ('enzyme inhibitor kidney disease receptor antibody dose cohort patients tumour growth signalling mutation protein ' +
    'expression liver cells treatment trial placebo response insulin glucose gene variant binding kinase pathway serum').split(' ');
  let s = 11;
  const r = (k: number) => { s = (s * 1103515245 + 12345) & 0x7fffffff; return s % k; };
  const out: { id: string; text: string }[] = [];
  for (let i = 0; i < N; i++) {
    // every 100th text repeats an earlier one under another id: stored once, found by both ids
    if (i % 100 === 99) { out.push({ id: `t${i}`, text: out[i - 50].text }); continue; }
    const n = 4 + r(i % 10 === 0 ? 60 : 20);
    out.push({ id: `t${i}`, text: Array.from({ length: n }, () => words[r(words.length)]).join(' ') + '.' });
  }
  return out;
}

function cli(args: string[], env: Record<string, string> = {}): ChildProcess {
  const c = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  return c;
}

function finished(c: ChildProcess, timeoutMs = 120_000): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  c.stdout!.on('data', (d) => (stdout += d));
  c.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { c.kill('SIGKILL'); reject(new Error(`timed out; stderr:\n${stderr.slice(-2000)}`)); }, timeoutMs);
    c.on('exit', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }); });
  });
}

function worker(queue: string, name: string, workDir: string, extra: string[] = []): ChildProcess {
  return cli(['worker', '--queue', queue, '--queue-name', name, '--work-dir', workDir, '--lock-ms', '1500', '--threads', '1', ...extra]);
}

function coordinator(queue: string, name: string, store: string, extra: string[] = []): ChildProcess {
  return cli(['encode', '--queue', queue, '--queue-name', name, '--model', TINY, '--layer', '1', '--max-length', '32', '--stride', '8',
    '--input', corpusFile, '--store', store, '--shard-size', '200', '--batch-size', '16', '--quiet', ...extra]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function digests(dir: string): Promise<Map<string, string[]>> {
  return ActivationStore.open(dir).then(async (st) => {
    const out = new Map<string, string[]>();
    for (let i = 0; i < N; i++) {
      out.set(`t${i}`, (st.document(`t${i}`) ?? []).map((ref) => {
        const t = st.read(ref);
        return crypto.createHash('sha256').update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
      }));
    }
    expect((await st.verify()).ok).toBe(true);
    st.close();
    return out;
  });
}

describe.skipIf(!redisAvailable)('er encode --queue with er worker on Redis', () => {
  let single: Map<string, string[]>;
  beforeAll(async () => {
    fs.writeFileSync(corpusFile, corpus().map((x) => JSON.stringify(x)).join('\n') + '\n');
    redis = await startRedis();
    const r = await finished(cli(['encode', '--model', TINY, '--layer', '1', '--max-length', '32', '--stride', '8', '--input', corpusFile,
      '--store', path.join(tmp, 'single'), '--quiet']));
    expect(r.code).toBe(0);
    single = await digests(path.join(tmp, 'single'));
  }, 120_000);
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await redis?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('three workers, one SIGKILLed twice at random moments: the merged store equals a single-process encode', async () => {
    const q = redis.url, name = 'kill-test';
    const shared = path.join(tmp, 'shards'); // the workers' shared work folder
    const ws = [0, 1, 2].map(() => worker(q, name, shared));
    const coord = coordinator(q, name, path.join(tmp, 'merged'));
    const done = finished(coord);
    // each kill lands at a random moment after the victim has taken a shard (mid-job)
    const started = (w: ChildProcess) => new Promise<void>((resolve) => w.stderr!.on('data', (d: Buffer) => { if (/ texts -> /.test(String(d))) resolve(); }));
    let victim = ws[0];
    const kills: number[] = [];
    for (let k = 0; k < 2; k++) {
      await Promise.race([started(victim), sleep(20_000)]);
      const at = Math.floor(Math.random() * 400);
      await sleep(at);
      if (coord.exitCode !== null) break;
      victim.kill('SIGKILL');
      kills.push(at);
      victim = worker(q, name, shared); // the machine comes back
    }
    const r = await done;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(kills.length).toBe(2);
    expect(r.stdout).toMatch(/run [0-9a-f]{16}: \d+ shard\(s\) by \d worker\(s\), 3000 texts/);
    const merged = await digests(path.join(tmp, 'merged'));
    expect([...merged.entries()]).toEqual([...single.entries()]);
    const m = await ActivationStore.open(path.join(tmp, 'merged'));
    const s = await ActivationStore.open(path.join(tmp, 'single'));
    expect(m.stats().records).toBe(s.stats().records);
    expect(m.stats().docs).toBe(N);
    m.close();
    s.close();
    // the shard stores were merged and removed
    expect(fs.readdirSync(shared).flatMap((d) => fs.readdirSync(path.join(shared, d)))).toEqual([]);
  }, 180_000);

  it('a worker whose model differs refuses the job: the run stops, naming the shard and the field', async () => {
    const name = 'wrong-model';
    worker(redis.url, name, path.join(tmp, 'w-wrong'), ['--model', path.join(FIXTURES, 'tiny-roberta')]);
    const r = await finished(coordinator(redis.url, name, path.join(tmp, 'merged-wrong')));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/er: shard \d+\/\d+ \(\d+ texts from text \d+ of the input, ids .*\) was refused: refused by worker .*: its model .*tiny-roberta does not match the job's store identity: modelFingerprint/);
  }, 120_000);

  it('a shard that fails on every attempt stops the run after --attempts, named', async () => {
    const name = 'blocked-shard';
    const work = path.join(tmp, 'w-blocked');
    const coord = coordinator(redis.url, name, path.join(tmp, 'merged-blocked'), ['--attempts', '2']);
    const done = finished(coord);
    // once the run is queued: its third shard's folder is taken by something that is not a store
    const run = await new Promise<string>((resolve) => coord.stdout!.on('data', (d: Buffer) => { const m = /run ([0-9a-f]{16}): \d+ shard/.exec(String(d)); if (m) resolve(m[1]); }));
    fs.mkdirSync(path.join(work, run, 'shard-000002'), { recursive: true });
    fs.writeFileSync(path.join(work, run, 'shard-000002', 'notes.txt'), 'not a store');
    worker(redis.url, name, work);
    const r = await done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/er: shard 3\/\d+ \(\d+ texts from text \d+ of the input, ids "t\d+"\.\."t\d+"\) failed 2 time\(s\): .*shard-000002: exists, is not empty and has no manifest\.json/);
  }, 120_000);

  it('a worker given a damaged model fails at start, saying which file', async () => {
    const broken = path.join(tmp, 'broken-model');
    fs.cpSync(TINY, broken, { recursive: true });
    fs.truncateSync(path.join(broken, 'model.safetensors'), 100);
    const r = await finished(worker(redis.url, 'broken-model', path.join(tmp, 'w-broken'), ['--model', broken]));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/er: .*model\.safetensors/);
  }, 60_000);

  it.skipIf(!motoAvailable)('shard stores can travel through S3-compatible storage (--shards-to) instead of a shared folder', async () => {
    process.env.AWS_ACCESS_KEY_ID ??= 'testing';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'testing';
    const moto = await startMoto();
    try {
      const { S3Client, CreateBucketCommand, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
      const s3 = new S3Client({ endpoint: moto.url, forcePathStyle: true, region: 'us-east-1' });
      await s3.send(new CreateBucketCommand({ Bucket: 'shards' }));
      const name = 'via-s3';
      // each worker on its own work folder: nothing is shared but the queue and the bucket
      [0, 1].map((i) => worker(redis.url, name, path.join(tmp, `w-s3-${i}`), ['--endpoint', moto.url]));
      const r = await finished(coordinator(redis.url, name, path.join(tmp, 'merged-s3'), ['--shard-size', '500', '--shards-to', 's3://shards/er', '--endpoint', moto.url]));
      // the AWS SDK warns on Node 20 that its 2027 releases will need Node 22: not ours to hide
      expect(r.stderr.replace(/\(node:\d+\) Warning: NodeVersionSupportWarning[\s\S]*?https:\/\/a\.co\/\S+\n(\(Use `node --trace-warnings[^\n]*\n)?/g, '')).toBe('');
      expect(r.code).toBe(0);
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'shards', Prefix: 'er/' }));
      expect((listed.Contents ?? []).some((o) => /shard-000000\/er-store\.json$/.test(o.Key ?? ''))).toBe(true);
      s3.destroy();
      const merged = await digests(path.join(tmp, 'merged-s3'));
      expect([...merged.entries()]).toEqual([...single.entries()]);
      for (const i of [0, 1]) expect(fs.readdirSync(path.join(tmp, `w-s3-${i}`)).flatMap((d) => fs.readdirSync(path.join(tmp, `w-s3-${i}`, d)))).toEqual([]);
    } finally {
      await moto.stop();
    }
  }, 180_000);

  it('Redis restarting mid-run, losing the queue, does not stop the run: lost jobs are queued again', async () => {
    const name = 'redis-restart';
    const own = await startRedis();
    const shared = path.join(tmp, 'shards-restart');
    const ws = [0, 1].map(() => worker(own.url, name, shared));
    // Redis goes down once the workers have finished a few shards, mid-run
    let shardsDone = 0;
    const fewDone = new Promise<void>((resolve) => {
      for (const w of ws) w.stderr!.on('data', (d: Buffer) => { shardsDone += (String(d).match(/: done, /g) ?? []).length; if (shardsDone >= 3) resolve(); });
    });
    const coord = coordinator(own.url, name, path.join(tmp, 'merged-restart'), ['--shard-size', '50']);
    const done = finished(coord);
    await fewDone;
    await own.stop();
    await sleep(1000);
    const again = await startRedis(own.port);
    const r = await done;
    await again.stop();
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/queued again after Redis lost them/);
    const merged = await digests(path.join(tmp, 'merged-restart'));
    expect([...merged.entries()]).toEqual([...single.entries()]);
  }, 180_000);
});
