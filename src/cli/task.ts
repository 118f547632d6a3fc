import * as fs from 'fs';
import type { Command } from 'commander';
import { InferenceSession } from '../infer/session';
import { TRAIN_MODES, TrainMode } from '../train/model';
import { evalTask } from '../infer/evaluate-task';
import { headline, readPredictInputs, trainTask } from '../tasks/runner';
import type { TaskKind } from '../tasks/features';
import { readTaskDir } from '../tasks/taskdir';
import { formatDuration, Progress } from './progress';
import { deviceFlag, taskDevice, taskDeviceOptions } from './args';

function num(name: string, v: string | undefined, opts: { int?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
    throw new Error(`${name} must be ${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}${opts.max !== undefined ? ` <= ${opts.max}` : ''}, got ${JSON.stringify(v)}`);
  }
  return n;
}

const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);

interface FieldFlags { idField?: string; textField?: string; pairField?: string; labelField?: string; tagColumn?: string; onBadLine: string }
function dataOptions(f: FieldFlags) {
  if (f.onBadLine !== 'fail' && f.onBadLine !== 'skip') throw new Error(`--on-bad-line must be fail or skip, got ${JSON.stringify(f.onBadLine)}`);
  return {
    fields: { id: f.idField, text: f.textField, pair: f.pairField, label: f.labelField },
    tagColumn: num('--tag-column', f.tagColumn, { int: true }),
    onBadLine: f.onBadLine as 'fail' | 'skip',
    warn,
  };
}

function fieldOptions(cmd: Command): Command {
  return cmd
    .option('--text-field <name>', 'JSON field of the text', 'text')
    .option('--pair-field <name>', 'JSON field of the second text of a pair', 'text_pair')
    .option('--label-field <name>', 'JSON field of the label', 'label')
    .option('--id-field <name>', 'JSON field of the id', 'id')
    .option('--tag-column <n>', 'CoNLL: column of the tag, 0-based, negative from the end (default: the last)')
    .option('--on-bad-line <policy>', 'a malformed line: fail or skip (with a warning)', 'fail');
}

/** `er train`, `er eval`, `er predict`. */
export function registerTask(program: Command): void {
  fieldOptions(program
    .command('train')
    .description('train a classification or NER model on recycled activations (or any other mode) and write a task directory')
    .requiredOption('--task <kind>', 'classification (JSON lines) or ner (CoNLL)')
    .requiredOption('--train <file>', 'training data')
    .requiredOption('--out <dir>', 'task directory to write')
    .option('--dev <file>', 'dev data: evaluated every epoch, drives early stopping and the best checkpoint')
    .option('--mode <mode>', `one of ${TRAIN_MODES.join(', ')}`, 'reduced')
    .option('--store <dir>', 'activation store (recycled modes); created and filled during the first epoch if missing')
    .option('--model <dir>', 'base model directory (default: the one the store was made with)')
    .option('--layer <k>', 'recycled layer k (default: the store\'s, else N/2)')
    .option('--dtype <dtype>', 'dtype of a new store: fp16 or fp32', 'fp16')
    .option('--max-length <n>', 'tokens per text / window (default: the store\'s, else 128)')
    .option('--adapter-size <n>', 'Houlsby adapter bottleneck (adapter modes)', '64')
    .option('--lr <x>', 'peak learning rate', '2e-4')
    .option('--epochs <n>', 'epochs', '3')
    .option('--patience <n>', 'epochs without a better dev loss before stopping', '10')
    .option('--batch-size <n>', 'rows per step', '32')
    .option('--warmup-ratio <x>', 'fraction of the steps for linear warm-up', '0.1')
    .option('--seed <n>', 'seed for initialisation, shuffling and dropout', '1')
    .option('--dropout <p>', 'dropout of the hidden states, attention probabilities and head input', '0.1')
    .option('--precision <p>', 'fp32 or bf16 (mixed precision)', 'fp32')
    .option('--threads <n>', 'compute threads (default: all cores)')
    .option('--device <device>', 'where the model trains: cpu, cuda (an NVIDIA GPU, fp32; every family but DeBERTa-v2) or auto', 'cpu')
    .option('--gpu <n>', 'which GPU, with --device cuda or auto', '0')
    .option('--quiet', 'no progress output'))
    .action(async (f: FieldFlags & Record<string, string | boolean | undefined>) => {
      const task = f.task as TaskKind;
      const device = deviceFlag('--device', f.device);
      if (task !== 'classification' && task !== 'ner') throw new Error(`--task must be classification or ner, got ${JSON.stringify(f.task)}`);
      if (!TRAIN_MODES.includes(f.mode as TrainMode)) throw new Error(`--mode must be one of ${TRAIN_MODES.join(', ')}, got ${JSON.stringify(f.mode)}`);
      if (f.precision !== 'fp32' && f.precision !== 'bf16') throw new Error(`--precision must be fp32 or bf16, got ${JSON.stringify(f.precision)}`);
      if (f.dtype !== 'fp16' && f.dtype !== 'fp32') throw new Error(`--dtype must be fp16 or fp32, got ${JSON.stringify(f.dtype)}`);
      const progress = new Progress();
      const t0 = performance.now();
      const { spec, log } = await trainTask({
        ...dataOptions(f), task, train: f.train as string, dev: f.dev as string | undefined, out: f.out as string,
        mode: f.mode as TrainMode, store: f.store as string | undefined, model: f.model as string | undefined,
        layer: num('--layer', f.layer as string | undefined, { int: true, min: 1 }), dtype: f.dtype as 'fp16' | 'fp32',
        maxLength: num('--max-length', f.maxLength as string | undefined, { int: true, min: 8 }),
        adapterSize: num('--adapter-size', f.adapterSize as string, { int: true, min: 1 }), lr: num('--lr', f.lr as string, { min: 0 })!,
        epochs: num('--epochs', f.epochs as string, { int: true, min: 1 })!, patience: num('--patience', f.patience as string, { int: true, min: 1 }),
        batchSize: num('--batch-size', f.batchSize as string, { int: true, min: 1 }), warmupRatio: num('--warmup-ratio', f.warmupRatio as string, { min: 0, max: 1 }),
        seed: num('--seed', f.seed as string, { int: true, min: 0 }), precision: f.precision as 'fp32' | 'bf16',
        dropout: num('--dropout', f.dropout as string, { min: 0, max: 0.999 }),
        threads: num('--threads', f.threads as string | undefined, { int: true, min: 1 }),
        device, gpu: num('--gpu', f.gpu as string, { int: true, min: 0, max: 1023 }),
        onStep: f.quiet ? undefined : (p) => progress.update(p.step, p.steps, `epoch ${p.epoch}: loss ${p.loss.toFixed(4)}, ${p.rowsPerSecond.toFixed(1)} rows/s`),
        onEpoch: (r) => {
          if (!f.quiet) progress.finish();
          const dev = r.devLoss !== null ? `, dev loss ${r.devLoss.toFixed(4)}${r.devMetrics ? `, ${headline(task, r.devMetrics)}` : ''}` : '';
          process.stderr.write(`epoch ${r.epoch}: train loss ${r.trainLoss.toFixed(4)}${dev}, ${formatDuration(r.seconds * 1000)} (${r.rowsFromStore} rows from the store)${r.best ? ' [best]' : ''}\n`);
        },
      });
      process.stdout.write(`trained ${spec.task} (${spec.mode}${spec.k ? `, k = ${spec.k}` : ''}) in ${formatDuration(performance.now() - t0)}, ${log.length} epoch(s); best epoch ${spec.bestEpoch}${spec.devMetrics ? `: ${headline(task, spec.devMetrics)}` : ''}\nwrote ${f.out}/task.json, model.safetensors, log.json\n`);
    });

  fieldOptions(taskDeviceOptions(program
    .command('eval')
    .description('evaluate a trained task on labeled data (classification: accuracy, micro/macro-F1; NER: entity and token F1)')
    .requiredOption('--task <dir>', 'task directory from er train')
    .requiredOption('--test <file>', 'labeled data')
    .option('--model <dir>', 'base model directory (default: the one in task.json)')
    .option('--store <dir>', 'activation store (default: the one in task.json)')
    .option('--json', 'print JSON')))
    .action(async (f: FieldFlags & Record<string, string | boolean | undefined>) => {
      const r = await evalTask(f.task as string, f.test as string, { ...dataOptions(f), model: f.model as string | undefined, store: f.store as string | undefined, ...taskDevice(f) });
      const spec = readTaskDir(f.task as string);
      if (f.json) process.stdout.write(JSON.stringify({ task: spec.task, mode: spec.mode, loss: r.loss, metrics: r.metrics, unknownLabels: r.unknown }, null, 2) + '\n');
      else process.stdout.write(`${f.test}: ${headline(spec.task, r.metrics)}; loss ${r.loss.toFixed(4)} over ${r.metrics.scored} ${spec.task === 'ner' ? 'sentences' : 'examples'}${r.unknown.length ? `; ${r.unknown.length} unknown label(s) not scored` : ''}\n`);
    });

  fieldOptions(taskDeviceOptions(program
    .command('predict')
    .description('predict with a trained task: texts in the store run only the layers above k, new ones run the full encoder')
    .requiredOption('--task <dir>', 'task directory from er train')
    .requiredOption('--input <file>', 'JSON lines ({"text": ...}) or, for NER, CoNLL tokens')
    .option('--output <file>', 'write JSON lines here instead of stdout')
    .option('--model <dir>', 'base model directory (default: the one in task.json)')
    .option('--store <dir>', 'activation store (default: the one in task.json)')
    .option('--write-store', 'store the activations of texts that were not in the store (read-through)')))
    .action(async (f: FieldFlags & Record<string, string | boolean | undefined>) => {
      const spec = readTaskDir(f.task as string);
      const { ids, inputs } = readPredictInputs(spec.task, f.input as string, { ...dataOptions(f), fields: { ...spec.fields, ...dataOptions(f).fields } });
      const session = await InferenceSession.open(f.task as string, { model: f.model as string | undefined, store: f.store as string | undefined, readThrough: Boolean(f.writeStore), ...taskDevice(f) });
      try {
        const preds = await session.predict(inputs);
        const lines = preds.map((p, i) => JSON.stringify({ id: ids[i], ...p })).join('\n') + '\n';
        if (f.output) fs.writeFileSync(f.output as string, lines);
        else process.stdout.write(lines);
      } finally {
        session.close();
      }
    });
}
