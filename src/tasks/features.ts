/**
 * From examples to model rows: label maps, tokenization with truncation (classification)
 * or word-aligned windows (NER: the first sub-word of each word carries its tag, the
 * other sub-words and the special tokens are ignored in the loss).
 */
import type { Encoder } from '../model/encoder';
import type { Encoded } from '../model/tokenizer';
import { IGNORE, Row } from '../train/rows';
import type { TextExample, WordsExample } from './data';

export { IGNORE };
export type { Row };

export type TaskKind = 'classification' | 'ner';

/** Labels seen in training, in a fixed order (sorted; NER puts O first). */
export class LabelMap {
  private readonly index: Map<string, number>;
  constructor(readonly labels: readonly string[]) {
    this.index = new Map(labels.map((l, i) => [l, i]));
  }

  /** Builds the map from the training labels; refuses an empty set or a single class. */
  static fromTraining(kind: TaskKind, labels: Iterable<string>, file: string): LabelMap {
    const set = new Set(labels);
    if (set.size === 0) throw new Error(`${file}: the training set is empty (no labeled examples)`);
    let sorted = [...set].sort();
    if (kind === 'ner') sorted = ['O', ...sorted.filter((l) => l !== 'O')];
    if (kind === 'classification' && sorted.length < 2) {
      throw new Error(`${file}: every training example has the label ${JSON.stringify(sorted[0])}; a classifier needs at least two classes`);
    }
    if (kind === 'ner' && sorted.length < 2) throw new Error(`${file}: the training set has no entity tags (only O)`);
    return new LabelMap(sorted);
  }

  get size(): number {
    return this.labels.length;
  }

  /** The label's index, or -1 when training never saw it. */
  indexOf(label: string): number {
    return this.index.get(label) ?? -1;
  }
}

export interface PrepareReport {
  /** classification texts cut at the max length */
  truncated: number;
  /** NER sentences split into several windows */
  windowed: number;
  /** labels training never saw: file line -> label */
  unknown: { line: number; label: string }[];
}

/** Classification rows: one per example, truncated to maxLength (counted). */
export async function classificationRows(encoder: Encoder, examples: readonly TextExample[], labels: LabelMap | null, maxLength: number): Promise<{ rows: Row[]; report: PrepareReport }> {
  const report: PrepareReport = { truncated: 0, windowed: 0, unknown: [] };
  const rows: Row[] = [];
  const chunk = 256;
  for (let i = 0; i < examples.length; i += chunk) {
    const part = examples.slice(i, i + chunk);
    const withPairs = part.some((e) => e.pair !== undefined);
    const full = await encoder.tokenizer.encode(part.map((e) => e.text), { pairs: withPairs ? part.map((e) => e.pair ?? '') : undefined });
    const cut = await encoder.tokenizer.encode(part.map((e) => e.text), { pairs: withPairs ? part.map((e) => e.pair ?? '') : undefined, maxLength });
    part.forEach((e, j) => {
      if (full[j].ids.length > maxLength) report.truncated++;
      let y = IGNORE;
      if (labels && e.label !== undefined) {
        y = labels.indexOf(e.label);
        if (y < 0) report.unknown.push({ line: e.line, label: e.label });
      }
      rows.push({ example: i + j, encoding: cut[j], labels: Int32Array.of(y) });
    });
  }
  return { rows, report };
}

/**
 * NER rows. Words are joined with single spaces and tokenized; each token belongs to the
 * word whose characters hold its last character. A sentence longer than maxLength is
 * split between words into windows that each fit.
 */
export async function nerRows(encoder: Encoder, examples: readonly WordsExample[], labels: LabelMap | null, maxLength: number): Promise<{ rows: Row[]; report: PrepareReport }> {
  const report: PrepareReport = { truncated: 0, windowed: 0, unknown: [] };
  const rows: Row[] = [];
  for (let ex = 0; ex < examples.length; ex++) {
    const e = examples[ex];
    const tagIdx = e.tags?.map((t) => {
      if (!labels) return IGNORE;
      const k = labels.indexOf(t);
      if (k < 0) report.unknown.push({ line: e.line, label: t });
      return k < 0 ? IGNORE : k;
    });
    const [full] = await encoder.tokenizer.encode([e.words.join(' ')]);
    const special = 2; // [CLS] ... [SEP] (or <s> ... </s>)
    let windows: [number, number][] = [[0, e.words.length]];
    if (full.ids.length > maxLength) {
      report.windowed++;
      const perWord = wordOfTokens(full, e.words).reduce((acc, w) => {
        if (w >= 0) acc[w]++;
        return acc;
      }, new Array<number>(e.words.length).fill(0));
      windows = [];
      let start = 0, used = 0;
      for (let w = 0; w < e.words.length; w++) {
        const n = Math.max(1, perWord[w]);
        if (w > start && used + n > maxLength - special) {
          windows.push([start, w]);
          start = w;
          used = 0;
        }
        used += n;
      }
      windows.push([start, e.words.length]);
    }
    for (const [a, b] of windows) {
      const words = e.words.slice(a, b);
      const [enc] = await encoder.tokenizer.encode([words.join(' ')], { maxLength });
      const owner = wordOfTokens(enc, words);
      const y = new Int32Array(enc.ids.length).fill(IGNORE);
      const ws = new Int32Array(enc.ids.length).fill(-1);
      let prev = -1;
      owner.forEach((w, t) => {
        if (w >= 0 && w !== prev) {
          ws[t] = a + w;
          if (tagIdx) y[t] = tagIdx[a + w];
        }
        if (w >= 0) prev = w;
      });
      rows.push({ example: ex, encoding: enc, labels: y, wordStart: ws });
    }
  }
  return { rows, report };
}

/** For each token of an encoding of words.join(' '), the index of its word, or -1 (special tokens). */
export function wordOfTokens(enc: Encoded, words: readonly string[]): number[] {
  const ends: number[] = [];
  let pos = 0;
  for (const w of words) {
    pos += w.length;
    ends.push(pos); // word i covers [ends[i] - len, ends[i])
    pos += 1;
  }
  return enc.offsets.map(([s, e], t) => {
    if (enc.sequenceIds[t] === null || e <= s) return -1;
    const c = e - 1;
    // the first word whose end is past c
    let lo = 0, hi = ends.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ends[mid] > c) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  });
}
