/**
 * Inference sessions: a trained task kept open by a backend and called per request.
 * Texts already in the store run only the layers above k; others run the encoder's
 * prefix (and, with `readThrough`, are written to the store for next time). All
 * heavy work runs off the event loop.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Encoder } from '../model/encoder';
import { weightFingerprint } from '../model/checkpoint';
import { ActivationStore } from '../store/store';
import { TaskModel } from '../train/model';
import { evaluate } from '../train/loop';
import type { TextExample, WordsExample } from '../tasks/data';
import { classificationRows, LabelMap, nerRows, Row } from '../tasks/features';
import { ClassPrediction, decodeClassification, decodeNer, NerPrediction, splitWords } from '../tasks/predict';
import { readTaskDir, TaskSpec } from '../tasks/taskdir';

export interface SessionOptions {
  /** the base model directory; default: the one recorded in task.json */
  model?: string;
  /** the store to read activations from; default: the one recorded in task.json (if it exists) */
  store?: string;
  /** write activations of texts that are not in the store (needs the writer lock) */
  readThrough?: boolean;
  batchSize?: number;
  threads?: number;
}

/** A request: a text (classification, or NER on whitespace-split words) or pre-split words (NER). */
export type PredictInput = { text: string; pair?: string } | { words: string[] };

export class InferenceSession {
  private constructor(
    readonly spec: TaskSpec,
    readonly encoder: Encoder,
    readonly model: TaskModel,
    readonly labels: LabelMap,
    readonly store: ActivationStore | undefined,
    private readonly readThrough: boolean,
    private readonly batchSize: number,
  ) {}

  /** Opens a task directory written by `er train` / trainTask. */
  static async open(taskDir: string, opts: SessionOptions = {}): Promise<InferenceSession> {
    const spec = readTaskDir(taskDir);
    const modelDir = opts.model ?? spec.modelDir;
    if (!fs.existsSync(modelDir)) throw new Error(`${path.join(taskDir, 'task.json')}: its base model ${modelDir} does not exist; pass the model directory (--model)`);
    const encoder = await Encoder.load(modelDir, { threads: opts.threads });
    try {
      const fp = weightFingerprint(encoder.checkpoint, encoder.numLayers);
      if (fp !== spec.modelFingerprint) {
        throw new Error(`${modelDir}: these are not the weights the task was trained on (fingerprint ${fp.slice(0, 12)}…, the task expects ${spec.modelFingerprint.slice(0, 12)}…)`);
      }
      const model = TaskModel.create(encoder, {
        mode: spec.mode, k: spec.k || undefined, head: { kind: spec.head, numLabels: spec.head === 'qa' ? undefined : spec.labels.length },
        adapter: spec.adapter ?? undefined, threads: opts.threads, dropout: { hidden: 0, attention: 0, head: 0 },
      });
      model.importSafetensors(path.join(taskDir, 'model.safetensors'));
      let store: ActivationStore | undefined;
      const storeDir = opts.store ?? spec.storeDir ?? undefined;
      if (model.recycled && storeDir && fs.existsSync(path.join(storeDir, 'manifest.json'))) {
        store = await ActivationStore.open(storeDir, { encoder, layer: spec.k, write: Boolean(opts.readThrough) });
        if (store.identity.maxLength !== spec.maxLength) {
          store.close();
          throw new Error(`${storeDir}: refused: windows of ${store.identity.maxLength} tokens, the task was trained on ${spec.maxLength}`);
        }
      }
      return new InferenceSession(spec, encoder, model, new LabelMap(spec.labels), store, Boolean(opts.readThrough && store), opts.batchSize ?? 32);
    } catch (err) {
      encoder.close();
      throw err;
    }
  }

  /** Predicts a list of requests (batched inside). Classification: labels with probabilities; NER: tags and entity spans. */
  async predict(inputs: readonly PredictInput[]): Promise<(ClassPrediction | NerPrediction)[]> {
    if (!Array.isArray(inputs)) throw new TypeError('predict takes an array of { text } or { words }');
    if (inputs.length === 0) return [];
    if (this.spec.task === 'classification') {
      const ex: TextExample[] = inputs.map((x, i) => {
        if (!('text' in x) || typeof x.text !== 'string') throw new TypeError(`input ${i}: a classification task takes { text, pair? }`);
        return { id: String(i), text: x.text, ...(x.pair !== undefined ? { pair: x.pair } : {}), line: i + 1 };
      });
      const { rows } = await classificationRows(this.encoder, ex, null, this.spec.maxLength);
      const ev = await this.run(rows);
      return decodeClassification(ev, this.labels);
    }
    const starts: number[][] = [];
    const ex: WordsExample[] = inputs.map((x, i) => {
      if ('words' in x && Array.isArray(x.words)) {
        const words: string[] = x.words;
        const s: number[] = [];
        words.forEach((_, j) => s.push(j === 0 ? 0 : s[j - 1] + words[j - 1].length + 1));
        starts.push(s);
        return { id: String(i), words, line: i + 1 };
      }
      if (!('text' in x) || typeof x.text !== 'string') throw new TypeError(`input ${i}: an NER task takes { words } or { text }`);
      const s = splitWords(x.text);
      starts.push(s.starts);
      return { id: String(i), words: s.words, line: i + 1 };
    });
    const { rows } = await nerRows(this.encoder, ex.map((e) => (e.words.length ? e : { ...e, words: [''] })), null, this.spec.maxLength);
    const ev = await this.run(rows);
    return decodeNer(ex, rows, ev, this.labels, starts);
  }

  private async run(rows: Row[]): Promise<Float32Array[]> {
    const ev = await evaluate(this.model, rows, { batchSize: this.batchSize, store: this.store, writeThrough: this.readThrough });
    return ev.logits;
  }

  close(): void {
    this.store?.close();
    this.encoder.close();
  }
}
