// The store index's cost per operation, on the store's own statements: the index in
// the native addon (SQLite linked from the system) against better-sqlite3 (the
// index's library up to 0.1.0, which compiles at install time), when it is installed
// (`npm install --no-save better-sqlite3@12`). Writes bench/results/index-lookup-<date>.{md,json}.
//   node bench/index-lookup.mjs [--records 100000] [--allow-dirty]
import { createRequire } from 'module';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cpuDescription, nproc, localDate } from './lib/system.mjs';
import { checkTree, cpuText, writeResults } from './lib/cli.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { IndexDatabase } = require(path.join(root, 'lib', 'store', 'sqlite'));
const { INDEX_SCHEMA } = require(path.join(root, 'lib', 'store', 'format'));
const { native } = require(path.join(root, 'lib', 'native', 'binding'));
const argi = process.argv.indexOf('--records');
const N = argi > 0 ? Number(process.argv[argi + 1]) : 100000;
const allowDirty = process.argv.includes('--allow-dirty');
const start = checkTree(root, { allowDirty });

const engines = [['native (addon, SQLite ' + native().sqliteVersion + ')', (f) => new IndexDatabase(f)]];
try {
  const B = require('better-sqlite3');
  const v = new B(':memory:').prepare('SELECT sqlite_version() AS v').get().v;
  engines.push([`better-sqlite3 ${require('better-sqlite3/package.json').version} (SQLite ${v})`, (f) => new B(f)]);
} catch {
  console.log('better-sqlite3 is not installed: measuring the native index alone');
}

const keys = Array.from({ length: N }, () => crypto.randomBytes(32));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-index-bench-'));
const us = (t0, n) => Number(process.hrtime.bigint() - t0) / 1e3 / n;

function measure(name, open, round) {
  const file = path.join(tmp, `${round}-${name.length}-${Math.random().toString(36).slice(2)}.sqlite`);
  const db = open(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(INDEX_SCHEMA);
  const ins = db.prepare('INSERT OR IGNORE INTO records (key, segment, offset, bytes, tokens, crc) VALUES (?, ?, ?, ?, ?, ?)');
  const tx = db.transaction((lo, hi) => { for (let i = lo; i < hi; i++) ins.run(keys[i], 1, i * 4096, 4096, 128, 123456789); });
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i += 256) tx(i, Math.min(N, i + 256));
  const insert = us(t0, N);
  const get = db.prepare('SELECT segment, offset, bytes, tokens FROM records WHERE key = ?');
  const has = db.prepare('SELECT 1 FROM records WHERE key = ?').pluck();
  const order = Array.from({ length: N }, (_, i) => (i * 7919) % N);
  let s = 0;
  for (let i = 0; i < Math.min(N, 20000); i++) s += get.get(keys[order[i]]).offset; // warm-up
  t0 = process.hrtime.bigint();
  for (let r = 0; r < 3; r++) for (const i of order) s += get.get(keys[i]).offset;
  const lookup = us(t0, 3 * N);
  t0 = process.hrtime.bigint();
  for (const i of order) s += has.get(keys[i]);
  const exists = us(t0, N);
  t0 = process.hrtime.bigint();
  let n = 0;
  for (const r of db.prepare('SELECT key, segment, offset, bytes, tokens FROM records').iterate()) n += r.tokens > 0 ? 1 : 0;
  const scan = us(t0, n);
  db.close();
  return { insertUs: insert, lookupUs: lookup, existsUs: exists, scanUsPerRow: scan, checksum: s };
}

// rounds alternate between the engines; each figure is the median over the rounds
const ROUNDS = 5;
const samples = engines.map(() => []);
for (let round = 0; round < ROUNDS; round++) {
  engines.forEach(([name, open], e) => samples[e].push(measure(name, open, round)));
}
const med = (xs) => { const a = [...xs].sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
const rows = engines.map(([name], e) => {
  const r = { engine: name };
  for (const k of ['insertUs', 'lookupUs', 'existsUs', 'scanUsPerRow']) r[k] = med(samples[e].map((x) => x[k]));
  r.rounds = samples[e];
  console.log(name, r.lookupUs.toFixed(2), r.existsUs.toFixed(2));
  return r;
});
fs.rmSync(tmp, { recursive: true, force: true });

const cpu = cpuDescription();
const date = localDate();
const f = (x) => x.toFixed(2);
let md = `# Store index: cost per operation (${date})\n\n${cpuText(cpu)}, ${nproc()} CPUs, Node ${process.version}.\n` +
  `${N} records with 32-byte keys in the store's schema (WAL, synchronous = FULL); lookups in a scattered order, 3 passes; ${ROUNDS} rounds alternating between the engines, medians.\n\n` +
  '| engine | insert (µs/row, 256 per transaction) | lookup by key (µs) | exists (µs) | full scan (µs/row) |\n|---|---:|---:|---:|---:|\n';
for (const r of rows) md += `| ${r.engine} | ${f(r.insertUs)} | ${f(r.lookupUs)} | ${f(r.existsUs)} | ${f(r.scanUsPerRow)} |\n`;
if (rows.length === 2) md += `\nRatio native / better-sqlite3: lookup ${f(rows[0].lookupUs / rows[1].lookupUs)}, exists ${f(rows[0].existsUs / rows[1].existsUs)}, insert ${f(rows[0].insertUs / rows[1].insertUs)}, scan ${f(rows[0].scanUsPerRow / rows[1].scanUsPerRow)}.\n`;
fs.mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
writeResults(path.join(root, 'bench', 'results', `index-lookup-${date}`), md, { cpu, records: N, rows }, 'index-lookup', { root, allowDirty, start });
console.log(md);
