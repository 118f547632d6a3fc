#!/usr/bin/env node
// npm run bench:micro: micro-benchmarks (benny) of the pieces every path runs through:
// fp16 decode, CRC32C, LayerNorm, GELU (the engine's kernels, through the addon's
// microKernel export), one encoder layer forward (Encoder.forwardFrom, layer k -> k+1),
// one store record read (ActivationStore.read, CRC checked), tokenizing a batch
// (Encoder.tokenize). Each is timed as a user calls it; rates are per call.
// Results: bench/results/micro-<date>.{md,json} (refused from a dirty tree unless --allow-dirty).
//   node bench/micro.mjs [--model DIR] [--max-time S] [--allow-dirty] [--out DIR]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';
import { createRequire } from 'module';
import b from 'benny';
import { cpuDescription, nproc, localDate } from './lib/system.mjs';
import { checkTree, cpuText, writeResults } from './lib/cli.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const require = createRequire(import.meta.url);
const { Encoder, ActivationStore, cpuInfo } = require(path.join(ROOT, 'lib'));
const { native } = require(path.join(ROOT, 'lib', 'native', 'binding'));

const args = process.argv.slice(2);
const flag = (n, d) => (args.includes(n) ? args[args.indexOf(n) + 1] : d);
const allowDirty = args.includes('--allow-dirty');
const modelDir = path.resolve(flag('--model', path.join(ROOT, 'models', 'all-MiniLM-L6-v2')));
const maxTime = Number(flag('--max-time', '2'));
const outDir = path.resolve(flag('--out', path.join(ROOT, 'bench', 'results')));
const start = checkTree(ROOT, { allowDirty, dest: path.join(outDir, 'x') });
if (!fs.existsSync(path.join(modelDir, 'config.json'))) throw new Error(`${modelDir}: no model (npm run fetch-model)`);

const threads = cpuInfo().defaultThreads;
const enc = await Encoder.load(modelDir, { threads });
const H = enc.hidden, T = 128, B = 8, k = Math.floor(enc.numLayers / 2);
const rand = (n, seed = 1) => { let s = seed; const a = new Float32Array(n); for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) >>> 0; a[i] = (s / 2 ** 32) * 4 - 2; } return a; };

// inputs
const recordValues = T * H;                                   // one 128-token record
const f16 = new Uint16Array(recordValues).map((_, i) => 0x3c00 + (i % 1024));
const f32 = new Float32Array(recordValues);
const bytes = new Uint8Array(recordValues * 2).map((_, i) => (i * 31) & 255);
const lnIn = rand(T * H), lnOut = new Float32Array(T * H), gamma = rand(H, 2), beta = rand(H, 3);
const geluIn = rand(T * 4 * H), geluOut = new Float32Array(T * 4 * H);
const words = 'the protein binds to the receptor and inhibits kinase activity in tumour cells'.split(' ');
const sentence = (i) => Array.from({ length: 24 + (i % 40) }, (_, j) => words[(i * 7 + j) % words.length]).join(' ');
const texts = Array.from({ length: 32 }, (_, i) => sentence(i));
const batch = await enc.tokenize(Array.from({ length: B }, (_, i) => sentence(i * 3) + ' ' + sentence(i * 5) + ' ' + sentence(i)), { maxLength: T, padding: 'max_length' });
const hk = await enc.forward(batch, { toLayer: k });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-micro-'));
const store = await ActivationStore.create(path.join(tmp, 'store'), enc, { layer: k, dtype: 'fp16', maxLength: T, stride: 32 });
await store.encode(Array.from({ length: 16 }, (_, i) => ({ id: `d${i}`, text: sentence(i) + ' ' + sentence(i + 1) + ' ' + sentence(i + 2) })));
const refs = Array.from({ length: 16 }, (_, i) => store.document(`d${i}`)[0]);
const refTokens = refs.reduce((a, r) => a + r.tokens, 0) / refs.length;
const mk = native().microKernel;

const cases = [
  { name: `fp16 decode (${T}x${H} values)`, bytes: recordValues * 2, fn: () => native().f16ToF32(f16, f32, 1) },
  { name: `CRC32C (${recordValues * 2} bytes)`, bytes: recordValues * 2, fn: () => mk('crc32c', bytes, 1) },
  { name: `LayerNorm (${T}x${H})`, bytes: T * H * 4, fn: () => mk('layerNorm', lnIn, lnOut, gamma, beta, 1) },
  { name: `GELU (${T}x${4 * H})`, bytes: T * 4 * H * 4, fn: () => mk('gelu', geluIn, geluOut, 1) },
  { name: `encoder layer ${k + 1} forward (B=${B}, T=${T}, ${threads} threads)`, fn: async () => { await enc.forwardFrom(hk, batch.attentionMask, { fromLayer: k, toLayer: k + 1 }); } },
  { name: `store record read (fp16, ~${Math.round(refTokens)} tokens, CRC checked)`, fn: (() => { let i = 0; return () => store.read(refs[i++ % refs.length]); })() },
  { name: `tokenize a batch (${texts.length} texts, max 128)`, fn: async () => { await enc.tokenize(texts, { maxLength: 128 }); } },
];

let summary;
await b.suite(
  'embedding-recycler micro-benchmarks',
  ...cases.map((c) => b.add(c.name, c.fn, { maxTime, minSamples: 5 })),
  b.cycle(),
  b.complete((s) => { summary = s; }),
);
store.close();
enc.close();
fs.rmSync(tmp, { recursive: true, force: true });

const cpu = cpuDescription();
const rows = summary.results.map((r, i) => {
  const us = 1e6 / r.ops;
  const gbs = cases[i].bytes ? (cases[i].bytes / (us * 1e-6)) / 1e9 : null;
  return { name: r.name, opsPerSecond: r.ops, usPerCall: us, marginPct: r.margin, samples: r.samples, gbPerSecond: gbs };
});
const date = localDate();
let md = `# Micro-benchmarks (${date})\n\n${cpuText(cpu)}, ${nproc()} CPUs, kernels ${cpuInfo().kernels}, ${cpuInfo().gemm}, ` +
  `Node ${process.version}, benny 3.7.1 (max ${maxTime} s a case). Model: ${path.basename(modelDir)} (hidden ${H}); the engine's threads: ${threads}.\n\n` +
  '| case | µs per call | calls/s | ± % | GB/s |\n|---|---:|---:|---:|---:|\n';
for (const r of rows) md += `| ${r.name} | ${r.usPerCall < 100 ? r.usPerCall.toFixed(2) : r.usPerCall.toFixed(0)} | ${r.opsPerSecond.toFixed(0)} | ${r.marginPct.toFixed(1)} | ${r.gbPerSecond === null ? '' : r.gbPerSecond.toFixed(2)} |\n`;
md += '\nGB/s is the input bytes over the time per call (fp16 decode and CRC32C: a record\'s bytes; LayerNorm and GELU: fp32 input).\n';
fs.mkdirSync(outDir, { recursive: true });
writeResults(path.join(outDir, `micro-${date}`), md, { cpu, nproc: nproc(), threads, model: path.basename(modelDir), maxTime, rows }, 'micro', { root: ROOT, allowDirty, start });
console.log(md);
