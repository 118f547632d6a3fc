// Renders a store benchmark result (the object bench/store.mjs writes as JSON) as a markdown report.
import { fmtMs, fmtNum, fmtPct } from './stats.mjs';

function table(header, rows, leftCols = 1) {
  const out = [`| ${header.join(' | ')} |`, `|${header.map((h, i) => (i < leftCols ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const r of rows) out.push(`| ${r.join(' | ')} |`);
  return out.join('\n');
}

const gbs = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const pct1 = (x) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : 'n/a');
const mb = (b) => (Number.isFinite(b) ? `${(b / 1e6).toFixed(1)} MB` : 'n/a');
const yes = (ok) => (ok ? 'met' : '**not met**');

const ORDER_LABEL = { seq: 'sequential', rand: 'random' };
const READ_ROWS = [
  ['batches-pf0', '`batches()`, prefetch off'],
  ['batches-pf2', '`batches()`, prefetch depth 2'],
  ['read', '`read(ref)` per record'],
];

export function renderStoreMarkdown(res) {
  const m = res.meta;
  const L = [];
  L.push(`# Activation-store benchmark, ${m.date}${m.quick ? ' (QUICK smoke run: a tiny store, not a measurement)' : ''}`);
  L.push('');
  const cpu = m.cpu;
  L.push(`- **CPU**: ${cpu.model} (vendor ${cpu.vendor}, family ${cpu.family}, model ${cpu.modelNumber}${cpu.hypervisor ? ', under a hypervisor' : ''}); SIMD: ${cpu.simd.join(' ') || 'n/a'}; kernels ${m.versions.cpuInfo?.kernels ?? 'n/a'}`);
  L.push(`- **Threads**: nproc ${m.nproc}; encoder ${m.threads.encoder} threads (prefix and suffix layers), prefetcher 1 native thread, decode kernel and fs reads single-threaded; load average at start ${m.loadAverage.start.join(' / ')}, at end ${m.loadAverage.end ? m.loadAverage.end.join(' / ') : 'n/a'}`);
  L.push(`- **Versions**: embedding-recycler ${m.versions.package} (git ${m.versions.git.commit ?? 'n/a'}${m.versions.git.dirty ? ', with uncommitted changes' : ''}); Node ${m.versions.node}`);
  L.push(`- **Model**: ${m.model}, layer ${m.layer} stored, windows of ${m.maxLength} tokens at stride ${m.stride}, batches of ${m.batchSize}`);
  L.push(`- **Text**: ${m.corpus.source}; ${m.corpus.realSentences} real sentences${m.corpus.syntheticSentences ? `, ${m.corpus.syntheticSentences} synthetic` : ''}`);
  if (res.stores) {
    for (const s of Object.values(res.stores)) {
      const st = s.stats;
      L.push(`- **${s.dtype} store**: ${st.records} records (${st.docs} documents, ${st.tokens} tokens, ${fmtNum(st.tokens / st.records, 1)} tokens per record), ${mb(st.bytes)} committed in ${s.files.length} segment file(s), index ${mb(s.indexBytes)}${s.built ? `; built in this run in ${fmtNum(s.built.ms / 1000, 1)} s` : ' (cached from an earlier run)'}`);
    }
  }
  L.push(`- **Run time**: ${fmtNum(m.durationS, 0)} s${m.storePrepareS !== undefined ? ` (of which ${fmtNum(m.storePrepareS, 1)} s opening or building the stores)` : ''}`);
  if (m.contention) L.push(`- **Contention**: other processes used ${fmtPct(m.contention.foreign)} of the CPU time over the whole run, the hypervisor stole ${fmtPct(m.contention.steal)}`);
  const noisy = Object.entries(res.sections).filter(([, s]) => s.contention && s.contention.foreign + s.contention.steal > 0.05);
  if (noisy.length) {
    L.push(`- **WARNING: the machine was not quiet** during: ${noisy.map(([k, s]) => `${k} (other processes ${fmtPct(s.contention.foreign)}, steal ${fmtPct(s.contention.steal)})`).join('; ')}; rerun those numbers on a quiet machine.`);
  }
  L.push('');

  const goals = [];
  const rd = res.sections.read;
  if (rd) {
    L.push('## 1. Read throughput: the store against a plain `fs` read of the same bytes');
    L.push('');
    L.push('GB/s of stored bytes (record headers, payload, padding; 1 GB = 1e9 bytes); "of fs" = the store path over the ceiling: a sequential `fs.readSync` of the segment files into a reused buffer, the better of 1 and 4 MiB chunks, in the same cache state. Warm: the files in the page cache, median of the passes after the first in a process (the first pass also fills the page tables: in the JSON). Cold: the segment files\' pages evicted with `posix_fadvise(POSIX_FADV_DONTNEED)` just before one pass in a fresh process (the SQLite index stays cached). Random order: the records shuffled (seeded). `batches()` times start when the prefetcher exists: the setup before it (one index lookup per schedule entry, the plan arrays, allocating the ring buffers) is shown apart ("Setup ms", median); CRC32C is checked on every record unless marked.');
    L.push('');
    const rows = [];
    for (const [dtype, r] of Object.entries(rd.byDtype)) {
      for (const ch of ['1MiB', '4MiB']) {
        const w = r.warm[`fs-${ch}`];
        const c = r.cold[`fs-${ch}`];
        rows.push([dtype, `fs.readSync, ${ch.replace('MiB', ' MiB')} chunks`, 'sequential', gbs(w.gbs), pct1(w.ofCeiling), gbs(c.gbs), pct1(c.ofCeiling), '']);
      }
      for (const [id, label] of READ_ROWS) {
        for (const order of ['seq', 'rand']) {
          const w = r.warm[`${id}-${order}`];
          const c = r.cold[`${id}-${order}`];
          const plan = w.firstPass?.planMs !== undefined ? fmtMs(median2(w.passes.map((p) => p.planMs))) : '';
          rows.push([dtype, label, ORDER_LABEL[order], gbs(w.gbs), pct1(w.ofCeiling), gbs(c.gbs), pct1(c.ofCeiling), plan]);
        }
      }
      for (const [id, label] of [['batches-pf0-nocrc-seq', '`batches()`, prefetch off, **CRC off**'], ['read-nocrc-seq', '`read(ref, false)`, **CRC off**']]) {
        const w = r.warm[id];
        if (!w) continue;
        const plan = w.firstPass?.planMs !== undefined ? fmtMs(median2(w.passes.map((p) => p.planMs))) : '';
        rows.push([dtype, label, 'sequential', gbs(w.gbs), pct1(w.ofCeiling), '', '', plan]);
      }
    }
    L.push(table(['Store', 'Read path', 'Order', 'Warm GB/s', 'Warm, of fs', 'Cold GB/s', 'Cold, of fs', 'Setup ms'], rows, 3));
    L.push('');
    for (const [dtype, r] of Object.entries(rd.byDtype)) {
      const e = r.evictionWorked;
      L.push(`- **Eviction (${dtype})**: at most ${pct1(e.maxResidentAfterEvict)} of the segment bytes were still in the page cache after \`posix_fadvise(DONTNEED)\` (mincore), and the cold fs read ran at ${pct1(e.coldOverWarmFs)} of the warm one: ${e.verdict ? 'eviction worked' : '**eviction may not have worked; the cold numbers may be warm**'}. (On a VM the host may still cache the disk image: "cold" is cold for this kernel.)`);
      const crcW = r.warm['batches-pf0-seq'];
      const noCrc = r.warm['batches-pf0-nocrc-seq'];
      if (crcW && noCrc) L.push(`- **CRC32C cost (${dtype}, warm, sequential, prefetch off)**: ${gbs(noCrc.gbs)} GB/s without, ${gbs(crcW.gbs)} GB/s with the check (${pct1(1 - crcW.gbs / noCrc.gbs)} slower)`);
      for (const state of ['warm', 'cold']) {
        const best = Math.max(r[state]['batches-pf0-seq'].ofCeiling, r[state]['batches-pf2-seq'].ofCeiling);
        goals.push(`store reads at >= 80% of the fs ceiling (${dtype}, ${state}, sequential \`batches()\`): ${pct1(best)}: ${yes(best >= 0.8)}`);
      }
    }
    L.push('');
  }

  const dc = res.sections.decode;
  if (dc) {
    L.push('## 2. FP16 -> FP32 decode against memcpy');
    L.push('');
    L.push('The store\'s decode kernel (`f16ToF32`, the one the reader runs per record) and `memcpy` of fp32 values of the same output size, both single-threaded in the addon, alternated; GB/s of output (fp32) bytes, median of the trials (best in the JSON). Decode reads half the bytes memcpy reads.');
    L.push('');
    L.push(table(['Size', 'fp32 output', 'f16->f32 GB/s', 'memcpy GB/s', 'decode / memcpy'], dc.sizes.map((s) => [s.label, mb(s.outBytes), gbs(s.decodeGBs), gbs(s.memcpyGBs), pct1(s.ratio)])));
    L.push('');
    const worst = Math.min(...dc.sizes.map((s) => s.ratio));
    goals.push(`decode at >= 50% of memcpy: lowest ${pct1(worst)} over the sizes: ${yes(worst >= 0.5)}`);
    L.push(`Max relative error of the decoded values against their fp32 source (spot check): ${Math.max(...dc.sizes.map((s) => s.maxRelError)).toExponential(1)} (half precision: <= 4.9e-4).`);
    L.push('');
  }

  const pf = res.sections.prefetch;
  if (pf) {
    L.push('## 3. Prefetch on vs off, the suffix layers as the consumer');
    L.push('');
    L.push(`The consumer runs \`encoder.forwardFrom(batch.hidden, batch.attentionMask, { fromLayer: ${m.layer} })\` (layers ${m.layer + 1}..N of the real model, ${m.threads.encoder} threads) on every batch of ${pf.consumeRecords} records in a shuffled order (the same subset and order for every run); one untimed suffix forward first. "Wait" is the prefetcher's own count of the time the consumer spent waiting for a batch (\`lastPrefetcher.stats().consumerWaitMs\`; with prefetch off it is the whole read and decode, done on demand); the share is of the loop time (from the prefetcher's start to the last batch; the setup before it is excluded). Cold: segment pages evicted before the run.`);
    L.push('');
    const rows = [];
    for (const [dtype, r] of Object.entries(pf.byDtype)) {
      for (const x of r.runs) {
        rows.push([
          dtype, x.cache, x.depth === 0 ? 'off' : String(x.depth), String(x.batches), fmtNum(x.ms / 1000, 2), fmtNum(x.computeMs / 1000, 2),
          fmtMs(x.consumerWaitMs), pct1(x.waitShare), fmtMs(x.jsWaitMs), fmtMs(x.decodeMs), mb(x.bytesRead),
        ]);
      }
      for (const cache of ['warm', 'cold']) {
        const on = r.runs.filter((x) => x.cache === cache && x.depth > 0);
        if (on.length) {
          const worst = Math.max(...on.map((x) => x.waitShare));
          goals.push(`with prefetching the consumer waits < 5% of its time (${dtype}, ${cache}): at most ${pct1(worst)} over depths ${on.map((x) => x.depth).join(', ')}: ${yes(worst < 0.05)}`);
        }
      }
    }
    L.push(table(['Store', 'Cache', 'Prefetch', 'Batches', 'Loop s', 'Compute s', 'Wait ms', 'Wait, of loop', 'JS-side wait ms', 'Decode ms', 'Read'], rows, 3));
    L.push('');
    L.push('"JS-side wait": time spent awaiting the generator\'s next batch as measured in JavaScript (the native wait plus the hand-over to the event loop). "Decode ms": the time spent reading and decoding batches, on the prefetch thread or, with prefetch off, on demand.');
    L.push('');
  }

  const en = res.sections.encode;
  if (en) {
    L.push('## 4. Encode throughput and bytes per token');
    L.push('');
    L.push(`\`store.encode()\` of ${en.docs} documents into a new store (prefix layers 1..${m.layer}, batches of ${m.batchSize} windows), against the plain prefix pass over the same windows in the same batches: tokenizing into windows (\`tokenizer.encodeWindows\`) plus \`encoder.forward(batch, { toLayer: ${m.layer} })\` (the mean of a run before and one after the encodes). "Store overhead" = encode time minus plain tokenize and forward time: hashing keys, converting and writing records, fdatasync, the SQLite commit per batch. Bytes per token: committed segment bytes / stored tokens (headers and 64-byte alignment included); the payload alone is ${en.runs.map((r) => `${r.dtype === 'fp16' ? 2 : 4} x H`).join(' / ')}.`);
    L.push('');
    L.push(table(
      ['dtype', 'Texts', 'Windows', 'Tokens', 'Encode s', 'Texts/s', 'Tokens/s', 'Plain forward s', 'Plain tokenize s', 'Store overhead', 'Bytes/token', 'Index bytes/record'],
      en.runs.map((r) => [
        r.dtype, String(r.progress.textsDone), String(r.progress.windowsDone), String(r.progress.tokensDone), fmtNum(r.encodeMs / 1000, 2),
        fmtNum(r.textsPerS, 1), fmtNum(r.tokensPerS, 0), fmtNum(r.plainForwardMs / 1000, 2), fmtNum(r.plainTokenizeMs / 1000, 2),
        `${fmtNum(r.overheadMs / 1000, 2)} s (${pct1(r.overheadShare)})`, fmtNum(r.bytesPerToken, 1), fmtNum(r.indexBytesPerRecord, 0),
      ]),
    ));
    L.push('');
  }

  if (goals.length) {
    L.push('## Goals (issue 3)');
    L.push('');
    for (const g of goals) L.push(`- ${g}`);
    L.push('');
  }
  return L.join('\n');
}

function median2(xs) {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}
