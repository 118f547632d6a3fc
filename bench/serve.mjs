#!/usr/bin/env node
// Serving under load (issue 10, "Performance"): `er serve` on loopback driven by autocannon,
// single-text requests of real sentences (SciCite, NCBI-disease; 16..256 tokens), at
// concurrency 1, 8, 32 and 128, texts cached (their layer-k activations are in the store) and
// not cached (the prefix runs), for the real all-MiniLM-L6-v2 and a BERT-base shape. In the
// same run:
//   - the engine's batch ceiling: forwardFrom (cached) / forward (not cached) on the same
//     texts, pre-batched by length with the server's token budget, nothing else running;
//   - the server a Node developer writes today (bench/lib/ort-server.mjs): onnxruntime-node,
//     one session.run per request, the same shape, the same threads (plain ONNX export, and
//     the export after onnxruntime's transformer fusions).
// Reports throughput, p50 / p99 latency, the server's event-loop lag (p99 and max, from its
// /metrics histogram over each run), mean batch rows and tokens per batch, and checks the
// issue's goals. Writes bench/results/serve-<date>.md/.json (only from a clean committed tree
// unless --allow-dirty).
//
//   node bench/serve.mjs [--quick] [--duration 8] [--threads 2] [--models minilm,bert-base] [--allow-dirty]
//
// The task behind the server is a SciCite classifier (mode reduced, k = N/2) trained for one
// short epoch: its accuracy is not what is measured. The BERT-base shape and the ONNX files
// come from `python3 bench/peers/make_models.py` (random weights; the MiniLM ONNX peer has the
// real model's shape with random weights: the same computation).
import { spawn } from 'child_process';
import { createRequire } from 'module';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { fileURLToPath } from 'url';
import { checkTree, cpuText, DirtyTreeError, flagReader, writeResults } from './lib/cli.mjs';
import { cpuDescription, gitInfo, localDate, loadAverage, nproc } from './lib/system.mjs';
import { median, sleep } from './lib/stats.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const lib = path.join(root, 'lib');
const { Encoder, InferenceSession, cpuInfo } = require(path.join(lib, 'index.js'));
const { trainTask } = require(path.join(lib, 'tasks', 'runner.js'));
const autocannon = require('autocannon');

const args = process.argv.slice(2);
const flag = flagReader(args);
const quick = args.includes('--quick');
const allowDirty = args.includes('--allow-dirty');
const threads = Number(flag('threads', '2'));
const duration = Number(flag('duration', quick ? '3' : '8'));
const LEVELS = quick ? [1, 32] : [1, 8, 32, 128];
const POOL = quick ? 120 : 600;
const MAX_LENGTH = 256, MIN_TOKENS = 16;
const MAX_BATCH_TOKENS = 8192, MAX_ROWS = 64, MAX_DELAY_MS = 2;
const MODELS = {
  minilm: {
    dir: path.join(root, 'models', 'all-MiniLM-L6-v2'), label: 'all-MiniLM-L6-v2 (real)',
    onnx: path.join(root, 'bench', '.work', 'models', 'minilm-l6-h384'),
  },
  'bert-base': {
    dir: path.join(root, 'bench', '.work', 'models', 'bert-base'), label: 'BERT-base shape (random weights)',
    onnx: path.join(root, 'bench', '.work', 'models', 'bert-base'),
  },
};
const models = flag('models', quick ? 'minilm' : 'minilm,bert-base').split(',');
const dataDir = path.join(root, '..', 'shared', 'data');
const work = path.join(root, 'bench', '.work', 'serve');

const log = (...a) => process.stderr.write(`[serve] ${a.join(' ')}\n`);

/** Real sentences: SciCite texts and NCBI-disease sentences (words joined), in a fixed interleaved order. */
function sentences() {
  const sci = [];
  for (const f of ['test.jsonl', 'dev.jsonl']) {
    for (const l of fs.readFileSync(path.join(dataDir, 'scicite', f), 'utf8').trim().split('\n')) sci.push(JSON.parse(l).text.replace(/\s+/g, ' ').trim());
  }
  const ncbi = [];
  for (const f of ['test.conll', 'dev.conll']) {
    let words = [];
    for (const line of fs.readFileSync(path.join(dataDir, 'ncbi-disease', f), 'utf8').split('\n')) {
      if (!line.trim()) {
        if (words.length) ncbi.push(words.join(' '));
        words = [];
      } else {
        words.push(line.split('\t')[0]);
      }
    }
  }
  const out = [];
  for (let i = 0; i < Math.max(sci.length, ncbi.length); i++) {
    if (i < sci.length) out.push(sci[i]);
    if (i < ncbi.length) out.push(ncbi[i]);
  }
  return [...new Set(out)];
}

/** Two disjoint pools of texts of MIN_TOKENS..MAX_LENGTH tokens: one to be cached, one not. */
async function pools(enc) {
  const all = sentences();
  const keep = [];
  for (let i = 0; i < all.length && keep.length < 2 * POOL; i += 64) {
    const chunk = all.slice(i, i + 64);
    const b = await enc.tokenize(chunk, { maxLength: 2 * MAX_LENGTH });
    chunk.forEach((t, j) => {
      let n = 0;
      for (let p = 0; p < b.seqLen; p++) n += b.attentionMask[j * b.seqLen + p];
      if (n >= MIN_TOKENS && n <= MAX_LENGTH) keep.push({ text: t, tokens: n });
    });
  }
  if (keep.length < 2 * POOL) throw new Error(`only ${keep.length} sentences of ${MIN_TOKENS}..${MAX_LENGTH} tokens`);
  return { cached: keep.filter((_, i) => i % 2 === 0).slice(0, POOL), uncached: keep.filter((_, i) => i % 2 === 1).slice(0, POOL) };
}

/** The task behind the server, trained once (a short epoch on SciCite: the speed, not the accuracy, is measured). */
async function ensureTask(name, m, enc) {
  const dir = path.join(work, name);
  const taskDir = path.join(dir, 'task');
  if (fs.existsSync(path.join(taskDir, 'task.json'))) return taskDir;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const lines = fs.readFileSync(path.join(dataDir, 'scicite', 'train.jsonl'), 'utf8').trim().split('\n').slice(0, 256);
  const train = path.join(dir, 'train.jsonl');
  fs.writeFileSync(train, lines.map((l) => { const x = JSON.parse(l); return JSON.stringify({ text: x.text, label: x.label }); }).join('\n') + '\n');
  log(`${name}: training the task`);
  await trainTask({
    task: 'classification', train, mode: 'reduced', model: m.dir, store: path.join(dir, 'store'), layer: Math.floor(enc.numLayers / 2),
    lr: 1e-3, epochs: 1, seed: 1, batchSize: 16, maxLength: MAX_LENGTH, out: taskDir, threads,
  });
  return taskDir;
}

/** Puts the cached pool's activations into the task's store (read-through, as `er serve --read-through` would). */
async function cachePool(taskDir, pool) {
  const s = await InferenceSession.open(taskDir, { readThrough: true, threads });
  for (let i = 0; i < pool.length; i += 32) await s.predict(pool.slice(i, i + 32).map((p) => ({ text: p.text })));
  await s.flush();
  const m = s.metrics();
  await s.close();
  return m;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
}

/** Starts a server process and waits for GET /health. */
async function startServer(cmd, argv, port) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.on('data', () => {});
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}): ${stderr}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() - t0 > 120_000) throw new Error(`server did not come up: ${stderr}`);
    await sleep(200);
  }
  return {
    child,
    stop: () => new Promise((resolve) => {
      child.once('exit', resolve);
      child.kill('SIGTERM');
    }),
  };
}

/** Prometheus text -> { 'name{labels}': value }. */
async function scrape(port) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

/** What changed in the server's metrics over one run: batches, rows, tokens, hits, and the event-loop lag. */
function metricsDelta(a, b) {
  const d = (k) => (b[k] ?? 0) - (a[k] ?? 0);
  const t = '{task="scicite"}';
  const batches = d(`er_session_batches_total${t}`);
  const rows = d(`er_session_batch_rows_sum${t}`), tokens = d(`er_session_batch_tokens_sum${t}`);
  // lag buckets (cumulative counts per upper bound): the p99 and max as bucket bounds
  const bounds = Object.keys(b).filter((k) => k.startsWith('er_event_loop_lag_seconds_bucket')).map((k) => ({ k, le: k.match(/le="([^"]+)"/)[1] }));
  const total = d('er_event_loop_lag_seconds_count');
  let p99 = null, max = null;
  for (const { k, le } of bounds) {
    const cum = d(k);
    if (p99 === null && cum >= 0.99 * total) p99 = le;
    if (max === null && cum >= total) max = le;
  }
  const ms = (le) => (le === null ? null : le === '+Inf' ? Infinity : Number(le) * 1e3);
  return {
    batches, meanRows: batches ? rows / batches : 0, meanTokens: batches ? tokens / batches : 0,
    hits: d(`er_session_cache_hits_total${t}`), misses: d(`er_session_cache_misses_total${t}`),
    lagTicks: total, lagP99Ms: ms(p99), lagMaxMs: ms(max),
  };
}

/** One load level: autocannon for `seconds` at `connections`, each request one text of the pool in turn. */
function load(port, pool, connections, seconds) {
  const bodies = pool.map((p) => JSON.stringify({ task: 'scicite', inputs: [{ text: p.text }] }));
  let next = 0;
  return new Promise((resolve, reject) => {
    autocannon({
      url: `http://127.0.0.1:${port}`, connections, duration: seconds, pipelining: 1, timeout: 60,
      requests: [{
        method: 'POST', path: '/v1/predict', headers: { 'content-type': 'application/json' },
        setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }),
      }],
    }, (err, r) => (err ? reject(err) : resolve(r)));
  });
}

async function level(port, pool, c, withMetrics) {
  await load(port, pool, c, Math.min(2, duration)); // warm-up at this concurrency
  const before = withMetrics ? await scrape(port) : null;
  const r = await load(port, pool, c, duration);
  const after = withMetrics ? await scrape(port) : null;
  return {
    connections: c, rps: r.requests.average, requests: r.requests.total, p50Ms: r.latency.p50, p99Ms: r.latency.p99,
    errors: r.errors + r.non2xx + r.timeouts, ...(withMetrics ? metricsDelta(before, after) : {}),
  };
}

/** Batches of the pool the way the server's scheduler forms them: by length, within the token budget and row cap. */
function preBatches(pool) {
  const sorted = [...pool].sort((a, b) => a.tokens - b.tokens);
  const out = [];
  let cur = [];
  for (const p of sorted) {
    const longest = Math.max(p.tokens, ...cur.map((x) => x.tokens));
    if (cur.length && ((cur.length + 1) * longest > MAX_BATCH_TOKENS || cur.length >= MAX_ROWS)) {
      out.push(cur);
      cur = [];
    }
    cur.push(p);
  }
  if (cur.length) out.push(cur);
  return out;
}

/** The engine's ceiling on the pools: texts/s of forwardFrom (k..N) and of forward (0..N), pre-batched; and one text alone. */
async function ceiling(enc, k, pools) {
  const res = {};
  for (const [kind, pool] of [['cached', pools.cached], ['uncached', pools.uncached]]) {
    const batches = [];
    for (const group of preBatches(pool)) {
      const b = await enc.tokenize(group.map((g) => g.text), { maxLength: MAX_LENGTH });
      batches.push({ b, h: kind === 'cached' ? await enc.forward(b, { toLayer: k }) : null });
    }
    const pass = async () => {
      const t0 = performance.now();
      for (const { b, h } of batches) {
        if (h) await enc.forwardFrom(h, b.attentionMask, { fromLayer: k });
        else await enc.forward(b);
      }
      return (performance.now() - t0) / 1e3;
    };
    await pass();
    const secs = median([await pass(), await pass(), await pass()]);
    // one request alone: the compute a single-text request needs (B = 1)
    const single = [];
    for (const p of pool.slice(0, 60)) {
      const b = await enc.tokenize([p.text], { maxLength: MAX_LENGTH });
      const h = kind === 'cached' ? await enc.forward(b, { toLayer: k }) : null;
      const t0 = performance.now();
      if (h) await enc.forwardFrom(h, b.attentionMask, { fromLayer: k });
      else await enc.forward(b);
      single.push(performance.now() - t0);
    }
    single.sort((a, b) => a - b);
    res[kind] = {
      textsPerSecond: pool.length / secs, batches: batches.length,
      singleP50Ms: single[Math.floor(single.length * 0.5)], singleP99Ms: single[Math.min(single.length - 1, Math.floor(single.length * 0.99))],
    };
  }
  return res;
}

const f1 = (x) => (x === null || x === undefined ? '—' : x === Infinity ? '>1000' : x.toFixed(1));
const f0 = (x) => (x === null || x === undefined ? '—' : Math.round(x).toString());

async function main() {
  const tree = checkTree(root, { allowDirty, write: !quick });
  fs.mkdirSync(work, { recursive: true });
  const info = cpuInfo();
  const results = {
    date: new Date().toISOString(), cpu: cpuDescription(), nproc: nproc(), threads, duration, levels: LEVELS,
    maxBatchTokens: MAX_BATCH_TOKENS, maxDelayMs: MAX_DELAY_MS, git: gitInfo(root), gemm: info.gemm, loadStart: loadAverage(),
    onnxruntimeNode: require('onnxruntime-node/package.json').version, autocannon: require('autocannon/package.json').version, models: [],
  };
  for (const name of models) {
    const m = MODELS[name];
    for (const f of [path.join(m.dir, 'model.safetensors'), path.join(m.onnx, 'model.onnx')]) {
      if (!fs.existsSync(f)) throw new Error(`${f} is missing (npm run fetch-model; python3 bench/peers/make_models.py)`);
    }
    const enc = await Encoder.load(m.dir, { threads });
    const k = Math.floor(enc.numLayers / 2);
    const p = await pools(enc);
    const taskDir = await ensureTask(name, m, enc);
    log(`${name}: caching ${p.cached.length} texts`);
    const cacheFill = await cachePool(taskDir, p.cached);
    log(`${name}: batch ceiling`);
    const ceil = await ceiling(enc, k, p);
    enc.close();
    const entry = {
      name, label: m.label, k, layers: enc.numLayers, pool: { size: POOL, cachedTokens: median(p.cached.map((x) => x.tokens)), uncachedTokens: median(p.uncached.map((x) => x.tokens)) },
      cacheFill: { hits: cacheFill.cacheHits, misses: cacheFill.cacheMisses }, ceiling: ceil, served: {}, ort: {},
    };
    // er serve
    const port = await freePort();
    const srv = await startServer(process.execPath, [path.join(lib, 'cli', 'main.js'), 'serve', '--task', `scicite=${taskDir}`, '--port', String(port),
      '--threads', String(threads), '--max-batch-tokens', String(MAX_BATCH_TOKENS), '--max-delay-ms', String(MAX_DELAY_MS), '--max-queue', '4096'], port);
    try {
      for (const kind of ['cached', 'uncached']) {
        entry.served[kind] = [];
        for (const c of LEVELS) {
          const r = await level(port, p[kind], c, true);
          log(`${name} er serve ${kind} c=${c}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, rows/batch ${r.meanRows.toFixed(1)}, lag p99 <= ${r.lagP99Ms} ms, max <= ${r.lagMaxMs} ms, hits ${r.hits}, misses ${r.misses}`);
          entry.served[kind].push(r);
        }
      }
      const fin = await scrape(port);
      entry.serverLoopDelay = { p99Ms: fin['er_event_loop_delay_seconds{quantile="0.99"}'] * 1e3, maxMs: fin['er_event_loop_delay_seconds{quantile="1"}'] * 1e3 };
    } finally {
      await srv.stop();
    }
    // onnxruntime-node servers (the cache plays no part: every request runs every layer)
    for (const [variant, file] of [['plain', 'model.onnx'], ['fused', 'model.fused.onnx']]) {
      const oport = await freePort();
      const o = await startServer(process.execPath, [path.join(here, 'lib', 'ort-server.mjs'), '--onnx', path.join(m.onnx, file), '--tokenizer', m.dir,
        '--labels', '3', '--threads', String(threads), '--port', String(oport), '--max-length', String(MAX_LENGTH)], oport);
      try {
        entry.ort[variant] = [];
        for (const c of LEVELS) {
          const r = await level(oport, p.uncached, c, false);
          log(`${name} onnxruntime-node (${variant}) c=${c}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms`);
          entry.ort[variant].push(r);
        }
      } finally {
        await o.stop();
      }
    }
    results.models.push(entry);
  }
  results.loadEnd = loadAverage();

  // ---------------------------------------------------------------- table and goals
  const L = [];
  L.push(`# Serving under load: er serve vs onnxruntime-node (${localDate()})`, '');
  L.push(`CPU: ${cpuText(results.cpu)}; ${results.nproc} cores; threads ${threads} (server compute and onnxruntime intra-op); ${results.gemm}; onnxruntime-node ${results.onnxruntimeNode}; autocannon ${results.autocannon} in the benchmark's process on the same machine.`);
  L.push(`Load average at start ${results.loadStart}, end ${results.loadEnd}.`, '');
  L.push(`Requests: one text each, real sentences (SciCite test/dev, NCBI-disease test/dev) of ${MIN_TOKENS}..${MAX_LENGTH} tokens, ${POOL} per pool, in turn; each level runs ${duration} s after a warm-up. Server: \`er serve --threads ${threads} --max-batch-tokens ${MAX_BATCH_TOKENS} --max-delay-ms ${MAX_DELAY_MS}\`, a SciCite task in mode reduced at k = N/2; *cached*: the texts' layer-k activations are in the store (fp16), *not cached*: they are not (the prefix runs, nothing is written). Batch ceiling: the engine alone on the same texts, pre-batched by length within the same token budget (forwardFrom k..N when cached, forward 0..N when not), no server, no load generator. Event-loop lag: how late the server's 10 ms timer fired during the measured run (bucket bounds of its histogram: "<= 2" means between 1 and 2 ms). onnxruntime-node: one session.run per request (batch of one) on \`model.onnx\` (plain export) or \`model.fused.onnx\` (after onnxruntime's transformer fusions), graph optimization "all".`, '');
  const goals = [];
  for (const e of results.models) {
    L.push(`## ${e.label} (k = ${e.k} of ${e.layers}; median ${e.pool.cachedTokens} / ${e.pool.uncachedTokens} tokens in the cached / uncached pool)`, '');
    L.push(`Batch ceiling: cached ${f0(e.ceiling.cached.textsPerSecond)} texts/s, not cached ${f0(e.ceiling.uncached.textsPerSecond)} texts/s. One text alone: cached p50 ${f1(e.ceiling.cached.singleP50Ms)} ms / p99 ${f1(e.ceiling.cached.singleP99Ms)} ms; not cached p50 ${f1(e.ceiling.uncached.singleP50Ms)} / p99 ${f1(e.ceiling.uncached.singleP99Ms)} ms.`, '');
    L.push('| server | texts | concurrency | req/s | × ceiling | p50 ms | p99 ms | rows / batch | tokens / batch | loop lag p99 ms | loop lag max ms | errors |');
    L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const kind of ['cached', 'uncached']) {
      for (const r of e.served[kind]) {
        L.push(`| er serve | ${kind === 'cached' ? 'cached' : 'not cached'} | ${r.connections} | ${f0(r.rps)} | ${(r.rps / e.ceiling[kind].textsPerSecond).toFixed(2)} | ${f1(r.p50Ms)} | ${f1(r.p99Ms)} | ${r.meanRows.toFixed(1)} | ${f0(r.meanTokens)} | <= ${f1(r.lagP99Ms)} | <= ${f1(r.lagMaxMs)} | ${r.errors} |`);
      }
    }
    for (const [variant, rows] of Object.entries(e.ort)) {
      for (const r of rows) L.push(`| onnxruntime-node (${variant}) | not cached | ${r.connections} | ${f0(r.rps)} | ${(r.rps / e.ceiling.uncached.textsPerSecond).toFixed(2)} | ${f1(r.p50Ms)} | ${f1(r.p99Ms)} | 1 | — | — | — | ${r.errors} |`);
    }
    L.push('', `Server event-loop delay since it started (monitorEventLoopDelay): p99 ${f1(e.serverLoopDelay.p99Ms)} ms, max ${f1(e.serverLoopDelay.maxMs)} ms.`, '');
    const at = (rows, c) => rows.find((r) => r.connections === c);
    const c32 = at(e.served.cached, 32), u32 = at(e.served.uncached, 32);
    const bestOrt32 = Math.max(...Object.values(e.ort).map((rows) => at(rows, 32)?.rps ?? 0));
    const c1 = at(e.served.cached, 1);
    const isBert = e.name === 'bert-base';
    if (c32) {
      goals.push([e.label, 'served throughput at c=32 ≥ 0.85 × batch ceiling (cached)', `${(c32.rps / e.ceiling.cached.textsPerSecond).toFixed(2)}×`, c32.rps >= 0.85 * e.ceiling.cached.textsPerSecond]);
      goals.push([e.label, 'served throughput at c=32 ≥ 0.85 × batch ceiling (not cached)', `${(u32.rps / e.ceiling.uncached.textsPerSecond).toFixed(2)}×`, u32.rps >= 0.85 * e.ceiling.uncached.textsPerSecond]);
      goals.push([e.label, `cached ≥ +${isBert ? 90 : 80}% over not cached at c=32`, `+${((c32.rps / u32.rps - 1) * 100).toFixed(0)}%`, c32.rps >= (isBert ? 1.9 : 1.8) * u32.rps]);
      goals.push([e.label, '≥ 3 × the onnxruntime-node server at c=32 (cached; best ONNX variant)', `${(c32.rps / bestOrt32).toFixed(2)}×`, c32.rps >= 3 * bestOrt32]);
      goals.push([e.label, '≥ 3 × the onnxruntime-node server at c=32 (not cached; best ONNX variant)', `${(u32.rps / bestOrt32).toFixed(2)}×`, u32.rps >= 3 * bestOrt32]);
    }
    const lagP99 = Math.max(...[...e.served.cached, ...e.served.uncached].map((r) => r.lagP99Ms));
    const lagMax = Math.max(...[...e.served.cached, ...e.served.uncached].map((r) => r.lagMaxMs));
    goals.push([e.label, 'event-loop lag p99 < 5 ms at every level', `<= ${f1(lagP99)} ms`, lagP99 <= 5]);
    goals.push([e.label, 'event-loop lag max < 20 ms at every level', `<= ${f1(lagMax)} ms`, lagMax <= 20]);
    if (c1) goals.push([e.label, 'p99 at c=1 ≤ 1.3 × one request\'s compute p99 (cached)', `${(c1.p99Ms / e.ceiling.cached.singleP99Ms).toFixed(2)}×`, c1.p99Ms <= 1.3 * e.ceiling.cached.singleP99Ms]);
  }
  L.push('## Goals (issue 10)', '', '| model | goal | measured | met |', '|---|---|---:|---|');
  for (const [mdl, g, v, ok] of goals) L.push(`| ${mdl} | ${g} | ${v} | ${ok ? 'yes' : '**no**'} |`);
  results.goals = goals.map(([model, goal, measured, met]) => ({ model, goal, measured, met }));
  const md = L.join('\n') + '\n';
  process.stdout.write(md);
  const base = quick ? path.join(work, 'serve-quick') : path.join(root, 'bench', 'results', `serve-${localDate()}`);
  writeResults(base, md, results, 'serve', { root, allowDirty, start: tree });
}

main().catch((e) => {
  if (e instanceof DirtyTreeError) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
