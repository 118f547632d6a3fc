#!/usr/bin/env node
// Scale-out benchmark: encode throughput of `er encode --queue` with 1, 2 and 4 `er worker`
// processes against a plain `er encode` of the same input in the same run (real MiniLM, real
// SciCite/ChemProt sentences), and the queue's overhead per shard; then `er store push/pull`
// throughput against a plain copy of the same bytes (one PutObject / GetObject per file, no
// hashing or resume) to the same S3-compatible server. Redis and moto_server on loopback.
//   node bench/scale.mjs [--docs 1500] [--shard-size 250] [--rounds 3] [--layer 3] [--model DIR] [--allow-dirty] [--quick]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { cpuDescription, nproc, localDate } from './lib/system.mjs';
import { checkTree, cpuText, writeResults } from './lib/cli.mjs';
import { makeDocs } from './lib/corpus.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const require = createRequire(import.meta.url);
const CLI = path.join(ROOT, 'lib', 'cli', 'main.js');
const args = process.argv.slice(2);
const flag = (n, d) => (args.includes(n) ? args[args.indexOf(n) + 1] : d);
const quick = args.includes('--quick');
const allowDirty = args.includes('--allow-dirty');
const docsN = Number(flag('--docs', quick ? '200' : '1500'));
const shardSize = Number(flag('--shard-size', quick ? '50' : '250'));
const layer = flag('--layer', '3');
const model = path.resolve(flag('--model', path.join(ROOT, 'models', 'all-MiniLM-L6-v2')));
const outBase = quick ? path.join(ROOT, 'bench', '.work', 'results', `scale-${localDate()}`) : path.join(ROOT, 'bench', 'results', `scale-${localDate()}`);
const start = checkTree(ROOT, { allowDirty, dest: outBase });
const cores = nproc();

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-scale-'));
const children = [];
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch {} fs.rmSync(tmp, { recursive: true, force: true }); });

function run(argv, { quiet = true } = {}) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [CLI, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`er ${argv[0]} exited ${code}: ${err.slice(-1500)}`))));
  });
}
function startProc(cmd, argv) {
  const c = spawn(cmd, argv, { stdio: 'ignore' });
  children.push(c);
  return c;
}
async function freePort() {
  const net = await import('node:net');
  return new Promise((res) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });
}
async function waitPort(port) {
  const net = await import('node:net');
  for (let i = 0; i < 600; i++) {
    if (await new Promise((r) => { const c = net.connect(port, '127.0.0.1', () => { c.end(); r(true); }); c.on('error', () => r(false)); })) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

// ---- input
const { docs, source } = makeDocs(docsN, { perDoc: 2 });
const input = path.join(tmp, 'corpus.jsonl');
fs.writeFileSync(input, docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
const common = ['--model', model, '--layer', layer, '--dtype', 'fp16', '--max-length', '128', '--stride', '32', '--batch-size', '32', '--input', input, '--quiet'];

// ---- servers
const redisPort = await freePort();
startProc('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
await waitPort(redisPort);
const queue = `redis://127.0.0.1:${redisPort}/0`;

const rows = [];
const t = () => performance.now();
const { ActivationStore } = require(path.join(ROOT, 'lib'));
const rounds = Number(flag('--rounds', quick ? '1' : '3'));
const med = (xs) => { const a = [...xs].sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
const samples = { plain: [], plain1: [], 1: [], '1x1': [], 2: [], 4: [] };
let plainStats, shardsN = null, merges = {}, same = {};
// rounds alternate between the plain encode and the queued ones (this machine's speed drifts)
for (let round = 0; round < rounds; round++) {
  const plainDir = path.join(tmp, `plain-${round}`);
  let t0 = t();
  await run(['encode', ...common, '--store', plainDir]);
  samples.plain.push((t() - t0) / 1000);
  const ps = await ActivationStore.open(plainDir);
  plainStats = ps.stats();
  ps.close();
  if (round < rounds - 1) fs.rmSync(plainDir, { recursive: true, force: true });
  // the same pair with one compute thread: the queue's own cost, without two OpenMP threads to share the cores with
  const plain1 = path.join(tmp, `plain1-${round}`);
  t0 = t();
  await run(['encode', ...common, '--store', plain1, '--threads', '1']);
  samples.plain1.push((t() - t0) / 1000);
  fs.rmSync(plain1, { recursive: true, force: true });
  for (const cfg of [1, '1x1', 2, 4]) {
    const n = cfg === '1x1' ? 1 : cfg;
    const threadsEach = cfg === '1x1' ? 1 : Math.max(1, Math.floor(cores / n));
    const name = `bench-${cfg}-${round}`;
    const ws = Array.from({ length: n }, (_, i) => {
      const c = spawn(process.execPath, [CLI, 'worker', '--queue', queue, '--queue-name', name, '--work-dir', path.join(tmp, `w${n}`), '--model', model, '--threads', String(threadsEach)], { stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(c);
      return new Promise((res) => c.stderr.on('data', (d) => { if (/waiting for jobs/.test(String(d))) res(c); }));
    });
    const procs = await Promise.all(ws); // workers loaded and waiting: their start-up is not timed
    const dir = path.join(tmp, `queued-${cfg}`);
    fs.rmSync(dir, { recursive: true, force: true });
    t0 = t();
    const out = await run(['encode', ...common, '--store', dir, '--queue', queue, '--queue-name', name, '--shard-size', String(shardSize)]);
    samples[cfg].push((t() - t0) / 1000);
    const m = /run \w+: (\d+) shard\(s\).*encode (\S+), merge (\S+)/.exec(out);
    shardsN = m ? Number(m[1]) : null;
    merges[cfg] = m ? m[3] : null;
    for (const p of procs) p.kill('SIGTERM');
    const st = await ActivationStore.open(dir);
    same[cfg] = st.stats().records === plainStats.records && st.stats().tokens === plainStats.tokens;
    st.close();
    console.log(`round ${round + 1}: plain ${samples.plain.at(-1).toFixed(1)} s (1 thread ${samples.plain1.at(-1).toFixed(1)} s), ${n} worker(s) x ${threadsEach} ${samples[cfg].at(-1).toFixed(1)} s`);
  }
}
const plainS = med(samples.plain);
rows.push({ mode: 'plain er encode', workers: 0, threadsEach: cores, seconds: plainS, textsPerSecond: docsN / plainS, samples: samples.plain });
const plain1S = med(samples.plain1);
rows.push({ mode: 'plain er encode --threads 1', workers: 0, threadsEach: 1, seconds: plain1S, textsPerSecond: docsN / plain1S, samples: samples.plain1 });
for (const cfg of [1, '1x1', 2, 4]) {
  const n = cfg === '1x1' ? 1 : cfg;
  const s = med(samples[cfg]);
  rows.push({ mode: `er encode --queue, ${n} worker(s)`, workers: n, threadsEach: cfg === '1x1' ? 1 : Math.max(1, Math.floor(cores / n)), seconds: s, textsPerSecond: docsN / s, shards: shardsN, merge: merges[cfg], sameRecords: same[cfg], samples: samples[cfg] });
}
let t0;
const q1 = rows.find((r) => r.workers === 1 && r.threadsEach === cores);
const q11 = rows.find((r) => r.workers === 1 && r.threadsEach === 1);
const overheadPct = (q1.seconds / plainS - 1) * 100;
const perShardMs = ((q1.seconds - plainS) / q1.shards) * 1000;
const overhead1Pct = (q11.seconds / plain1S - 1) * 100;

// ---- push / pull against plain PutObject / GetObject
const s3Port = await freePort();
startProc('moto_server', ['-H', '127.0.0.1', '-p', String(s3Port)]);
await waitPort(s3Port);
process.env.AWS_ACCESS_KEY_ID ??= 'bench';
process.env.AWS_SECRET_ACCESS_KEY ??= 'bench';
const endpoint = `http://127.0.0.1:${s3Port}`;
const S = require('@aws-sdk/client-s3');
const s3 = new S.S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1' });
await s3.send(new S.CreateBucketCommand({ Bucket: 'bench' }));
const storeDir = path.join(tmp, `plain-${rounds - 1}`);
const files = ['manifest.json', 'index.sqlite', ...fs.readdirSync(path.join(storeDir, 'segments')).map((f) => `segments/${f}`)];
const bytes = files.reduce((a, f) => a + fs.statSync(path.join(storeDir, f)).size, 0);
t0 = t();
for (const f of files) await s3.send(new S.PutObjectCommand({ Bucket: 'bench', Key: `plain/${f}`, Body: fs.readFileSync(path.join(storeDir, f)) }));
const plainPut = (t() - t0) / 1000;
t0 = t();
for (const f of files) { const r = await s3.send(new S.GetObjectCommand({ Bucket: 'bench', Key: `plain/${f}` })); await r.Body.transformToByteArray(); }
const plainGet = (t() - t0) / 1000;
const { pushStore, pullStore } = require(path.join(ROOT, 'lib', 'scale', 's3'));
t0 = t();
const push = await pushStore(storeDir, 's3://bench/er', { endpoint });
const pushS = (t() - t0) / 1000;
t0 = t();
await pullStore('s3://bench/er', path.join(tmp, 'pulled'), { endpoint });
const pullS = (t() - t0) / 1000;
s3.destroy();
const mb = (b, s) => b / 2 ** 20 / s;
const transfer = { bytes, files: files.length, plainPutMBs: mb(bytes, plainPut), pushMBs: mb(push.bytesTotal, pushS), plainGetMBs: mb(bytes, plainGet), pullMBs: mb(push.bytesTotal, pullS), pushSeconds: pushS, pullSeconds: pullS, plainPutSeconds: plainPut, plainGetSeconds: plainGet };
console.log(transfer);

// ---- report
const f1 = (x) => x.toFixed(1), f2 = (x) => x.toFixed(2);
let md = `# Scale-out: queue encode and store transfer (${localDate()})\n\n${cpuText(cpuDescription())}, ${cores} CPUs, Node ${process.version}.\n` +
  `Input: ${docsN} documents of 2 sentences (${source}); ${path.basename(model)} layer ${layer}, fp16, windows of 128 at stride 32, batches of 32; ` +
  `${plainStats.records} records, ${(plainStats.bytes / 2 ** 20).toFixed(1)} MiB. Shards of ${shardSize} texts. Redis ${'7.0'} and moto_server on loopback. ` +
  `Worker start-up (loading the model) is not timed; the coordinator's is. Medians of ${rounds} round(s), each running every configuration.\n\n` +
  '| run | workers x threads | seconds (median; each round) | texts/s | vs plain | shards | merge | records equal plain |\n|---|---|---:|---:|---:|---:|---:|---|\n';
for (const r of rows) md += `| ${r.mode} | ${r.workers ? `${r.workers} x ${r.threadsEach}` : `- x ${r.threadsEach}`} | ${f1(r.seconds)} (${r.samples.map(f1).join(', ')}) | ${f1(r.textsPerSecond)} | ${f2(r.textsPerSecond / rows[0].textsPerSecond)} | ${r.shards ?? ''} | ${r.merge ?? ''} | ${r.sameRecords === undefined ? '' : r.sameRecords ? 'yes' : 'NO'} |\n`;
md += `\nQueue and merge at 1 worker: ${overheadPct >= 0 ? '+' : ''}${f1(overheadPct)}% over the plain encode (goal: at most +5%), ${f1(perShardMs)} ms per shard; ` +
  `with one compute thread on each side: ${overhead1Pct >= 0 ? '+' : ''}${f1(overhead1Pct)}%.\n` +
  `With ${cores} cores, more workers share the same cores: ${cores} workers of 1 thread each is the most this machine can show.\n\n` +
  `| transfer | MiB/s | seconds |\n|---|---:|---:|\n` +
  `| plain PutObject per file | ${f1(transfer.plainPutMBs)} | ${f2(plainPut)} |\n| er store push (snapshot, SHA-256, metadata, er-store.json) | ${f1(transfer.pushMBs)} | ${f2(pushS)} |\n` +
  `| plain GetObject per file | ${f1(transfer.plainGetMBs)} | ${f2(plainGet)} |\n| er store pull (ranged GETs, SHA-256, verify every record, rename) | ${f1(transfer.pullMBs)} | ${f2(pullS)} |\n` +
  `\n${(bytes / 2 ** 20).toFixed(1)} MiB in ${files.length} files.\n`;
writeResults(outBase, md, { cpu: cpuDescription(), cores, docs: docsN, shardSize, layer, rows, overheadPct, overhead1Pct, perShardMs, transfer }, 'scale', { root: ROOT, allowDirty, start });
console.log(md);
process.exit(0);
