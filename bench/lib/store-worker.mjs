#!/usr/bin/env node
// One process of bench/store.mjs's measurements: `node store-worker.mjs '<json>'`, where the JSON is
// { tasks: [...] }; prints one JSON line { results: [...] } on stdout. Reads run in their own process
// so that (a) the parent never holds a segment file mapped (posix_fadvise(DONTNEED) cannot drop pages
// that some process has mapped, so cold runs would silently read from the cache), and (b) every cold
// run starts with empty page tables, as a fresh reader would.
//
// Task kinds:
//   fsread   { files, chunkBytes, passes }                     plain sequential read, the ceiling
//   store    { dir, docs, method: 'batches'|'read', order: 'seq'|'rand', seed, prefetch, verify,
//              batchSize, passes }                             the store's read paths
//   consume  { dir, docs, model, threads, layer, limit, seed, prefetch, batchSize }
//                                                              batches feeding the suffix layers
import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { docId, shuffled } from './corpus.mjs';

const require = createRequire(import.meta.url);
const lib = require('../../lib/index.js');

function fsRead(t) {
  const buf = Buffer.allocUnsafe(t.chunkBytes);
  const passes = [];
  for (let p = 0; p < t.passes; p++) {
    let bytes = 0;
    const s = performance.now();
    for (const f of t.files) {
      const fd = openSync(f, 'r');
      try {
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, null);
          if (n <= 0) break;
          bytes += n;
        }
      } finally {
        closeSync(fd);
      }
    }
    passes.push({ ms: performance.now() - s, bytes });
  }
  return { passes };
}

/** Every record of the store's documents, once each, in storage order. */
function allRefs(store, docs) {
  const seen = new Set();
  const refs = [];
  for (let i = 0; i < docs; i++) {
    const ws = store.document(docId(i));
    if (!ws) throw new Error(`document ${docId(i)} is not in ${store.dir}`);
    for (const r of ws) {
      const h = r.key.toString('hex');
      if (seen.has(h)) continue;
      seen.add(h);
      refs.push(r);
    }
  }
  refs.sort((a, b) => a.segment - b.segment || a.offset - b.offset);
  return refs;
}

/**
 * Runs `store.batches()` and records when the native prefetcher was created: the generator builds
 * its plan (one index lookup per schedule entry) first, then creates the prefetcher, so
 * [start, created] is index work and [created, end] is reading.
 */
function watchPrefetcher(store) {
  const box = { createdAt: null, pf: null };
  Object.defineProperty(store, 'lastPrefetcher', {
    configurable: true,
    get: () => box.pf,
    set: (v) => {
      box.pf = v;
      box.createdAt = performance.now();
    },
  });
  return box;
}

async function storeRead(t) {
  const store = await lib.ActivationStore.open(t.dir);
  try {
    const box = watchPrefetcher(store);
    let refs = allRefs(store, t.docs);
    if (t.order === 'rand') refs = shuffled(refs, t.seed);
    const keys = refs.map((r) => r.key);
    const storedBytes = refs.reduce((a, r) => a + r.bytes, 0);
    const tokens = refs.reduce((a, r) => a + r.tokens, 0);
    const H = store.identity.hidden;
    const passes = [];
    let sink = 0;
    for (let p = 0; p < t.passes; p++) {
      if (t.method === 'batches') {
        const s = performance.now();
        let rows = 0;
        let paddedValues = 0;
        for await (const b of store.batches(keys, { batchSize: t.batchSize, prefetch: t.prefetch, verify: t.verify })) {
          rows += b.hidden.shape[0];
          paddedValues += b.hidden.data.length;
          sink += b.hidden.data[0] + b.attentionMask[0]; // consume: touch the batch
        }
        const e = performance.now();
        const st = store.lastPrefetcher.stats();
        passes.push({
          ms: e - box.createdAt,
          planMs: box.createdAt - s,
          totalMs: e - s,
          bytes: st.bytesRead,
          rows,
          outBytes: paddedValues * 4,
          decodeMs: st.decodeMs,
          consumerWaitMs: st.consumerWaitMs,
        });
      } else {
        const s = performance.now();
        let outBytes = 0;
        for (const r of refs) {
          const x = store.read(r, t.verify);
          outBytes += x.data.length * 4;
          sink += x.data[0];
        }
        passes.push({ ms: performance.now() - s, bytes: storedBytes, rows: refs.length, outBytes });
      }
    }
    return { records: refs.length, tokens, storedBytes, hidden: H, passes, sink: Number.isFinite(sink) };
  } finally {
    store.close();
  }
}

async function consume(t) {
  const enc = await lib.Encoder.load(t.model, { threads: t.threads });
  const store = await lib.ActivationStore.open(t.dir);
  try {
    const box = watchPrefetcher(store);
    const refs = shuffled(allRefs(store, t.docs), t.seed).slice(0, t.limit);
    const keys = refs.map((r) => r.key);
    const H = store.identity.hidden;
    // warm-up: one suffix forward at the batch shape (thread pool, kernel selection), untimed
    const T = Math.max(...refs.map((r) => r.tokens));
    const rows = Math.min(t.batchSize, refs.length);
    const warm = lib.tensor(new Float32Array(rows * T * H).fill(0.01), [rows, T, H]);
    const wS = performance.now();
    await enc.forwardFrom(warm, new Int32Array(rows * T).fill(1), { fromLayer: t.layer });
    const warmupMs = performance.now() - wS;

    const it = store.batches(keys, { batchSize: t.batchSize, prefetch: t.prefetch });
    const s = performance.now();
    let jsWaitMs = 0;
    let computeMs = 0;
    let batches = 0;
    let firstBatchMs = 0;
    for (;;) {
      const w0 = performance.now();
      const r = await it.next();
      const w1 = performance.now();
      if (batches === 0) firstBatchMs = w1 - box.createdAt;
      if (batches > 0 || r.done) jsWaitMs += w1 - w0;
      else jsWaitMs += w1 - box.createdAt; // the first wait: from the prefetcher's start, not the plan
      if (r.done) break;
      const c0 = performance.now();
      await enc.forwardFrom(r.value.hidden, r.value.attentionMask, { fromLayer: t.layer });
      computeMs += performance.now() - c0;
      batches++;
    }
    const e = performance.now();
    const st = store.lastPrefetcher.stats();
    return {
      records: refs.length,
      batches,
      warmupMs,
      planMs: box.createdAt - s,
      ms: e - box.createdAt, // the loop, from the prefetcher's creation (plan excluded)
      computeMs,
      jsWaitMs,
      firstBatchMs,
      consumerWaitMs: st.consumerWaitMs,
      decodeMs: st.decodeMs,
      bytesRead: st.bytesRead,
      bufferBytes: st.bufferBytes,
    };
  } finally {
    store.close();
    enc.close?.();
  }
}

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const results = [];
  for (const t of spec.tasks) {
    if (t.kind === 'fsread') results.push(fsRead(t));
    else if (t.kind === 'store') results.push(await storeRead(t));
    else if (t.kind === 'consume') results.push(await consume(t));
    else throw new Error(`unknown task kind ${t.kind}`);
  }
  process.stdout.write(JSON.stringify({ results }) + '\n');
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
