/**
 * Training and evaluating tasks from data files: what `er train` and `er eval` do,
 * usable from TypeScript too.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Encoder } from '../model/encoder';
import { weightFingerprintAsync } from '../model/checkpoint';
import { ActivationStore } from '../store/store';
import type { StoreDtype } from '../store/format';
import type { BadLine } from '../store/input';
import { TaskModel, TrainMode } from '../train/model';
import { EpochRecord, fit, FitOptions } from '../train/loop';
import { detectFormat, readConll, readJsonlExamples, tagScheme, TextExample, WordsExample } from './data';
import { classificationRows, LabelMap, nerRows, PrepareReport, Row, TaskKind } from './features';
import { classificationMetrics, entityMetrics, tokenMetrics } from './metrics';
import { argmax, decodeNer } from './predict';
import { TaskSpec, writeJsonAtomic } from './taskdir';
import { makeDir } from '../util/fs';

export interface DataOptions {
  fields?: { id?: string; text?: string; pair?: string; label?: string };
  /** CoNLL: the tag's column (0-based; negative counts from the end); default the last */
  tagColumn?: number;
  /** what to do with a malformed line: stop (default) or skip with a warning */
  onBadLine?: 'fail' | 'skip';
  warn?: (message: string) => void;
}

export interface TrainTaskOptions extends DataOptions {
  task: TaskKind;
  train: string;
  dev?: string;
  mode: TrainMode;
  /** base model directory; optional when `store` exists (its manifest names the model) */
  model?: string;
  /** store directory (recycled modes); created and filled during the first epoch when missing */
  store?: string;
  /** k, the recycled layer; default the store's, else N/2 */
  layer?: number;
  dtype?: StoreDtype;
  maxLength?: number;
  adapterSize?: number;
  lr: number;
  epochs: number;
  patience?: number;
  seed?: number;
  batchSize?: number;
  warmupRatio?: number;
  /** dropout probability of the hidden states, attention probabilities and head input; default 0.1 */
  dropout?: number;
  precision?: 'fp32' | 'bf16';
  threads?: number;
  /** Where the model trains: 'cpu' (default), 'cuda' (fp32) or 'auto' (see TaskModelOptions.device). */
  device?: 'cpu' | 'cuda' | 'auto';
  /** Which GPU with device 'cuda' or 'auto'; default 0. */
  gpu?: number;
  out: string;
  /** after each step (see {@link FitOptions.onStep}) */
  onStep?: FitOptions['onStep'];
  onEpoch?: (r: EpochRecord) => void;
}

export interface Loaded {
  text?: TextExample[];
  words?: WordsExample[];
}

export function loadData(task: TaskKind, file: string, o: DataOptions, requireLabels: boolean): Loaded {
  const bad: BadLine[] = [];
  const onBad = (b: BadLine) => {
    if (o.onBadLine !== 'skip') throw new Error(`${b.file}:${b.line}: ${b.reason} (use --on-bad-line skip to skip such lines)`);
    bad.push(b);
    o.warn?.(`skipping ${b.file}:${b.line}: ${b.reason}`);
  };
  if (!fs.existsSync(file)) throw new Error(`data file ${file} does not exist`);
  const format = detectFormat(file);
  if (task === 'classification') {
    if (format !== 'jsonl') throw new Error(`${file}: a classification task reads JSON lines ({"text": ..., "label": ...}), not CoNLL`);
    return { text: readJsonlExamples(file, o.fields, { requireLabel: requireLabels, onBad }) };
  }
  if (format !== 'conll') throw new Error(`${file}: an NER task reads CoNLL (one token a line, the tag in a column), not JSON lines`);
  return { words: readConll(file, { tagColumn: o.tagColumn, tags: requireLabels, onBad }) };
}

export async function rowsOf(task: TaskKind, encoder: Encoder, data: Loaded, labels: LabelMap | null, maxLength: number): Promise<{ rows: Row[]; report: PrepareReport }> {
  return task === 'classification' ? classificationRows(encoder, data.text!, labels, maxLength) : nerRows(encoder, data.words!, labels, maxLength);
}

/** Metrics of predictions against the truth (classification or NER). */
export function taskMetrics(task: TaskKind, labels: LabelMap, data: Loaded, rows: readonly Row[], logits: readonly Float32Array[]): Record<string, unknown> {
  if (task === 'classification') {
    const truth: string[] = [], pred: string[] = [];
    rows.forEach((r, i) => {
      if (r.labels[0] < 0) return; // unknown labels are reported, not scored
      truth.push(labels.labels[r.labels[0]]);
      pred.push(labels.labels[argmax(logits[i])]);
    });
    const m = classificationMetrics(truth, pred);
    return { accuracy: m.accuracy, microF1: m.microF1, macroF1: m.macroF1, perLabel: m.perLabel, scored: truth.length };
  }
  const preds = decodeNer(data.words!, rows, logits, labels);
  const truth = data.words!.map((w) => w.tags!.map((t) => (labels.indexOf(t) < 0 ? 'O' : t)));
  const pred = preds.map((p) => p.tags);
  const d = entityMetrics(truth, pred, 'default'), s = entityMetrics(truth, pred, 'strict'), t = tokenMetrics(truth, pred);
  return { entityF1: d.f1, entityPrecision: d.precision, entityRecall: d.recall, strictEntityF1: s.f1, tokenMicroF1: t.microF1, tokenMacroF1: t.macroF1, perType: d.perType, scored: truth.length };
}

/** The headline metric of a task: macro-F1 for classification, entity F1 for NER. */
export function headline(task: TaskKind, m: Record<string, unknown>): string {
  return task === 'classification'
    ? `accuracy ${(m.accuracy as number).toFixed(4)}, micro-F1 ${(m.microF1 as number).toFixed(4)}, macro-F1 ${(m.macroF1 as number).toFixed(4)}`
    : `entity F1 ${(m.entityF1 as number).toFixed(4)} (P ${(m.entityPrecision as number).toFixed(4)}, R ${(m.entityRecall as number).toFixed(4)}; strict ${(m.strictEntityF1 as number).toFixed(4)}), token micro-F1 ${(m.tokenMicroF1 as number).toFixed(4)}`;
}

export function reportPrep(file: string, r: PrepareReport, task: TaskKind, warn?: (m: string) => void): void {
  if (r.truncated) warn?.(`${file}: ${r.truncated} text(s) longer than the max length were truncated`);
  if (r.windowed) warn?.(`${file}: ${r.windowed} sentence(s) longer than the max length were split into windows`);
  if (r.unknown.length) {
    const shown = r.unknown.slice(0, 5).map((u) => `line ${u.line}: ${JSON.stringify(u.label)}`).join('; ');
    warn?.(`${file}: ${r.unknown.length} ${task === 'ner' ? 'tag' : 'label'}(s) never seen in training are not scored (${shown}${r.unknown.length > 5 ? '; ...' : ''})`);
  }
}

/** Trains a task from data files and writes the task directory. */
export async function trainTask(o: TrainTaskOptions): Promise<{ spec: TaskSpec; log: EpochRecord[] }> {
  const recycled = o.mode === 'reduced' || o.mode === 'reduced-adapters';
  let modelDir = o.model;
  const storeExists = o.store !== undefined && fs.existsSync(path.join(o.store, 'manifest.json'));
  if (!modelDir && storeExists) modelDir = (JSON.parse(fs.readFileSync(path.join(o.store!, 'manifest.json'), 'utf8')) as { modelDir: string }).modelDir;
  if (!modelDir) throw new Error('--model is required (or --store with an existing store, whose manifest names the model)');
  if (recycled && !o.store) throw new Error(`mode ${o.mode} reads recycled activations: give --store DIR (it is created and filled during the first epoch if missing)`);
  const encoder = await Encoder.load(modelDir, { threads: o.threads });
  let store: ActivationStore | undefined;
  try {
    const train = loadData(o.task, o.train, o, true);
    const dev = o.dev ? loadData(o.task, o.dev, o, true) : undefined;
    const trainLabels = o.task === 'classification' ? train.text!.map((e) => e.label!) : train.words!.flatMap((w) => w.tags!);
    const labels = LabelMap.fromTraining(o.task, trainLabels, o.train);
    if (o.task === 'ner') tagScheme(labels.labels);
    let k = o.layer ?? Math.floor(encoder.numLayers / 2);
    let maxLength = o.maxLength ?? Math.min(128, encoder.maxLength);
    if (!Number.isInteger(maxLength) || maxLength < 8 || maxLength > encoder.maxLength) {
      throw new RangeError(`maxLength (--max-length) must be an integer in 8..${encoder.maxLength} (the model's maximum length), got ${maxLength}`);
    }
    if (recycled) {
      if (storeExists) {
        store = await ActivationStore.open(o.store!, { encoder, layer: o.layer });
        k = store.identity.layer;
        if (o.maxLength !== undefined && o.maxLength !== store.identity.maxLength) {
          throw new Error(`${o.store}: refused: its windows are ${store.identity.maxLength} tokens, --max-length ${o.maxLength} was asked for`);
        }
        maxLength = store.identity.maxLength;
      } else {
        store = await ActivationStore.create(o.store!, encoder, { layer: k, dtype: o.dtype ?? 'fp16', maxLength, stride: Math.min(128, Math.floor(maxLength / 4)) });
      }
    }
    const tr = await rowsOf(o.task, encoder, train, labels, maxLength);
    reportPrep(o.train, tr.report, o.task, o.warn);
    const dv = dev ? await rowsOf(o.task, encoder, dev, labels, maxLength) : undefined;
    if (dev && dv) reportPrep(o.dev!, dv.report, o.task, o.warn);
    if (store) {
      const missing = tr.rows.filter((r) => !store!.lookup(store!.keyOf(r.encoding))).length;
      if (missing > 0 && store.readOnly) {
        store.close();
        store = await ActivationStore.open(o.store!, { encoder, layer: k, write: true });
      }
      if (missing > 0) o.warn?.(`${o.store}: ${missing} of ${tr.rows.length} training windows are not stored yet; the first epoch computes and stores them`);
    }
    const model = TaskModel.create(encoder, {
      mode: o.mode, k: recycled || o.mode === 'frozen-prefix' ? k : undefined,
      head: { kind: o.task === 'classification' ? 'sequence' : 'token', numLabels: labels.size },
      adapter: o.mode.endsWith('adapters') ? { size: o.adapterSize ?? 64 } : undefined,
      seed: o.seed ?? 1, precision: o.precision, threads: o.threads, device: o.device, gpu: o.gpu,
      ...(o.dropout !== undefined ? { dropout: { hidden: o.dropout, attention: o.dropout, head: o.dropout } } : {}),
    });
    makeDir(o.out);
    for (const f of ['task.json', 'log.json']) fs.rmSync(path.join(o.out, f), { force: true });
    const hyper = { lr: o.lr, epochs: o.epochs, patience: o.patience ?? 10, batchSize: o.batchSize ?? 32, warmupRatio: o.warmupRatio ?? 0.1, dropout: o.dropout ?? 0.1, seed: o.seed ?? 1, adapterSize: o.adapterSize ?? (o.mode.endsWith('adapters') ? 64 : null), precision: o.precision ?? 'fp32' };
    const log: EpochRecord[] = [];
    const { best } = await fit({
      model, train: tr.rows, dev: dv?.rows, store, epochs: o.epochs, batchSize: o.batchSize, lr: o.lr, warmupRatio: o.warmupRatio,
      patience: o.patience, seed: o.seed, outDir: o.out,
      metrics: dev && dv ? (logits) => taskMetrics(o.task, labels, dev, dv.rows, logits) : undefined,
      onStep: o.onStep,
      onEpoch: (r) => {
        log.push(r);
        writeJsonAtomic(path.join(o.out, 'log.json'), log);
        o.onEpoch?.(r);
      },
    });
    const modelFingerprint = await weightFingerprintAsync(encoder.checkpoint, encoder.numLayers);
    const spec: TaskSpec = {
      format: 'embedding-recycler-task-dir', version: 1, task: o.task, labels: [...labels.labels], mode: o.mode, k: model.k,
      head: model.head.kind, modelDir: encoder.checkpoint.dir, modelFingerprint,
      storeDir: store ? store.dir : null, storeIdentity: store ? store.manifest.identityHash : null, maxLength, adapter: model.adapter,
      fields: { ...(o.fields ?? {}), ...(o.tagColumn !== undefined ? { tagColumn: o.tagColumn } : {}) }, hyperparameters: hyper,
      bestEpoch: best.epoch, devMetrics: best.devMetrics, createdAt: new Date().toISOString(),
    };
    // task.json last: a directory without it is an unfinished training
    writeJsonAtomic(path.join(o.out, 'task.json'), spec);
    return { spec, log };
  } finally {
    store?.close();
    encoder.close();
  }
}

/** Reads unlabeled (or labeled) inputs for prediction from a data file. */
export function readPredictInputs(task: TaskKind, file: string, o: DataOptions): { ids: string[]; inputs: ({ text: string; pair?: string } | { words: string[] })[] } {
  const format = detectFormat(file);
  if (task === 'ner' && format === 'conll') {
    const w = readConll(file, { tagColumn: o.tagColumn, tags: false, onBad: (b) => { throw new Error(`${b.file}:${b.line}: ${b.reason}`); } });
    return { ids: w.map((x) => x.id), inputs: w.map((x) => ({ words: x.words })) };
  }
  const t = readJsonlExamples(file, o.fields, { onBad: (b) => {
    if (o.onBadLine !== 'skip') throw new Error(`${b.file}:${b.line}: ${b.reason} (use --on-bad-line skip to skip such lines)`);
    o.warn?.(`skipping ${b.file}:${b.line}: ${b.reason}`);
  } });
  return { ids: t.map((x) => x.id), inputs: t.map((x) => (x.pair !== undefined ? { text: x.text, pair: x.pair } : { text: x.text })) };
}
