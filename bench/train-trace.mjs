// One fine-tuning run, ours and PyTorch's, made identical where chance enters: the same
// initial head (ours, given to PyTorch), the same example order every epoch (PyTorch's peer
// shuffles with our generator), the same rates, and no dropout. Then every training step's
// loss of the two runs side by side: if the engines train alike, the two curves agree (up
// to float rounding, which grows along the run), and whichever of them leaves a plateau
// does so at the same step. A gap between the accuracy benchmark's two engines that this
// run does not show comes from what it fixed: initialisation, order, dropout masks.
//
//   node bench/train-trace.mjs --task ncbi|chemprot|scicite [--model all-mpnet-base-v2] [--lr 2e-4]
//        [--epochs 3] [--batch 16] [--max-length 128] [--seed 1] [--threads 2] [--name NAME] [--allow-dirty] [--results DIR]
//        [--control]
//
// --control runs PyTorch a second time from a head one float rounding away (every initial
// head weight moved to the next float32 up): the same run but for a difference of the size
// float rounding makes. How far PyTorch's two runs drift apart is the yardstick for how far
// ours drifts from PyTorch's.
//
// Reads the splits bench/accuracy.mjs wrote to bench/.work/accuracy/<task>-{train,dev,test}.*
// (run it first). Writes bench/results/train-trace-<date>-<name>.{md,json} (--results DIR: there
// instead; under bench/.work for a smoke run).
import { createRequire } from 'module';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';
import { checkTree, cpuText, flagReader, writeResults } from './lib/cli.mjs';
import { cpuDescription, gitInfo, localDate } from './lib/system.mjs';
import { runPythonJson } from './lib/python.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const lib = require(path.join(root, 'lib', 'index.js'));

const args = process.argv.slice(2);
const flag = flagReader(args);
const allowDirty = args.includes('--allow-dirty');
const TASKS = {
  chemprot: { kind: 'classification', ext: 'jsonl', metric: 'microF1' },
  scicite: { kind: 'classification', ext: 'jsonl', metric: 'macroF1' },
  ncbi: { kind: 'ner', ext: 'conll', metric: 'entityF1' },
};
const task = flag('task', 'ncbi');
const spec = TASKS[task];
if (!spec) throw new Error(`--task must be one of ${Object.keys(TASKS).join(', ')}, got ${task}`);
const modelArg = flag('model', 'all-mpnet-base-v2');
const model = fs.existsSync(path.join(root, 'models', modelArg)) ? path.join(root, 'models', modelArg) : path.resolve(modelArg);
const lr = Number(flag('lr', '2e-4'));
const epochs = Number(flag('epochs', '3'));
const batch = Number(flag('batch', '16'));
const seed = Number(flag('seed', '1'));
const threads = Number(flag('threads', '2'));
const MAXLEN = Number(flag('max-length', '128'));
const work = path.join(root, 'bench', '.work', 'accuracy');
const files = Object.fromEntries(['train', 'dev', 'test'].map((s) => [s, path.join(work, `${task}-${s}.${spec.ext}`)]));
for (const f of Object.values(files)) if (!fs.existsSync(f)) throw new Error(`${f} is missing: run bench/accuracy.mjs --tasks ${task} first (it writes the splits)`);

const resultsDir = path.resolve(flag('results', path.join(root, 'bench', 'results')));
const tree = checkTree(root, { allowDirty, dest: path.join(resultsDir, 'x') });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-trace-'));
try {
  // ours: every step's loss (fit reports the epoch's running mean; each step's is recovered)
  const losses = [], norms = [];
  const t0 = performance.now();
  const out = path.join(tmp, 'task');
  const { spec: ts } = await lib.trainTask({
    task: spec.kind, train: files.train, dev: files.dev, mode: 'full', model, maxLength: MAXLEN, lr, epochs, patience: epochs,
    batchSize: batch, seed, dropout: 0, threads, out, warn: () => {},
    onStep: (p) => {
      losses.push(p.stepLoss);
      norms.push(p.gradNorm);
    },
  });
  const oursSeconds = (performance.now() - t0) / 1000;
  const ev = await lib.evalTask(out, files.test, { warn: () => {} });
  // the head our run started from: a model built as trainTask builds it, with the same seed
  const enc = await lib.Encoder.load(model, { threads });
  const fresh = lib.TaskModel.create(enc, { mode: 'full', head: { kind: spec.kind === 'ner' ? 'token' : 'sequence', numLabels: ts.labels.length }, seed });
  const head = path.join(tmp, 'head.json');
  fs.writeFileSync(head, JSON.stringify({ weight: Array.from(fresh.parameter('head.weight')), bias: Array.from(fresh.parameter('head.bias')) }));
  enc.close();
  // PyTorch's run from a head file, in our order, without dropout, its steps traced to a file
  const runPeer = (headFile, traceFile) => runPythonJson(path.join(here, 'peers', 'torch_finetune.py'), [
    '--task', spec.kind, '--model', model, '--train', files.train, '--dev', files.dev, '--test', files.test, '--lr', String(lr),
    '--epochs', String(epochs), '--patience', String(epochs), '--batch-size', String(batch), '--max-length', String(MAXLEN),
    '--seed', String(seed), '--threads', String(threads), '--dropout', '0', '--engine-order', '--init-head', headFile, '--trace', traceFile,
  ], { threads });
  const trace = path.join(tmp, 'trace.json');
  const t1 = performance.now();
  const peer = await runPeer(head, trace);
  const torchSeconds = (performance.now() - t1) / 1000;
  const theirTrace = JSON.parse(fs.readFileSync(trace, 'utf8'));
  const theirs = theirTrace.map((t) => t.loss), theirNorms = theirTrace.map((t) => t.gradNorm);
  let control = null;
  if (args.includes('--control')) {
    const trace2 = path.join(tmp, 'trace-control.json');
    const head2 = path.join(tmp, 'head-control.json');
    const h = JSON.parse(fs.readFileSync(head, 'utf8'));
    const up = (x) => { const f = new Float32Array([x]); const u = new Uint32Array(f.buffer); u[0] += x >= 0 ? 1 : -1; return f[0]; };
    fs.writeFileSync(head2, JSON.stringify({ weight: h.weight.map((x) => (x === 0 ? x : up(x))), bias: h.bias }));
    const peer2 = await runPeer(head2, trace2);
    control = { losses: JSON.parse(fs.readFileSync(trace2, 'utf8')).map((t) => t.loss), test: peer2.test[spec.metric] };
  }
  if (theirs.length !== losses.length) throw new Error(`ours ran ${losses.length} steps, PyTorch ${theirs.length}`);
  const rel = losses.map((l, i) => Math.abs(l - theirs[i]) / Math.max(Math.abs(theirs[i]), 1e-6));
  const firstAbove = (tol, r = rel) => r.findIndex((x) => x > tol) + 1 || null;
  const relControl = control ? control.losses.map((l, i) => Math.abs(l - theirs[i]) / Math.max(Math.abs(theirs[i]), 1e-6)) : null;
  const results = {
    date: new Date().toISOString(), cpu: cpuDescription(), threads, git: gitInfo(root), task, model: path.basename(model), lr, epochs,
    batch, seed, maxLength: MAXLEN, steps: losses.length, ours: { losses, gradNorms: norms, test: ev.metrics[spec.metric], seconds: oursSeconds },
    torch: { losses: theirs, gradNorms: theirNorms, test: peer.test[spec.metric], seconds: torchSeconds, version: peer.torch },
    firstStepAbove: { '1e-4': firstAbove(1e-4), '1e-3': firstAbove(1e-3), '1e-2': firstAbove(1e-2) },
    control: control ? { ...control, firstStepAbove: { '1e-4': firstAbove(1e-4, relControl), '1e-3': firstAbove(1e-3, relControl), '1e-2': firstAbove(1e-2, relControl) } } : null,
  };
  const mean = (xs) => xs.reduce((a, x) => a + x, 0) / xs.length;
  const lastThird = (xs) => xs.slice(Math.floor((2 * xs.length) / 3));
  const lines = [
    `# One ${task} run traced, ours and PyTorch, ${localDate()}`, '',
    `- **Run**: ${path.basename(model)}, mode full, lr ${lr}, ${epochs} epochs of batch ${batch} (${losses.length} steps), max length ${MAXLEN}, seed ${seed}, no dropout; the splits of bench/.work/accuracy (${task}).`,
    '- **Made equal**: the initial head (ours, copied into PyTorch), the example order of every epoch (the peer shuffles with our generator), warm-up and decay, AdamW, clipping. Not equal: float rounding (the GEMMs, the reductions), which compounds over the steps.',
    `- **Machine**: ${cpuText(cpuDescription())}; ${threads} threads; PyTorch ${peer.torch}.`,
    '',
    `First step where the two losses differ by more than 1e-4 / 1e-3 / 1e-2 (relative): ${results.firstStepAbove['1e-4'] ?? 'none'} / ${results.firstStepAbove['1e-3'] ?? 'none'} / ${results.firstStepAbove['1e-2'] ?? 'none'} of ${losses.length}.`,
    ...(control ? [
      '',
      `PyTorch against itself (the same run from a head one float32 step away in every weight): first step above 1e-4 / 1e-3 / 1e-2: ${results.control.firstStepAbove['1e-4'] ?? 'none'} / ${results.control.firstStepAbove['1e-3'] ?? 'none'} / ${results.control.firstStepAbove['1e-2'] ?? 'none'}; its test ${spec.metric} ${(control.test * 100).toFixed(2)}. Mean relative difference over the last third of the steps: ours vs PyTorch ${mean(lastThird(rel)).toExponential(1)}, PyTorch vs PyTorch ${mean(lastThird(relControl)).toExponential(1)}.`,
    ] : []),
    '',
    `Test ${spec.metric}: ours ${(ev.metrics[spec.metric] * 100).toFixed(2)}, PyTorch ${(peer.test[spec.metric] * 100).toFixed(2)} (the best epoch by dev loss of each). Training time: ours ${oursSeconds.toFixed(0)} s, PyTorch ${torchSeconds.toFixed(0)} s (wall clock of the whole run, evaluation included).`,
    '',
    `| step | ours | PyTorch | relative difference | gradient norm ours / PyTorch |${control ? ' PyTorch, head nudged | its relative difference |' : ''}`,
    `| ---: | ---: | ---: | ---: | ---: |${control ? ' ---: | ---: |' : ''}`,
    ...losses.map((l, i) => `| ${i + 1} | ${l.toFixed(5)} | ${theirs[i].toFixed(5)} | ${rel[i].toExponential(1)} | ${norms[i].toFixed(4)} / ${theirNorms[i].toFixed(4)} |${control ? ` ${control.losses[i].toFixed(5)} | ${relControl[i].toExponential(1)} |` : ''}`),
  ];
  const md = lines.join('\n') + '\n';
  process.stdout.write(md);
  writeResults(path.join(resultsDir, `train-trace-${localDate()}-${flag('name', `${path.basename(model)}-${task}`)}`), md, results, 'train-trace', { root, allowDirty, start: tree });
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
