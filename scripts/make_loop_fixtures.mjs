// Fixtures of the training loop's parity with PyTorch (test/train/loop-parity.test.ts): small
// generated tasks (test/fixtures/loop/), and for each case the loss of every training step of
// PyTorch's run (bench/peers/torch_finetune.py) made equal to ours where chance enters: our
// initial head copied in (--init-head), our example order (--engine-order), no dropout.
//
//   npm run build:ts && node scripts/make_loop_fixtures.mjs      (needs python3 with torch, transformers)
import { execFileSync } from 'child_process';
import { createRequire } from 'module';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const lib = require(path.join(root, 'lib', 'index.js'));
const fixtures = path.join(root, 'test', 'fixtures');
const dir = path.join(fixtures, 'loop');
fs.mkdirSync(dir, { recursive: true });

// a linear congruential generator: the data are the same on every run
function rng(seed) {
  let s = seed >>> 0;
  return (k) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % k;
  };
}
const FILLER = 'the patients were followed for several months and the results were recorded in the study group'.split(' ');
const TOPICS = { renal: ['kidney', 'renal', 'dialysis'], metabolic: ['insulin', 'glucose', 'diabetes'], cardiac: ['heart', 'cardiac', 'arrhythmia'] };
const ENTITIES = [[['kidney', 'disease'], 'Disease'], [['asthma'], 'Disease'], [['aspirin'], 'Chemical'], [['metformin'], 'Chemical']];

function classification(file, n, seed) {
  const r = rng(seed);
  const labels = Object.keys(TOPICS);
  const lines = [];
  for (let i = 0; i < n; i++) {
    const label = labels[r(labels.length)];
    const words = Array.from({ length: 4 + r(12) }, () => FILLER[r(FILLER.length)]);
    for (let k = 0; k < 2; k++) words.splice(r(words.length), 0, TOPICS[label][r(3)]);
    lines.push(JSON.stringify({ text: words.join(' '), label }));
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

function ner(file, n, seed) {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    const len = 3 + r(6);
    for (let w = 0; w < len; w++) {
      if (r(10) < 3) {
        const [toks, type] = ENTITIES[r(ENTITIES.length)];
        toks.forEach((t, j) => out.push(`${t} ${j === 0 ? 'B' : 'I'}-${type}`));
      } else {
        out.push(`${FILLER[r(FILLER.length)]} O`);
      }
    }
    out.push('');
  }
  fs.writeFileSync(file, out.join('\n'));
}

const cls = path.join(dir, 'classification.jsonl');
const tags = path.join(dir, 'ner.conll');
classification(cls, 40, 11);
ner(tags, 40, 12);

const CASES = [
  { name: 'bert-classification', model: 'tiny-bert', task: 'classification', file: 'classification.jsonl', lr: 1e-3 },
  { name: 'bert-ner', model: 'tiny-bert', task: 'ner', file: 'ner.conll', lr: 1e-3 },
  { name: 'roberta-ner', model: 'tiny-roberta', task: 'ner', file: 'ner.conll', lr: 1e-3 },
];
const common = { epochs: 2, batchSize: 8, maxLength: 64, seed: 3, warmupRatio: 0.1 };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-loop-fixtures-'));
const out = { ...common, cases: [] };
try {
  for (const c of CASES) {
    const model = path.join(fixtures, c.model);
    const data = path.join(dir, c.file);
    // the head our trainTask starts from: built as it builds it, with the same seed
    const { spec } = await lib.trainTask({ task: c.task, train: data, mode: 'full', model, lr: c.lr, epochs: 1, batchSize: common.batchSize, maxLength: common.maxLength, seed: common.seed, dropout: 0, out: path.join(tmp, c.name), warn: () => {} });
    const enc = await lib.Encoder.load(model);
    const fresh = lib.TaskModel.create(enc, { mode: 'full', head: { kind: c.task === 'ner' ? 'token' : 'sequence', numLabels: spec.labels.length }, seed: common.seed });
    const head = path.join(tmp, `${c.name}-head.json`);
    fs.writeFileSync(head, JSON.stringify({ weight: Array.from(fresh.parameter('head.weight')), bias: Array.from(fresh.parameter('head.bias')) }));
    enc.close();
    const trace = path.join(tmp, `${c.name}-trace.json`);
    execFileSync('python3', [path.join(root, 'bench', 'peers', 'torch_finetune.py'), '--task', c.task, '--model', model, '--train', data, '--dev', data, '--test', data,
      '--lr', String(c.lr), '--epochs', String(common.epochs), '--patience', String(common.epochs), '--batch-size', String(common.batchSize),
      '--max-length', String(common.maxLength), '--seed', String(common.seed), '--warmup-ratio', String(common.warmupRatio), '--threads', '1',
      '--dropout', '0', '--engine-order', '--init-head', head, '--trace', trace], { stdio: ['ignore', 'ignore', 'inherit'] });
    out.cases.push({ ...c, labels: spec.labels, losses: JSON.parse(fs.readFileSync(trace, 'utf8')).map((t) => t.loss) });
    process.stderr.write(`${c.name}: ${out.cases.at(-1).losses.length} steps\n`);
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
fs.writeFileSync(path.join(fixtures, 'loop-parity.json'), JSON.stringify(out, null, 1) + '\n');
process.stderr.write(`wrote ${path.join(fixtures, 'loop-parity.json')}\n`);
