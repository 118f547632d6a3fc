#!/usr/bin/env node
// Accuracy on real data: ChemProt (micro-F1), SciCite (macro-F1) and NCBI-disease (entity F1)
// from ../shared/data, with a real encoder (default all-MiniLM-L6-v2, 6 layers, k = 3; or
// --model all-mpnet-base-v2 --layer 6 --adapter-layer 3), for the modes full,
// reduced, reduced-adapters and full-adapters, 3 seeds each; the learning rate of each mode is
// picked on dev (seed 1) from a small grid. PyTorch + Hugging Face full fine-tuning with the
// same hyperparameters on the same splits runs beside it (bench/peers/torch_finetune.py).
// Training sets are subsampled (every k-th example) to fit the time: see --train-max.
//
//   node bench/accuracy.mjs [--tasks chemprot,scicite,ncbi] [--train-max 1000] [--dev-max 500]
//                           [--epochs 6] [--patience 2] [--adapter-size 256] [--seeds 3]
//                           [--layer 3] [--adapter-layer K] [--model NAME|DIR] [--precision fp32|bf16]
//                           [--batch 32] [--grid 'full=5e-5,1e-4;reduced=...'] [--no-torch] [--quick] [--allow-dirty]
//   a follow-up on the same splits: --modes reduced-adapters --lr 1e-3 --epochs 12 --name adapters-12ep
//   (one rate instead of the grid; results go to accuracy-<date>-<name>.md; --note 'TEXT' adds a
//   sentence to the table's learning-rate line, e.g. where the rates were picked)
//   node bench/accuracy.mjs --render bench/results/accuracy-<date>-<name>.json   (the .md of a run's JSON)
// Writes bench/results/accuracy-<date>.md and .json, only from a clean committed tree unless
// --allow-dirty (then marked DIRTY TREE).
import { createRequire } from 'module';
import * as fs from 'fs';
import * as path from 'path';
import { fileURLToPath } from 'url';
import { checkTree, cpuText, DirtyTreeError, flagReader, treeState, writeResults } from './lib/cli.mjs';
import { cpuDescription,  gitInfo, localDate, nproc } from './lib/system.mjs';
import { runPythonJson } from './lib/python.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const { trainTask, evalTask } = require(path.join(root, 'lib', 'index.js'));

const args = process.argv.slice(2);
const flag = flagReader(args);
const quick = args.includes('--quick');
const allowDirty = args.includes('--allow-dirty');
const tasks = flag('tasks', 'chemprot,scicite,ncbi').split(',');
const trainMax = Number(flag('train-max', quick ? '64' : '800'));
const devMax = Number(flag('dev-max', quick ? '32' : '200'));
const testMax = Number(flag('test-max', quick ? '32' : '1000'));
const epochs = Number(flag('epochs', quick ? '1' : '6'));
const patience = Number(flag('patience', '2'));
const adapterSize = Number(flag('adapter-size', '256'));
const nSeeds = Number(flag('seeds', quick ? '1' : '3'));
const withTorch = !args.includes('--no-torch');
const threads = Number(flag('threads', '2'));
const dataDir = path.resolve(flag('data', path.join(root, '..', 'shared', 'data')));
const modelArg = flag('model', 'all-MiniLM-L6-v2');
const model = fs.existsSync(path.join(root, 'models', modelArg)) ? path.join(root, 'models', modelArg) : path.resolve(modelArg);
const modelConfig = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
const modelText = `${path.basename(model)} (${modelConfig.model_type}, ${modelConfig.num_hidden_layers} layers, hidden ${modelConfig.hidden_size})`;
const precision = flag('precision', 'fp32');
const work = path.join(root, 'bench', '.work', 'accuracy');
const K = Number(flag('layer', '3')), MAXLEN = 128, BATCH = Number(flag('batch', '32'));
// the adapter modes may recycle a lower layer than reduced (more layers for the adapters)
const KA = Number(flag('adapter-layer', String(K)));
const layerOf = (mode) => (mode.endsWith('adapters') ? KA : K);
// with subsampled training sets the best rates sit at the top of the usual grid, so it starts higher
const GRID = {
  full: [2e-4, 5e-4],
  reduced: [5e-4, 1e-3],
  'reduced-adapters': [1e-3, 2e-3],
  'full-adapters': [1e-3, 2e-3],
};
const MODES = flag('modes', Object.keys(GRID).join(',')).split(',');
for (const m of MODES) if (!GRID[m]) throw new Error(`--modes: unknown mode ${m} (one of ${Object.keys(GRID).join(', ')})`);
// --lr 1e-3 replaces every mode's grid by one rate (a follow-up run at a rate already picked)
if (flag('lr')) for (const m of Object.keys(GRID)) GRID[m] = [Number(flag('lr'))];
// --grid 'full=5e-5,1e-4;reduced=1e-4,2e-4' replaces the named modes' grids
for (const part of (flag('grid', '') || '').split(';').filter(Boolean)) {
  const [m, rates] = part.split('=');
  if (!GRID[m] || !rates) throw new Error(`--grid: expected mode=rate,rate;... with a mode of ${Object.keys(GRID).join(', ')}, got ${part}`);
  GRID[m] = rates.split(',').map(Number);
}
const TASKS = {
  chemprot: { kind: 'classification', ext: 'jsonl', metric: 'microF1', label: 'micro-F1' },
  scicite: { kind: 'classification', ext: 'jsonl', metric: 'macroF1', label: 'macro-F1' },
  ncbi: { kind: 'ner', ext: 'conll', metric: 'entityF1', label: 'entity F1', dir: 'ncbi-disease' },
};

/** Every k-th example (JSON lines) or sentence (CoNLL), at most `max`: the same subset for every engine. */
function subsample(src, dst, max, conll) {
  const text = fs.readFileSync(src, 'utf8');
  let units = conll
    ? text.split(/\n\s*\n/).map((s) => s.split('\n').filter((l) => l.trim() && !l.startsWith('-DOCSTART-')).join('\n')).filter((s) => s)
    : text.split('\n').filter((l) => l.trim());
  const stride = Math.max(1, Math.ceil(units.length / max));
  units = units.filter((_, i) => i % stride === 0).slice(0, max);
  fs.writeFileSync(dst, units.join(conll ? '\n\n' : '\n') + '\n');
  return units.length;
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sem = (xs) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1) / xs.length));

const torchOnly = args.includes('--torch-only');

/** PyTorch full fine-tuning for one task, at our full mode's learning rate. */
async function runTorch(results, t) {
  const res = results.tasks[t];
  const spec = TASKS[t];
  const files = Object.fromEntries(['train', 'dev', 'test'].map((split) => [split, path.join(work, `${t}-${split}.${spec.ext}`)]));
  const lr = res.modes.full.lr;
  const runs = [];
  for (let s = 1; s <= nSeeds; s++) {
    const r = await runPythonJson(path.join(here, 'peers', 'torch_finetune.py'), ['--task', spec.kind, '--model', model, '--train', files.train, '--dev', files.dev, '--test', files.test,
      '--lr', String(lr), '--epochs', String(results.epochs), '--patience', String(results.patience ?? 10), '--batch-size', String(BATCH), '--max-length', String(MAXLEN), '--seed', String(s), '--threads', String(threads)], { threads });
    process.stderr.write(`[accuracy] ${t} PyTorch full lr ${lr} seed ${s}: test ${r.test[spec.metric].toFixed(4)} (${r.seconds.toFixed(0)} s)\n`);
    runs.push({ seed: s, test: r.test[spec.metric], testMetrics: r.test, seconds: r.seconds, bestEpoch: r.bestEpoch });
    results.torchVersion = r.torch;
  }
  res.torch = { lr, runs, mean: mean(runs.map((r) => r.test)), sem: sem(runs.map((r) => r.test)), seconds: mean(runs.map((r) => r.seconds)) };
}

const outBase = () => path.join(root, 'bench', 'results', `accuracy-${flag('date', localDate())}${flag('name') ? `-${flag('name')}` : ''}`);

let tree = null;

async function main() {
  tree = checkTree(root, { allowDirty, write: !quick });
  fs.mkdirSync(work, { recursive: true });
  if (torchOnly) {
    // PyTorch's side for an earlier run of ours (same splits, our full mode's learning rate):
    // the file then holds results of the commit that run recorded, so that commit must be HEAD
    const results = JSON.parse(fs.readFileSync(`${outBase()}.json`, 'utf8'));
    if (results.commit) tree = { commit: results.commit, dirty: Boolean(results.dirty), changes: results.dirtyChanges ?? [] };
    for (const t of Object.keys(results.tasks)) await runTorch(results, t);
    return render(results, true);
  }
  const results = { date: new Date().toISOString(), cpu: cpuDescription(), nproc: nproc(), threads, git: gitInfo(root), model: modelText, precision, k: K, adapterK: KA, maxLength: MAXLEN, batchSize: BATCH, epochs, patience, adapterSize, trainMax, devMax, testMax, grid: GRID, note: flag('note', '') || undefined, tasks: {} };
  for (const t of tasks) {
    const spec = TASKS[t];
    const dir = path.join(dataDir, spec.dir ?? t);
    const files = {};
    const sizes = {};
    for (const [split, max] of [['train', trainMax], ['dev', devMax], ['test', testMax]]) {
      files[split] = path.join(work, `${t}-${split}.${spec.ext}`);
      sizes[split] = subsample(path.join(dir, `${split}.${spec.ext}`), files[split], max, spec.ext === 'conll');
    }
    const storeOf = (mode) => path.join(work, `${t}-${path.basename(model)}-store-l${layerOf(mode)}-t${MAXLEN}-n${sizes.train}`);
    const res = { sizes, modes: {}, torch: null };
    results.tasks[t] = res;
    for (const mode of MODES) {
      const runs = [];
      const run = async (lr, seed) => {
        const out = path.join(work, `${t}-${path.basename(model)}-${mode}-lr${lr}-s${seed}${flag('name') ? `-${flag('name')}` : ''}`);
        const t0 = performance.now();
        const { spec: ts } = await trainTask({
          task: spec.kind, train: files.train, dev: files.dev, mode, model, store: mode.startsWith('reduced') ? storeOf(mode) : undefined,
          layer: layerOf(mode), maxLength: MAXLEN, lr, epochs, patience, batchSize: BATCH, seed, adapterSize, threads, out, precision,
          warn: () => {},
        });
        const seconds = (performance.now() - t0) / 1000;
        const ev = await evalTask(out, files.test, { warn: () => {} });
        const r = { lr, seed, dev: ts.devMetrics[spec.metric], test: ev.metrics[spec.metric], testMetrics: ev.metrics, bestEpoch: ts.bestEpoch, seconds };
        delete r.testMetrics.perLabel;
        delete r.testMetrics.perType;
        process.stderr.write(`[accuracy] ${t} ${mode} lr ${lr} seed ${seed}: dev ${r.dev.toFixed(4)}, test ${r.test.toFixed(4)} (${seconds.toFixed(0)} s)\n`);
        runs.push(r);
        return r;
      };
      const grid = [];
      for (const lr of GRID[mode]) grid.push(await run(lr, 1));
      const best = grid.reduce((a, b) => (b.dev > a.dev ? b : a));
      for (let s = 2; s <= nSeeds; s++) await run(best.lr, s);
      const chosen = runs.filter((r) => r.lr === best.lr);
      res.modes[mode] = {
        lr: best.lr, runs, mean: mean(chosen.map((r) => r.test)), sem: sem(chosen.map((r) => r.test)),
        seconds: mean(chosen.map((r) => r.seconds)),
      };
    }
    if (withTorch) await runTorch(results, t);
    // every finished task is kept, so a long run that is stopped loses only the task in progress
    if (!quick) writeResults(outBase(), null, results, 'accuracy', { root, allowDirty, start: tree });
  }
  render(results, !quick);
}

function render(results, write) {
  const withTorch = Object.values(results.tasks).every((r) => r.torch);
  const ran = new Set(Object.values(results.tasks).flatMap((r) => Object.keys(r.modes)));
  const pct = (x) => (100 * x).toFixed(2);
  const lines = [
    `# Accuracy on real data, ${localDate()}`, '',
    `- **Model**: ${results.model ?? 'all-MiniLM-L6-v2 (6 layers, hidden 384)'}, k = ${results.k ?? K}${(results.adapterK ?? results.k) !== results.k ? ` (adapter modes: k = ${results.adapterK})` : ''}; ${results.precision ?? 'fp32'} training; max length ${results.maxLength ?? MAXLEN}, batch ${results.batchSize ?? BATCH}, at most ${results.epochs} epochs with early stopping on dev loss (patience ${results.patience ?? 10}), warm-up 10% then linear decay, AdamW (wd 0.01), clipping 1.0, dropout 0.1, adapters of size ${results.adapterSize ?? 64}; the best epoch by dev loss is kept`,
    `- **Data**: ../shared/data; training sets subsampled to every k-th example, at most ${results.trainMax} (sizes below); dev at most ${results.devMax}; test at most ${results.testMax} (every k-th)`,
    Object.values(results.grid ?? GRID).every((g) => g.length === 1)
      ? `- **Learning rate**: one rate per mode, not searched in this run: ${Object.entries(results.grid ?? GRID).filter(([m]) => ran.has(m)).map(([m, g]) => `${m} ${g[0]}`).join('; ')}.${withTorch ? " PyTorch uses our full mode's rate." : ''}${results.note ? ` ${results.note}` : ''}`
      : `- **Learning rate**: picked per mode on dev (seed 1) from ${Object.entries(results.grid ?? GRID).filter(([m]) => ran.has(m)).map(([m, g]) => `${m} {${g.join(', ')}}`).join('; ')}; then seeds 2..${Math.max(...Object.values(results.tasks).flatMap((r) => Object.values(r.modes).flatMap((m) => m.runs.map((x) => x.seed))))} at that rate.${withTorch ? " PyTorch uses our full mode's rate." : ''}${results.note ? ` ${results.note}` : ''}`,
    `- **Machine**: ${cpuText(results.cpu)}; ${threads} threads; git ${results.git?.commit ?? '?'}${results.torchVersion ? `; PyTorch ${results.torchVersion}` : ''}`,
    '',
    '| Task (metric) | train / dev / test | mode | lr | test mean ± s.e. (%) | seeds | train time s (mean) |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: |',
  ];
  for (const [t, r] of Object.entries(results.tasks)) {
    const spec = TASKS[t];
    const sz = `${r.sizes.train} / ${r.sizes.dev} / ${r.sizes.test}`;
    for (const mode of MODES) {
      const m = r.modes[mode];
      if (!m) continue;
      lines.push(`| ${t} (${spec.label}) | ${sz} | ours ${mode} | ${m.lr} | ${pct(m.mean)} ± ${pct(m.sem)} | ${m.runs.filter((x) => x.lr === m.lr).length} | ${m.seconds.toFixed(0)} |`);
    }
    if (r.torch) lines.push(`| ${t} (${spec.label}) | ${sz} | PyTorch full | ${r.torch.lr} | ${pct(r.torch.mean)} ± ${pct(r.torch.sem)} | ${r.torch.runs.length} | ${r.torch.seconds.toFixed(0)} |`);
  }
  const avg = (mode) => mean(Object.values(results.tasks).map((r) => r.modes[mode].mean));
  const goals = [];
  if (ran.has('full')) for (const mode of ['reduced', 'reduced-adapters', 'full-adapters'].filter((x) => ran.has(x))) goals.push(`- ${mode} vs our full, average over the tasks: ${((avg(mode) - avg('full')) * 100).toFixed(2)} points`);
  if (withTorch) goals.push(`- our full vs PyTorch full, average over the tasks: ${(mean(Object.values(results.tasks).map((r) => r.modes.full.mean - r.torch.mean)) * 100).toFixed(2)} points`);
  if (goals.length) lines.push('', '## Against the goals', '', ...goals);
  lines.push('', 'Every run (learning-rate grid included) is in the JSON file.');
  const md = lines.join('\n') + '\n';
  process.stdout.write(md);
  if (write) {
    const out = outBase();
    writeResults(out, md, results, 'accuracy', { root, allowDirty, start: tree });
  }
  return md;
}

/**
 * --render FILE.json: the table of a finished run's JSON (which records the commit that
 * ran it) written beside it as FILE.md, for a run whose final write failed. The .md names
 * that commit, and the commit it was rendered at; the tree must be clean but for FILE.md.
 */
function renderOnly(file) {
  const results = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (!results.commit || results.dirty) throw new Error(`${file}: not the results of a clean commit (commit ${results.commit}, dirty ${results.dirty})`);
  const base = file.replace(/\.json$/, '');
  const state = treeState(root, { own: [`${base}.md`, file] });
  if (state.dirty && !allowDirty) throw new DirtyTreeError(`refusing to render from a tree with uncommitted changes:\n  ${state.changes.join('\n  ')}`);
  const md = render(results, false).split('\n');
  md.splice(1, 0, '', `Commit: ${results.commit} (the run's; this table was rendered from its JSON at ${state.commit})`);
  fs.writeFileSync(`${base}.md`, md.join('\n'));
  process.stderr.write(`[accuracy] wrote ${base}.md from ${file}\n`);
}

(flag('render') ? Promise.resolve().then(() => renderOnly(path.resolve(flag('render')))) : main()).catch((e) => {
  if (e instanceof DirtyTreeError) {
    console.error(`bench/accuracy.mjs: ${e.message}`);
    process.exit(3);
  }
  console.error(e);
  process.exit(1);
});
